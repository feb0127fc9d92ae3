"""Convolutions (1d/2d/3d, grouped, depthwise, pointwise, dilated, transposed) and their backward.

Forward: each output element is a dot product over K = (Cin/g)·prod(kernel) terms, the seed's
(2K-1) per output (+1 with bias). Stride, padding and dilation only change the output size.
Transposed: every input element meets every weight of its group once, M = numel(input)·(Cout/g)·
prod(kernel) multiplies (counted on the input's spatial size, not the output's: the usual 4x bug),
summed into the outputs: flops = 2M - numel(out) (+numel(out) with bias), macs = M (+numel(out)).
"""

from __future__ import annotations

from math import prod
from typing import Sequence


from pytest_flopbudget.counting.formulas import Cost, Shape, dot_products, numel


def _transposed_cost(x: Shape, w: Shape, out: Shape, groups: int, bias: bool) -> Cost:
    # weight of a transposed conv: (Cin, Cout/g, *kernel)
    multiplies = numel(x) * w[1] * prod(w[2:])
    n_out = numel(out)
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
    out: Shape,
    **kwargs: object,
) -> Cost:
    if transposed:
        return _transposed_cost(x, w, out, groups, bias is not None)
    return dot_products(numel(out), prod(w[1:]), bias=bias is not None)


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
    out: object,
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

RULES = {
    "convolution": convolution,
    "_convolution": convolution,
    "convolution_backward": convolution_backward,
}
