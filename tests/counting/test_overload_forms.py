"""One op, three forms: functional, in-place and ``out=`` count the same and are reported under one
name, for built-in formulas, the ``pointwise`` fallback and user formulas alike."""

from __future__ import annotations

import pytest
import torch

import pytest_flopbudget as fb
from counting_helpers import Fn
from pytest_flopbudget.counting.registry import functional_form

N = 32 * 32


def three_forms(functional, inplace, out_form):
    """Each form run on fresh (32, 32) tensors; returns the three measurements."""
    def run(fn):
        inputs = tuple(torch.rand(32, 32) + 0.5 for _ in range(3))  # built outside the count
        return fb.measure(Fn(fn), inputs)

    return run(functional), run(inplace), run(out_form)


# (family, functional, in-place, out=, flops by hand)
FAMILIES = [
    ("add (elementwise, one per element)",
     lambda a, b, c: torch.add(a, b), lambda a, b, c: a.add_(b),
     lambda a, b, c: torch.add(a, b, out=c), N),
    ("addcmul (two per element)",
     lambda a, b, c: torch.addcmul(a, b, c), lambda a, b, c: a.addcmul_(b, c),
     lambda a, b, c: torch.addcmul(a, b, c, out=torch.empty(32, 32)), 2 * N),
    ("addcdiv (two per element)",
     lambda a, b, c: torch.addcdiv(a, b, c, value=0.5), lambda a, b, c: a.addcdiv_(b, c, value=0.5),
     lambda a, b, c: torch.addcdiv(a, b, c, value=0.5, out=torch.empty(32, 32)), 2 * N),
    ("lerp (two per element)",
     lambda a, b, c: torch.lerp(a, b, 0.3), lambda a, b, c: a.lerp_(b, 0.3),
     lambda a, b, c: torch.lerp(a, b, 0.3, out=c), 2 * N),
    ("sigmoid (activation)",
     lambda a, b, c: torch.sigmoid(a), lambda a, b, c: a.sigmoid_(),
     lambda a, b, c: torch.sigmoid(a, out=c), N),
    ("sqrt (pointwise tag fallback)",
     lambda a, b, c: torch.sqrt(a), lambda a, b, c: a.sqrt_(),
     lambda a, b, c: torch.sqrt(a, out=c), N),
    ("addmm (matmul with an added term)",
     lambda a, b, c: torch.addmm(a, b, c), lambda a, b, c: a.addmm_(b, c),
     lambda a, b, c: torch.addmm(a, b, c, out=torch.empty(32, 32)), N * (2 * 32 - 1) + N),
    ("cumsum (reduction)",
     lambda a, b, c: torch.cumsum(a, 1), lambda a, b, c: a.cumsum_(1),
     lambda a, b, c: torch.cumsum(a, 1, out=c), N),
    ("clamp (elementwise)",
     lambda a, b, c: torch.clamp(a, 0.6, 0.9), lambda a, b, c: a.clamp_(0.6, 0.9),
     lambda a, b, c: torch.clamp(a, 0.6, 0.9, out=c), N),
]


@pytest.mark.parametrize("family", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_functional_inplace_and_out_forms_count_the_same(family):
    _, functional, inplace, out_form, expected = family
    results = three_forms(functional, inplace, out_form)
    for m in results:
        assert m.flops == expected
        assert m.uncounted == {}
    assert results[0].ops == results[1].ops == results[2].ops
    assert len(results[0].ops) == 1


def test_an_out_form_with_two_outputs_counts_like_its_functional_form():
    x = torch.randn(6, 7)
    functional = fb.measure(Fn(lambda: torch.max(x, 1)), ())
    into = fb.measure(Fn(lambda: torch.max(x, 1, out=(torch.empty(6), torch.empty(6, dtype=torch.long)))), ())
    assert functional.flops == into.flops == 6 * 7  # a reduction: one per input element
    assert functional.ops == into.ops == {"aten.max": 42}


def test_normalised_keys():
    aten = torch.ops.aten
    assert functional_form(aten.add_.Tensor) is aten.add.Tensor
    assert functional_form(aten.add.out) is aten.add.Tensor
    assert functional_form(aten.max.dim_max) is aten.max.dim
    assert functional_form(aten._foreach_mul_.List) is aten._foreach_mul.List
    assert functional_form(aten.add_) is aten.add
    assert functional_form(aten.mm.default) is aten.mm.default


@pytest.mark.parametrize("registered", ["aten::add", "aten::add_", "aten::add.out", "aten::add.Tensor"])
def test_a_user_formula_reaches_every_form_of_its_op(registered):
    formulas = {registered: lambda *shapes, out_shape, **kw: (5, 3)}
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    for fn in (lambda a, b: torch.add(a, b), lambda a, b: a.add_(b), lambda a, b: torch.add(a, b, out=torch.empty(4, 4))):
        m = fb.measure(Fn(fn), (a, b), formulas=formulas)
        assert (m.flops, m.macs) == (5, 3)
