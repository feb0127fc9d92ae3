"""register_formula refuses what is not an op, names an unknown op clearly, and says when it
replaces another user formula (issue 19.5), as torch's own registry does."""

from __future__ import annotations

import pytest
import torch

import pytest_flopbudget as fb
from pytest_flopbudget.counting.registry import _unregister_formula


def test_a_target_that_is_not_an_op_is_refused() -> None:
    with pytest.raises(TypeError, match=r"register_formula: 42 is not an op; pass an op \(torch.ops.aten.mm"):
        fb.register_formula(42, lambda *shapes, out_shape: (0, 0))


@pytest.mark.parametrize("name", ["aten::no_such_op", "nosuchlib::op", "aten.mm"])
def test_an_unknown_op_name_says_how_to_name_one(name: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown op '{name}'.*'namespace::name'"):
        fb.register_formula(name, lambda *shapes, out_shape: (0, 0))


def test_replacing_a_user_formula_warns_and_the_new_one_counts() -> None:
    def first(a, b, *, out_shape):
        return 1, 1

    def second(a, b, *, out_shape):
        return 2, 2

    fb.register_formula("aten::mm", first)
    try:
        with pytest.warns(UserWarning, match=r"aten.mm already had a user formula \(.*first\); it is replaced by .*second"):
            fb.register_formula(torch.ops.aten.mm, second)
        fb.register_formula(torch.ops.aten.mm, second)  # the same formula again: nothing to say
        counted = fb.measure(lambda: torch.nn.Linear(3, 3, bias=False), torch.zeros(2, 3))
        assert counted.flops == 2 and counted.macs == 2
    finally:
        _unregister_formula("aten::mm")
