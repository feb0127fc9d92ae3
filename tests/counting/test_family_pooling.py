"""Pooling worked by hand: one operation per input element, the kernel ignored (the seed, as
ptflops counts it), for max, avg, adaptive and LP pooling in 1d, 2d and 3d."""

from __future__ import annotations

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from counting_helpers import Fn, measure_both


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
