"""The formula contract: the output shape arrives as ``out_shape=``, never as ``out=`` (aten's own
argument), and a formula that raises is reported as the formula's fault, not the model's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pytest_flopbudget as fb
from pytest_flopbudget.counting.registry import _unregister_formula
from pytest_flopbudget.counting.counter import FormulaError


class AddsInto(nn.Module):
    """A forward that writes into a preallocated output with aten's own ``out=`` argument."""

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        o = torch.empty_like(a)
        torch.add(a, a, out=o)
        return o


def test_an_out_argument_no_longer_collides_with_the_output_shape():
    m = fb.measure(AddsInto(), torch.randn(32, 32))
    assert m.flops == 32 * 32  # one add per element
    assert m.uncounted == {}


def test_a_user_formula_receives_the_output_shape_as_out_shape():
    seen = {}

    def spy(*shapes, out_shape, **kwargs):
        seen["out_shape"], seen["kwargs"] = tuple(out_shape), kwargs
        return (7, 3)

    fb.register_formula("aten::mm", spy)
    try:
        m = fb.measure(nn.Linear(4, 6, bias=False), torch.randn(5, 4))
    finally:
        _unregister_formula("aten::mm")
    assert seen["out_shape"] == (5, 6)
    assert "out" not in seen["kwargs"]
    assert (m.flops, m.macs) == (7, 3)


def test_a_raising_formula_is_named_with_its_op_not_blamed_on_the_model():
    def broken(x, *, out_shape):
        raise ZeroDivisionError("boom")

    fb.register_formula("aten::relu", broken)
    try:
        with pytest.raises(FormulaError) as caught:
            fb.measure(nn.ReLU(), torch.randn(3, 4))
    finally:
        _unregister_formula("aten::relu")
    text = str(caught.value)
    assert "aten.relu" in text and "broken" in text and "ZeroDivisionError: boom" in text
    assert "torch.Size([3, 4])" in text
    notes = getattr(caught.value, "__notes__", [])
    assert not any("model's forward" in note for note in notes)
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
