"""Recurrent layers counted by hand: one total on cpu (fused mkldnn kernel) and meta, as a unit
and op by op."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pytest_flopbudget as fb
from pytest_flopbudget.counting.formulas import recurrent
from pytest_flopbudget.counting.registry import Registry

DEVICES = ("cpu", "meta")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
WORK = {"rnn": 2, "gru": 10, "lstm": 13}


def per_token(kind, i, h, hr=None, bias=True, proj=0):
    """One token, one layer and direction, worked from the module docstring's table."""
    hr = hr or h
    g = GATES[kind] * h
    flops = g * (2 * i - 1) + g * (2 * hr - 1) + WORK[kind] * h + (2 * g if bias else 0)
    macs = g * i + g * hr + WORK[kind] * h + (2 * g if bias else 0)
    if proj:
        flops += proj * (2 * h - 1)
        macs += proj * h
    return flops, macs


def test_per_token_formula_lstm_by_hand():
    # LSTM I=4, H=5: 20 dot products of 4 and of 5, 40 bias adds, 65 gate operations
    assert recurrent.cell_per_token("lstm", 4, 5, 5, bias=True) == (20 * 7 + 20 * 9 + 40 + 65, 80 + 100 + 40 + 65)
    assert recurrent.cell_per_token("gru", 4, 5, 5, bias=False) == (15 * 7 + 15 * 9 + 50, 60 + 75 + 50)


def test_recurrent_layers_formula_from_weight_shapes():
    # 2-layer bidirectional GRU, I=4, H=5, no bias: layer 1's input is 2·5
    params = [(15, 4), (15, 5)] * 2 + [(15, 10), (15, 5)] * 2
    got = recurrent.recurrent_layers("gru", 6, params, has_biases=False, num_layers=2,
                                     bidirectional=True, dropout=0.0, train=False)
    l0, l1 = per_token("gru", 4, 5, bias=False), per_token("gru", 10, 5, bias=False)
    assert got == (6 * 2 * (l0[0] + l1[0]), 6 * 2 * (l0[1] + l1[1]))


