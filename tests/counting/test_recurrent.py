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


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_backward_counts_forward_then_more(device):
    model = nn.LSTM(4, 5)
    forward = fb.measure(model, X, device=device)
    both = fb.measure(model, X, device=device, backward=True)
    assert both.uncounted == {}
    # the fused layer's backward: two gradient products per projection, bias and gate work
    products = 20 * 7 + 20 * 9
    assert both.flops - forward.flops == 6 * (2 * products + 2 * 20 + 13 * 5)
