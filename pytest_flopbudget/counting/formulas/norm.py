"""Normalisation: batch (train and eval), layer, group, instance (through batch norm) and RMS norm.

The seed counts one operation per element (flops); ptflops counts the same and doubles it when the
layer is affine (macs), for the scale and shift. Running statistics are buffers, not work counted
here (nn.BatchNorm's ``num_batches_tracked += 1`` in training is an ordinary add, one).
Backward: one per input element for each gradient asked for (input, weight, bias).

RMS norm is one unit whichever way it runs: ``F.rms_norm``/``torch.rms_norm`` through
``FUNCTION_RULES`` (its CPU decomposition muted), the CUDA ``_fused_rms_norm`` kernel through
``RULES``. A hand-written RMSNorm (transformers' LlamaRMSNorm) makes no such call and is counted op
by op: 4 per element and 2 per row.

Weight normalisation (``nn.utils.weight_norm``, wav2vec2's positional conv): w = g · v / ‖v‖, the
norm taken over every dimension but ``dim``. The fused ``_weight_norm_interface`` counts what its
decomposition (used when ``dim`` is neither the first nor the last) counts op by op: the norm's
square-and-accumulate, 2 per element of v; ``g / ‖v‖``, one per element of g; the scaling of v,
one per element: 3·numel(v) + numel(g). It runs on the weights, once per forward.
"""

from __future__ import annotations

from typing import Sequence

from pytest_flopbudget.counting.formulas import Cost, Shape, numel


def normalise(n: int, affine: bool) -> Cost:
    return (n, 2 * n if affine else n)


def batch_norm(x: Shape, weight: Shape | None = None, bias: Shape | None = None,
               *args: object, out_shape: object, **kwargs: object) -> Cost:
    return normalise(numel(x), weight is not None or bias is not None)


def layer_norm(x: Shape, normalized_shape: Sequence[int], weight: Shape | None = None,
               bias: Shape | None = None, *args: object, out_shape: object, **kwargs: object) -> Cost:
    return normalise(numel(x), weight is not None or bias is not None)


def rms_norm(x: Shape, normalized_shape: Sequence[int], weight: Shape | None = None,
             *args: object, out_shape: object, **kwargs: object) -> Cost:
    return normalise(numel(x), weight is not None)


def group_norm(x: Shape, weight: Shape | None = None, bias: Shape | None = None,
               *args: object, out_shape: object, **kwargs: object) -> Cost:
    return normalise(numel(x), weight is not None or bias is not None)


def weight_norm(v: Shape, g: Shape, *args: object, out_shape: object = None,
                **kwargs: object) -> Cost:
    n = 3 * numel(v) + numel(g)
    return (n, n)


def _mask_count(output_mask: Sequence[bool]) -> int:
    return sum(1 for wanted in output_mask if wanted)


def _output_mask(args: Sequence[object]) -> Sequence[bool]:
    """The gradients asked for: the backward kernels' list of bools (its position varies)."""
    for arg in reversed(args):
        if isinstance(arg, (list, tuple)) and arg and all(isinstance(b, bool) for b in arg):
            return arg
    return (True, True, True)


def batch_norm_backward(grad_out: Shape, x: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    mask = kwargs.get("output_mask") or _output_mask(args)
    n = numel(x) * _mask_count(mask)  # type: ignore[arg-type]
    return (n, n)


def layer_norm_backward(grad_out: Shape, x: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    return batch_norm_backward(grad_out, x, *args, out_shape=out_shape, **kwargs)


RULES = {
    "native_batch_norm": batch_norm,
    "_native_batch_norm_legit": batch_norm,
    "_native_batch_norm_legit_no_training": batch_norm,
    "_native_batch_norm_legit_functional": batch_norm,
    "_batch_norm_with_update": batch_norm,
    "_batch_norm_with_update_functional": batch_norm,
    "_batch_norm_no_update": batch_norm,
    "cudnn_batch_norm": batch_norm,
    "miopen_batch_norm": batch_norm,
    "native_layer_norm": layer_norm,
    "native_group_norm": group_norm,
    "_fused_rms_norm": rms_norm,
    "_weight_norm_interface": weight_norm,
    "native_batch_norm_backward": batch_norm_backward,
    "batch_norm_backward": batch_norm_backward,
    "cudnn_batch_norm_backward": batch_norm_backward,
    "native_layer_norm_backward": layer_norm_backward,
    "native_group_norm_backward": batch_norm_backward,
    "_fused_rms_norm_backward": layer_norm_backward,
}

# Composite functions counted as one unit, whatever aten lowers them to on each device.
FUNCTION_RULES = {
    "torch.nn.functional.rms_norm": ("aten.rms_norm", rms_norm),
    "torch.rms_norm": ("aten.rms_norm", rms_norm),
}


def quantized_batch_norm(x: Shape, weight: Shape | None = None, *args: object, out_shape: object = None,
                         **kwargs: object) -> Cost:
    """``quantized_batch_norm``: the float batch norm's count, plus requantizing (one per element)."""
    flops, macs = batch_norm(x, weight, out_shape=out_shape)
    return (flops + numel(x), macs + numel(x))


RULES.update({
    "miopen_batch_norm_backward": batch_norm_backward,
    "quantized_batch_norm": quantized_batch_norm,
})
