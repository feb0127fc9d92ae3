"""Convolutions worked by hand: 1d/2d/3d, grouped, dilated, strided, with and without bias,
transposed (counted on the input's spatial size), and convolution_backward's output mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from counting_helpers import measure_both
from pytest_flopbudget.counting.formulas import conv as conv_formulas


def out_size(size, k, stride, padding, dilation):
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TCONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(
    "cin,cout,k,stride,padding,dilation,groups",
    [(4, 6, 3, 1, 0, 1, 1), (4, 6, 3, 2, 1, 1, 2), (6, 6, 3, 1, 2, 2, 6), (4, 8, 1, 1, 0, 1, 1)],
    ids=["plain", "strided-grouped", "depthwise-dilated", "pointwise"],
)
def test_convolution(dims, bias, cin, cout, k, stride, padding, dilation, groups):
    b, size = 2, 7
    conv = CONV[dims](cin, cout, k, stride, padding, dilation, groups=groups, bias=bias)
    m = measure_both(conv, torch.randn(b, cin, *([size] * dims)))
    spatial = out_size(size, k, stride, padding, dilation) ** dims
    n_out = b * cout * spatial
    kk = (cin // groups) * k**dims  # terms per output element
    extra = n_out if bias else 0
    assert m.flops == n_out * (2 * kk - 1) + extra
    assert m.macs == n_out * kk + extra
    assert m.params == cout * (cin // groups) * k**dims + (cout if bias else 0)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("groups,stride,output_padding", [(1, 2, 1), (2, 2, 0), (1, 1, 0)])
def test_transposed_convolution_is_counted_on_the_input_size(dims, bias, groups, stride, output_padding):
    b, cin, cout, k, size, padding = 2, 4, 6, 3, 4, 1
    conv = TCONV[dims](cin, cout, k, stride, padding, output_padding, groups=groups, bias=bias)
    x = torch.randn(b, cin, *([size] * dims))
    m = measure_both(conv, x)
    out_side = (size - 1) * stride - 2 * padding + (k - 1) + output_padding + 1
    n_out = b * cout * out_side**dims
    # every input element meets every weight of its group once
    multiplies = b * cin * size**dims * (cout // groups) * k**dims
    extra = n_out if bias else 0
    assert m.macs == multiplies + extra
    assert m.flops == 2 * multiplies - n_out + extra
    # the usual bug counts each output position as a full dot product (4x too much at stride 2)
    if stride == 2:
        assert m.macs - extra < n_out * (cin // groups) * k**dims
    # torch's own counter agrees on the multiplies (2 flops each, no bias)
    with FlopCounterMode(display=False) as fcm:
        conv(x)
    assert fcm.get_total_flops() == 2 * multiplies


def test_convolution_backward_honours_the_output_mask():
    # conv1's input needs no grad: its backward computes grad_weight and grad_bias only;
    # conv2's input (conv1's output) needs grad: grad_input as well
    b, c0, c1, c2, k, size = 2, 3, 4, 5, 3, 8
    model = nn.Sequential(nn.Conv2d(c0, c1, k), nn.Conv2d(c1, c2, k))
    x = torch.randn(b, c0, size, size)
    m = measure_both(model, x, backward=True)
    s1, s2 = size - k + 1, size - 2 * (k - 1)
    out1, out2 = b * c1 * s1 * s1, b * c2 * s2 * s2
    m1, m2 = out1 * c0 * k * k, out2 * c1 * k * k  # forward multiplies
    w1, w2 = c1 * c0 * k * k, c2 * c1 * k * k
    forward = (out1 * (2 * c0 * k * k - 1) + out1) + (out2 * (2 * c1 * k * k - 1) + out2)
    backward1 = (2 * m1 - w1) + out1  # grad_weight, grad_bias
    backward2 = (2 * m2 - out1) + (2 * m2 - w2) + out2  # grad_input (conv1's output), grad_weight, grad_bias
    assert m.ops == {"aten.convolution": forward, "aten.convolution_backward": backward1 + backward2}
    assert m.flops == forward + backward1 + backward2
    assert m.macs == (m1 + out1 + m2 + out2) + (m1 + out1) + (2 * m2 + out2)


def test_convolution_without_bias_backward_skips_grad_bias():
    b, cin, cout, k, size = 1, 3, 4, 3, 6
    m = measure_both(nn.Conv2d(cin, cout, k, bias=False), torch.randn(b, cin, size, size), backward=True)
    n_out = b * cout * (size - k + 1) ** 2
    mult = n_out * cin * k * k
    assert m.ops["aten.convolution_backward"] == 2 * mult - cout * cin * k * k
    assert m.macs == mult + mult



# -- shape level: the formula called with plain shapes --
# aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
# groups) and aten.convolution_backward(...), called the way the counter calls them: tensors as
# plain tuples, the output's shape as out_shape=. Each expected value is the seed's formula
# (FORMULAS.md), per sample times the batch; a bias adds one add per output element.


def test_shape_plain_convolution():
    # (2, 16, 8, 8) * (32, 16, 3, 3), padding 1 -> (2, 32, 8, 8)
    k = 3 * 3 * 16
    n_out = 2 * 32 * 8 * 8
    got = conv_formulas.convolution((2, 16, 8, 8), (32, 16, 3, 3), None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                    out_shape=(2, 32, 8, 8))
    assert got == (n_out * (2 * k - 1), n_out * k)


def test_shape_convolution_with_bias_adds_one_per_output():
    k = 3 * 3 * 16
    n_out = 2 * 32 * 8 * 8
    got = conv_formulas.convolution((2, 16, 8, 8), (32, 16, 3, 3), (32,), [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                    out_shape=(2, 32, 8, 8))
    assert got == (n_out * (2 * k - 1) + n_out, n_out * k + n_out)


def test_shape_grouped_convolution():
    # the seed: (2·Kh·Kw·Cin/g − 1)·Hout·Wout·(Cout/g)·g per sample; Cin 16, Cout 32, g 4
    cin, cout, g, kh, kw, hout, wout, batch = 16, 32, 4, 3, 3, 8, 8, 2
    seed_flops = (2 * kh * kw * cin // g - 1) * hout * wout * (cout // g) * g
    macs = kh * kw * (cin // g) * hout * wout * cout
    got = conv_formulas.convolution((batch, cin, 8, 8), (cout, cin // g, kh, kw), None, [1, 1], [1, 1], [1, 1],
                                    False, [0, 0], g, out_shape=(batch, cout, hout, wout))
    assert got == (batch * seed_flops, batch * macs)


def test_shape_depthwise_convolution():
    # the seed: (2·Kh·Kw − 1)·Hout·Wout·Cin; (1, 16, 10, 10), 3x3, no padding -> 8x8
    cin, kh, kw, hout, wout = 16, 3, 3, 8, 8
    got = conv_formulas.convolution((1, cin, 10, 10), (cin, 1, kh, kw), None, [1, 1], [0, 0], [1, 1], False, [0, 0],
                                    cin, out_shape=(1, cin, hout, wout))
    assert got == ((2 * kh * kw - 1) * hout * wout * cin, kh * kw * hout * wout * cin)


def test_shape_pointwise_convolution():
    # the seed: (2·Cin − 1)·Hout·Wout·Cout
    cin, cout, hout, wout = 16, 24, 8, 8
    got = conv_formulas.convolution((1, cin, hout, wout), (cout, cin, 1, 1), None, [1, 1], [0, 0], [1, 1], False,
                                    [0, 0], 1, out_shape=(1, cout, hout, wout))
    assert got == ((2 * cin - 1) * hout * wout * cout, cin * hout * wout * cout)


def test_shape_dilated_strided_convolution_counts_its_outputs_only():
    # 15x15, 3x3, stride 2, padding 2, dilation 2: (15 + 4 - 2·2 - 1) // 2 + 1 = 8 per side;
    # stride and dilation change the number of outputs, not the terms per output (8·3·3)
    k = 8 * 3 * 3
    n_out = 1 * 8 * 8 * 8
    got = conv_formulas.convolution((1, 8, 15, 15), (8, 8, 3, 3), None, [2, 2], [2, 2], [2, 2], False, [0, 0], 1,
                                    out_shape=(1, 8, 8, 8))
    assert got == (n_out * (2 * k - 1), n_out * k)


@pytest.mark.parametrize(
    "x, w, bias, out_shape, k, n_out",
    [((2, 4, 10), (6, 4, 5), None, (2, 6, 6), 4 * 5, 2 * 6 * 6),
     ((1, 2, 4, 4, 4), (3, 2, 2, 2, 2), (3,), (1, 3, 3, 3, 3), 2 * 2 * 2 * 2, 3 * 3 * 3 * 3)],
    ids=["conv1d", "conv3d-bias"],
)
def test_shape_convolution_1d_and_3d(x, w, bias, out_shape, k, n_out):
    dims = len(x) - 2
    got = conv_formulas.convolution(x, w, bias, [1] * dims, [0] * dims, [1] * dims, False, [0] * dims, 1,
                                    out_shape=out_shape)
    extra = n_out if bias else 0
    assert got == (n_out * (2 * k - 1) + extra, n_out * k + extra)


def test_shape_underscore_convolution_takes_the_same_formula():
    # aten._convolution has four more flags (benchmark, deterministic, cudnn_enabled, allow_tf32)
    k, n_out = 16 * 9, 2 * 32 * 8 * 8
    args = ((2, 16, 8, 8), (32, 16, 3, 3), (32,), [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    got = conv_formulas.RULES["_convolution"](*args, False, False, True, True, out_shape=(2, 32, 8, 8))
    assert got == (n_out * (2 * k - 1) + n_out, n_out * k + n_out)


@pytest.mark.parametrize("bias", [None, (3,)], ids=["no-bias", "bias"])
def test_shape_transposed_convolution_is_counted_on_the_input(bias):
    # ConvTranspose2d(4, 3, 3, stride 2, padding 1, output_padding 1) on (2, 4, 5, 5):
    # out side (5 - 1)·2 - 2·1 + 3 + 1 = 10; weight (Cin, Cout/g, 3, 3)
    n_in, n_out = 2 * 4 * 5 * 5, 2 * 3 * 10 * 10
    multiplies = n_in * 3 * 3 * 3  # every input element meets every weight of its group once
    extra = n_out if bias else 0
    got = conv_formulas.convolution((2, 4, 5, 5), (4, 3, 3, 3), bias, [2, 2], [1, 1], [1, 1], True, [1, 1], 1,
                                    out_shape=(2, 3, 10, 10))
    assert got == (2 * multiplies - n_out + extra, multiplies + extra)
    # the usual bug (a full dot product of Cin·3·3 terms per output position) is 4x this at stride 2
    assert n_out * 4 * 3 * 3 == 4 * multiplies


def test_shape_grouped_transposed_convolution():
    # ConvTranspose2d(4, 4, 2, stride 2, groups 2) on (1, 4, 3, 3) -> (1, 4, 6, 6); weight (4, 2, 2, 2)
    n_in, n_out = 4 * 3 * 3, 4 * 6 * 6
    multiplies = n_in * (4 // 2) * 2 * 2
    got = conv_formulas.convolution((1, 4, 3, 3), (4, 2, 2, 2), None, [2, 2], [0, 0], [1, 1], True, [0, 0], 2,
                                    out_shape=(1, 4, 6, 6))
    assert got == (2 * multiplies - n_out, multiplies)


# Conv2d(4, 6, 3, padding=1) on (2, 4, 8, 8): grad_out (2, 6, 8, 8)
BACKWARD_ARGS = ((2, 6, 8, 8), (2, 4, 8, 8), (6, 4, 3, 3), [6], [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
BACKWARD_M = (2 * 6 * 8 * 8) * (4 * 3 * 3)  # the forward's multiplies
N_X, N_W, N_GRAD = 2 * 4 * 8 * 8, 6 * 4 * 3 * 3, 2 * 6 * 8 * 8


@pytest.mark.parametrize(
    "mask, expected",
    [([True, True, True], ((2 * BACKWARD_M - N_X) + (2 * BACKWARD_M - N_W) + N_GRAD, 2 * BACKWARD_M + N_GRAD)),
     ([False, True, True], ((2 * BACKWARD_M - N_W) + N_GRAD, BACKWARD_M + N_GRAD)),
     ([True, False, False], (2 * BACKWARD_M - N_X, BACKWARD_M)),
     ([False, True, False], (2 * BACKWARD_M - N_W, BACKWARD_M))],
    ids=["input-weight-bias", "first-layer", "input-only", "weight-only"],
)
def test_shape_convolution_backward_follows_the_output_mask(mask, expected):
    # grad_input and grad_weight: M multiplies each, summed into their target (2M - numel(target));
    # grad_bias sums grad_out (one per element)
    out_shape = tuple(s if wanted else None for s, wanted in zip(((2, 4, 8, 8), (6, 4, 3, 3), (6,)), mask))
    got = conv_formulas.convolution_backward(*BACKWARD_ARGS, mask, out_shape=out_shape)
    assert got == expected


def test_shape_transposed_convolution_backward_is_input_sized():
    # the forward of test_shape_transposed_convolution_is_counted_on_the_input, gradients of input and weight
    multiplies = (2 * 4 * 5 * 5) * 3 * 3 * 3
    n_x, n_w = 2 * 4 * 5 * 5, 4 * 3 * 3 * 3
    got = conv_formulas.convolution_backward((2, 3, 10, 10), (2, 4, 5, 5), (4, 3, 3, 3), None, [2, 2], [1, 1],
                                             [1, 1], True, [1, 1], 1, [True, True, False],
                                             out_shape=((2, 4, 5, 5), (4, 3, 3, 3), None))
    assert got == ((2 * multiplies - n_x) + (2 * multiplies - n_w), 2 * multiplies)


def test_shape_im2col_is_free_and_col2im_adds_each_column_element():
    # F.unfold of (2, 3, 8, 8), 3x3 patches, padding 1: 27 rows of 64 columns each, copied
    assert conv_formulas.im2col((2, 3, 8, 8), [3, 3], [1, 1], [1, 1], [1, 1], out_shape=(2, 27, 64)) == (0, 0)
    # F.fold back to 8x8: every column element added once into the image
    n = 2 * 27 * 64
    assert conv_formulas.col2im((2, 27, 64), [8, 8], [3, 3], [1, 1], [1, 1], [1, 1], out_shape=(2, 3, 8, 8)) == (n, n)
