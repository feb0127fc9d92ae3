"""Quantized operators (``quantized::``, PT2E's ``quantized_decomposed::``, aten's quantize/dequantize).

A quantized model does the work of its float twin as converted (BatchNorm folded into the conv,
ReLU fused into the op before it) in integers: each quantized op counts exactly what its float
twin counts (FLOPs and MACs; integer work is compute, as for ``_int_mm``), a fused activation or
add one more per output element, as the float twin's separate op would. Quantizing or
dequantizing a tensor is one FLOP per element and no MAC (a scale and a rounding, no product to
accumulate).

Packed weights (``LinearPackedParamsBase``, ``ConvPackedParamsBase``) are not tensors: the registry
hands these formulas a description of them instead, a dict with ``weight`` (shape), ``bias`` (shape
or None), and for convolutions ``groups`` and ``transposed``.
"""

from __future__ import annotations

from typing import Any, Mapping

from pytest_flopbudget.counting.formulas import Cost, Shape, dot_products, first_shape, numel, per_element, sum_costs
from pytest_flopbudget.counting.formulas import conv, norm

# the registry counts integer tensors for this family (quint8 in, quint8 out is still work)
COUNTS_INTEGER_WORK = True
# some arguments are packed weights: the registry describes them as dicts before calling a formula
PACKED_ARGUMENTS = True


