"""Convolutions worked by hand: 1d/2d/3d, grouped, dilated, strided, with and without bias,
transposed (counted on the input's spatial size), and convolution_backward's output mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from counting_helpers import measure_both


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

