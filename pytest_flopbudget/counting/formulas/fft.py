"""Fast Fourier transforms: ``_fft_r2c``, ``_fft_c2r``, ``_fft_c2c`` (what every ``torch.fft``
function lowers to).

The standard convention (Cooley & Tukey; FFTW's benchmark "mflops" = 5·N·log2(N) / time): a
complex 1-D transform of length N costs 5·N·log2(N) real flops: N/2·log2(N) radix-2 butterflies,
each a complex multiply (6 real flops) and two complex adds (4). A transform whose input or output
is real (r2c, c2r) costs half of it, 2.5·N·log2(N). Each 1-D transform is rounded up to an integer
on its own, so the count does not depend on how the batch is split. A multi-dimensional transform
is one 1-D transform along each transformed dimension for every position of the others: r2c runs
the real transform along the last dimension and complex ones along the others (on the onesided
output); c2r runs complex ones along all but the last, then the real one to ``last_dim_size``.
Normalisation (``norm="ortho"``, ``"forward"``, or the inverse's default ``"backward"``) is one
multiply per output element. MACs: ceil(flops / 2) per transform, the ratio a dot product's flops
and MACs have (a MAC is one multiply and one add); ptflops, fvcore and thop count no FFT.
"""

from __future__ import annotations

from math import ceil, log2
from typing import Sequence

from pytest_flopbudget.counting.formulas import Cost, Shape, first_shape, numel, sum_costs


def transform_cost(length: int, real: bool) -> Cost:
    """One 1-D transform of ``length`` points: 5·N·log2(N) real flops (half for real data), rounded up."""
    if length <= 1:
        return (0, 0)
    flops = ceil((2.5 if real else 5.0) * length * log2(length))
    return (flops, ceil(flops / 2))


def along(shape: Shape, dim: int, real: bool, length: int | None = None) -> Cost:
    """Every 1-D transform along ``dim`` of a tensor of ``shape`` (of ``length`` points, default the dim's size)."""
    size = shape[dim]
    n = size if length is None else length
    count = numel(shape) // size if size else 0
    flops, macs = transform_cost(n, real)
    return (count * flops, count * macs)


def _norm(normalization: int, out: Shape) -> Cost:
    n = numel(out) if normalization else 0
    return (n, n)


def fft_r2c(x: Shape, dim: Sequence[int], normalization: int = 0, onesided: bool = True, *args: object,
            out_shape: object = None, **kwargs: object) -> Cost:
    """``_fft_r2c(self, dim, normalization, onesided)``."""
    out = first_shape(out_shape)
    dims = [d % len(x) for d in dim]
    costs = [along(x, dims[-1], real=True)]
    costs += [along(out, d, real=False) for d in dims[:-1]]
    return sum_costs(*costs, _norm(normalization, out))


def fft_c2r(x: Shape, dim: Sequence[int], normalization: int = 0, last_dim_size: int = 0, *args: object,
            out_shape: object = None, **kwargs: object) -> Cost:
    """``_fft_c2r(self, dim, normalization, last_dim_size)``."""
    out = first_shape(out_shape)
    dims = [d % len(x) for d in dim]
    costs = [along(x, d, real=False) for d in dims[:-1]]
    costs.append(along(out, dims[-1], real=True, length=last_dim_size or out[dims[-1]]))
    return sum_costs(*costs, _norm(normalization, out))


def fft_c2c(x: Shape, dim: Sequence[int], normalization: int = 0, forward: bool = True, *args: object,
            out_shape: object = None, **kwargs: object) -> Cost:
    """``_fft_c2c(self, dim, normalization, forward)``."""
    out = first_shape(out_shape)
    costs = [along(x, d % len(x), real=False) for d in dim]
    return sum_costs(*costs, _norm(normalization, out))


RULES = {
    "_fft_r2c": fft_r2c,
    "_fft_c2r": fft_c2r,
    "_fft_c2c": fft_c2c,
}
