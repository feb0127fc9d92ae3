"""Pooling of every kind (max, avg, adaptive, 1d/2d/3d) and its backward.

The seed's rule, as ptflops counts it: one operation per input element, the kernel size ignored.
1d pools lower to these 2d kernels, so they need no rule of their own. Power-average (LP)
pooling has no kernel: ``F.lp_pool{1,2,3}d`` is written in Python as pow, avg_pool, sign, relu,
abs, mul and pow again; ``FUNCTION_RULES`` counts it as one pool, one per input element, like every
other pool (the seed: "pooling, any kind").
"""

from __future__ import annotations


from pytest_flopbudget.counting.formulas import Cost, Shape, numel, per_element


def pool(x: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    return per_element(numel(x))


def pool_backward(grad_out: Shape, x: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    """The gradient is scattered back to every input element once."""
    return per_element(numel(x))


RULES = {
    "max_pool1d": pool,
    "max_pool1d_with_indices": pool,
    "max_pool2d": pool,
    "max_pool2d_with_indices": pool,
    "max_pool3d": pool,
    "max_pool3d_with_indices": pool,
    "avg_pool1d": pool,
    "avg_pool2d": pool,
    "avg_pool3d": pool,
    "_adaptive_avg_pool2d": pool,
    "_adaptive_avg_pool3d": pool,
    "adaptive_avg_pool1d": pool,
    "adaptive_max_pool1d": pool,
    "adaptive_max_pool2d": pool,
    "adaptive_max_pool3d": pool,
    "fractional_max_pool2d": pool,
    "fractional_max_pool3d": pool,
    "mkldnn_max_pool2d": pool,
    "mkldnn_adaptive_avg_pool2d": pool,
    "max_pool2d_with_indices_backward": pool_backward,
    "max_pool3d_with_indices_backward": pool_backward,
    "avg_pool2d_backward": pool_backward,
    "avg_pool3d_backward": pool_backward,
    "_adaptive_avg_pool2d_backward": pool_backward,
    "_adaptive_avg_pool3d_backward": pool_backward,
    "adaptive_max_pool2d_backward": pool_backward,
    "adaptive_max_pool3d_backward": pool_backward,
}

# LP pooling counted as one unit (the counter mutes the aten ops it lowers to).
FUNCTION_RULES = {
    "torch.nn.functional.lp_pool1d": ("F.lp_pool1d", pool),
    "torch.nn.functional.lp_pool2d": ("F.lp_pool2d", pool),
    "torch.nn.functional.lp_pool3d": ("F.lp_pool3d", pool),
}


# Kernels of other backends and the out= forms of composite pools (issue 21): the same rule.
RULES.update({
    "mkldnn_max_pool3d": pool,
    "quantized_max_pool1d": pool,
    "quantized_max_pool2d": pool,
    "quantized_max_pool3d": pool,
    "adaptive_avg_pool2d.out": pool,
    "adaptive_avg_pool3d.out": pool,
    "max_pool2d_backward": pool_backward,
    "adaptive_avg_pool3d_backward": pool_backward,
    "mkldnn_adaptive_avg_pool2d_backward": pool_backward,
    "fractional_max_pool2d_backward": pool_backward,
    "fractional_max_pool3d_backward": pool_backward,
})
