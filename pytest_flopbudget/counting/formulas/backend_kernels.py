"""Device- and library-specific kernels (cudnn, miopen, oneDNN/mkldnn, MPS, NNPACK, the slow
reference convolutions, fused recurrent networks) counted as the generic op they implement, so
that a graph naming one counts what the portable op counts on any device.

Convolutions: N output elements, each a dot product over the kernel's window and the group's
input channels (weight (Cout, Cin/g, *kernel): prod(w[1:]) terms), + N with a bias; transposed
ones count the input-sized multiplies of ``conv._transposed_cost``; a fused relu or add + relu
is one (two) more per output. Backward kernels count ``conv.convolution_backward``.
"""

from __future__ import annotations

from math import prod
from typing import Any, Sequence

from pytest_flopbudget.counting.formulas import Cost, Shape, dot_products, first_shape, numel
from pytest_flopbudget.counting.formulas.conv import _transposed_cost, convolution, convolution_backward
from pytest_flopbudget.counting.formulas.matmul import linear_backward
from pytest_flopbudget.counting.formulas.recurrent import recurrent_layers


def _plus(cost: Cost, n: int) -> Cost:
    return (cost[0] + n, cost[1] + n)


def conv(bias_at: int | None, transposed: bool = False, fused: int = 0) -> Any:
    """A convolution kernel whose bias (if any) is positional argument ``bias_at``, counting
    ``fused`` extra elementwise ops per output (relu, add)."""

    def formula(x: Shape, w: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
        out = first_shape(out_shape)
        bias = kwargs.get("bias")
        if bias_at is not None and len(args) > bias_at - 2:
            bias = args[bias_at - 2]
        has_bias = isinstance(bias, (tuple, list))  # a tensor arrives as its shape
        if transposed:
            cost = _transposed_cost(x, w, out, has_bias)
        else:
            cost = dot_products(numel(out), prod(w[1:]), bias=has_bias)
        return _plus(cost, fused * numel(out))

    formula.__name__ = f"conv_kernel{'_transposed' if transposed else ''}"
    return formula


def conv_tbc(x: Shape, w: Shape, bias: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``conv_tbc(input (T, B, Cin), weight (K, Cin, Cout), bias)``: time-batch-channel 1-D conv."""
    return dot_products(numel(first_shape(out_shape)), w[0] * w[1], bias=True)


def conv_backward_kernel(x_first: bool, transposed: bool = False, transposed_at: int | None = None) -> Any:
    """A backend's convolution backward: ``(input, grad_output, weight, ...)`` when ``x_first``,
    else ``(grad_output, input, weight, ...)``; the output_mask is its last list of bools;
    ``transposed_at``: the position of a ``transposed`` flag among the arguments after the weight."""

    def formula(first: Shape, second: Shape, w: Shape, *args: object, out_shape: object = None,
                **kwargs: object) -> Cost:
        x, grad_out = (first, second) if x_first else (second, first)
        mask = kwargs.get("output_mask") or next(
            (a for a in reversed(args) if isinstance(a, (list, tuple)) and a and all(isinstance(b, bool) for b in a)),
            (True, True, True))
        flipped = bool(args[transposed_at]) if transposed_at is not None else transposed
        return convolution_backward(grad_out, x, w, None, (), (), (), flipped, (), 1, list(mask),  # type: ignore[arg-type]
                                    out_shape=out_shape)

    return formula


_CUDNN_MODES = {0: "rnn", 1: "rnn", 2: "lstm", 3: "gru"}  # RNN_RELU, RNN_TANH, LSTM, GRU


def _rnn_kernel(x: Shape, weights: Sequence[Shape], mode: int, num_layers: int, bidirectional: bool,
                dropout: float, train: bool, batch_sizes: Sequence[int]) -> Cost:
    kind = _CUDNN_MODES[int(mode)]
    directions = 2 if bidirectional else 1
    per_unit = len(weights) // (int(num_layers) * directions)
    has_biases = per_unit >= 4
    tokens = x[0] if batch_sizes else numel(x[:-1])
    return recurrent_layers(kind, tokens, weights, has_biases=has_biases, num_layers=int(num_layers),
                            bidirectional=bool(bidirectional), dropout=float(dropout), train=bool(train))


def cudnn_rnn(x: Shape, weights: Sequence[Shape], weight_stride0: int, weight_buf: object, hx: Shape, cx: object,
              mode: int, hidden_size: int, proj_size: int, num_layers: int, batch_first: bool, dropout: float,
              train: bool, bidirectional: bool, batch_sizes: Sequence[int], *args: object, out_shape: object = None,
              **kwargs: object) -> Cost:
    """``_cudnn_rnn(input, weights, ..., mode, hidden_size, proj_size, num_layers, batch_first,
    dropout, train, bidirectional, batch_sizes, dropout_state)``: ``torch.lstm``'s count."""
    return _rnn_kernel(x, weights, mode, num_layers, bidirectional, dropout, train, batch_sizes)


def miopen_rnn(x: Shape, weights: Sequence[Shape], weight_stride0: int, hx: Shape, cx: object, mode: int,
               hidden_size: int, num_layers: int, batch_first: bool, dropout: float, train: bool,
               bidirectional: bool, batch_sizes: Sequence[int], *args: object, out_shape: object = None,
               **kwargs: object) -> Cost:
    """``miopen_rnn(input, weights, weight_stride0, hx, cx, mode, hidden_size, num_layers, ...)``."""
    return _rnn_kernel(x, weights, mode, num_layers, bidirectional, dropout, train, batch_sizes)


def lstm_mps(x: Shape, hx: object, params: Sequence[Shape], has_biases: bool, num_layers: int, dropout: float,
             train: bool, bidirectional: bool, batch_first: bool, *args: object, out_shape: object = None,
             **kwargs: object) -> Cost:
    """``_lstm_mps(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)``."""
    return recurrent_layers("lstm", numel(x[:-1]), params, has_biases=bool(has_biases), num_layers=int(num_layers),
                            bidirectional=bool(bidirectional), dropout=float(dropout), train=bool(train))


def _rnn_backward(mode_at: int, layers_at: int, bidirectional_at: int) -> Any:
    """``_cudnn_rnn_backward`` / ``miopen_rnn_backward(input, weights, weight_stride0, ...)``: each
    projection's two gradient products and the gate derivatives, twice the forward (the rule of
    ``mkldnn_rnn_layer_backward``); the positions are those of the arguments after ``weight_stride0``."""

    def formula(x: Shape, weights: Sequence[Shape], weight_stride0: int, *args: Any, out_shape: object = None,
                **kwargs: object) -> Cost:
        forward = _rnn_kernel(x, weights, args[mode_at], args[layers_at], args[bidirectional_at], 0.0, False,
                              args[bidirectional_at + 1])
        return (2 * forward[0], 2 * forward[1])

    return formula


def lstm_mps_backward(grad_y: object, grad_hy: object, grad_cy: object, z_state: object, cell_state: object,
                      x: Shape, layers_outputs: object, hx: object, params: Sequence[Shape], has_biases: bool,
                      num_layers: int, dropout: float, train: bool, bidirectional: bool, *args: object,
                      out_shape: object = None, **kwargs: object) -> Cost:
    """``lstm_mps_backward(..., input, layersOutputs, hx, params, has_biases, num_layers, ...)``:
    twice the forward, as every recurrent backward here."""
    forward = recurrent_layers("lstm", numel(x[:-1]), params, has_biases=bool(has_biases),
                               num_layers=int(num_layers), bidirectional=bool(bidirectional), dropout=0.0,
                               train=False)
    return (2 * forward[0], 2 * forward[1])


def linear_kernel(x: Shape, weight: Shape, bias: Shape | None = None, *args: object, out_shape: object = None,
                  **kwargs: object) -> Cost:
    """``mkldnn_linear(input, weight, bias)`` and ``linear.out``: a linear layer."""
    return dot_products(numel(first_shape(out_shape)), x[-1], bias=kwargs.get("bias", bias) is not None)


def mixed_dtypes_linear(x: Shape, weight: Shape, scale: Shape, *args: object, out_shape: object = None,
                        **kwargs: object) -> Cost:
    """``_mixed_dtypes_linear(input, weight, scale, *, bias, activation)``: a linear layer on a
    dequantized weight (+ one per output for the fused activation)."""
    out = first_shape(out_shape)
    cost = dot_products(numel(out), x[-1], bias=kwargs.get("bias") is not None)
    return _plus(cost, numel(out) if kwargs.get("activation") else 0)


RULES = {
    "cudnn_convolution": conv(None),
    "cudnn_convolution_transpose": conv(None, transposed=True),
    "cudnn_convolution_relu": conv(2, fused=1),
    "cudnn_convolution_add_relu": conv(4, fused=2),
    "miopen_convolution": conv(2),
    "miopen_depthwise_convolution": conv(2),
    "miopen_convolution_transpose": conv(2, transposed=True),
    "miopen_convolution_relu": conv(2, fused=1),
    "miopen_convolution_add_relu": conv(4, fused=2),
    "mkldnn_convolution": conv(2),
    "_mps_convolution": conv(2),
    "_mps_convolution_transpose": conv(None, transposed=True),
    "_nnpack_spatial_convolution": conv(2),
    "_conv_depthwise2d": conv(3),
    "conv_depthwise3d": conv(3),
    "slow_conv_dilated2d": conv(3),
    "slow_conv_dilated3d": conv(3),
    "_slow_conv2d_forward": conv(3),
    "slow_conv3d_forward": conv(3),
    "slow_conv_transpose2d": conv(3, transposed=True),
    "slow_conv_transpose3d": conv(3, transposed=True),
    "conv_tbc": conv_tbc,
    "mps_convolution_backward": conv_backward_kernel(x_first=True),
    "mps_convolution_transpose_backward": conv_backward_kernel(x_first=True, transposed=True),
    "_slow_conv2d_backward": conv_backward_kernel(x_first=False),
    "convolution_backward_overrideable": conv_backward_kernel(x_first=False, transposed_at=3),
    "_cudnn_rnn": cudnn_rnn,
    "miopen_rnn": miopen_rnn,
    "_lstm_mps": lstm_mps,
    "lstm_mps_backward": lstm_mps_backward,
    "mkldnn_linear_backward": linear_backward,
    "mkldnn_linear": linear_kernel,
    "_mixed_dtypes_linear": mixed_dtypes_linear,
    "_cudnn_rnn_backward": _rnn_backward(7, 10, 14),
    "miopen_rnn_backward": _rnn_backward(7, 9, 13),
    "convolution_overrideable": convolution,
    "linear.out": linear_kernel,
}

COUNTS_INTEGER_WORK = True  # like conv.py and matmul.py: integer convolutions and products are compute
