"""torchvision's operators: RoI align/pooling, position-sensitive RoI ops, deformable convolution
(exact, forward and backward) and NMS (an upper bound, marked as an estimate).

The formula tests are pure arithmetic; the end-to-end ones need torchvision (the "newest" CI
environment) and skip where it does not import."""

from __future__ import annotations

import importlib

import pytest

from pytest_flopbudget.counting.formulas import is_estimated
from pytest_flopbudget.counting.formulas import vision_ops as v


def test_roi_align_with_a_fixed_sampling_ratio_is_exact() -> None:
    # 3 boxes x 4 channels x 2x2 bins = 48 outputs, each 2x2 = 4 samples of 4 pixels: 16 products,
    # 15 adds and a division by 4 -> 32 FLOPs and 16 MACs per output
    args = ((1, 4, 16, 16), (3, 5), 0.5, 2, 2, 2, False)
    assert v.roi_align(*args, out_shape=(3, 4, 2, 2)) == (48 * 32, 48 * 16)
    assert is_estimated(v.roi_align, *args, out_shape=(3, 4, 2, 2)) is None
    backward = ((3, 4, 2, 2), (3, 5), 0.5, 2, 2, 1, 4, 16, 16, 2, False)
    assert v.roi_align_backward(*backward, out_shape=(1, 4, 16, 16)) == (48 * 32, 48 * 16)


def test_roi_align_adaptive_sampling_is_an_estimate_for_a_whole_map_box() -> None:
    # ceil(16/2) * ceil(12/3) = 8 * 4 = 32 samples per bin
    args = ((1, 4, 16, 12), (3, 5), 1.0, 2, 3, 0, True)
    assert v.roi_align(*args, out_shape=(3, 4, 2, 3)) == (72 * 8 * 32, 72 * 4 * 32)
    assert "sampling_ratio <= 0" in is_estimated(v.roi_align, *args, out_shape=(3, 4, 2, 3))
    backward = ((3, 4, 2, 3), (3, 5), 1.0, 2, 3, 1, 4, 16, 12, -1, True)
    assert is_estimated(v.roi_align_backward, *backward, out_shape=(1, 4, 16, 12)) is not None


def test_position_sensitive_and_pooling_ops() -> None:
    # ps_roi_align: 8 channels in, 8/(2*2) = 2 out; 3 boxes x 2 x 2x2 = 24 outputs, 1 sample each
    out = ((3, 2, 2, 2), (3, 2, 2, 2))
    assert v.ps_roi_align((1, 8, 10, 10), (3, 5), 1.0, 2, 2, 1, out_shape=out) == (24 * 8, 24 * 4)
    assert v.roi_pool((1, 8, 10, 10), (3, 5), 1.0, 2, 2, out_shape=out) == (24, 24)
    assert v.roi_pool_backward((3, 2, 2, 2), (3, 5), (3, 2, 2, 2), 1.0, 2, 2, 1, 8, 10, 10,
                               out_shape=(1, 8, 10, 10)) == (24, 24)


def test_deform_conv2d_by_hand() -> None:
    # x 1x2x5x5, weight 3x2x3x3, out 1x3x3x3: 1*2*9*3*3 = 162 sampled column entries (7 FLOPs, 4 MACs
    # each without a mask), then 27 outputs of K = 18 terms plus the bias
    conv = ((1, 2, 5, 5), (3, 2, 3, 3), (1, 18, 3, 3), (1, 1), (3,), 1, 1, 0, 0, 1, 1, 1, 1, False)
    assert v.deform_conv2d(*conv, out_shape=(1, 3, 3, 3)) == (162 * 7 + 27 * 35 + 27, 162 * 4 + 27 * 18 + 27)
    masked = conv[:3] + ((1, 9, 3, 3),) + conv[4:-1] + (True,)
    assert v.deform_conv2d(*masked, out_shape=(1, 3, 3, 3)) == (162 * 8 + 27 * 35 + 27, 162 * 5 + 27 * 18 + 27)
    # backward: column gradients (162 dot products of Cout = 3 terms), weight gradients (54 of 9
    # terms), 3 scatters of 8 FLOPs / 4 MACs per column entry, the bias gradient (27 adds)
    grad = ((1, 3, 3, 3),) + conv
    flops = 162 * 5 + 54 * 17 + 162 * 24 + 27
    macs = 162 * 3 + 54 * 9 + 162 * 12 + 27
    assert v.deform_conv2d_backward(*grad, out_shape=((1, 2, 5, 5),) * 5) == (flops, macs)


