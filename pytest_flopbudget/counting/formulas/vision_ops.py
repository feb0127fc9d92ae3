"""torchvision's own operators: RoI align and pooling, position-sensitive RoI ops, deformable
convolution, non-maximum suppression (registered by ``import torchvision``, counted once loaded).

- **RoI align** (``roi_align``, ``ps_roi_align``): each output element averages S bilinear samples,
  S = sampling_ratio² points per bin; a sample is a weighted sum of 4 neighbouring pixels, so an
  output is a dot product of 4·S terms and a division by S: 8·S FLOPs and 4·S MACs per output
  element (the sampling weights, shared by every channel, are not counted). Its backward scatters
  the same 4·S weighted terms into the input's gradient: the same count. With ``sampling_ratio <= 0``
  the kernel takes ceil(roi_h / pooled_h) · ceil(roi_w / pooled_w) points per bin, which depends on
  each box (values): counted for a box covering the whole feature map, an upper bound for boxes
  inside it, and marked as an estimate.
- **RoI pooling** (``roi_pool``, ``ps_roi_pool``) and their backward: one per output element (the
  max or mean of a bin; how many elements a bin holds depends on the box, so the comparisons and
  adds inside a bin are not counted).
- **Deformable convolution** (``deform_conv2d``): every column entry of its im2col,
  N·Cin·kh·kw·Hout·Wout of them, is a bilinear sample (4 multiplies, 3 adds; one more multiply with a
  mask), then the convolution's dot products over K = (Cin/g)·kh·kw (+1 per output for the bias,
  which the op always adds). Backward: the two products of a convolution's backward (column
  gradients over Cout/g terms, weight gradients over N·Hout·Wout terms), and per column entry the
  input gradient scattered to 4 pixels (4 multiplies, 4 adds), the two offset gradients (the same
  each) and, with a mask, its gradient (one multiply); the bias gradient adds every output element.
- **NMS** (``nms``): the IoU of every pair of the N boxes it receives, N·(N-1)/2 pairs at 12
  operations each (4 max/min of corners, 2 widths, 2 clamps, 1 product, 2 for the union, 1 division)
  plus each box's area (3): an upper bound, since boxes already suppressed are skipped, which
  depends on the scores and boxes; marked as an estimate.
"""

from __future__ import annotations

from math import ceil

from pytest_flopbudget.counting.formulas import (
    Cost, Shape, dot_products, estimated, first_shape, numel, per_element, sum_costs,
)

_ADAPTIVE = (
    "sampling_ratio <= 0 samples ceil(roi/bin) points per bin, a value of each box; counted for boxes "
    "covering the whole feature map (an upper bound)"
)


def _samples(sampling_ratio: int, height: int, width: int, pooled_h: int, pooled_w: int) -> int:
    if sampling_ratio > 0:
        return sampling_ratio * sampling_ratio
    return ceil(height / pooled_h) * ceil(width / pooled_w)


def _bilinear_average(outputs: int, samples: int) -> Cost:
    # a dot product of 4·S terms (2·4S - 1) and the division by S (1)
    return (outputs * 8 * samples, outputs * 4 * samples)


def _adaptive_forward(x: Shape, rois: Shape, scale: float, ph: int, pw: int, sampling_ratio: int = 0,
                      *args: object, **kwargs: object) -> bool:
    return sampling_ratio <= 0


@estimated(_ADAPTIVE, when=_adaptive_forward)
def roi_align(x: Shape, rois: Shape, spatial_scale: float, pooled_h: int, pooled_w: int, sampling_ratio: int,
              *args: object, out_shape: object, **kwargs: object) -> Cost:
    samples = _samples(sampling_ratio, x[-2], x[-1], pooled_h, pooled_w)
    return _bilinear_average(numel(first_shape(out_shape)), samples)


def _adaptive_roi_align_backward(grad: Shape, rois: Shape, scale: float, ph: int, pw: int, batch: int,
                                 channels: int, height: int, width: int, sampling_ratio: int = 0,
                                 *args: object, **kwargs: object) -> bool:
    return sampling_ratio <= 0


@estimated(_ADAPTIVE, when=_adaptive_roi_align_backward)
def roi_align_backward(grad: Shape, rois: Shape, spatial_scale: float, pooled_h: int, pooled_w: int,
                       batch: int, channels: int, height: int, width: int, sampling_ratio: int,
                       *args: object, out_shape: object, **kwargs: object) -> Cost:
    return _bilinear_average(numel(grad), _samples(sampling_ratio, height, width, pooled_h, pooled_w))


