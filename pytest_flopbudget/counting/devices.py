"""Counting devices: the names a user may give, whether CUDA is there, and where tensors live.

One place for the engine (``device=``), the plugin (``--flop-device``) and the CLI (``--device``);
each caller says the problem in its own option's words. Torch is imported only by the functions
that need it, so the plugin validates a device name at start-up without it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Union

if TYPE_CHECKING:
    import torch

    DeviceLike = Union[str, "torch.device", None]
else:
    DeviceLike = Any

DEVICES = ("cpu", "cuda", "meta")


def parse_device_name(value: object) -> str:
    """cpu, cuda, cuda:N or meta, lower-cased; anything else is a ValueError saying the choices."""
    text = str(value).strip().lower()
    if text in DEVICES or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise ValueError(f"{value!r} is not a counting device; choose one of {', '.join(DEVICES)}")


def cuda_problem(device: str) -> str | None:
    """Why ``device`` cannot be used here ("torch 2.13.0 has no usable CUDA device here"), or None.
    Only a CUDA device can have a problem, and only then is torch imported."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} has no usable CUDA device here"
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        return f"only {torch.cuda.device_count()} CUDA device(s) here"
    return None


def is_meta(target: torch.device | None) -> bool:
    return target is not None and target.type == "meta"


def device_of(tensors: Iterable[torch.Tensor]) -> str:
    """Where a model's tensors are: one device, several joined by commas, or cpu when it has none."""
    devices = sorted({str(t.device) for t in tensors})
    return devices[0] if len(devices) == 1 else ",".join(devices) or "cpu"


def resolve_device(device: DeviceLike) -> torch.device | None:
    """None, or a torch.device that exists here (cuda without CUDA is an error, said clearly)."""
    import torch

    from pytest_flopbudget.counting.errors import MeasurementError

    if device is None:
        return None
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise MeasurementError(
            f"device={device!r} is not a device torch knows; use 'cpu', 'cuda' or 'meta'"
        ) from error
    problem = cuda_problem(str(target))
    if problem is not None:
        raise MeasurementError(
            f"device={device!r} asked for CUDA, but {problem}; count on 'cpu' or 'meta' instead "
            "(the numbers are the same)",
            use_device="cpu",
        )
    return target


def fake_mode() -> Any:
    """The FakeTensorMode a meta count runs under. Its shape environment lets tensors whose sizes
    are symbolic exist without values (a jagged nested tensor's ragged length): what needs only
    their total length counts; what needs each length still raises for want of values."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    # values stay unknown: .item() and data-dependent shapes raise, as without a shape environment
    shape_env = ShapeEnv(allow_scalar_outputs=False, allow_dynamic_output_shape_ops=False)
    return FakeTensorMode(allow_non_fake_inputs=True, shape_env=shape_env)


@contextlib.contextmanager
def quiet_fake_tensor_log() -> Iterator[None]:
    """FakeTensorMode logs the whole traceback of an op that fails on fake tensors (a shape
    mismatch) before raising the error, which the caller gets with what was being measured: in a
    pytest run that was 40 lines of captured log beside a two-line failure. Its level is put back
    afterwards, so the caller's own logging of it is as it was."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
