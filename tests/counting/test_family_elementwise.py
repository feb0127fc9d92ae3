"""Elementwise arithmetic worked by hand: one operation per output element in both numbers
(broadcast output, not input), in-place and scalar forms alike; addcmul/addcdiv/lerp two; dropout
in training two (its random fill free)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from counting_helpers import Fn, measure_both
from pytest_flopbudget.counting.formulas import elementwise


A, B = (2, 3, 4), (3, 4)  # B broadcasts against A: the output has A's 24 elements
N = 2 * 3 * 4

CASES = {
    # name: (fn, ops per output element)
    "add": (lambda a, b: a + b, 1),
    "add-alpha": (lambda a, b: torch.add(a, b, alpha=2), 1),
    "add-scalar": (lambda a, b: a + 1.5, 1),
    "rsub-scalar": (lambda a, b: 2 - a, 1),
    "sub": (lambda a, b: a - b, 1),
    "mul": (lambda a, b: a * b, 1),
    "div": (lambda a, b: a / b, 1),
    "add_-in-place": (lambda a, b: a.add_(b), 1),
    "mul_-scalar-in-place": (lambda a, b: a.mul_(3), 1),
    "div_-in-place": (lambda a, b: a.div_(b), 1),
    "gt": (lambda a, b: a > b, 1),
    "eq-scalar": (lambda a, b: a == 0, 1),
    "maximum": (lambda a, b: torch.maximum(a, b), 1),
    "max-other": (lambda a, b: torch.max(a, b), 1),
    "where": (lambda a, b: torch.where(a > 0, a, b), 2),  # the comparison, then the select
    "masked_fill": (lambda a, b: a.masked_fill(a > 0, 0.0), 2),
    "clamp": (lambda a, b: a.clamp(-1, 1), 1),
    "clamp_-in-place": (lambda a, b: a.clamp_(min=0), 1),
    "pow-scalar": (lambda a, b: a.pow(2), 1),
    "pow-tensor": (lambda a, b: a.pow(b), 1),
    "scalar-pow": (lambda a, b: 2**a, 1),
    "rsqrt": (lambda a, b: torch.rsqrt(a), 1),
    "exp": (lambda a, b: a.exp(), 1),
    "log": (lambda a, b: a.log(), 1),
    "abs": (lambda a, b: a.abs(), 1),
    "neg": (lambda a, b: -a, 1),
    "sqrt-of-abs": (lambda a, b: a.abs().sqrt(), 2),
    "addcmul": (lambda a, b: torch.addcmul(a, a, b), 2),
    "addcdiv": (lambda a, b: torch.addcdiv(a, a, b), 2),
    "lerp": (lambda a, b: torch.lerp(a, b.expand(A), 0.5), 2),
    "dropout-train": (lambda a, b: F.dropout(a, 0.5, training=True), 2),
    "dropout-eval": (lambda a, b: F.dropout(a, 0.5, training=False), 0),
    "bernoulli": (lambda a, b: torch.bernoulli(a.sigmoid()), 1),  # the sigmoid; the draw is free
}


@pytest.mark.parametrize("name", list(CASES))
def test_elementwise(name):
    fn, per_element = CASES[name]
    m = measure_both(Fn(fn), (torch.randn(A), torch.randn(B)))
    assert m.flops == m.macs == per_element * N


def test_broadcast_counts_the_output_not_the_inputs():
    m = measure_both(Fn(lambda a, b: a + b), (torch.randn(4, 1), torch.randn(1, 5)))
    assert m.flops == 4 * 5


def test_native_dropout_kernel_counts_like_the_decomposed_path():
    # CUDA's dropout is one native_dropout kernel; CPU's is div_ + mul: both two per element
    x = torch.randn(A)
    decomposed = measure_both(Fn(lambda a: F.dropout(a, 0.5, training=True)), x)
    fused = measure_both(Fn(lambda a: torch.native_dropout(a, 0.5, True)[0]), x)
    assert fused.ops == {"aten.native_dropout": 2 * N}
    assert decomposed.flops == fused.flops == 2 * N


def test_dropout_backward_counts_one_per_element_on_both_paths():
    x = torch.randn(2, 3)
    for dropout in (nn.Dropout(0.5), Fn(lambda a: torch.native_dropout(a, 0.5, True)[0])):
        model = nn.Sequential(nn.Linear(3, 4, bias=False), dropout)
        m = measure_both(model, x, backward=True)
        mm_fwd = 2 * 4 * (2 * 3 - 1)
        mm_bwd = 3 * 4 * (2 * 2 - 1)  # grad_weight only: the input needs no grad
        assert m.flops == mm_fwd + 2 * 8 + 8 + mm_bwd


def test_residual_add_is_counted():
    lin = nn.Linear(4, 4, bias=False)
    m = measure_both(Fn(lambda x: x + lin(x)), torch.randn(3, 4))
    assert m.ops["aten.add"] == 3 * 4


# -- shape level: the formula called with plain shapes --
# One per output element (the broadcast result, not the inputs) in both numbers; addcmul,
# addcdiv, lerp and dropout two.

N_A = 2 * 3 * 4  # A's elements; B (3, 4) broadcasts against A


@pytest.mark.parametrize(
    "name, args, kwargs",
    [("add", (A, B), {"alpha": 2}), ("sub", (A, B), {}), ("mul", (B, A), {}), ("div", (A, 2.0), {}),
     ("pow", (A, 2), {}), ("rsqrt", (A,), {}), ("exp", (A,), {}), ("clamp", (A, 0.0, 1.0), {}),
     ("gt", (A, 0), {}), ("maximum", (A, B), {}), ("masked_fill", (A, B, 0.0), {}), ("where", (A, A, B), {})],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_shape_elementwise_counts_the_broadcast_output(name, args, kwargs):
    assert elementwise.RULES[name](*args, out_shape=A, **kwargs) == (N_A, N_A)


def test_shape_broadcast_of_both_sides_counts_the_output():
    # (4, 1) * (1, 5): 20 outputs, not 4 + 5 inputs
    assert elementwise.RULES["mul"]((4, 1), (1, 5), out_shape=(4, 5)) == (4 * 5, 4 * 5)


@pytest.mark.parametrize(
    "name, args, kwargs",
    [("addcmul", (A, A, B), {"value": 0.5}), ("addcdiv", (A, B, B), {"value": 1}), ("lerp", (A, A, 0.3), {})],
)
def test_shape_fused_two_step_ops_count_two(name, args, kwargs):
    assert elementwise.RULES[name](*args, out_shape=A, **kwargs) == (2 * N_A, 2 * N_A)


def test_shape_dropout_kernel_counts_two_and_its_backward_one():
    # native_dropout(input, p, train) -> (output, mask): the scale and the multiply
    assert elementwise.RULES["native_dropout"](A, 0.1, True, out_shape=(A, A)) == (2 * N_A, 2 * N_A)
    # native_dropout_backward(grad_output, mask, scale): grad · mask · scale fused, one
    assert elementwise.RULES["native_dropout_backward"](A, A, 1 / 0.9, out_shape=A) == (N_A, N_A)