@estimated(_ADAPTIVE, when=_adaptive_forward)
def ps_roi_align(x: Shape, rois: Shape, spatial_scale: float, pooled_h: int, pooled_w: int, sampling_ratio: int,
                 *args: object, out_shape: object, **kwargs: object) -> Cost:
    samples = _samples(sampling_ratio, x[-2], x[-1], pooled_h, pooled_w)
    return _bilinear_average(numel(first_shape(out_shape)), samples)


def _adaptive_ps_backward(grad: Shape, rois: Shape, mapping: Shape, scale: float, ph: int, pw: int,
                          sampling_ratio: int = 0, *args: object, **kwargs: object) -> bool:
    return sampling_ratio <= 0


@estimated(_ADAPTIVE, when=_adaptive_ps_backward)
def ps_roi_align_backward(grad: Shape, rois: Shape, channel_mapping: Shape, spatial_scale: float, pooled_h: int,
                          pooled_w: int, sampling_ratio: int, batch: int, channels: int, height: int, width: int,
                          *args: object, out_shape: object, **kwargs: object) -> Cost:
    return _bilinear_average(numel(grad), _samples(sampling_ratio, height, width, pooled_h, pooled_w))


def roi_pool(x: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    """One per output element (the max or mean of its bin)."""
    return per_element(numel(first_shape(out_shape)))


def roi_pool_backward(grad: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    """Each output gradient added back into the input once (one per gradient element)."""
    return per_element(numel(grad))


def _deform_columns(x: Shape, weight: Shape, out: Shape) -> int:
    n, c_in = x[0], x[1]
    return n * c_in * weight[-2] * weight[-1] * out[-2] * out[-1]


def deform_conv2d(x: Shape, weight: Shape, offset: Shape, mask: Shape | None, bias: Shape | None,
                  *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    use_mask = bool(args[-1]) if args else mask is not None and numel(mask) > 0
    columns = _deform_columns(x, weight, out_shape)
    sampling = (columns * (8 if use_mask else 7), columns * (5 if use_mask else 4))
    product = dot_products(numel(out_shape), weight[1] * weight[2] * weight[3], bias=bias is not None)
    return sum_costs(sampling, product)


def deform_conv2d_backward(grad: Shape, x: Shape, weight: Shape, offset: Shape, mask: Shape | None,
                           bias: Shape | None, *args: object, out_shape: object, **kwargs: object) -> Cost:
    use_mask = bool(args[-1]) if args else mask is not None and numel(mask) > 0
    groups = int(args[6]) if len(args) > 6 else 1
    columns = _deform_columns(x, weight, grad)
    c_out = weight[0]
    column_grads = dot_products(columns, c_out // groups)
    weight_grads = dot_products(numel(weight), grad[0] * grad[-2] * grad[-1])
    # input gradient and the two offset gradients: 4 multiplies and 4 adds each; the mask's: 1
    scatter = columns * (3 * 8 + (1 if use_mask else 0))
    scatter_macs = columns * (3 * 4 + (1 if use_mask else 0))
    bias_grads = numel(grad) if bias is not None else 0
    return (column_grads[0] + weight_grads[0] + scatter + bias_grads,
            column_grads[1] + weight_grads[1] + scatter_macs + bias_grads)


@estimated("IoU of every pair of the boxes it receives, an upper bound: suppressed boxes are skipped, "
           "which depends on their values")
def nms(dets: Shape, scores: Shape, iou_threshold: float, *args: object, out_shape: object, **kwargs: object) -> Cost:
    boxes = dets[0]
    pairs = boxes * (boxes - 1) // 2
    return per_element(12 * pairs + 3 * boxes)


RULES = {
    "torchvision::roi_align": roi_align,
    "torchvision::_roi_align_backward": roi_align_backward,
    "torchvision::ps_roi_align": ps_roi_align,
    "torchvision::_ps_roi_align_backward": ps_roi_align_backward,
    "torchvision::roi_pool": roi_pool,
    "torchvision::_roi_pool_backward": roi_pool_backward,
    "torchvision::ps_roi_pool": roi_pool,
    "torchvision::_ps_roi_pool_backward": roi_pool_backward,
    "torchvision::deform_conv2d": deform_conv2d,
    "torchvision::_deform_conv2d_backward": deform_conv2d_backward,
    "torchvision::nms": nms,
}
