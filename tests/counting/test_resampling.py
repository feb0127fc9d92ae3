"""Resampling counted by hand: interpolate in every mode, grid_sample, affine_grid, pixel shuffle."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pytest_flopbudget as fb
from counting_helpers import Fn
from pytest_flopbudget.counting.formulas import resampling

DEVICES = ("cpu", "meta")


def weighted_sums(n: int, taps: int) -> tuple[int, int]:
    """n outputs, each taps multiplies and taps − 1 adds; taps MACs."""
    return n * (2 * taps - 1), n * taps


def test_interpolate_formula_by_hand():
    assert resampling.interpolate(10, 1) == (10, 10)
    assert resampling.interpolate(10, 4) == (70, 40)
    # antialiased bilinear 3×4 → 2×2: ceil(2·1.5) · ceil(2·2) = 3 · 4 taps
    assert resampling.antialiased_taps((3, 4), (2, 2), 2) == 12
    # upsampling: the plain filter
    assert resampling.antialiased_taps((3, 4), (6, 8), 4) == 16


X4 = torch.randn(2, 3, 4, 5)
X3 = torch.randn(2, 3, 5)
X5 = torch.randn(1, 2, 3, 4, 5)

CASES = [
    ("nearest2d", X4, lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), 2 * 3 * 8 * 10, 1),
    ("nearest_exact", X4, lambda x: F.interpolate(x, size=(5, 7), mode="nearest-exact"), 2 * 3 * 35, 1),
    ("nearest1d", X3, lambda x: F.interpolate(x, size=9), 2 * 3 * 9, 1),
    ("nearest3d", X5, lambda x: F.interpolate(x, scale_factor=2), 2 * 6 * 8 * 10, 1),
    ("linear", X3, lambda x: F.interpolate(x, size=9, mode="linear"), 2 * 3 * 9, 2),
    ("bilinear", X4, lambda x: F.interpolate(x, size=(5, 7), mode="bilinear"), 2 * 3 * 35, 4),
    ("bilinear_align_corners", X4,
     lambda x: F.interpolate(x, size=(5, 7), mode="bilinear", align_corners=True), 2 * 3 * 35, 4),
    ("bicubic", X4, lambda x: F.interpolate(x, size=(5, 7), mode="bicubic"), 2 * 3 * 35, 16),
    ("trilinear", X5, lambda x: F.interpolate(x, size=(4, 5, 6), mode="trilinear"), 2 * 120, 8),
    # antialiased 4×5 → 2×2: ceil(2·2) · ceil(2·2.5) = 4 · 5 taps
    ("bilinear_antialias", X4,
     lambda x: F.interpolate(x, size=(2, 2), mode="bilinear", antialias=True), 2 * 3 * 4, 20),
    ("upsample_module", X4, nn.Upsample(scale_factor=2, mode="bilinear"), 2 * 3 * 80, 4),
    ("grid_sample_bilinear", X4,
     lambda x: F.grid_sample(x, torch.zeros(2, 5, 6, 2), align_corners=False), 2 * 3 * 30, 4),
    ("grid_sample_nearest", X4,
     lambda x: F.grid_sample(x, torch.zeros(2, 5, 6, 2), mode="nearest", align_corners=False), 2 * 3 * 30, 1),
    ("grid_sample_bicubic", X4,
     lambda x: F.grid_sample(x, torch.zeros(2, 5, 6, 2), mode="bicubic", align_corners=False), 2 * 3 * 30, 16),
    ("grid_sample_3d", X5,
     lambda x: F.grid_sample(x, torch.zeros(1, 2, 3, 4, 3), align_corners=False), 2 * 24, 8),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, x, fn, outputs, taps", CASES, ids=[c[0] for c in CASES])
def test_resampling_by_hand(device, name, x, fn, outputs, taps):
    m = fb.measure(Fn(fn), x, device=device)
    expected = (outputs, outputs) if taps == 1 else weighted_sums(outputs, taps)
    assert (m.flops, m.macs) == expected
    assert m.uncounted == {}


@pytest.mark.parametrize("device", DEVICES)
def test_affine_grid_by_hand(device):
    theta = torch.randn(2, 2, 3)
    m = fb.measure(Fn(lambda t: F.affine_grid(t, [2, 3, 5, 6], align_corners=False)), theta, device=device)
    # 2·5·6 points, two coordinates each, each a dot product of (x, y, 1) with a row of θ
    assert (m.flops, m.macs) == (2 * 30 * 2 * 5, 2 * 30 * 2 * 3)


@pytest.mark.parametrize("device", DEVICES)
def test_pixel_shuffle_and_area_mode(device):
    shuffle = fb.measure(nn.PixelShuffle(2), torch.randn(1, 8, 3, 3), device=device)
    unshuffle = fb.measure(nn.PixelUnshuffle(2), torch.randn(1, 2, 4, 4), device=device)
    assert shuffle.flops == shuffle.macs == unshuffle.flops == 0
    assert shuffle.uncounted == unshuffle.uncounted == {}
    # area is adaptive average pooling: one per input element
    area = fb.measure(Fn(lambda x: F.interpolate(x, size=(2, 2), mode="area")), X4, device=device)
    assert area.flops == X4.numel()


@pytest.mark.parametrize("device", DEVICES)
def test_upsample_backward_spreads_over_the_same_taps(device):
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Upsample(scale_factor=2, mode="bilinear"))
    forward = fb.measure(model, X4, device=device)
    both = fb.measure(model, X4, device=device, backward=True)
    assert both.uncounted == {}
    assert both.ops["aten.upsample_bilinear2d_backward"] == weighted_sums(2 * 3 * 80, 4)[0]
    assert both.ops["aten.upsample_bilinear2d"] == forward.ops["aten.upsample_bilinear2d"]
