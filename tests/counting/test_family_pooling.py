"""Pooling worked by hand: one operation per input element, the kernel ignored (the seed, as
ptflops counts it), for max, avg, adaptive and LP pooling in 1d, 2d and 3d."""

from __future__ import annotations

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from counting_helpers import Fn, measure_both
from pytest_flopbudget.counting.formulas import pooling


POOLS = {
    1: [nn.MaxPool1d(2), nn.MaxPool1d(3, 2, 1), nn.AvgPool1d(2), nn.AdaptiveAvgPool1d(3),
        nn.AdaptiveAvgPool1d(1), nn.AdaptiveMaxPool1d(2), nn.LPPool1d(2, 2), nn.LPPool1d(3, 3, 1)],
    2: [nn.MaxPool2d(2), nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(3),
        nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(2), nn.LPPool2d(2, 2), nn.LPPool2d(1, 3, 1)],
    3: [nn.MaxPool3d(2), nn.MaxPool3d(3, 2, 1), nn.AvgPool3d(2), nn.AdaptiveAvgPool3d(3),
        nn.AdaptiveAvgPool3d(1), nn.AdaptiveMaxPool3d(2), nn.LPPool3d(2, 2)],
}
CASES = [(d, p) for d, pools in POOLS.items() for p in pools]


@pytest.mark.parametrize("dims,pool", CASES, ids=[f"{d}d-{p!r}" for d, p in CASES])
def test_pool_counts_each_input_element_once(dims, pool):
    b, c, side = 2, 3, 6
    m = measure_both(pool, torch.randn(b, c, *([side] * dims)))
    assert m.flops == m.macs == b * c * side**dims
    assert m.params == 0


def test_lp_pool_is_one_unit_not_its_pieces():
    b, c, side = 1, 2, 4
    m = measure_both(nn.LPPool2d(2, 2), torch.randn(b, c, side, side))
    assert m.ops == {"F.lp_pool2d": b * c * side * side}


@pytest.mark.parametrize(
    "fn",
    [lambda x: F.max_pool2d(x, 2), lambda x: F.avg_pool2d(x, 3, 1, 1), lambda x: F.adaptive_avg_pool2d(x, 2),
     lambda x: F.max_pool2d(x, 2, return_indices=True)[0], lambda x: F.lp_pool2d(x, 2.0, 2)],
    ids=["max", "avg", "adaptive-avg", "max-indices", "lp"],
)
def test_functional_pool_counts_like_the_module(fn):
    x = torch.randn(2, 3, 6, 6)
    m = measure_both(Fn(fn), x)
    assert m.flops == m.macs == x.numel()


def test_pool_backward_scatters_to_every_input_element_once():
    b, c, side = 1, 2, 6
    model = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.MaxPool2d(2))
    m = measure_both(model, torch.randn(b, c, side, side), backward=True)
    n = b * c * side * side
    assert m.ops["aten.max_pool2d_with_indices"] == n
    assert m.ops["aten.max_pool2d_with_indices_backward"] == n


# -- shape level: the formula called with plain shapes --
# The seed's pooling rule (ptflops' prod(input.shape)): Cin·Hin·Win per sample, the kernel
# ignored; the aten kernels' positional arguments with tensors as tuples.


@pytest.mark.parametrize("kernel, stride, out_side", [(2, 2, 3), (3, 2, 3), (3, 1, 6), (5, 1, 6)])
def test_shape_max_pool_ignores_the_kernel(kernel, stride, out_side):
    # (2, 3, 6, 6), padding kernel // 2: the output changes with the kernel, the count does not
    b, cin, hin, win = 2, 3, 6, 6
    out = (b, cin, out_side, out_side)
    got = pooling.RULES["max_pool2d_with_indices"]((b, cin, hin, win), [kernel, kernel], [stride, stride],
                                                   [kernel // 2, kernel // 2], [1, 1], False, out_shape=(out, out))
    assert got == (b * cin * hin * win, b * cin * hin * win)


@pytest.mark.parametrize(
    "name, args, out_shape, n_in",
    [("avg_pool2d", ((1, 4, 8, 8), [2, 2], [2, 2], [0, 0], False, True, None), (1, 4, 4, 4), 4 * 8 * 8),
     ("avg_pool3d", ((1, 2, 4, 4, 4), [2, 2, 2], [2, 2, 2], [0, 0, 0], False, True, None), (1, 2, 2, 2, 2),
      2 * 4 * 4 * 4),
     ("max_pool1d", ((2, 3, 10), [3], [3], [0], [1], False), (2, 3, 3), 2 * 3 * 10),
     ("_adaptive_avg_pool2d", ((2, 8, 7, 7), [1, 1]), (2, 8, 1, 1), 2 * 8 * 7 * 7),
     ("adaptive_max_pool2d", ((2, 8, 7, 7), [2, 2]), ((2, 8, 2, 2), (2, 8, 2, 2)), 2 * 8 * 7 * 7),
     ("fractional_max_pool2d", ((1, 2, 9, 9), [2, 2], [4, 4], (1, 2, 2)), ((1, 2, 4, 4), (1, 2, 4, 4)), 2 * 9 * 9)],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_shape_pools_count_each_input_element(name, args, out_shape, n_in):
    assert pooling.RULES[name](*args, out_shape=out_shape) == (n_in, n_in)


def test_shape_lp_pool_is_one_pool():
    # F.lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False), bound to its signature
    _, lp_pool = pooling.FUNCTION_RULES["torch.nn.functional.lp_pool2d"]
    assert lp_pool((1, 2, 4, 4), 2.0, 2, None, False, out_shape=(1, 2, 2, 2)) == (2 * 4 * 4, 2 * 4 * 4)


@pytest.mark.parametrize(
    "name, args, n_in",
    [("max_pool2d_with_indices_backward",
      ((2, 3, 3, 3), (2, 3, 6, 6), [3, 3], [2, 2], [1, 1], [1, 1], False, (2, 3, 3, 3)), 2 * 3 * 6 * 6),
     ("avg_pool2d_backward", ((1, 4, 4, 4), (1, 4, 8, 8), [2, 2], [2, 2], [0, 0], False, True, None), 4 * 8 * 8),
     ("_adaptive_avg_pool2d_backward", ((2, 8, 1, 1), (2, 8, 7, 7)), 2 * 8 * 7 * 7)],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_shape_pool_backward_scatters_to_every_input_element(name, args, n_in):
    # the gradient (output-sized) is spread back over the input: one per input element
    assert pooling.RULES[name](*args, out_shape=args[1]) == (n_in, n_in)
