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


# Fused and quantization elementwise kernels (issue 21). Quantizing or dequantizing is one
# operation per element and a fake quantization both (DESIGN, "Quantized twins").


def _per_element_of_inputs(k: int):  # type: ignore[no-untyped-def]
    """``k`` operations per element of the first argument (a tensor or a list of tensors)."""

    def formula(x: object, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
        shapes = x if isinstance(x, list) else [x]
        n = k * sum(numel(s) for s in shapes if isinstance(s, (tuple, list)))  # type: ignore[arg-type]
        return (n, n)

    formula.__name__ = f"{k}_per_input_element"
    return formula


def polar(magnitude: object, angle: object, *args: object, out_shape: object, **kwargs: object) -> Cost:
    """``polar(abs, angle)``: abs·cos(angle) and abs·sin(angle), four per output element."""
    n = 4 * numel(first_shape(out_shape))
    return (n, n)


def transform_bias_rescale_qkv(qkv: object, qkv_bias: object, num_heads: int, *args: object, out_shape: object,
                               **kwargs: object) -> Cost:
    """``_transform_bias_rescale_qkv(qkv (B, T, 3E), bias, heads)``: the bias added to q, k and v,
    and q scaled by 1/√d: one per element plus one per query element."""
    n = numel(qkv)  # type: ignore[arg-type]
    return (n + n // 3, n + n // 3)


RULES.update({
    "_add_relu": two_per_element,
    "_conj_physical": elementwise,  # torch 2.6: conj_physical's kernel, one negation per element
    "__irshift__": elementwise,
    "polar": polar,
    "_standard_gamma_grad": elementwise,
    "_dirichlet_grad": elementwise,
    "_amp_foreach_non_finite_check_and_unscale": _per_element_of_inputs(2),  # a finiteness test and a scale
    "_amp_update_scale": elementwise,
    "quantize_per_tensor": _per_element_of_inputs(1),
    "quantize_per_tensor_dynamic": _per_element_of_inputs(1),
    "quantize_per_channel": _per_element_of_inputs(1),
    "dequantize": _per_element_of_inputs(1),
    "fake_quantize_per_tensor_affine_cachemask": _per_element_of_inputs(2),
    "fake_quantize_per_channel_affine_cachemask": _per_element_of_inputs(2),
    "_fake_quantize_per_tensor_affine_cachemask_tensor_qparams": _per_element_of_inputs(2),
    "_fake_quantize_learnable_per_tensor_affine": _per_element_of_inputs(2),
    "_fake_quantize_learnable_per_channel_affine": _per_element_of_inputs(2),
    # the three gradients (input, scale, zero point), one per element each
    "_fake_quantize_learnable_per_tensor_affine_backward": _per_element_of_inputs(3),
    "_fake_quantize_learnable_per_channel_affine_backward": _per_element_of_inputs(3),
    # the observer's running min and max (two per element), then the fake quantization (two)
    "_fused_moving_avg_obs_fq_helper": _per_element_of_inputs(4),
    "_fused_moving_avg_obs_fq_helper_functional": _per_element_of_inputs(4),
    "_transform_bias_rescale_qkv": transform_bias_rescale_qkv,
})