def _packed(value: Any, op: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or "weight" not in value:
        raise TypeError(f"{op} expects packed weights described as a dict with 'weight', got {value!r}")
    return value


def linear(x: Shape, packed: Any, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """``quantized::linear`` and ``linear_dynamic``: the dot products of ``F.linear`` (+1 per output with a bias)."""
    weights = _packed(packed, "quantized linear")
    return dot_products(numel(out_shape), weights["weight"][-1], bias=weights["bias"] is not None)


def linear_activation(x: Shape, packed: Any, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """A linear with its activation fused (relu, leaky_relu, tanh): one more per output element."""
    return sum_costs(linear(x, packed, out_shape=out_shape), per_element(numel(out_shape)))


def convolution(x: Shape, packed: Any, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """``quantized::conv{1,2,3}d`` and ``conv_transpose*``: counted by the float convolution's rule."""
    weights = _packed(packed, "quantized convolution")
    return conv.convolution(x, weights["weight"], weights["bias"], transposed=bool(weights.get("transposed")),
                            groups=int(weights.get("groups", 1)), out_shape=out_shape)


def convolution_activation(x: Shape, packed: Any, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """A convolution with ReLU fused: one more per output element."""
    return sum_costs(convolution(x, packed, out_shape=out_shape), per_element(numel(out_shape)))


def convolution_add(x: Shape, packed: Any, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """``conv2d_add``: the convolution, then the residual add (one per output element)."""
    return sum_costs(convolution(x, packed, out_shape=out_shape), per_element(numel(out_shape)))


def convolution_add_relu(x: Shape, packed: Any, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """``conv2d_add_relu``: the convolution, the add and the ReLU (two per output element)."""
    return sum_costs(convolution(x, packed, out_shape=out_shape), per_element(2 * numel(out_shape)))


def elementwise(*args: object, out_shape: object, **kwargs: object) -> Cost:
    """add, mul, activations, clamp: one per output element, as their float twins."""
    return per_element(numel(first_shape(out_shape)))


def elementwise_relu(*args: object, out_shape: object, **kwargs: object) -> Cost:
    """add_relu, mul_relu: the op and the fused ReLU, two per output element."""
    return per_element(2 * numel(first_shape(out_shape)))


def free(*args: object, out_shape: object, **kwargs: object) -> Cost:
    """cat, embedding lookups: data movement, as for float tensors."""
    return (0, 0)


def cat_relu(tensors: object, *args: object, out_shape: object, **kwargs: object) -> Cost:
    """cat is free; the fused ReLU is one per output element."""
    return per_element(numel(first_shape(out_shape)))


def batch_norm(x: Shape, weight: Shape | None = None, bias: Shape | None = None, *args: object,
               out_shape: object, **kwargs: object) -> Cost:
    """``quantized::batch_norm{,1d,2d,3d}``: the float BatchNorm's rule (x2 MACs when affine)."""
    return norm.batch_norm(x, weight, bias, out_shape=out_shape)


def batch_norm_relu(x: Shape, weight: Shape | None = None, bias: Shape | None = None, *args: object,
                    out_shape: object, **kwargs: object) -> Cost:
    return sum_costs(batch_norm(x, weight, bias, out_shape=out_shape), per_element(numel(x)))


def layer_norm(x: Shape, normalized_shape: object, weight: Shape | None = None, bias: Shape | None = None,
               *args: object, out_shape: object, **kwargs: object) -> Cost:
    return norm.normalise(numel(x), weight is not None or bias is not None)


def group_norm(x: Shape, num_groups: object, weight: Shape | None = None, bias: Shape | None = None,
               *args: object, out_shape: object, **kwargs: object) -> Cost:
    return norm.normalise(numel(x), weight is not None or bias is not None)


def pooling(x: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    """Max pooling: one per input element, as float pooling."""
    return per_element(numel(x))


def matmul(a: Shape, b: Shape, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """``quantized::matmul``: the dot products of the float matmul."""
    return dot_products(numel(out_shape), a[-1])


def embedding_bag(weight: object, indices: Shape, offsets: Shape | None = None, scale_grad_by_freq: bool = False,
                  mode: int = 0, pruned_weights: bool = False, per_sample_weights: Shape | None = None,
                  *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """The float bag's rule: each looked-up element added once (and multiplied once with
    per-sample weights); the row width is the output's (packed rows carry their scales)."""
    looked_up = numel(indices) * first_shape(out_shape)[-1]
    weighted = kwargs.get("per_sample_weights", per_sample_weights) is not None
    return per_element(looked_up * (2 if weighted else 1))


def quantize(*args: object, out_shape: object, **kwargs: object) -> Cost:
    """Quantize or dequantize: one FLOP per element, no MAC (several tensors: each element once)."""
    if isinstance(out_shape, (tuple, list)) and out_shape and isinstance(out_shape[0], (tuple, list)):
        elements = sum(numel(shape) for shape in out_shape)
    else:
        elements = numel(out_shape)  # type: ignore[arg-type]
    return (elements, 0)


_LINEAR = "linear linear_dynamic linear_dynamic_fp16"
_LINEAR_ACTIVATION = "linear_relu linear_relu_dynamic linear_relu_dynamic_fp16 linear_leaky_relu linear_tanh"
_CONV = (
    "conv1d conv2d conv3d conv1d_dynamic conv2d_dynamic conv3d_dynamic conv_transpose1d conv_transpose2d "
    "conv_transpose3d conv_transpose1d_dynamic conv_transpose2d_dynamic conv_transpose3d_dynamic"
)
_CONV_RELU = "conv1d_relu conv2d_relu conv3d_relu"
_ELEMENTWISE = (
    "add add_out add_scalar add_scalar_out mul mul_out mul_scalar mul_scalar_out relu6 leaky_relu hardswish "
    "sigmoid elu celu threshold clamp softmax prelu instance_norm"
)
_ELEMENTWISE_RELU = (
    "add_relu add_relu_out add_scalar_relu add_scalar_relu_out mul_relu mul_relu_out mul_scalar_relu "
    "mul_scalar_relu_out"
)
_BAGS = (
    "embedding_bag_byte_rowwise_offsets embedding_bag_4bit_rowwise_offsets embedding_bag_2bit_rowwise_offsets "
    "embedding_bag_byte embedding_bag_4bit"
)
_QUANTIZE = (
    "quantize_per_tensor quantize_per_tensor_dynamic quantize_per_channel dequantize"
)
_DECOMPOSED = (
    "quantize_per_tensor dequantize_per_tensor quantize_per_channel dequantize_per_channel quantize_per_token "
    "dequantize_per_token quantize_per_channel_group dequantize_per_channel_group"
)


def _table(names: str, formula: Any, namespace: str = "quantized") -> dict[str, Any]:
    return {f"{namespace}::{name}": formula for name in names.split()}


RULES: dict[str, Any] = {
    **_table(_LINEAR, linear),
    **_table(_LINEAR_ACTIVATION, linear_activation),
    **_table(_CONV, convolution),
    **_table(_CONV_RELU, convolution_activation),
    "quantized::conv2d_add": convolution_add,
    "quantized::conv2d_add_relu": convolution_add_relu,
    **_table(_ELEMENTWISE, elementwise),
    **_table(_ELEMENTWISE_RELU, elementwise_relu),
    **_table("cat cat_out embedding_byte embedding_4bit dropout", free),
    **_table("cat_relu cat_relu_out", cat_relu),
    **_table("batch_norm batch_norm1d batch_norm2d batch_norm3d", batch_norm),
    **_table("batch_norm_relu batch_norm1d_relu batch_norm2d_relu batch_norm3d_relu", batch_norm_relu),
    "quantized::layer_norm": layer_norm,
    "quantized::group_norm": group_norm,
    **_table("max_pool1d max_pool2d", pooling),
    "quantized::matmul": matmul,
    **_table(_BAGS, embedding_bag),
    **{name: quantize for name in _QUANTIZE.split()},
    **_table(_DECOMPOSED, quantize, "quantized_decomposed"),
}
