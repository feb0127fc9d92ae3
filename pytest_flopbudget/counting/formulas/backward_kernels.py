"""Backward kernels whose forwards are counted elsewhere (padding, unfold, grid sampling,
pooling, weight norm, synchronised batch norm, fused recurrent cells, matmul), each mirroring its
forward: a gradient costs what the forward's arithmetic costs, once per gradient asked for.

Padding by reflection or replication is free forwards (a copy), but its backward adds the
gradients of the copied border back onto the input elements they came from: one add per padded
element, numel(grad_output) − numel(input). ``unfold_backward`` (of ``Tensor.unfold``) likewise
sums overlapping windows: one add per window element beyond the first that lands on an input
position. ``diagonal_backward`` and ``masked_scatter_backward`` only move values (free).
"""

from __future__ import annotations

from math import prod
from typing import Sequence

from pytest_flopbudget.counting.formulas import Cost, Shape, dot_products, first_shape, numel, sum_costs
from pytest_flopbudget.counting.formulas.norm import normalise
from pytest_flopbudget.counting.formulas.recurrent import GATE_WORK
from pytest_flopbudget.counting.formulas.resampling import interpolate


def _same(n: int) -> Cost:
    return (n, n)


def padding_backward(grad_out: Shape, x: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``reflection_pad{1,2,3}d_backward`` / ``replication_pad{1,2,3}d_backward(grad_output, input, padding)``."""
    return _same(max(numel(grad_out) - numel(x), 0))


def unfold_backward(grad: Shape, input_sizes: Sequence[int], dim: int, size: int, step: int, *args: object,
                    out_shape: object = None, **kwargs: object) -> Cost:
    """``unfold_backward(grad_in, input_sizes, dim, size, step)``: windows summed back into the input."""
    dim = dim % len(input_sizes) if input_sizes else 0
    length = input_sizes[dim] if input_sizes else 1
    windows = (length - size) // step + 1 if length >= size else 0
    covered = (windows - 1) * step + size if step <= size else windows * size
    rest = prod(input_sizes) // length if length else 0
    return _same(max(windows * size - covered, 0) * rest if windows else 0)


_TAPS = {0: 2, 1: 1, 2: 4}  # per spatial dimension: bilinear, nearest, bicubic


def _grid_taps(x: Shape, mode: object) -> int:
    spatial = len(x) - 2
    return _TAPS[int(mode)] ** spatial  # type: ignore[call-overload]


def grid_sampler_backward(grad_out: Shape, x: Shape, grid: Shape, interpolation_mode: int = 0, *args: object,
                          out_shape: object = None, **kwargs: object) -> Cost:
    """``grid_sampler_{2,3}d_backward(grad_output, input, grid, mode, padding_mode, align_corners,
    output_mask)``: the input's gradient scatters each output gradient to the forward's taps, the
    grid's gathers the same taps: the forward's count once per gradient asked for."""
    mask = next((a for a in args if isinstance(a, (list, tuple))), (True, True))
    wanted = sum(1 for m in mask if m)  # type: ignore[union-attr]
    cost = interpolate(numel(grad_out), _grid_taps(x, interpolation_mode))
    return (wanted * cost[0], wanted * cost[1])


def grid_sampler_both(grad_out: Shape, x: Shape, grid: Shape, interpolation_mode: int = 0, *args: object,
                      out_shape: object = None, **kwargs: object) -> Cost:
    """``_grid_sampler_2d_cpu_fallback_backward``: both gradients."""
    cost = interpolate(numel(grad_out), _grid_taps(x, interpolation_mode))
    return (2 * cost[0], 2 * cost[1])


def cudnn_grid_sampler_backward(x: Shape, grid: Shape, grad_out: Shape, *args: object, out_shape: object = None,
                                **kwargs: object) -> Cost:
    """``cudnn_grid_sampler_backward(input, grid, grad_output)``: bilinear, both gradients."""
    return grid_sampler_both(grad_out, x, grid, 0)


def affine_grid_backward(grad: Shape, n: int, c: int, *sizes_and_rest: object, out_shape: object = None,
                         **kwargs: object) -> Cost:
    """``cudnn_affine_grid_generator_backward(grad, N, C, H, W)``: θ's gradient, each of its N·2·3
    elements a dot product over the H·W grid points."""
    theta = first_shape(out_shape)
    points = numel(grad) // (n * grad[-1]) if n and grad else 0
    return dot_products(numel(theta), points)


def pool_backward_output_first(grad_out: Shape, output: Shape, x: Shape, *args: object, out_shape: object = None,
                               **kwargs: object) -> Cost:
    """``mkldnn_max_pool{2,3}d_backward(grad_output, output, input, ...)``: one per input element."""
    return _same(numel(x))


def weight_norm_backward(grad_w: Shape, v: Shape, g: Shape, *args: object, out_shape: object = None,
                         **kwargs: object) -> Cost:
    """``_weight_norm_interface_backward(grad_w, saved_v, saved_g, saved_norms, dim)``: the forward's 3·|v| + |g|."""
    return _same(3 * numel(v) + numel(g))


def batch_norm_elemt(x: Shape, weight: Shape | None = None, *args: object, out_shape: object = None,
                     **kwargs: object) -> Cost:
    """``batch_norm_elemt(input, weight, bias, mean, invstd, eps)`` (SyncBatchNorm's normalisation)."""
    return normalise(numel(x), weight is not None)


def batch_norm_stats(x: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``batch_norm_stats`` / ``batch_norm_update_stats``: mean and variance, two passes over the input."""
    return _same(2 * numel(x))


def batch_norm_gather_stats(x: Shape, mean: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``batch_norm_gather_stats[_with_counts](input, mean, invstd, ...)``: every device's (mean,
    invstd) pair merged into the global ones, three per gathered element."""
    return _same(3 * numel(mean))


def batch_norm_backward_reduce(grad_out: Shape, x: Shape, *args: object, out_shape: object = None,
                               **kwargs: object) -> Cost:
    """``batch_norm_backward_reduce``: the two sums (of grad, and of grad·(x − mean)) over the input."""
    return _same(2 * numel(x))


def batch_norm_backward_elemt(grad_out: Shape, x: Shape, *args: object, out_shape: object = None,
                              **kwargs: object) -> Cost:
    """``batch_norm_backward_elemt``: the input's gradient, one per element."""
    return _same(numel(x))


def lstm_cell_fused(input_gates: Shape, hidden_gates: Shape, cx: Shape, input_bias: Shape | None = None,
                    hidden_bias: Shape | None = None, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``_thnn_fused_lstm_cell`` (CUDA): the LSTM's gate work per hidden unit (13, see recurrent.py),
    plus the two bias adds per gate when the biases come in."""
    units = numel(cx)
    bias = 2 * numel(input_gates) if input_bias is not None else 0
    return _same(GATE_WORK["lstm"] * units + bias)


def lstm_cell_fused_backward(grad_hy: Shape | None, grad_cy: Shape | None, cx: Shape, cy: Shape, workspace: Shape,
                             has_bias: bool = True, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``_thnn_fused_lstm_cell_backward_impl``: the gate derivatives (13 per unit) and the bias
    gradient (a sum over the batch of the 4H gate gradients)."""
    return _same(GATE_WORK["lstm"] * numel(cx) + (numel(workspace) if has_bias else 0))


def gru_cell_fused(input_gates: Shape, hidden_gates: Shape, hx: Shape, input_bias: Shape | None = None,
                   hidden_bias: Shape | None = None, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``_thnn_fused_gru_cell`` (CUDA): the GRU's gate work per hidden unit (10), plus the bias adds."""
    bias = 2 * numel(input_gates) if input_bias is not None else 0
    return _same(GATE_WORK["gru"] * numel(hx) + bias)


def gru_cell_fused_backward(grad_hy: Shape, workspace: Shape, has_bias: bool = True, *args: object,
                            out_shape: object = None, **kwargs: object) -> Cost:
    """``_thnn_fused_gru_cell_backward(grad_hy, workspace, has_bias)``: 10 per unit, and the bias sums."""
    gates = 3 * numel(grad_hy)
    return _same(GATE_WORK["gru"] * numel(grad_hy) + (2 * gates if has_bias else 0))


def matmul_backward(grad: Shape, a: Shape, b: Shape, mask: Sequence[bool] = (True, True), *args: object,
                    out_shape: object = None, **kwargs: object) -> Cost:
    """``matmul_backward(grad, a, b, mask)`` (nested tensors): grad·bᵀ and aᵀ·grad. The forward
    made numel(grad)·K multiplies (K = a's last dimension); each gradient redistributes them over
    its own elements, a dot product of (forward multiplies / its elements) terms each."""
    multiplies = numel(grad) * a[-1] if a else 0
    costs = []
    for wanted, operand in zip(mask, (a, b)):
        if wanted and numel(operand):
            costs.append(dot_products(numel(operand), multiplies // numel(operand)))
    return sum_costs(*costs) if costs else (0, 0)


def mkldnn_linear_backward_input(input_size: Sequence[int], grad_out: Shape, weight: Shape, *args: object,
                                 out_shape: object = None, **kwargs: object) -> Cost:
    """``mkldnn_linear_backward_input(input_size, grad_output, weight)``: grad·W."""
    return dot_products(prod(input_size), grad_out[-1])


def mkldnn_linear_backward_weights(grad_out: Shape, x: Shape, weight: Shape, bias_defined: bool = True,
                                   *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``mkldnn_linear_backward_weights(grad_output, input, weight, bias_defined)``: gradᵀ·x and the bias sum."""
    tokens = numel(grad_out[:-1])
    return sum_costs(dot_products(numel(weight), tokens), _same(numel(grad_out) if bias_defined else 0))


RULES = {
    **{f"{kind}_pad{d}d_backward": padding_backward for kind in ("reflection", "replication") for d in (1, 2, 3)},
    "unfold_backward": unfold_backward,
    "grid_sampler_2d_backward": grid_sampler_backward,
    "grid_sampler_3d_backward": grid_sampler_backward,
    "_grid_sampler_2d_cpu_fallback_backward": grid_sampler_both,
    "cudnn_grid_sampler_backward": cudnn_grid_sampler_backward,
    "cudnn_affine_grid_generator_backward": affine_grid_backward,
    "mkldnn_max_pool2d_backward": pool_backward_output_first,
    "mkldnn_max_pool3d_backward": pool_backward_output_first,
    "_weight_norm_interface_backward": weight_norm_backward,
    "batch_norm_elemt": batch_norm_elemt,
    "batch_norm_stats": batch_norm_stats,
    "batch_norm_update_stats": batch_norm_stats,
    "batch_norm_gather_stats": batch_norm_gather_stats,
    "batch_norm_gather_stats_with_counts": batch_norm_gather_stats,
    "batch_norm_backward_reduce": batch_norm_backward_reduce,
    "batch_norm_backward_elemt": batch_norm_backward_elemt,
    "_thnn_fused_lstm_cell": lstm_cell_fused,
    "_thnn_fused_lstm_cell_backward_impl": lstm_cell_fused_backward,
    "_thnn_fused_gru_cell": gru_cell_fused,
    "_thnn_fused_gru_cell_backward": gru_cell_fused_backward,
    "matmul_backward": matmul_backward,
    "mkldnn_linear_backward_input": mkldnn_linear_backward_input,
    "mkldnn_linear_backward_weights": mkldnn_linear_backward_weights,
}