X = torch.randn(3, 2, 4)  # T=3, B=2, I=4: six tokens
CASES = [
    ("lstm", lambda: nn.LSTM(4, 5), [per_token("lstm", 4, 5)]),
    ("lstm_nobias", lambda: nn.LSTM(4, 5, bias=False), [per_token("lstm", 4, 5, bias=False)]),
    ("lstm_proj", lambda: nn.LSTM(4, 5, proj_size=3), [per_token("lstm", 4, 5, hr=3, proj=3)]),
    ("gru", lambda: nn.GRU(4, 5), [per_token("gru", 4, 5)]),
    ("rnn_tanh", lambda: nn.RNN(4, 5), [per_token("rnn", 4, 5)]),
    ("rnn_relu", lambda: nn.RNN(4, 5, nonlinearity="relu"), [per_token("rnn", 4, 5)]),
    ("lstm_2layer_bidir", lambda: nn.LSTM(4, 5, num_layers=2, bidirectional=True),
     [per_token("lstm", 4, 5)] * 2 + [per_token("lstm", 10, 5)] * 2),
    ("gru_3layer_bidir", lambda: nn.GRU(4, 5, num_layers=3, bidirectional=True),
     [per_token("gru", 4, 5)] * 2 + [per_token("gru", 10, 5)] * 4),
    # no biases, two layers, both directions: has_biases, num_layers and bidirectional all change the count
    ("lstm_2layer_bidir_nobias", lambda: nn.LSTM(4, 5, num_layers=2, bidirectional=True, bias=False),
     [per_token("lstm", 4, 5, bias=False)] * 2 + [per_token("lstm", 10, 5, bias=False)] * 2),
    ("gru_2layer_bidir_nobias", lambda: nn.GRU(4, 5, num_layers=2, bidirectional=True, bias=False),
     [per_token("gru", 4, 5, bias=False)] * 2 + [per_token("gru", 10, 5, bias=False)] * 2),
    ("lstm_proj_bidir_batch_first", lambda: nn.LSTM(4, 5, num_layers=2, proj_size=2, bidirectional=True, batch_first=True),
     [per_token("lstm", 4, 5, hr=2, proj=2)] * 2 + [per_token("lstm", 4, 5, hr=2, proj=2)] * 2),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, build, units", CASES, ids=[c[0] for c in CASES])
def test_recurrent_networks_by_hand(device, name, build, units):
    model = build().eval()
    m = fb.measure(model, X, device=device)
    tokens = 6
    assert (m.flops, m.macs) == (tokens * sum(u[0] for u in units), tokens * sum(u[1] for u in units))
    assert m.uncounted == {}
    with torch.no_grad():
        assert fb.measure(model, X, device=device).flops == m.flops


@pytest.mark.parametrize("name, build, units", CASES, ids=[c[0] for c in CASES])
def test_unit_count_equals_op_by_op_count(name, build, units):
    """Without the composite rules CPU runs mkldnn_rnn_layer (LSTM) or the decomposed cells
    (GRU, RNN, LSTM with projections): the same total."""
    bare = Registry()
    bare.function_rules.clear()
    model = build().eval()
    assert fb.measure(model, X, device="cpu", registry=bare).flops == fb.measure(model, X, device="cpu").flops


@pytest.mark.parametrize("device", DEVICES)
def test_inter_layer_dropout_in_training(device):
    model = nn.GRU(4, 5, num_layers=3, dropout=0.5).train()
    m = fb.measure(model, X, device=device)
    body = 6 * (per_token("gru", 4, 5)[0] + 2 * per_token("gru", 5, 5)[0])
    assert m.flops == body + 2 * (2 * 6 * 5)  # after layers 0 and 1, two per element


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "kind, build",
    [("lstm", lambda: nn.LSTMCell(4, 5)), ("gru", lambda: nn.GRUCell(4, 5)),
     ("rnn", lambda: nn.RNNCell(4, 5)), ("rnn", lambda: nn.RNNCell(4, 5, nonlinearity="relu"))],
)
def test_cells_by_hand(device, kind, build):
    cell = build()
    m = fb.measure(cell, torch.randn(2, 4), device=device)
    one = per_token(kind, 4, 5)
    assert (m.flops, m.macs) == (2 * one[0], 2 * one[1])
    unbatched = fb.measure(cell, torch.randn(4), device=device)
    assert (unbatched.flops, unbatched.macs) == one


def test_packed_sequence_counts_its_tokens():
    model = nn.LSTM(4, 5, batch_first=True)
    x = torch.randn(3, 4, 4)
    packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([4, 2, 1]), batch_first=True)
    m = fb.measure(model, (packed,))
    assert m.flops == 7 * per_token("lstm", 4, 5)[0]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_packed_bidirectional_network_without_biases_in_training(kind):
    """aten.<kind>.data, bound by name: the tokens the packed data holds, no bias adds, two layers
    (the second reading both directions' 2·5 outputs) and dropout after the first in training.
    Every argument the formula reads changes this count, so reading any one from the wrong place
    (the .input overload's positions) misses it."""
    model = getattr(nn, kind)(4, 5, num_layers=2, bidirectional=True, bias=False, dropout=0.5).train()
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(4, 3, 4), torch.tensor([4, 2, 1]))  # 7 tokens
    m = fb.measure(model, (packed,))
    layer0, layer1 = per_token(kind.lower(), 4, 5, bias=False), per_token(kind.lower(), 10, 5, bias=False)
    dropout = 2 * 7 * 2 * 5  # layer 0's outputs, 7 tokens x 2 directions x 5, two operations each
    assert (m.flops, m.macs) == (7 * 2 * (layer0[0] + layer1[0]) + dropout, 7 * 2 * (layer0[1] + layer1[1]) + dropout)


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_backward_counts_forward_then_more(device):
    model = nn.LSTM(4, 5)
    forward = fb.measure(model, X, device=device)
    both = fb.measure(model, X, device=device, backward=True)
    assert both.uncounted == {}
    # the fused layer's backward: two gradient products per projection, bias and gate work
    products = 20 * 7 + 20 * 9
    assert both.flops - forward.flops == 6 * (2 * products + 2 * 20 + 13 * 5)


