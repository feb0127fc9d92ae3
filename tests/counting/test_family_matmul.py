"""Matrix products worked by hand: N outputs contracted over K terms cost N·(2K − 1) flops and N·K
macs; an added term (addmm's bias, baddbmm's input) adds N to both, unless beta=0."""

from __future__ import annotations

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from counting_helpers import Fn, measure_both
from pytest_flopbudget.counting.formulas import matmul


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


# -- shape level: the formula called with plain shapes --
# Each formula called as the counter calls it: aten's positional arguments with tensors as
# tuples, keyword-only scalars (beta, alpha) as keywords, and out_shape=. N outputs contracted
# over K terms: N·(2K − 1) flops and N·K macs (the seed's fully connected rule), + N with an
# added term.


def test_shape_mm():
    n, k = 3 * 5, 4
    assert matmul.mm((3, 4), (4, 5), out_shape=(3, 5)) == (n * (2 * k - 1), n * k)


def test_shape_bmm():
    n, k = 2 * 3 * 5, 4
    assert matmul.RULES["bmm"]((2, 3, 4), (2, 4, 5), out_shape=(2, 3, 5)) == (n * (2 * k - 1), n * k)


def test_shape_seed_fully_connected_row():
    # the seed: (2·Cin − 1)·Cout per sample; nn.Linear(7, 4) without bias on 5 samples as one mm
    cin, cout, batch = 7, 4, 5
    assert matmul.mm((batch, cin), (cin, cout), out_shape=(batch, cout)) == (
        batch * (2 * cin - 1) * cout, batch * cin * cout)


@pytest.mark.parametrize("kwargs", [{}, {"beta": 1, "alpha": 0.5}], ids=["default", "alpha"])
def test_shape_addmm_adds_one_per_output(kwargs):
    # nn.Linear(7, 4) on 10 tokens: addmm(bias, x, w.T); docs/formulas.md's worked example
    n, k = 10 * 4, 7
    assert matmul.addmm((4,), (10, 7), (7, 4), out_shape=(10, 4), **kwargs) == (
        n * (2 * k - 1) + n, n * k + n)


def test_shape_addmm_with_beta_zero_never_reads_its_term():
    n, k = 3 * 5, 4
    assert matmul.addmm((3, 5), (3, 4), (4, 5), beta=0, out_shape=(3, 5)) == (n * (2 * k - 1), n * k)


@pytest.mark.parametrize("beta, added", [(1, True), (0, False)])
def test_shape_baddbmm(beta, added):
    # GPT-2's attention calls baddbmm(empty, q, k, beta=0)
    n, k = 2 * 3 * 5, 4
    extra = n if added else 0
    got = matmul.RULES["baddbmm"]((2, 3, 5), (2, 3, 4), (2, 4, 5), beta=beta, out_shape=(2, 3, 5))
    assert got == (n * (2 * k - 1) + extra, n * k + extra)


def test_shape_addbmm_sums_over_the_batch():
    # (3, 5) + sum over b of (3, 4)@(4, 5) for b in 2: each output sums 2·4 products
    n, k = 3 * 5, 2 * 4
    assert matmul.addbmm((3, 5), (2, 3, 4), (2, 4, 5), out_shape=(3, 5)) == (n * (2 * k - 1) + n, n * k + n)


def test_shape_mv_addmv_dot_vdot():
    assert matmul.mv((3, 4), (4,), out_shape=(3,)) == (3 * (2 * 4 - 1), 3 * 4)
    assert matmul.addmv((3,), (3, 4), (4,), out_shape=(3,)) == (3 * (2 * 4 - 1) + 3, 3 * 4 + 3)
    assert matmul.dot((6,), (6,), out_shape=()) == (2 * 6 - 1, 6)
    assert matmul.RULES["vdot"]((6,), (6,), out_shape=()) == (2 * 6 - 1, 6)


@pytest.mark.parametrize("beta, per_output", [(1, 2), (0, 1)])
def test_shape_addr_is_a_multiply_and_an_add_per_output(beta, per_output):
    n = 3 * 4
    assert matmul.addr((3, 4), (3,), (4,), beta=beta, out_shape=(3, 4)) == (per_output * n, per_output * n)


def test_shape_int_mm_counts_like_mm():
    # docs/formulas.md: int8 (32, 64) x (64, 24)
    n, k = 32 * 24, 64
    assert matmul.RULES["_int_mm"]((32, 64), (64, 24), out_shape=(32, 24)) == (n * (2 * k - 1), n * k)


@pytest.mark.parametrize(
    "a, b, offs, bias, out_shape, n, k",
    [((10, 16), (3, 16, 8), (3,), None, (10, 8), 10 * 8, 16),  # the MoE forward: rows·N outputs
     ((10, 16), (3, 16, 8), (3,), (3, 8), (10, 8), 10 * 8, 16),  # + a bias per output
     ((3, 8, 16), (16, 12), (3,), None, (8, 12), 8 * 12, 16),
     ((3, 8, 16), (3, 16, 8), None, None, (3, 8, 8), 3 * 8 * 8, 16)],  # a batched product
    ids=["2d-3d", "2d-3d-bias", "3d-2d", "3d-3d"],
)
def test_shape_grouped_mm(a, b, offs, bias, out_shape, n, k):
    extra = n if bias else 0
    assert matmul.grouped_mm(a, b, offs, bias, out_shape=out_shape) == (n * (2 * k - 1) + extra, n * k + extra)


def test_shape_grouped_mm_weight_gradient_splits_k():
    # (M, K) x (K, N) with 3 groups over K -> (3, M, N): M·N·K multiplies in all, and each of the
    # 3 outputs per position sums its own K_g terms: K − 3 adds per position
    m, k, n, g = 8, 12, 8, 3
    assert matmul.grouped_mm((m, k), (k, n), (g,), None, out_shape=(g, m, n)) == (m * n * k + m * n * (k - g),
                                                                                m * n * k)


def test_shape_scaled_mm_counts_its_bias_like_addmm():
    # _scaled_mm(a, b, scale_a, scale_b, bias=None, ...): fp8 (16, 32) x (32, 8); N = 16*8, K = 32
    n, k = 16 * 8, 32
    plain = matmul.RULES["_scaled_mm"]((16, 32), (32, 8), (), (), out_shape=(16, 8))
    assert plain == (n * (2 * k - 1), n * k)
    with_bias = matmul.RULES["_scaled_mm"]((16, 32), (32, 8), (), (), (8,), out_shape=(16, 8))
    assert with_bias == (n * (2 * k - 1) + n, n * k + n)
    assert matmul.RULES["_scaled_mm"]((16, 32), (32, 8), (), (), bias=(8,), out_shape=(16, 8)) == with_bias
