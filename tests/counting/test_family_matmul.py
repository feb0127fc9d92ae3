"""Matrix products worked by hand: N outputs contracted over K terms cost N·(2K − 1) flops and N·K
macs; an added term (addmm's bias, baddbmm's input) adds N to both, unless beta=0."""

from __future__ import annotations

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from counting_helpers import Fn, measure_both


def products(n, k, added=False):
    """(flops, macs) of n dot products of length k, the seed's rule."""
    extra = n if added else 0
    return n * (2 * k - 1) + extra, n * k + extra


r = torch.randn


CASES = {
    # name: (fn, args, n_outputs, k, added term)
    "mm": (torch.mm, (r(3, 4), r(4, 5)), 3 * 5, 4, False),
    "addmm": (torch.addmm, (r(5), r(3, 4), r(4, 5)), 3 * 5, 4, True),
    "addmm-beta0": (lambda b, x, y: torch.addmm(b, x, y, beta=0), (r(3, 5), r(3, 4), r(4, 5)), 15, 4, False),
    "bmm": (torch.bmm, (r(2, 3, 4), r(2, 4, 5)), 2 * 3 * 5, 4, False),
    "baddbmm": (torch.baddbmm, (r(2, 3, 5), r(2, 3, 4), r(2, 4, 5)), 30, 4, True),
    "baddbmm-broadcast-input": (torch.baddbmm, (r(5), r(2, 3, 4), r(2, 4, 5)), 30, 4, True),
    "baddbmm-beta0": (lambda b, x, y: torch.baddbmm(b, x, y, beta=0, alpha=0.5),
                      (r(2, 3, 5), r(2, 3, 4), r(2, 4, 5)), 30, 4, False),
    "mv": (torch.mv, (r(3, 4), r(4)), 3, 4, False),
    "addmv": (torch.addmv, (r(3), r(3, 4), r(4)), 3, 4, True),
    "dot": (torch.dot, (r(6), r(6)), 1, 6, False),
    "matmul-1d-1d": (torch.matmul, (r(6), r(6)), 1, 6, False),
    "matmul-2d-1d": (torch.matmul, (r(3, 4), r(4)), 3, 4, False),
    "matmul-1d-2d": (torch.matmul, (r(4), r(4, 5)), 5, 4, False),
    "matmul-broadcast-left": (torch.matmul, (r(3, 4), r(2, 4, 5)), 2 * 3 * 5, 4, False),
    "matmul-broadcast-right": (torch.matmul, (r(2, 3, 4), r(4, 5)), 2 * 3 * 5, 4, False),
    "matmul-broadcast-both": (torch.matmul, (r(2, 1, 3, 4), r(5, 4, 6)), 2 * 5 * 3 * 6, 4, False),
    "linear-no-bias": (lambda x, w: F.linear(x, w), (r(2, 3, 4), r(5, 4)), 2 * 3 * 5, 4, False),
    "linear-bias": (F.linear, (r(2, 3, 4), r(5, 4), r(5)), 2 * 3 * 5, 4, True),
    "einsum-bmm": (lambda a, b: torch.einsum("bij,bjk->bik", a, b), (r(2, 3, 4), r(2, 4, 5)), 30, 4, False),
    "einsum-attention": (lambda q, k: torch.einsum("bhqd,bhkd->bhqk", q, k),
                         (r(2, 3, 5, 4), r(2, 3, 6, 4)), 2 * 3 * 5 * 6, 4, False),
    "einsum-dot": (lambda a, b: torch.einsum("i,i->", a, b), (r(6), r(6)), 1, 6, False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matrix_product(name):
    fn, args, n, k, added = CASES[name]
    m = measure_both(Fn(fn), args)
    assert (m.flops, m.macs) == products(n, k, added)


def test_matmul_counts_like_the_linear_module():
    x = r(2, 3, 4)
    lin = nn.Linear(4, 5)
    as_module = measure_both(lin, x)
    as_function = measure_both(Fn(lambda x: x @ lin.weight.T + lin.bias), x)
    assert (as_module.flops, as_module.macs) == (as_function.flops, as_function.macs) == products(30, 4, True)


def test_einsum_follows_the_contraction_torch_takes():
    # "bij,jk->bk": torch first sums i out of the first operand (a reduction, one per input
    # element), then contracts j in a batched product
    b, i, j, k = 2, 3, 4, 5
    m = measure_both(Fn(lambda x, y: torch.einsum("bij,jk->bk", x, y)), (r(b, i, j), r(j, k)))
    reduce_i = b * i * j
    flops, macs = products(b * k, j)
    assert m.ops == {"aten.sum": reduce_i, "aten.bmm": flops}
    assert (m.flops, m.macs) == (reduce_i + flops, reduce_i + macs)


def test_einsum_three_operands_contracts_left_to_right():
    # (i,j)(j,k) first, then (i,k)(k,l): for these shapes also the cheapest order, so the count
    # is the same with or without opt_einsum
    i, j, k, l = 2, 3, 4, 5
    m = measure_both(Fn(lambda a, b, c: torch.einsum("ij,jk,kl->il", a, b, c)), (r(i, j), r(j, k), r(k, l)))
    first, second = products(i * k, j), products(i * l, k)
    assert (m.flops, m.macs) == (first[0] + second[0], first[1] + second[1])


def test_outer_product_is_elementwise():
    m = measure_both(Fn(torch.outer), (r(3), r(4)))
    assert (m.flops, m.macs) == (12, 12)