# -- shape level: the formula called with plain shapes --
# The units the counter calls: torch.lstm/gru/rnn_* (input, hx, params, has_biases, num_layers,
# dropout, train, bidirectional, batch_first) or their packed form (data, batch_sizes, hx, params,
# ...), the *_cell functions (input, hx, w_ih, w_hh, b_ih, b_hh), and CPU's mkldnn_rnn_layer.
# Per token, written out from the module docstring's table (G gates, H hidden, I input):
# LSTM I=4, H=5 with biases: input projection 20 dot products of 4 + 20 bias adds, hidden
# projection 20 of 5 + 20, gate work 13·5.
LSTM_TOKEN = (20 * (2 * 4 - 1) + 20 + 20 * (2 * 5 - 1) + 20 + 13 * 5, 20 * 4 + 20 + 20 * 5 + 20 + 13 * 5)
LSTM_PARAMS = [(20, 4), (20, 5), (20,), (20,)]


def network(kind):
    """torch.<kind>'s formula called as the counter calls it: the arguments bound by name to
    aten.<kind>'s schema (the .input overload, or .data for a packed sequence) first."""
    rule = Registry().function_rules[getattr(torch, kind)]
    assert rule.formula is recurrent.FUNCTION_RULES[f"torch.{kind}"][1]

    def call(*args, out_shape=None):
        bound_args, bound_kwargs = rule.bind(args, {})
        return rule.formula(*bound_args, out_shape=out_shape, **bound_kwargs)

    return call


def cell(kind):
    return recurrent.FUNCTION_RULES[f"torch.{kind}_cell"][1]


def test_shape_lstm_network():
    # (T=3, B=2, I=4): six tokens
    got = network("lstm")((3, 2, 4), [(1, 2, 5), (1, 2, 5)], LSTM_PARAMS, True, 1, 0.0, False, False, False,
                          out_shape=((3, 2, 5), (1, 2, 5), (1, 2, 5)))
    assert got == (6 * LSTM_TOKEN[0], 6 * LSTM_TOKEN[1])


def test_shape_packed_lstm_counts_the_tokens_it_holds():
    # packed data (5, 4) with batch_sizes (3,): five tokens
    got = network("lstm")((5, 4), (3,), [(1, 2, 5), (1, 2, 5)], LSTM_PARAMS, True, 1, 0.0, False, False,
                          out_shape=((5, 5), (1, 2, 5), (1, 2, 5)))
    assert got == (5 * LSTM_TOKEN[0], 5 * LSTM_TOKEN[1])


def test_shape_lstm_with_projection():
    # proj_size 3: the hidden projection contracts 3 terms, and 3 outputs of 5 terms project h
    per_token = (20 * 7 + 20 + 20 * (2 * 3 - 1) + 20 + 13 * 5 + 3 * (2 * 5 - 1), 20 * 4 + 20 + 20 * 3 + 20 + 13 * 5 + 3 * 5)
    params = [(20, 4), (20, 3), (20,), (20,), (3, 5)]
    got = network("lstm")((3, 2, 4), [(1, 2, 3), (1, 2, 5)], params, True, 1, 0.0, False, False, False,
                          out_shape=((3, 2, 3), (1, 2, 3), (1, 2, 5)))
    assert got == (6 * per_token[0], 6 * per_token[1])


@pytest.mark.parametrize("train, dropout_elements", [(False, 0), (True, 2 * 6 * 5)], ids=["eval", "train"])
def test_shape_two_layer_bidirectional_gru(train, dropout_elements):
    # batch_first (B=2, T=3, I=4), H=5, no bias, dropout 0.5: layer 1's input is 2·5 wide; in
    # training the layer-0 outputs (6 tokens × 2 directions × 5) are dropped out, two per element
    layer0 = (15 * (2 * 4 - 1) + 15 * (2 * 5 - 1) + 10 * 5, 15 * 4 + 15 * 5 + 10 * 5)
    layer1 = (15 * (2 * 10 - 1) + 15 * (2 * 5 - 1) + 10 * 5, 15 * 10 + 15 * 5 + 10 * 5)
    params = [(15, 4), (15, 5)] * 2 + [(15, 10), (15, 5)] * 2
    got = network("gru")((2, 3, 4), (4, 2, 5), params, False, 2, 0.5, train, True, True,
                         out_shape=((2, 3, 10), (4, 2, 5)))
    extra = 2 * dropout_elements
    assert got == (6 * 2 * (layer0[0] + layer1[0]) + extra, 6 * 2 * (layer0[1] + layer1[1]) + extra)


