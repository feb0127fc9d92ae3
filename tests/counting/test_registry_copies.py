"""Scoped registries (``measure(..., formulas=...)``, ``count(formulas=...)``): a copy with extra
formulas that leaves the registry it came from untouched, made by the same constructor."""

from __future__ import annotations

import pytest
import torch

import pytest_flopbudget as fb
from pytest_flopbudget.counting.registry import Registry

mm = torch.ops.aten.mm.default


def seven(*shapes, out_shape=None, **kwargs):
    return (7, 3)


def eleven(*shapes, out_shape=None, **kwargs):
    return (11, 5)


def test_an_attribute_added_to_init_reaches_scoped_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """A field added to ``Registry.__init__`` later is in every scoped copy: copies are made by the
    constructor, not by copying the fields known today one by one."""
    original = Registry.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.added_later = {"made by": "__init__"}

    monkeypatch.setattr(Registry, "__init__", init)
    registry = Registry()
    scoped = registry.scoped({torch.ops.aten.addmm: seven})
    assert scoped is not registry
    assert set(vars(scoped)) == set(vars(registry))
    assert scoped.added_later == {"made by": "__init__"}


def test_a_scoped_copy_shares_the_builtins_and_keeps_its_own_formulas_and_cache() -> None:
    registry = Registry()
    builtin_mm = registry.resolve(mm)
    registry.register(torch.ops.aten.bmm, eleven)
    scoped = registry.scoped({torch.ops.aten.mm: seven})
    assert set(vars(scoped)) == set(vars(registry))
    assert scoped.function_rules is registry.function_rules  # built once per torch, shared
    assert scoped.resolve(mm) is seven and scoped.resolve(torch.ops.aten.bmm.default) is eleven
    assert registry.resolve(mm) is builtin_mm  # the original neither sees the scoped formula...
    scoped.register(torch.ops.aten.bmm, seven, scoped=True)
    assert registry.resolve(torch.ops.aten.bmm.default) is eleven  # ...nor the copy's later changes
    assert registry.scoped(None) is registry and registry.scoped({}) is registry


def test_a_count_with_formulas_counts_with_them_and_only_there() -> None:
    a, b = torch.zeros(2, 3), torch.zeros(3, 4)
    by_hand = (2 * 4 * (2 * 3 - 1), 2 * 4 * 3)  # 8 dot products of 3 terms
    counts = []
    for formulas in (None, {torch.ops.aten.mm: seven}, None):
        with fb.count(formulas=formulas) as counted:
            torch.mm(a, b)
        counts.append((counted.flops, counted.macs))
    assert counts == [by_hand, (7, 3), by_hand]