def test_nms_counts_every_pair_as_an_estimate() -> None:
    assert v.nms((10, 4), (10,), 0.5, out_shape=(4,)) == (12 * 45 + 30, 12 * 45 + 30)
    assert "upper bound" in is_estimated(v.nms, (10, 4), (10,), 0.5, out_shape=(4,))


def _torchvision():
    try:
        return importlib.import_module("torchvision")
    except Exception as error:  # the package index's torchvision does not import next to a CPU torch build
        pytest.skip(f"torchvision does not import here ({type(error).__name__}: {error})")


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_roi_align_and_its_backward_end_to_end(device: str) -> None:
    _torchvision()
    import torch
    from torchvision.ops import roi_align

    import pytest_flopbudget as fb

    with fb.count(device=device) as counted:
        x = torch.randn(1, 4, 16, 16, requires_grad=True)
        boxes = torch.tensor([[0, 0.0, 0.0, 8.0, 8.0], [0, 2.0, 2.0, 14.0, 10.0], [0, 1.0, 3.0, 5.0, 15.0]])
        roi_align(x, boxes, output_size=2, spatial_scale=1.0, sampling_ratio=2).sum().backward()
    assert counted.ops["torchvision.roi_align"] == 48 * 32
    assert counted.ops["torchvision._roi_align_backward"] == 48 * 32
    assert counted.estimated == {}
    assert counted.uncounted == {}


def test_nms_and_adaptive_roi_align_are_marked_estimated() -> None:
    _torchvision()
    import torch
    from torchvision.ops import nms, roi_align

    import pytest_flopbudget as fb

    torch.manual_seed(0)
    corners = torch.rand(10, 2) * 10
    boxes = torch.cat([corners, corners + 1 + torch.rand(10, 2) * 5], dim=1)
    with fb.count() as counted:
        nms(boxes, torch.rand(10), 0.5)
        roi_align(torch.randn(1, 4, 16, 16), [boxes[:3]], output_size=2, sampling_ratio=-1)
    assert counted.ops["torchvision.nms"] == 12 * 45 + 30
    assert counted.ops["torchvision.roi_align"] == 3 * 4 * 4 * 8 * 64
    assert set(counted.estimated) == {"torchvision.nms", "torchvision.roi_align"}


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_deform_conv2d_end_to_end(device: str) -> None:
    _torchvision()
    import torch
    from torchvision.ops import DeformConv2d

    import pytest_flopbudget as fb

    with torch.device(device):
        layer = DeformConv2d(2, 3, 3)
    with fb.count(device=device) as counted:
        x = torch.randn(1, 2, 5, 5, requires_grad=True)
        offset = torch.randn(1, 18, 3, 3)
        layer(x, offset).sum().backward()
    assert counted.ops["torchvision.deform_conv2d"] == 162 * 7 + 27 * 35 + 27
    assert counted.ops["torchvision._deform_conv2d_backward"] == 162 * 5 + 54 * 17 + 162 * 24 + 27
    assert counted.uncounted == {}


def test_nms_on_meta_is_a_clear_error() -> None:
    """How many boxes survive is a value: meta cannot run it, and says to count on cpu."""
    _torchvision()
    import torch
    from torchvision.ops import nms

    import pytest_flopbudget as fb

    with pytest.raises(fb.MeasurementError, match="counted on 'cpu'"):
        with fb.count(device="meta"):
            nms(torch.rand(10, 4), torch.rand(10), 0.5)
