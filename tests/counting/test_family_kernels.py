"""Backward variants, backend kernels and the remaining ops of issue 21, worked by hand from
their documented rules (docs/formulas.md, "Backward, backend and other kernels" and "Functional
and *_copy variants"), shape-level and end to end on CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pytest_flopbudget as fb
from pytest_flopbudget.counting.formulas import backend_kernels, backward_kernels, elementwise, reduction


def products(n, k, added=False):
    extra = n if added else 0
    return n * (2 * k - 1) + extra, n * k + extra


def backward_of(forward_output, upstream=None):
    """The counted backward of ``forward_output`` for an upstream gradient of ones (a free fill)."""
    grad = torch.ones_like(forward_output) if upstream is None else upstream
    with fb.count() as m:
        forward_output.backward(grad)
    return m


# --- backward kernels -------------------------------------------------------------------------


def test_reflection_and_replication_padding_backward_add_each_padded_gradient_once():
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    m = backward_of(F.pad(x, (1, 1, 1, 1), mode="reflect"))
    # grad_output (1, 2, 6, 6) = 72 elements fold onto 32 inputs: 40 adds
    assert m.ops == {"aten.reflection_pad2d_backward": 40}
    y = torch.randn(2, 3, 5, requires_grad=True)
    m = backward_of(F.pad(y, (2, 1), mode="replicate"))
    assert m.ops == {"aten.replication_pad1d_backward": 2 * 3 * 3}
    assert backward_kernels.padding_backward((1, 2, 6, 6), (1, 2, 4, 4), [1, 1, 1, 1]) == (40, 40)


def test_unfold_backward_sums_overlapping_windows():
    # length 6, windows of 3 every 1: 4 windows, 12 window elements over 6 positions: 6 adds
    assert backward_kernels.unfold_backward((4, 3), [6], 0, 3, 1) == (6, 6)
    # windows of 2 every 3 do not overlap: (8 − 2)//3 + 1 = 3 windows, nothing summed
    assert backward_kernels.unfold_backward((2, 3, 2), [2, 8], 1, 2, 3) == (0, 0)
    x = torch.randn(6, requires_grad=True)
    assert backward_of(x.unfold(0, 3, 1)).ops == {"aten.unfold_backward": 6}


def test_grid_sampler_backward_counts_the_forward_taps_per_gradient():
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    grid = (torch.rand(1, 3, 3, 2) * 2 - 1).requires_grad_()
    out = F.grid_sample(x, grid, align_corners=False)
    m = backward_of(out)
    per_gradient = products(1 * 2 * 3 * 3, 4)  # 18 outputs, bilinear: 4 taps
    assert m.ops == {"aten.grid_sampler_2d_backward": 2 * per_gradient[0]}
    assert m.macs == 2 * per_gradient[1]
    only_input = backward_kernels.grid_sampler_backward((1, 2, 3, 3), (1, 2, 4, 4), (1, 3, 3, 2), 0, 0, False,
                                                        [True, False])
    assert only_input == per_gradient


def test_weight_norm_backward_mirrors_its_forward():
    layer = torch.nn.utils.parametrizations.weight_norm(nn.Linear(4, 3, bias=False))
    x = torch.randn(2, 4)
    with fb.count() as m:
        layer(x).sum().backward()
    assert m.ops["aten._weight_norm_interface"] == 3 * 12 + 3
    assert backward_kernels.weight_norm_backward((3, 4), (3, 4), (3, 1), (3, 1), 0) == (39, 39)


def test_linear_and_matmul_backward_kernels():
    # matmul_backward of a (2, 3, 4) × (4, 5) product: the forward made 2·3·5·4 = 120 multiplies
    assert backward_kernels.matmul_backward((2, 3, 5), (2, 3, 4), (4, 5), [True, True]) == (
        products(24, 5)[0] + products(20, 6)[0], products(24, 5)[1] + products(20, 6)[1])
    assert backward_kernels.mkldnn_linear_backward_input([6, 4], (6, 5), (5, 4)) == products(24, 5)


def test_fused_recurrent_cells_count_the_gate_work():
    # LSTM, batch 2, hidden 3: 13 per unit; biases add 2 per gate element (2·12 each way)
    assert backward_kernels.lstm_cell_fused((2, 12), (2, 12), (2, 3), (12,), (12,)) == (13 * 6 + 2 * 24,) * 2
    assert backward_kernels.gru_cell_fused((2, 9), (2, 9), (2, 3)) == (10 * 6,) * 2


# --- backend kernels ----------------------------------------------------------------------------


def test_the_slow_reference_convolution_counts_as_conv2d():
    x, w, b = torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(4)
    with fb.count() as reference:
        torch.ops.aten._slow_conv2d_forward(x, w, [3, 3], b, [1, 1], [1, 1])
    with fb.count() as generic:
        F.conv2d(x, w, b, padding=1)
    assert (reference.flops, reference.macs) == (generic.flops, generic.macs) == products(4 * 64, 27, added=True)


def test_backend_convolutions_by_hand():
    out = (2, 4, 6, 6)
    conv = backend_kernels.RULES
    assert conv["cudnn_convolution"]((2, 3, 8, 8), (4, 3, 3, 3), [0, 0], [1, 1], [1, 1], 1, False, False, True,
                                     out_shape=out) == products(288, 27)
    assert conv["cudnn_convolution_relu"]((2, 3, 8, 8), (4, 3, 3, 3), (4,), [1, 1], [0, 0], [1, 1], 1,
                                          out_shape=out) == tuple(c + 288 for c in products(288, 27, added=True))
    assert conv["mkldnn_convolution"]((2, 3, 8, 8), (4, 3, 3, 3), None, [0, 0], [1, 1], [1, 1], 1,
                                      out_shape=out) == products(288, 27)
    assert conv["conv_tbc"]((10, 2, 3), (3, 3, 4), (4,), 1, out_shape=(10, 2, 4)) == products(80, 9, added=True)


def test_cudnn_lstm_counts_torch_lstm():
    lstm = nn.LSTM(4, 3, num_layers=2)
    x = torch.randn(5, 2, 4)
    with fb.count() as generic:
        lstm(x)
    weights = [tuple(p.shape) for p in lstm._flat_weights]
    kernel = backend_kernels.cudnn_rnn((5, 2, 4), weights, 4, None, (2, 2, 3), (2, 2, 3), 2, 3, 0, 2, False, 0.0,
                                       False, False, [], out_shape=None)
    assert kernel == (generic.flops, generic.macs)


# --- other ops ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, fn, expected", [
    ("trace", lambda: torch.trace(torch.randn(4, 6)), {"aten.trace": 4}),
    ("cross", lambda: torch.linalg.cross(torch.randn(5, 3), torch.randn(5, 3)), {"aten.linalg_cross": 45}),
    ("polar", lambda: torch.polar(torch.rand(6), torch.rand(6)), {"aten.polar": 24}),
    ("renorm", lambda: torch.randn(3, 4).renorm(2, 0, 1.0), {"aten.renorm": 36}),
    ("bincount-weights", lambda: torch.bincount(torch.tensor([0, 1, 1, 3]), torch.rand(4)), {"aten.bincount": 4}),
    ("index_reduce-prod", lambda: torch.ones(3, 2).index_reduce(0, torch.tensor([0, 2, 0, 1]), torch.rand(4, 2),
                                                                "prod"), {"aten.index_reduce": 8}),
    ("index_reduce-mean", lambda: torch.ones(3, 2).index_reduce(0, torch.tensor([0, 2, 0, 1]), torch.rand(4, 2),
                                                                "mean"), {"aten.index_reduce": 8 + 6}),
    ("segment_reduce", lambda: torch.segment_reduce(torch.rand(6, 2), "sum", lengths=torch.tensor([2, 4])),
     {"aten.segment_reduce": 12}),
    ("multi_margin_loss", lambda: F.multi_margin_loss(torch.randn(3, 5), torch.tensor([0, 4, 2])),
     {"aten.multi_margin_loss": 15 * (4 + 1)}),
])
def test_misc_ops_end_to_end(name, fn, expected):
    with fb.count() as m:
        fn()
    assert m.ops == expected
    assert m.uncounted == {}


def test_bilinear_counts_its_three_way_products():
    layer = nn.Bilinear(4, 5, 3)
    with fb.count() as m:
        layer(torch.randn(2, 4), torch.randn(2, 5))
    # 6 outputs, each summing 4·5 = 20 three-factor terms: 6·(3·20 − 1); then the bias, 6 adds
    assert m.ops["aten._trilinear"] == 6 * 59
    assert m.flops == 6 * 59 + 6 and m.uncounted == {}


def test_multilabel_margin_loss_is_an_estimate():
    with fb.count() as m:
        F.multilabel_margin_loss(torch.randn(2, 4), torch.tensor([[3, 0, -1, 1], [1, -1, 0, 0]]))
    # 2 samples × C² = 16 (target, class) pairs, 4 operations each (the accumulation included)
    assert m.ops["aten.multilabel_margin_loss_forward"] == 4 * 2 * 4 * 4
    assert "aten.multilabel_margin_loss_forward" in m.estimated


def test_quantize_and_fake_quantize_follow_the_quantized_twins_rule():
    x = torch.randn(4, 5)
    with fb.count() as m:
        q = torch.quantize_per_tensor(x, 0.1, 0, torch.qint8)
        q.dequantize()
        torch.fake_quantize_per_tensor_affine(x, 0.1, 0, -128, 127)
    assert m.ops == {"aten.quantize_per_tensor": 20, "aten.dequantize": 20,
                     "aten.fake_quantize_per_tensor_affine_cachemask": 40}
    assert elementwise.polar((3,), (3,), out_shape=(3,)) == (12, 12)
    assert reduction.put((4,), (2,), (2,), True, out_shape=(4,)) == (2, 2)


def test_functional_and_copy_variants_are_free_like_their_twins():
    x = torch.randn(3, 4)
    aten = torch.ops.aten
    with fb.count() as m:
        aten.view_copy(x, [4, 3])
        aten.t_copy(x)
        aten.permute_copy(x, [1, 0])
        aten.expand_copy(x[:1], [3, 4])
        aten.unsqueeze_copy(x, 0)
        aten.squeeze_copy(x[None])
        aten.transpose_copy(x, 0, 1)
        aten.split_with_sizes_copy(x, [1, 2])
        aten.diagonal_copy(x)
        aten.normal(x)  # functional random fills
        aten.uniform(x)
        aten.exponential(x)
        aten.zero(x)
        torch.hann_window(8)
        torch.complex(x, x)
        aten.index_copy(x, 0, torch.tensor([2, 0]), torch.randn(2, 4))
    assert (m.flops, m.macs) == (0, 0)
    assert m.uncounted == {} and m.ops == {}
