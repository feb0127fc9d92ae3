"""Resampling: upsample/interpolate in every mode, grid_sample, affine_grid.

An interpolated output element is a weighted sum of ``taps`` input elements, which is a dot
product of ``taps`` terms: ``taps`` multiplies and ``taps − 1`` adds (flops), ``taps`` MACs (macs),
the rule every product in this engine follows. Taps per output: nearest (and nearest-exact) 1 —
a copy, counted as one operation per output element in both numbers, as ptflops does; linear 2,
bilinear 4, bicubic 16, trilinear 8. Antialiased (``antialias=True``) bilinear/bicubic widen the
filter when downsampling: per spatial dimension ``ceil(s · max(1, in/out))`` taps with s = 2
(bilinear) or 4 (bicubic), the support torch's kernel uses. The interpolation weights and
indices depend on the output coordinate only (shared by every batch element and channel) and are
not counted. ``area`` mode is adaptive average pooling (counted as pooling), ``pixel_shuffle`` a
reshape (free).

``grid_sample``: the same taps per output element (bilinear 4 in 2-D / 8 in 3-D, nearest 1,
bicubic 16); the grid's unnormalisation is per location, not counted. ``affine_grid``: every
output coordinate is a dot product of the homogeneous base point (3 terms in 2-D, 4 in 3-D) with
a row of θ. Backward of an upsample counts what its forward counts (each gradient element is
spread over the same taps).
"""

from __future__ import annotations

from math import ceil, prod
from typing import Sequence

from pytest_flopbudget.counting.formulas import Cost, Shape, dot_products, first_shape, numel

TAPS = {"nearest": 1, "linear": 2, "bilinear": 4, "bicubic": 16, "trilinear": 8}


def interpolate(n_outputs: int, taps: int) -> Cost:
    """``n_outputs`` weighted sums of ``taps`` inputs; a one-tap copy is one operation."""
    if taps == 1:
        return (n_outputs, n_outputs)
    return dot_products(n_outputs, taps)


def _mode(taps: int):  # type: ignore[no-untyped-def]
    def formula(x: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
        return interpolate(numel(first_shape(out_shape)), taps)

    formula.__name__ = f"upsample_{taps}_taps"
    return formula


def _backward(taps: int):  # type: ignore[no-untyped-def]
    def formula(grad_out: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
        return interpolate(numel(grad_out), taps)

    formula.__name__ = f"upsample_{taps}_taps_backward"
    return formula


def antialiased_taps(in_sizes: Sequence[int], out_sizes: Sequence[int], support: int) -> int:
    """Taps of an antialiased filter: per dimension ``support`` widened by the downscale factor."""
    return prod(ceil(support * max(1.0, i / o)) for i, o in zip(in_sizes, out_sizes))


def _antialiased(support: int):  # type: ignore[no-untyped-def]
    def formula(x: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
        shape = first_shape(out_shape)
        taps = antialiased_taps(x[2:], shape[2:], support)  # type: ignore[index]
        return interpolate(numel(shape), taps)

    formula.__name__ = f"upsample_antialiased_{support}"
    return formula


def _antialiased_backward(support: int):  # type: ignore[no-untyped-def]
    """``_upsample_*_aa_backward(grad_output, output_size, input_size, ...)``: each output
    gradient element goes back to the inputs its filter read, with the forward's taps."""
    def formula(grad_out: Shape, output_size: Sequence[int], input_size: Sequence[int], *args: object,
                out_shape: object = None, **kwargs: object) -> Cost:
        taps = antialiased_taps(input_size[2:], output_size, support)
        return interpolate(numel(grad_out), taps)

    formula.__name__ = f"upsample_antialiased_{support}_backward"
    return formula


def grid_sampler(x: Shape, grid: Shape, interpolation_mode: int = 0, *args: object,
                 out_shape: object = None, **kwargs: object) -> Cost:
    """``grid_sampler_2d/3d(input, grid, interpolation_mode, padding_mode, align_corners)``;
    interpolation_mode 0 bilinear, 1 nearest, 2 bicubic."""
    spatial = len(x) - 2
    taps = {0: 2 ** spatial, 1: 1, 2: 16}[int(interpolation_mode)]
    return interpolate(numel(first_shape(out_shape)), taps)


def affine_grid(theta: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``affine_grid_generator(theta, size, align_corners)``: out (N, *spatial, d) coordinates,
    each a dot product of d + 1 terms."""
    shape = first_shape(out_shape)
    return dot_products(numel(shape), shape[-1] + 1)  # type: ignore[index]


# each upsampling kernel and its taps per output element; its backward kernel has the same taps
_UPSAMPLING = {
    "upsample_nearest1d": 1,
    "upsample_nearest2d": 1,
    "upsample_nearest3d": 1,
    "_upsample_nearest_exact1d": 1,
    "_upsample_nearest_exact2d": 1,
    "_upsample_nearest_exact3d": 1,
    "upsample_linear1d": TAPS["linear"],
    "upsample_bilinear2d": TAPS["bilinear"],
    "upsample_bicubic2d": TAPS["bicubic"],
    "upsample_trilinear3d": TAPS["trilinear"],
}

RULES = {
    **{name: _mode(taps) for name, taps in _UPSAMPLING.items()},
    **{f"{name}_backward": _backward(taps) for name, taps in _UPSAMPLING.items()},
    "_upsample_bilinear2d_aa": _antialiased(2),
    "_upsample_bicubic2d_aa": _antialiased(4),
    "_upsample_bilinear2d_aa_backward": _antialiased_backward(2),
    "_upsample_bicubic2d_aa_backward": _antialiased_backward(4),
    "grid_sampler_2d": grid_sampler,
    "grid_sampler_3d": grid_sampler,
    "affine_grid_generator": affine_grid,
}


def cudnn_grid_sampler(x: Shape, grid: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``cudnn_grid_sampler(input, grid)``: bilinear, as ``grid_sampler_2d`` with mode 0."""
    return grid_sampler(x, grid, 0, out_shape=out_shape)


def cudnn_affine_grid(theta: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``cudnn_affine_grid_generator(theta, N, C, H, W)``: as ``affine_grid_generator``."""
    return affine_grid(theta, out_shape=out_shape)


# Lanczos (a = 3): six taps per dimension, widened when downscaling, like the other antialiased modes
RULES.update({
    "_upsample_lanczos2d_aa": _antialiased(6),
    "_upsample_lanczos2d_aa_backward": _antialiased_backward(6),
    "_grid_sampler_2d_cpu_fallback": grid_sampler,
    "cudnn_grid_sampler": cudnn_grid_sampler,
    "cudnn_affine_grid_generator": cudnn_affine_grid,
})
