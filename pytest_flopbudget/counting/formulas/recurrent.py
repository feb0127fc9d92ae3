"""Recurrent layers: RNN (tanh/relu), LSTM (with or without projections), GRU, and their cells.

Every token (one batch element at one time step) of every layer and direction runs the same
work, so a layer costs tokens × the per-token cost below; packed sequences count the tokens they
hold. With G gates (RNN 1, GRU 3, LSTM 4), hidden size H, layer input size I (the model's input
for layer 0, ``directions · H_out`` above it) and recurrent input size H_out (H, or the LSTM's
``proj_size`` P):

    input projection   G·H dot products of I terms      (+ G·H adds with the b_ih bias)
    hidden projection  G·H dot products of H_out terms  (+ G·H adds with the b_hh bias)
    gate work, per H   RNN 2:  gates sum, tanh/relu
                       GRU 10: r and z (sum + sigmoid each), n = tanh(i_n + r·h_n) (3),
                               h' = n + z·(h − n) (3)
                       LSTM 13: gates sum (4), 3 sigmoids and a tanh (4), c' = f·c + i·g (3),
                                tanh(c') (1), h' = o·tanh(c') (1)
    LSTM projection    P dot products of H terms (no bias)
    dropout            between layers in training with dropout > 0: two per output element (the
                       project's dropout rule: scale the mask, multiply)

This is exactly what torch's decomposed path runs op by op (the rule for every other family,
applied to the cell's ops), and the unit count below is used on every device, whether aten runs
``mkldnn_rnn_layer`` (CPU), cudnn, or the decomposed cells: ``torch.lstm``/``torch.gru``/
``torch.rnn_*`` and the ``*_cell`` functions are counted as one unit each. ``macs`` follows the
same split: a dot product of K terms is K MACs (+1 with a bias), gate work one per element.
Initial zero states, the stacking of outputs and the gate chunking are free.
"""

from __future__ import annotations

from typing import Sequence

from pytest_flopbudget.counting.formulas import Cost, Shape, by_name, dot_products, numel, sum_costs

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
GATE_WORK = {"rnn": 2, "gru": 10, "lstm": 13}  # elementwise operations per hidden unit, per token


def cell_per_token(kind: str, input_size: int, hidden: int, recurrent_size: int, *, bias: bool,
                   proj_size: int = 0) -> Cost:
    """One token through one layer and direction: the two projections, the gate work, and the
    LSTM's output projection when ``proj_size`` > 0 (then ``recurrent_size`` is ``proj_size``)."""
    gates = GATES[kind] * hidden
    work = GATE_WORK[kind] * hidden
    costs = [
        dot_products(gates, input_size, bias=bias),
        dot_products(gates, recurrent_size, bias=bias),
        (work, work),
    ]
    if proj_size:
        costs.append(dot_products(proj_size, hidden))
    return sum_costs(*costs)


def recurrent_layers(kind: str, tokens: int, params: Sequence[Shape], *, has_biases: bool,
                     num_layers: int, bidirectional: bool, dropout: float, train: bool) -> Cost:
    """A stacked, possibly bidirectional recurrent network from the shapes of its flat weight
    list (per layer and direction: w_ih, w_hh, [b_ih, b_hh], [w_hr]), as torch passes it."""
    directions = 2 if bidirectional else 1
    per_unit = len(params) // (num_layers * directions)
    has_proj = per_unit - (4 if has_biases else 2) == 1
    costs = []
    out_features = 0
    for unit in range(num_layers * directions):
        weights = params[unit * per_unit:(unit + 1) * per_unit]
        w_ih, w_hh = weights[0], weights[1]
        hidden = w_ih[0] // GATES[kind]
        proj = weights[-1][0] if has_proj else 0
        per_token = cell_per_token(kind, w_ih[1], hidden, w_hh[1], bias=has_biases, proj_size=proj)
        costs.append((tokens * per_token[0], tokens * per_token[1]))
        out_features = proj or hidden
    if train and dropout > 0 and num_layers > 1:
        n = 2 * (num_layers - 1) * tokens * directions * out_features  # two per element, as dropout
        costs.append((n, n))
    return sum_costs(*costs)


