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



@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("mode", "taps"), [("bilinear", 4 * 5), ("bicubic", 8 * 10)])
def test_antialiased_backward_spreads_over_the_forward_taps(device, mode, taps):
    """Downsampling 4x5 -> 2x2 with antialias: ceil(s*2) * ceil(s*2.5) taps (s = 2 bilinear, 4
    bicubic); the backward spreads each output gradient over the same taps, nothing uncounted."""
    model = nn.Sequential(nn.Conv2d(3, 3, 1), Fn(lambda x: F.interpolate(x, size=(2, 2), mode=mode, antialias=True)))
    both = fb.measure(model, X4, device=device, backward=True)
    assert both.uncounted == {}
    n = 2 * 3 * 2 * 2
    assert both.ops[f"aten._upsample_{mode}2d_aa"] == n * (2 * taps - 1)
    assert both.ops[f"aten._upsample_{mode}2d_aa_backward"] == n * (2 * taps - 1)


# -- shape level: the formula called with plain shapes --
# Each aten kernel called as the counter calls it. An interpolated output is a weighted sum of
# `taps` inputs: taps multiplies and taps − 1 adds (flops), taps macs; nearest is a copy, one per
# output in both numbers. Written out in each test rather than through weighted_sums().

X4S = (2, 3, 4, 5)


@pytest.mark.parametrize(
    "name, args",
    [("upsample_nearest2d", (X4S, [8, 10], None, None)), ("upsample_nearest2d", (X4S, None, [2.0, 2.0])),
     ("_upsample_nearest_exact2d", (X4S, [8, 10], None, None))],
    ids=["nearest", "nearest-scale-factors", "nearest-exact"],
)
def test_shape_nearest_is_one_per_output(name, args):
    n = 2 * 3 * 8 * 10
    assert resampling.RULES[name](*args, out_shape=(2, 3, 8, 10)) == (n, n)


@pytest.mark.parametrize(
    "name, x, size, out_shape, taps",
    [("upsample_linear1d", (2, 3, 5), [10], (2, 3, 10), 2),
     ("upsample_bilinear2d", X4S, [8, 10], (2, 3, 8, 10), 2 * 2),
     ("upsample_bicubic2d", X4S, [8, 10], (2, 3, 8, 10), 4 * 4),
     ("upsample_trilinear3d", (1, 2, 3, 4, 5), [6, 8, 10], (1, 2, 6, 8, 10), 2 * 2 * 2)],
    ids=["linear", "bilinear", "bicubic", "trilinear"],
)
def test_shape_linear_modes_are_weighted_sums(name, x, size, out_shape, taps):
    n = 1
    for side in out_shape:
        n *= side
    got = resampling.RULES[name](x, size, False, out_shape=out_shape)
    assert got == (n * (2 * taps - 1), n * taps)


@pytest.mark.parametrize(
    "name, x, out_shape, taps",
    [("_upsample_bilinear2d_aa", (1, 1, 9, 8), (1, 1, 3, 2), 6 * 8),  # ceil(2·9/3) · ceil(2·8/2)
     ("_upsample_bilinear2d_aa", (1, 1, 3, 4), (1, 1, 6, 8), 2 * 2),  # upsampling: the plain filter
     ("_upsample_bicubic2d_aa", (1, 1, 6, 6), (1, 1, 4, 3), 6 * 8)],  # ceil(4·6/4) · ceil(4·6/3)
    ids=["bilinear-down", "bilinear-up", "bicubic-down"],
)
def test_shape_antialiased_filters_widen_when_downsampling(name, x, out_shape, taps):
    n = out_shape[2] * out_shape[3]
    got = resampling.RULES[name](x, list(out_shape[2:]), False, out_shape=out_shape)
    assert got == (n * (2 * taps - 1), n * taps)


def test_shape_upsample_backward_counts_what_the_forward_counts():
    # upsample_bilinear2d_backward(grad_output, output_size, input_size, align_corners): the
    # gradient of each of the 480 outputs is spread over the same 4 taps
    n = 2 * 3 * 8 * 10
    got = resampling.RULES["upsample_bilinear2d_backward"]((2, 3, 8, 10), [8, 10], [2, 3, 4, 5], False, out_shape=X4S)
    assert got == (n * 7, n * 4)
    nearest = resampling.RULES["upsample_nearest2d_backward"]((2, 3, 8, 10), [8, 10], [2, 3, 4, 5], out_shape=X4S)
    assert nearest == (n, n)


def test_shape_antialiased_backward_uses_the_forward_filter():
    # _upsample_bilinear2d_aa_backward(grad_output, output_size, input_size, align_corners):
    # 9x8 -> 3x2 downsampled: ceil(2*9/3) * ceil(2*8/2) = 6 * 8 taps per output gradient
    taps, n = 6 * 8, 3 * 2
    got = resampling.RULES["_upsample_bilinear2d_aa_backward"]((1, 1, 3, 2), [3, 2], [1, 1, 9, 8], False,
                                                               out_shape=(1, 1, 9, 8))
    assert got == (n * (2 * taps - 1), n * taps)


@pytest.mark.parametrize("mode, taps", [(0, 4), (1, 1), (2, 16)], ids=["bilinear", "nearest", "bicubic"])
def test_shape_grid_sampler_2d(mode, taps):
    # grid_sampler_2d(input, grid, interpolation_mode, padding_mode, align_corners): a (6, 7) grid
    n = 2 * 3 * 6 * 7
    got = resampling.RULES["grid_sampler_2d"](X4S, (2, 6, 7, 2), mode, 0, False, out_shape=(2, 3, 6, 7))
    assert got == ((n, n) if taps == 1 else (n * (2 * taps - 1), n * taps))


def test_shape_grid_sampler_3d_is_trilinear():
    n = 1 * 2 * 2 * 3 * 4
    got = resampling.RULES["grid_sampler_3d"]((1, 2, 3, 4, 5), (1, 2, 3, 4, 3), 0, 0, False, out_shape=(1, 2, 2, 3, 4))
    assert got == (n * (2 * 8 - 1), n * 8)


def test_shape_affine_grid():
    # 2-D: (2, 4, 5, 2) coordinates, each θ's row · (x, y, 1): 3 terms
    n2 = 2 * 4 * 5 * 2
    got = resampling.RULES["affine_grid_generator"]((2, 2, 3), [2, 3, 4, 5], False, out_shape=(2, 4, 5, 2))
    assert got == (n2 * (2 * 3 - 1), n2 * 3)
    # 3-D: (1, 2, 3, 4, 3) coordinates of 4 terms
    n3 = 2 * 3 * 4 * 3
    got = resampling.RULES["affine_grid_generator"]((1, 3, 4), [1, 1, 2, 3, 4], False, out_shape=(1, 2, 3, 4, 3))
    assert got == (n3 * (2 * 4 - 1), n3 * 4)
