"""Helpers shared by the counting tests: a module around a function, and a count that must agree
between cpu and meta and leave nothing uncounted. (A module of its own rather than conftest.py, so
test files import it unambiguously.)"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.nn.modules import module as module_mod

import pytest_flopbudget as fb


class Fn(nn.Module):
    """Wraps a plain function (a functional call, a tensor method) as a module to measure."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def measure_both(model: Any, inputs: Any, **kwargs: Any) -> fb.Measurement:
    """The cpu measurement, after checking meta gives the same numbers and nothing is uncounted."""
    cpu = fb.measure(model, inputs, device="cpu", **kwargs)
    meta = fb.measure(model, inputs, device="meta", **kwargs)
    assert (cpu.flops, cpu.macs, cpu.params, cpu.ops) == (meta.flops, meta.macs, meta.params, meta.ops)
    assert cpu.uncounted == {} and meta.uncounted == {}
    return cpu


def engine_state() -> tuple[Any, ...]:
    """What a count installs while it runs and must remove after, whatever happened: global module
    hooks, dispatch and function modes, the default device, user formulas."""
    from pytest_flopbudget.counting.registry import default_registry

    return (
        len(module_mod._global_forward_hooks),
        len(module_mod._global_forward_pre_hooks),
        len(module_mod._global_parameter_registration_hooks),
        torch._C._len_torch_dispatch_stack(),
        torch._C._len_torch_function_stack(),
        torch.get_default_device(),
        dict(default_registry()._user),
    )
