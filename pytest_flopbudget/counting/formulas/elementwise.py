"""Elementwise arithmetic, comparisons and selection: one operation per output element.

Residual adds, scalings, ``where``, ``clamp``, ``pow``, ``rsqrt``, ``exp``, comparisons and their
in-place and scalar forms all count one per output element, in both numbers: ptflops counts
``torch.add``/``torch.mul`` that way in MACs, and a MAC-based total that left out residual adds
would hide real work. Ops that fuse two arithmetic steps per element (addcmul, addcdiv, lerp)
count two. Any other aten op tagged ``pointwise`` falls back to this rule in the registry.

Dropout in training: on CPU (and meta) aten lowers it to a free random fill, ``noise.div_(1-p)``
and ``input * noise``, two per element; on CUDA to one ``native_dropout`` kernel, counted two per
element too so every device gives one total. Its backward is ``grad * noise`` on CPU, one per
element, and ``native_dropout_backward`` counts the same. Random number generation itself
(``bernoulli``) is free, like the other random fills on the registry's free list.
"""

from __future__ import annotations

from pytest_flopbudget.counting.formulas import Cost, first_shape, numel, per_output_element


elementwise = per_output_element  # one operation per output element


def two_per_element(*args: object, out_shape: object, **kwargs: object) -> Cost:
    n = numel(first_shape(out_shape))
    return (2 * n, 2 * n)


_ONE = (
    "add sub rsub mul div neg reciprocal pow sqrt rsqrt exp exp2 expm1 log log2 log10 log1p "
    "sin cos tan asin acos atan atan2 sinh cosh asinh acosh atanh erf erfc erfinv abs floor ceil "
    "round trunc frac fmod remainder floor_divide clamp clamp_min clamp_max clip maximum minimum "
    "fmax fmin where masked_fill eq ne lt le gt ge logical_and logical_or logical_xor logical_not "
    "bitwise_and bitwise_or bitwise_xor bitwise_not isnan isinf isfinite nan_to_num square "
    "heaviside hypot xlogy copysign sigmoid_ native_dropout_backward _masked_scale"
).split()
_TWO = "addcmul addcdiv lerp native_dropout _fused_dropout".split()

RULES = {**{name: elementwise for name in _ONE}, **{name: two_per_element for name in _TWO}}
