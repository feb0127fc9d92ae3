"""Convolutions (1d/2d/3d, grouped, depthwise, pointwise, dilated, transposed) and their backward.

Forward: each output element is a dot product over K = (Cin/g)·prod(kernel) terms, the seed's
(2K-1) per output (+1 with bias). Stride, padding and dilation only change the output size.
Transposed: every input element meets every weight of its group once, M = numel(input)·(Cout/g)·
prod(kernel) multiplies (counted on the input's spatial size, not the output's: the usual 4x bug),
summed into the outputs: flops = 2M - numel(out) (+numel(out) with bias), macs = M (+numel(out)).

The two halves of a convolution written by hand (``F.unfold``/``F.fold``, timm's TNT and VOLO):
``im2col`` copies every patch into a column and computes nothing (0, like ``unfold``); the
product that follows is an ordinary matmul. ``col2im`` sums the columns back into an image,
where patches overlap: one add per column element, the rule ``index_add`` follows.
"""

from __future__ import annotations

from math import prod
from typing import Sequence


from pytest_flopbudget.counting.formulas import Cost, Shape, dot_products, numel


def _transposed_cost(x: Shape, w: Shape, out_shape: Shape, bias: bool) -> Cost:
    # weight of a transposed conv: (Cin, Cout/g, *kernel)
    multiplies = numel(x) * w[1] * prod(w[2:])
    n_out = numel(out_shape)
    extra = n_out if bias else 0
    return (2 * multiplies - n_out + extra, multiplies + extra)


def convolution(
    x: Shape,
    w: Shape,
    bias: Shape | None,
    stride: Sequence[int] = (1,),
    padding: Sequence[int] = (0,),
    dilation: Sequence[int] = (1,),
    transposed: bool = False,
    output_padding: Sequence[int] = (0,),
    groups: int = 1,
    *args: object,
    out_shape: Shape,
    **kwargs: object,
) -> Cost:
    if transposed:
        return _transposed_cost(x, w, out_shape, bias is not None)
    return dot_products(numel(out_shape), prod(w[1:]), bias=bias is not None)


def convolution_backward(
    grad_out: Shape,
    x: Shape,
    w: Shape,
    bias_sizes: Sequence[int] | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    transposed: bool,
    output_padding: Sequence[int],
    groups: int,
    output_mask: Sequence[bool],
    *,
    out_shape: object,
) -> Cost:
    """Each forward multiply has one counterpart per gradient asked for in ``output_mask``.

    grad_input and grad_weight each take M multiplies (M = the forward's), summed into their
    targets (2M - numel(target) flops); grad_bias sums grad_out (one per element)."""
    if transposed:
        forward_multiplies = numel(x) * w[1] * prod(w[2:])  # input-sized, see module doc
    else:
        forward_multiplies = numel(grad_out) * prod(w[1:])
    flops = macs = 0
    if output_mask[0]:
        flops += 2 * forward_multiplies - numel(x)
        macs += forward_multiplies
    if output_mask[1]:
        flops += 2 * forward_multiplies - numel(w)
        macs += forward_multiplies
    if len(output_mask) > 2 and output_mask[2]:
        flops += numel(grad_out)
        macs += numel(grad_out)
    return (flops, macs)


COUNTS_INTEGER_WORK = True  # integer convolutions (quantized inference) are compute, not bookkeeping


def im2col(x: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """Patches copied into columns: data movement, no arithmetic."""
    return (0, 0)


def col2im(columns: Shape, *args: object, out_shape: object = None,
           **kwargs: object) -> Cost:
    """Columns summed into the image they came from: every column element is added once."""
    n = numel(columns)
    return (n, n)


RULES = {
    "im2col": im2col,
    "col2im": col2im,
    "convolution": convolution,
    "_convolution": convolution,
    "convolution_backward": convolution_backward,
}
