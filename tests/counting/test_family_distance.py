"""Distances worked by hand: a p-norm distance over M coordinates is M subtractions, M powers,
M − 1 accumulations and a root (none for p = 1 and ∞): 3M flops for p = 2, 3M − 1 for p = 1; M
macs per pair. cdist counts every pair of rows, pdist every unordered pair."""

from __future__ import annotations

import torch
from torch import nn

import pytest_flopbudget as fb
from counting_helpers import measure_both
from pytest_flopbudget.counting.formulas import distance


def test_pair_counts_by_norm():
    assert distance.pair_flops(5, 2.0) == 15
    assert distance.pair_flops(5, 1.0) == 14
    assert distance.pair_flops(5, float("inf")) == 14
    assert distance.pair_flops(5, 3.0) == 15


def test_cdist_pdist_dist_shapes():
    # 2 batches of 4 × 6 pairs over 3 coordinates
    assert distance.cdist((2, 4, 3), (2, 6, 3), 2.0, out_shape=(2, 4, 6)) == (48 * 9, 48 * 3)
    assert distance.cdist((4, 3), (6, 3), 1.0, out_shape=(4, 6)) == (24 * 8, 24 * 3)
    # 5 rows: 10 unordered pairs
    assert distance.pdist((5, 3), 2.0, out_shape=(10,)) == (10 * 9, 10 * 3)
    # broadcast (4, 1) against (3,): 12 coordinates
    assert distance.dist((4, 1), (3,), 2, out_shape=()) == (36, 12)


class NearestCentroid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.centroids = nn.Parameter(torch.randn(30, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x, self.centroids)


def test_cdist_in_a_module_end_to_end_whichever_route_torch_takes():
    # 30 centroids: torch takes the matrix-product route (_euclidean_dist) for p = 2, and the
    # pairwise kernel for p = 1; both count 7·30 pairs by the pairwise rule
    x = torch.randn(7, 8)
    m = measure_both(NearestCentroid(), x)
    assert (m.flops, m.macs) == (7 * 30 * 24, 7 * 30 * 8)
    with fb.count() as manhattan:
        torch.cdist(x, torch.randn(30, 8), p=1.0)
    assert (manhattan.flops, manhattan.macs) == (7 * 30 * 23, 7 * 30 * 8)


def test_pdist_and_its_backward_end_to_end():
    x = torch.randn(6, 4, requires_grad=True)
    with fb.count() as m:
        torch.pdist(x).sum().backward()
    pairs = 15
    assert m.ops["aten._pdist_forward"] == pairs * 12
    assert m.ops["aten._pdist_backward"] == pairs * 12
    assert m.uncounted == {}
