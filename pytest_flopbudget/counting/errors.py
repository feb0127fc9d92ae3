"""The engine's errors, and how a failure only the meta device causes is recognised and explained.

Messages speak the engine's language (``device='cpu'``); the plugin and the CLI add their own
option names from ``MeasurementError.use_device``.
"""

from __future__ import annotations

from typing import Any


class MeasurementError(Exception):
    """The model or inputs could not be measured; the message says why and what to do.

    ``use_device`` names the device that would work, when that is the fix, so that a front end can
    say how to choose it (``--flop-device=cpu`` in pytest, ``--device cpu`` in the CLI)."""

    def __init__(self, message: str, *, use_device: str | None = None) -> None:
        super().__init__(message)
        self.use_device = use_device


class FormulaError(Exception):
    """A formula raised: the fault lies in the formula (a user's or a built-in one), not in the
    model, so the message names the op, the formula and the shapes it was given."""

    @classmethod
    def wrap(cls, op_name: str, formula: Any, shapes: Any, kw_shapes: Any, error: Exception) -> FormulaError:
        where = getattr(formula, "__module__", None) or "?"
        name = getattr(formula, "__qualname__", None) or repr(formula)
        given = ", ".join([*map(repr, shapes), *(f"{k}={v!r}" for k, v in kw_shapes.items())])
        return cls(
            f"the formula {where}.{name} for {op_name} raised {type(error).__name__}: {error}\n"
            f"  it was called as formula({given}, out_shape=...); a formula takes the op's arguments "
            "with tensors as shapes and the output shape as out_shape=, and returns (flops, macs)"
        )


# torch's messages for the same failures where it raises a plain RuntimeError (no type to test):
# a value read of a plain meta tensor, and, before torch 2.8, fake tensors on two devices
_NO_VALUES_TEXT = (".item() cannot be called on meta tensors", "Cannot copy out of meta tensor", "meta tensors")
_TWO_DEVICES_TEXT = ("found two different devices", "found at least two devices")


def _torch_types(module_name: str, *names: str) -> tuple[type, ...]:
    """The exception classes of ``module_name`` that this torch release has."""
    import importlib

    module = importlib.import_module(module_name)
    return tuple(getattr(module, name) for name in names if hasattr(module, name))


def _chain(error: BaseException) -> list[BaseException]:
    """The error and those it was raised from or while handling (torch and user code re-raise)."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def needs_values(error: BaseException) -> bool:
    """Whether an op failed for want of tensor values: meta tensors have none (``.item()``, shapes
    that depend on data, control flow on a value)."""
    types = _torch_types("torch._subclasses.fake_tensor", "DataDependentOutputException",
                         "DynamicOutputShapeException")
    types += _torch_types("torch.fx.experimental.symbolic_shapes", "GuardOnDataDependentSymNode")
    chain = _chain(error)
    if any(isinstance(e, types) for e in chain):
        return True
    return any(isinstance(e, (RuntimeError, NotImplementedError)) and any(t in str(e) for t in _NO_VALUES_TEXT)
               for e in chain)


def mixes_devices(error: BaseException) -> bool:
    """Whether a real tensor met a fake (meta) one in one op."""
    types = _torch_types("torch._subclasses.fake_tensor", "FakeTensorDeviceMismatchError")
    chain = _chain(error)
    if any(isinstance(e, types) for e in chain):
        return True
    return any(isinstance(e, RuntimeError) and any(t in str(e) for t in _TWO_DEVICES_TEXT) for e in chain)


def first_line(error: BaseException) -> str:
    """'RuntimeError: the first line of its message', for one-line explanations."""
    return f"{type(error).__name__}: {error}".splitlines()[0]


def wants_integer_inputs(error: BaseException) -> bool:
    """Whether an op refused floating-point inputs where it needs indices (token ids given to an
    embedding as float tensors). torch raises a plain RuntimeError whose words vary by kernel and
    release: "... 'indices' ... Long, Int; but got torch.FloatTensor" (an embedding on cpu), "tensors
    used as indices must be long, int, byte or bool tensors" (indexing, and embeddings on meta)."""
    message = str(error).lower()
    return "long" in message and ("float" in message or "indices" in message)