def _network(kind: str):  # type: ignore[no-untyped-def]
    @by_name
    def formula(*, params: Sequence[Shape], has_biases: bool, num_layers: int, dropout: float, train: bool,
                bidirectional: bool, input: Shape | None = None, data: Shape | None = None,
                out_shape: object = None, **kwargs: object) -> Cost:
        """``aten.<kind>.input(input, hx, params, has_biases, num_layers, dropout, train,
        bidirectional, batch_first)`` or, for a packed sequence, ``aten.<kind>.data(data,
        batch_sizes, hx, params, has_biases, ...)``, bound by these names: a packed sequence's
        ``data`` holds one row per token, ``input`` is (..., features)."""
        tokens = data[0] if data is not None else numel(input[:-1])  # type: ignore[index]
        return recurrent_layers(
            kind, tokens, params, has_biases=bool(has_biases), num_layers=int(num_layers),
            bidirectional=bool(bidirectional), dropout=float(dropout), train=bool(train),
        )

    formula.__name__ = f"{kind}_network"
    return formula


def _cell(kind: str):  # type: ignore[no-untyped-def]
    def formula(x: Shape, hx: object, w_ih: Shape, w_hh: Shape, b_ih: Shape | None = None,
                b_hh: Shape | None = None, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
        """``torch.<kind>_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None)``."""
        tokens = numel(x[:-1])
        hidden = w_ih[0] // GATES[kind]
        cost = cell_per_token(kind, w_ih[1], hidden, w_hh[1], bias=b_ih is not None)
        return (tokens * cost[0], tokens * cost[1])

    formula.__name__ = f"{kind}_cell"
    return formula


def mkldnn_rnn_layer(input: Shape, weight0: Shape, weight1: Shape, weight2: Shape | None,
                     weight3: Shape | None, hx_: object = None, cx_: object = None, reverse: object = None,
                     batch_sizes: object = None, mode: object = None, hidden_size: object = None,
                     num_layers: object = None, has_biases: object = True, *args: object,
                     out_shape: object = None, **kwargs: object) -> Cost:
    """``mkldnn_rnn_layer``: one LSTM layer in one direction (CPU's fused kernel); seen only when
    the LSTM is not counted as one unit. Parameters carry the schema's names up to ``has_biases``,
    so the arguments bind by name (tests/counting/test_torch_internals.py compares them)."""
    w_ih, w_hh = weight0, weight1
    hidden = w_ih[0] // GATES["lstm"]
    cost = cell_per_token("lstm", w_ih[1], hidden, w_hh[1], bias=bool(has_biases))
    tokens = numel(input[:-1])
    return (tokens * cost[0], tokens * cost[1])


def mkldnn_rnn_layer_backward(input: Shape, weight1: Shape, weight2: Shape, weight3: Shape | None,
                              weight4: Shape | None, hx_: object = None, cx_tmp: object = None,
                              output: object = None, hy_: object = None, cy_: object = None,
                              grad_output: object = None, grad_hy: object = None, grad_cy: object = None,
                              reverse: object = None, mode: object = None, hidden_size: object = None,
                              num_layers: object = None, has_biases: object = True, *args: object,
                              out_shape: object = None, **kwargs: object) -> Cost:
    """The fused LSTM layer's backward, per token: each projection's two gradient products (input
    and weight, each as large as the forward product), the bias gradients (one add per gate
    output and bias) and the gate derivatives (the forward's 13·H again)."""
    w_ih, w_hh = weight1, weight2
    hidden = w_ih[0] // GATES["lstm"]
    gates = GATES["lstm"] * hidden
    products = sum_costs(dot_products(gates, w_ih[1]), dot_products(gates, w_hh[1]))
    work = GATE_WORK["lstm"] * hidden + (2 * gates if bool(has_biases) else 0)
    tokens = numel(input[:-1])
    return (tokens * (2 * products[0] + work), tokens * (2 * products[1] + work))


RULES = {
    "mkldnn_rnn_layer": mkldnn_rnn_layer,
    "mkldnn_rnn_layer_backward": mkldnn_rnn_layer_backward,
}

FUNCTION_RULES = {
    "torch.lstm": ("aten.lstm", _network("lstm")),
    "torch.gru": ("aten.gru", _network("gru")),
    "torch.rnn_tanh": ("aten.rnn_tanh", _network("rnn")),
    "torch.rnn_relu": ("aten.rnn_relu", _network("rnn")),
    "torch.lstm_cell": ("aten.lstm_cell", _cell("lstm")),
    "torch.gru_cell": ("aten.gru_cell", _cell("gru")),
    "torch.rnn_tanh_cell": ("aten.rnn_tanh_cell", _cell("rnn")),
    "torch.rnn_relu_cell": ("aten.rnn_relu_cell", _cell("rnn")),
}
