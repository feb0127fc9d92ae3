"""Shared by the zoo tests: optional libraries imported or skipped with a reason, models built
without spending time on weight initialisation, and the checks every zoo model passes.

(A module of its own rather than conftest.py, so test files import it unambiguously.)
"""

from __future__ import annotations

import contextlib
import os
from types import ModuleType
from typing import Any, Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import pytest_flopbudget as fb  # noqa: E402
from optional_libraries import optional  # noqa: E402


def require(name: str) -> ModuleType:
    """The library, or the calling test skipped; called at a module's top level, the whole module
    is skipped (a skip there needs allow_module_level, or collection stops with an error)."""
    module, reason = optional(name)
    if module is None:
        pytest.skip(reason, allow_module_level=True)
    return module


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Constructors run with real tensors and real Python arithmetic; only the parameters and
    buffers they register go to the meta device (no memory, no initialisation time). Weights are
    given memory afterwards with ``materialise`` where a cpu count needs them."""
    register_parameter = nn.Module.register_parameter
    register_buffer = nn.Module.register_buffer

    def parameter_on_meta(module: nn.Module, name: str, param: Any) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer_on_meta(module: nn.Module, name: str, tensor: Any, persistent: bool = True) -> None:
        if tensor is not None and tensor.device.type != "meta":
            tensor = tensor.to("meta")
        register_buffer(module, name, tensor, persistent)

    nn.Module.register_parameter = parameter_on_meta  # type: ignore[method-assign]
    nn.Module.register_buffer = buffer_on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]


def materialise(model: nn.Module) -> nn.Module:
    """Weights built on meta given cpu memory and a harmless value (counts never depend on it
    for these models; a constant is much faster than an initialiser on hundreds of millions of
    weights)."""
    model.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.fill_(0.01)
            else:
                tensor.zero_()
    return model


def unique_params(model: nn.Module) -> int:
    """Independently of the engine: each parameter object once, shared (tied) ones included once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def assert_counts_everywhere(model: nn.Module, inputs: Any) -> fb.Measurement:
    """Nothing uncounted, the same numbers on cpu and meta, params = the unique parameters.
    Returns the cpu measurement."""
    cpu = fb.measure(model, inputs, device="cpu")
    meta = fb.measure(model, inputs, device="meta")
    assert cpu.uncounted == {}, cpu.uncounted
    assert meta.uncounted == {}, meta.uncounted
    assert (cpu.flops, cpu.macs) == (meta.flops, meta.macs), {
        op: (cpu.ops.get(op), meta.ops.get(op))
        for op in set(cpu.ops) | set(meta.ops) if cpu.ops.get(op) != meta.ops.get(op)
    }
    assert cpu.params == meta.params == unique_params(model)
    assert cpu.flops > 0
    return cpu