@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu"])
def test_shape_elman_rnn(kind):
    # H=5 with biases: 5 dot products of 4 and of 5, 10 bias adds, the sum and the nonlinearity 2·5
    per_token = (5 * 7 + 5 * 9 + 10 + 2 * 5, 5 * 4 + 5 * 5 + 10 + 2 * 5)
    got = network(kind)((3, 2, 4), (1, 2, 5), [(5, 4), (5, 5), (5,), (5,)], True, 1, 0.0, False, False, False,
                        out_shape=((3, 2, 5), (1, 2, 5)))
    assert got == (6 * per_token[0], 6 * per_token[1])


def test_shape_cells():
    # a cell runs one step for each batch row
    lstm = cell("lstm")((2, 4), [(2, 5), (2, 5)], (20, 4), (20, 5), (20,), (20,), out_shape=((2, 5), (2, 5)))
    assert lstm == (2 * LSTM_TOKEN[0], 2 * LSTM_TOKEN[1])
    # GRU without bias, batch 3: 15 dot products of 4 and of 5, gate work 10·5
    gru = cell("gru")((3, 4), (3, 5), (15, 4), (15, 5), None, None, out_shape=(3, 5))
    assert gru == (3 * (15 * 7 + 15 * 9 + 50), 3 * (15 * 4 + 15 * 5 + 50))
    rnn = cell("rnn_tanh")((3, 4), (3, 5), (5, 4), (5, 5), (5,), (5,), out_shape=(3, 5))
    assert rnn == (3 * (5 * 7 + 5 * 9 + 10 + 10), 3 * (5 * 4 + 5 * 5 + 10 + 10))


@pytest.mark.parametrize("has_biases", [True, False])
def test_shape_mkldnn_rnn_layer(has_biases):
    # mkldnn_rnn_layer(input, w_ih, w_hh, b_ih, b_hh, hx, cx, reverse, batch_sizes, mode,
    # hidden_size, num_layers, has_biases, bidirectional, batch_first, train)
    biases = 2 * 20 if has_biases else 0
    per_token = (LSTM_TOKEN[0] - 2 * 20 + biases, LSTM_TOKEN[1] - 2 * 20 + biases)
    got = recurrent.RULES["mkldnn_rnn_layer"]((3, 2, 4), (20, 4), (20, 5), (20,), (20,), (2, 5), (2, 5), False,
                                              [], 2, 5, 1, has_biases, False, False, False,
                                              out_shape=((3, 2, 5), (2, 5), (2, 5), (0,)))
    assert got == (6 * per_token[0], 6 * per_token[1])


def test_shape_mkldnn_rnn_layer_backward():
    # per token: each projection's input and weight gradients, each as large as its forward
    # product (2 × (20·7 + 20·9) flops, 2 × (20·4 + 20·5) macs), the bias gradients (2·20) and
    # the gate derivatives (13·5)
    per_token = (2 * (20 * 7 + 20 * 9) + 2 * 20 + 13 * 5, 2 * (20 * 4 + 20 * 5) + 2 * 20 + 13 * 5)
    got = recurrent.RULES["mkldnn_rnn_layer_backward"](
        (3, 2, 4), (20, 4), (20, 5), (20,), (20,), (2, 5), (2, 5), (3, 2, 5), (2, 5), (2, 5), (3, 2, 5), None, None,
        False, 2, 5, 1, True, True, False, [], False, (0,),
        out_shape=((3, 2, 4), (20, 4), (20, 5), (20,), (20,), (2, 5), (2, 5)))
    assert got == (6 * per_token[0], 6 * per_token[1])
