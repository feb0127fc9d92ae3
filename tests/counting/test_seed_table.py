"""The seed article's table (shared/seed, restated in shared/FORMULAS.md), worked by hand.

Each expected value is the seed's formula evaluated in the test from the layer's shape; ``flops``
follows the seed (K multiplies and K-1 adds per dot product, +1 per output with a bias), ``macs``
follows ptflops (one per weight use, +1 per output with a bias; norms doubled when affine). Every
case is measured on cpu and on meta, which must agree, and must leave nothing uncounted.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from counting_helpers import measure_both


# --- fully connected: params Cin·Cout, FLOPs (2·Cin − 1)·Cout per sample -------------------------

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(3,), (2, 5)], ids=["2d", "3d"])
def test_fully_connected(lead, bias):
    cin, cout = 7, 4
    rows = 1
    for d in lead:
        rows *= d
    m = measure_both(nn.Linear(cin, cout, bias=bias), torch.randn(*lead, cin))
    assert m.flops == rows * ((2 * cin - 1) * cout + (cout if bias else 0))
    assert m.macs == rows * (cin * cout + (cout if bias else 0))
    assert m.params == cin * cout + (cout if bias else 0)


def test_fully_connected_non_contiguous_3d_input_lowers_to_mm_plus_add_with_the_same_count():
    cin, cout, b, t = 7, 4, 2, 5
    x = torch.randn(t, b, cin).transpose(0, 1)  # (b, t, cin), not contiguous
    assert not x.is_contiguous()
    m = measure_both(nn.Linear(cin, cout), x)
    assert set(m.ops) == {"aten.mm", "aten.add"}  # not addmm: aten's other lowering
    rows = b * t
    assert m.flops == rows * ((2 * cin - 1) * cout + cout)
    assert m.macs == rows * (cin * cout + cout)
    contiguous = measure_both(nn.Linear(cin, cout), x.contiguous())
    assert set(contiguous.ops) == {"aten.addmm"}
    assert (contiguous.flops, contiguous.macs) == (m.flops, m.macs)


# --- pooling: params 0, FLOPs Cin·Hin·Win (one per input element, kernel ignored) ----------------

@pytest.mark.parametrize(
    "pool",
    [nn.MaxPool2d(2), nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(2), nn.AvgPool2d(3, 1, 1),
     nn.AdaptiveAvgPool2d(1), nn.AdaptiveAvgPool2d(3), nn.AdaptiveMaxPool2d(2)],
    ids=lambda p: repr(p),
)
def test_pooling(pool):
    b, cin, hin, win = 2, 3, 6, 6
    m = measure_both(pool, torch.randn(b, cin, hin, win))
    assert m.flops == m.macs == b * cin * hin * win
    assert m.params == 0


# --- convolution family ----------------------------------------------------------------------------

def out_size(size, k, stride, padding, dilation):
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


CONV_CASES = {
    # name: (cin, cout, k, stride, padding, dilation, groups)
    "vanilla": (4, 6, 3, 1, 0, 1, 1),
    "stride2-pad1": (4, 6, 3, 2, 1, 1, 1),
    "dilated": (4, 6, 3, 1, 2, 2, 1),
    "rect-kernel": (3, 5, (3, 1), 1, 0, 1, 1),
    "group": (8, 12, 3, 1, 1, 1, 4),
    "depthwise": (6, 6, 3, 1, 1, 1, 6),
    "depthwise-stride": (6, 6, 5, 2, 2, 1, 6),
    "pointwise": (8, 5, 1, 1, 0, 1, 1),
}


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_convolution_seed_formula(case, bias):
    cin, cout, k, stride, padding, dilation, g = CONV_CASES[case]
    kh, kw = (k, k) if isinstance(k, int) else k
    b, h, w = 2, 9, 8
    conv = nn.Conv2d(cin, cout, (kh, kw), stride, padding, dilation, groups=g, bias=bias)
    m = measure_both(conv, torch.randn(b, cin, h, w))
    hout, wout = out_size(h, kh, stride, padding, dilation), out_size(w, kw, stride, padding, dilation)
    bias_adds = b * cout * hout * wout if bias else 0
    bias_params = cout if bias else 0
    # group convolution, the seed's general form (g = 1 is the vanilla convolution)
    flops = ((kh * kw * cin // g) + (kh * kw * cin // g - 1)) * hout * wout * (cout // g) * g
    params = kh * kw * (cin // g) * (cout // g) * g
    if case.startswith("depthwise"):  # the seed's own depthwise line, g = Cin
        flops_dw = ((kh * kw) + (kh * kw - 1)) * hout * wout * cin
        assert flops_dw == flops
        assert kh * kw * cin == params
    if case == "pointwise":  # the seed's 1x1 line
        assert ((1 * 1 * cin) + (1 * 1 * cin - 1)) * hout * wout * cout == flops
        assert 1 * 1 * cin * cout == params
    assert m.flops == b * flops + bias_adds
    assert m.macs == b * kh * kw * (cin // g) * hout * wout * cout + bias_adds
    assert m.params == params + bias_params


# --- ReLU / GELU: params 0, FLOPs Cout·Hout·Wout ----------------------------------------------------

@pytest.mark.parametrize("act", [nn.ReLU(), nn.ReLU(inplace=True), nn.GELU(), nn.GELU("tanh")], ids=repr)
def test_relu_gelu(act):
    b, c, h, w = 2, 3, 5, 4
    m = measure_both(act, torch.randn(b, c, h, w))
    assert m.flops == m.macs == b * c * h * w
    assert m.params == 0


# --- BN / LN: params 2·C, FLOPs C·H·W; ptflops' macs doubled when affine -------------------------

@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_eval(affine):
    b, c, h, w = 2, 3, 5, 4
    bn = nn.BatchNorm2d(c, affine=affine).eval()
    m = measure_both(bn, torch.randn(b, c, h, w))
    n = b * c * h * w
    assert m.flops == n
    assert m.macs == (2 * n if affine else n)
    assert m.params == (2 * c if affine else 0)  # running statistics are buffers


def test_batch_norm_train_counts_no_flop_for_the_num_batches_tracked_increment():
    b, c, h, w = 2, 3, 5, 4
    m = measure_both(nn.BatchNorm2d(c), torch.randn(b, c, h, w))
    n = b * c * h * w
    # nn.BatchNorm's forward runs `num_batches_tracked.add_(1)` in training: an integer add, which
    # is bookkeeping, not floating-point work (the seed's one per element, ptflops' x2 when affine)
    assert m.ops == {"aten.native_batch_norm": n}
    assert m.flops == n
    assert m.macs == 2 * n


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(affine):
    b, t, c = 2, 5, 6
    m = measure_both(nn.LayerNorm(c, elementwise_affine=affine), torch.randn(b, t, c))
    n = b * t * c
    assert m.flops == n
    assert m.macs == (2 * n if affine else n)
    assert m.params == (2 * c if affine else 0)
