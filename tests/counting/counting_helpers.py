"""Helpers shared by the counting tests: a module around a function, and a count that must agree
between cpu and meta and leave nothing uncounted. (A module of its own rather than conftest.py, so
test files import it unambiguously.)"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

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
