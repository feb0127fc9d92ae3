"""Every function-level rule (a composite function counted as one unit) counts a call made with
keyword arguments exactly like the same call made positionally: the call is bound to the
function's real signature before the formula sees it (diffusers calls
``F.scaled_dot_product_attention(query=..., key=..., value=...)``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pytest_flopbudget as fb
from counting_helpers import Fn
from pytest_flopbudget.counting.registry import default_registry


def schema_names(op) -> list[str]:
    """The argument names torch's own schema gives the builtin (independent of the engine)."""
    return [a.name for a in op._schema.arguments]


def as_keywords(names, args) -> dict:
    return dict(zip(names[: len(args)], args))


def dots(n, k, bias=False):
    return n * (2 * k - 1) + (n if bias else 0)


def attention_flops(heads, length, source, embed, value_dim, *, masked):
    scores = heads * length * source
    return dots(scores, embed) + scores * (2 + int(masked)) + dots(heads * length * value_dim, source)


Q, K, V, MASK = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 6), torch.randn(5, 7)
SDPA_NAMES = ["query", "key", "value", "attn_mask"]
SDPA_EXPECTED = attention_flops(8, 5, 7, 8, 6, masked=True)


def _lstm_args():
    lstm = nn.LSTM(4, 5, num_layers=2)
    x = torch.randn(3, 2, 4)
    hx = [torch.zeros(2, 2, 5), torch.zeros(2, 2, 5)]
    return (x, hx, list(lstm._flat_weights), True, 2, 0.0, False, False, False)


def _gru_args(fn_name):
    kind = {"gru": nn.GRU, "rnn_tanh": nn.RNN, "rnn_relu": nn.RNN}[fn_name]
    extra = {"nonlinearity": "relu"} if fn_name == "rnn_relu" else {}
    net = kind(4, 5, **extra)
    return (torch.randn(3, 2, 4), torch.zeros(1, 2, 5), list(net._flat_weights), True, 1, 0.0, False, False, False)


def _cell_args(gates):
    hx = (torch.zeros(3, 5), torch.zeros(3, 5)) if gates == 4 else torch.zeros(3, 5)
    return (torch.randn(3, 4), hx, torch.randn(gates * 5, 4), torch.randn(gates * 5, 5),
            torch.randn(gates * 5), torch.randn(gates * 5))


def _mha_forward_args():
    mha = nn.MultiheadAttention(16, 4)
    x = torch.randn(5, 3, 16)
    names = ["query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight", "in_proj_bias",
             "bias_k", "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight", "out_proj_bias", "training",
             "key_padding_mask", "need_weights"]
    args = (x, x, x, 16, 4, mha.in_proj_weight, mha.in_proj_bias, None, None, False, 0.0,
            mha.out_proj.weight, mha.out_proj.bias, False, None, False)
    return names, args


def _native_mha_args():
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    x = torch.randn(3, 5, 16)
    return (x, x, x, 16, 4, mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias,
            None, False, True)


def _encoder_layer_args():
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
    a = layer.self_attn
    x = torch.randn(3, 5, 16)
    return (x, 16, 4, a.in_proj_weight, a.in_proj_bias, a.out_proj.weight, a.out_proj.bias, False, False,
            1e-5, layer.norm1.weight, layer.norm1.bias, layer.norm2.weight, layer.norm2.bias,
            layer.linear1.weight, layer.linear1.bias, layer.linear2.weight, layer.linear2.bias, None)


def cases():
    """(function, positional args, keyword names) for every function-level rule."""
    aten = torch.ops.aten
    x3 = torch.randn(2, 3, 8)
    out = [
        (F.scaled_dot_product_attention, (Q, K, V, MASK), SDPA_NAMES),
        (aten.scaled_dot_product_attention, (Q, K, V, MASK), SDPA_NAMES),
        (aten.scaled_dot_product_attention.default, (Q, K, V, MASK), SDPA_NAMES),
        (aten._scaled_dot_product_attention_math, (Q, K, V, MASK), SDPA_NAMES),
        (aten._scaled_dot_product_attention_math.default, (Q, K, V, MASK), SDPA_NAMES),
        (F.multi_head_attention_forward, *reversed(_mha_forward_args())),
        (torch._native_multi_head_attention, _native_mha_args(),
         schema_names(aten._native_multi_head_attention.default)),
        (torch._transformer_encoder_layer_fwd, _encoder_layer_args(),
         schema_names(aten._transformer_encoder_layer_fwd.default)),
        (F.rms_norm, (x3, [8], torch.randn(8), 1e-6), ["input", "normalized_shape", "weight", "eps"]),
        (torch.rms_norm, (x3, [8], torch.randn(8), 1e-6), schema_names(aten.rms_norm.default)),
        (F.softsign, (x3,), ["input"]),
        (F.tanhshrink, (x3,), ["input"]),
        (F.softmin, (x3, 1), ["input", "dim"]),
        (F.lp_pool1d, (x3, 2.0, 2), ["input", "norm_type", "kernel_size"]),
        (F.lp_pool2d, (torch.randn(1, 2, 4, 4), 2.0, 2), ["input", "norm_type", "kernel_size"]),
        (F.lp_pool3d, (torch.randn(1, 2, 4, 4, 4), 2.0, 2), ["input", "norm_type", "kernel_size"]),
        (torch.lstm, _lstm_args(), schema_names(aten.lstm.input)),
        (torch.gru, _gru_args("gru"), schema_names(aten.gru.input)),
        (torch.rnn_tanh, _gru_args("rnn_tanh"), schema_names(aten.rnn_tanh.input)),
        (torch.rnn_relu, _gru_args("rnn_relu"), schema_names(aten.rnn_relu.input)),
        (torch.lstm_cell, _cell_args(4), schema_names(aten.lstm_cell.default)),
        (torch.gru_cell, _cell_args(3), schema_names(aten.gru_cell.default)),
        (torch.rnn_tanh_cell, _cell_args(1), schema_names(aten.rnn_tanh_cell.default)),
        (torch.rnn_relu_cell, _cell_args(1), schema_names(aten.rnn_relu_cell.default)),
    ]
    return out


CASES = cases()


def _id(case) -> str:
    fn = case[0]
    return str(fn) if isinstance(fn, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)) else fn.__name__


def test_every_function_rule_has_a_keyword_case():
    covered = {case[0] for case in CASES}
    missing = [fn for fn in default_registry().function_rules if fn not in covered]
    assert missing == []


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_keyword_call_counts_like_the_positional_call(case):
    fn, args, names = case
    assert len(names) >= len(args)
    keywords = as_keywords(names, args)  # every argument given by name
    positional = fb.measure(Fn(lambda: fn(*args)), ())
    by_keyword = fb.measure(Fn(lambda: fn(**keywords)), ())
    assert by_keyword.uncounted == positional.uncounted == {}
    assert (by_keyword.flops, by_keyword.macs, by_keyword.ops) == (positional.flops, positional.macs, positional.ops)
    assert positional.flops > 0
    assert len(positional.ops) == 1  # one unit, nothing of its decomposition


def test_sdpa_by_keyword_matches_the_hand_count():
    m = fb.measure(Fn(lambda: F.scaled_dot_product_attention(query=Q, key=K, value=V, attn_mask=MASK)), ())
    assert m.flops == SDPA_EXPECTED
    only_some = fb.measure(Fn(lambda: F.scaled_dot_product_attention(Q, K, value=V, is_causal=True)), ())
    assert only_some.flops == attention_flops(8, 5, 7, 8, 6, masked=False)
