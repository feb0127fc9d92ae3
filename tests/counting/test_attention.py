"""Attention counted by hand: SDPA on every path into it, multi-head attention and the transformer
layers on their standard and fast paths, on cpu and meta."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pytest_flopbudget as fb
from pytest_flopbudget.counting.formulas import attention
from pytest_flopbudget.counting.registry import Registry

DEVICES = ("cpu", "meta")


def dot(n: int, k: int, bias: bool = False) -> tuple[int, int]:
    """n dot products of k terms, worked independently of the engine's helper."""
    extra = n if bias else 0
    return n * k + n * (k - 1) + extra, n * k + extra


def core(heads: int, length: int, source: int, embed: int, value_dim: int, *, mask: bool = False,
         dropout: bool = False) -> tuple[int, int]:
    """Q·Kᵀ, scale, [mask], softmax, [dropout ×2], A·V."""
    scores = heads * length * source
    ew = scores * (2 + mask + 2 * dropout)
    s = dot(scores, embed)
    av = dot(heads * length * value_dim, source)
    return s[0] + ew + av[0], s[1] + ew + av[1]


class Call(nn.Module):
    def __init__(self, fn, **kwargs):
        super().__init__()
        self.fn, self.kwargs = fn, kwargs

    def forward(self, *args):
        out = self.fn(*args, **self.kwargs)
        return out[0] if isinstance(out, tuple) else out


Q, K, V = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 8)


# --- the formula functions, on plain tuples -------------------------------------------------

def test_attention_core_formula_by_hand():
    # 2·4 heads, L=5, S=7, E=8, Ev=6: scores 280 dot products of 8, A·V 240 dot products of 7
    got = attention.attention_core((2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 6), masked=False, dropout=False)
    assert got == (280 * 15 + 2 * 280 + 240 * 13, 280 * 8 + 2 * 280 + 240 * 7)
    masked = attention.attention_core((2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 6), masked=True, dropout=True)
    assert masked == (got[0] + 280 * 3, got[1] + 280 * 3)


def test_seed_self_attention_row():
    """The seed: scores (HW)·(2C−1)·(HW); projections 3·(2Cin−1)·Cin + (2Cin−1)·Cout per token;
    params 3·C·C + C·Cout without bias. Here one head over an H×W = 3×4 map, C = Cin = Cout = 6."""
    hw, c = 12, 6
    got = attention.multi_head_attention(
        hw, hw, 1, c, 1, c, c, in_bias=False, out_bias=False, masked=False, dropout=False,
        average_weights=False,
    )
    seed_scores = hw * (2 * c - 1) * hw
    seed_projections = hw * (3 * (2 * c - 1) * c + (2 * c - 1) * c)
    a_v = hw * c * (2 * hw - 1)  # left out by the seed, counted here
    scale_softmax = 2 * hw * hw
    assert got[0] == seed_scores + seed_projections + a_v + scale_softmax
    mha = nn.MultiheadAttention(c, 1, bias=False)
    assert sum(p.numel() for p in mha.parameters()) == 3 * c * c + c * c


def test_multi_head_attention_formula_cross_attention_with_kdim_vdim():
    # L=3 queries, S=4 keys, batch 2, E=8 in 2 heads, kdim 5, vdim 6, biases, weights averaged
    got = attention.multi_head_attention(
        6, 8, 2, 8, 2, 5, 6, in_bias=True, out_bias=True, masked=False, dropout=False,
        average_weights=True,
    )
    parts = [dot(6 * 8, 8, True), dot(8 * 8, 5, True), dot(8 * 8, 6, True),
             core(2 * 2, 3, 4, 4, 4), dot(6 * 8, 8, True), (2 * 2 * 3 * 4, 2 * 2 * 3 * 4)]
    assert got == (sum(p[0] for p in parts), sum(p[1] for p in parts))


def test_kernel_formulas_on_tuples_agree():
    q, k, v = (2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 6)
    plain = core(8, 5, 7, 8, 6)
    masked = core(8, 5, 7, 8, 6, mask=True)
    assert attention.sdpa(q, k, v) == plain
    assert attention.sdpa(q, k, v, (5, 7)) == masked
    assert attention.sdpa(q, k, v, None, 0.0, True) == plain  # is_causal: no mask tensor
    assert attention.flash_cpu(q, k, v, 0.0, False, out_shape=None) == plain
    assert attention.flash_cpu(q, k, v, 0.0, False, out_shape=None, attn_mask=(5, 7)) == masked
    assert attention.with_bias(q, k, v, (2, 4, 5, 7), True, 0.0, False, out_shape=None) == masked


def test_transformer_encoder_layer_formula_on_tuples():
    e, hidden = 16, 32
    got = attention.transformer_encoder_layer(
        (2, 5, e), e, 4, (3 * e, e), (3 * e,), (e, e), (e,), False, False, 1e-5, (e,), (e,), (e,), (e,),
        (hidden, e), (hidden,), (e, hidden), (e,), None, out_shape=None,
    )
    assert got == encoder_layer_by_hand(2, 5, e, 4, hidden)


# --- SDPA: one total on every path ----------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "kwargs, mask",
    [({}, False), ({"is_causal": True}, False), ({"dropout_p": 0.0}, False), ("float_mask", True),
     ("bool_mask", True)],
)
def test_sdpa_by_hand(device, kwargs, mask):
    args = (Q, K, V)
    if kwargs == "float_mask":
        kwargs, args = {}, args + (torch.randn(5, 7),)
    elif kwargs == "bool_mask":
        kwargs, args = {}, args + (torch.ones(5, 7, dtype=torch.bool),)
    m = fb.measure(Call(F.scaled_dot_product_attention, **kwargs), args, device=device)
    # the causal mask's masked half is counted like the rest
    assert (m.flops, m.macs) == core(8, 5, 7, 8, 8, mask=mask)
    assert m.uncounted == {}


@pytest.mark.parametrize("device", DEVICES)
def test_sdpa_dropout_counts_two_per_score(device):
    m = fb.measure(Call(F.scaled_dot_product_attention, dropout_p=0.5), (Q, K, V), device=device)
    assert (m.flops, m.macs) == core(8, 5, 7, 8, 8, dropout=True)


@pytest.mark.parametrize("device", DEVICES)
def test_sdpa_grouped_query_attention_counts_every_query_head(device):
    k, v = torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    m = fb.measure(Call(F.scaled_dot_product_attention, enable_gqa=True), (Q, k, v), device=device)
    assert (m.flops, m.macs) == core(8, 5, 7, 8, 8)


@pytest.mark.parametrize("device", DEVICES)
def test_sdpa_value_dim_differs(device):
    # Ev != E: CPU has no flash kernel for it and runs the math path; still one unit
    v = torch.randn(2, 4, 7, 6)
    m = fb.measure(Call(F.scaled_dot_product_attention), (Q, K, v), device=device)
    assert (m.flops, m.macs) == core(8, 5, 7, 8, 6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "fn",
    [torch.ops.aten.scaled_dot_product_attention, torch.ops.aten.scaled_dot_product_attention.default,
     torch.ops.aten._scaled_dot_product_attention_math,
     torch.ops.aten._scaled_dot_product_attention_math.default],
    ids=["aten_sdpa", "aten_sdpa_default", "math", "math_default"],
)
def test_composite_aten_entry_points_called_directly(device, fn):
    m = fb.measure(Call(fn), (Q, K, V), device=device)
    assert (m.flops, m.macs) == core(8, 5, 7, 8, 8)
    m = fb.measure(Call(fn, is_causal=True), (Q, K, V), device=device)
    assert (m.flops, m.macs) == core(8, 5, 7, 8, 8)


@pytest.mark.parametrize("device", DEVICES)
def test_cpu_flash_kernel_called_directly(device):
    fn = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    assert (fb.measure(Call(fn), (Q, K, V), device=device).flops,) == (core(8, 5, 7, 8, 8)[0],)
    masked = fb.measure(Call(fn, attn_mask=torch.randn(5, 7)), (Q, K, V), device=device)
    assert (masked.flops, masked.macs) == core(8, 5, 7, 8, 8, mask=True)


# --- nn.MultiheadAttention --------------------------------------------------------------------

class SelfAttention(nn.Module):
    def __init__(self, mha, need_weights):
        super().__init__()
        self.mha, self.need_weights = mha, need_weights

    def forward(self, x):
        return self.mha(x, x, x, need_weights=self.need_weights)[0]


class NativeMHA(nn.Module):
    """The fast path's kernel, called as nn.MultiheadAttention's fast path calls it."""

    def __init__(self, mha, need_weights):
        super().__init__()
        self.mha, self.need_weights = mha, need_weights

    def forward(self, x):
        m = self.mha
        return torch._native_multi_head_attention(
            x, x, x, m.embed_dim, m.num_heads, m.in_proj_weight, m.in_proj_bias,
            m.out_proj.weight, m.out_proj.bias, None, self.need_weights, True,
        )[0]


def mha_by_hand(batch, length, embed, heads, *, bias, need_weights):
    tokens = batch * length
    parts = [dot(tokens * embed, embed, bias)] * 3 + [
        core(batch * heads, length, length, embed // heads, embed // heads),
        dot(tokens * embed, embed, bias),
    ]
    if need_weights:  # the weights are averaged over heads
        parts.append((batch * heads * length * length,) * 2)
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_multihead_attention_train_and_inference_paths(device, need_weights, batch_first, bias):
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first, bias=bias)
    x = torch.randn(3, 5, 16)
    batch, length = (3, 5) if batch_first else (5, 3)
    expected = mha_by_hand(batch, length, 16, 4, bias=bias, need_weights=need_weights)
    model = SelfAttention(mha, need_weights)
    train = fb.measure(model.train(), x, device=device)
    with torch.no_grad():
        inference = fb.measure(model.eval(), x, device=device)
    assert (train.flops, train.macs) == expected
    assert (inference.flops, inference.macs) == expected
    assert train.uncounted == inference.uncounted == {}
    assert mha.training is False  # the caller's mode is the caller's


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("need_weights", [True, False])
def test_native_mha_kernel_equals_the_standard_path(device, need_weights):
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        native = fb.measure(NativeMHA(mha, need_weights), x, device=device)
        standard = fb.measure(SelfAttention(mha, need_weights), x, device=device)
    assert (native.flops, native.macs) == (standard.flops, standard.macs)
    assert (native.flops, native.macs) == mha_by_hand(3, 5, 16, 4, bias=True, need_weights=need_weights)
    assert native.ops == {"aten._native_multi_head_attention": native.flops}


# --- transformer layers ---------------------------------------------------------------------

class EncoderLayerKernel(nn.Module):
    """nn.TransformerEncoderLayer's fast-path kernel, called as the layer calls it."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        l = self.layer
        a = l.self_attn
        return torch._transformer_encoder_layer_fwd(
            x, a.embed_dim, a.num_heads, a.in_proj_weight, a.in_proj_bias, a.out_proj.weight,
            a.out_proj.bias, l.activation_relu_or_gelu == 2, l.norm_first, l.norm1.eps,
            l.norm1.weight, l.norm1.bias, l.norm2.weight, l.norm2.bias, l.linear1.weight,
            l.linear1.bias, l.linear2.weight, l.linear2.bias, None, None,
        )


def encoder_layer_by_hand(batch, length, embed, heads, hidden):
    n = batch * length * embed
    tokens = batch * length
    attn = mha_by_hand(batch, length, embed, heads, bias=True, need_weights=False)
    ffn1, ffn2 = dot(tokens * hidden, embed, True), dot(tokens * embed, hidden, True)
    act = tokens * hidden
    flops = attn[0] + 2 * n + 2 * n + ffn1[0] + act + ffn2[0]  # residual adds, two layer norms
    macs = attn[1] + 2 * n + 2 * (2 * n) + ffn1[1] + act + ffn2[1]  # affine norms: macs ×2
    return flops, macs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer_paths_agree(device, activation, norm_first):
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1, activation=activation,
                                       norm_first=norm_first, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    expected = encoder_layer_by_hand(2, 5, 16, 4, 32)
    grad_mode = fb.measure(layer, x, device=device)
    with torch.no_grad():
        fast = fb.measure(layer, x, device=device)
        kernel = fb.measure(EncoderLayerKernel(layer), x, device=device)
    assert (grad_mode.flops, grad_mode.macs) == expected
    assert (fast.flops, fast.macs) == expected
    assert (kernel.flops, kernel.macs) == expected
    assert grad_mode.uncounted == fast.uncounted == kernel.uncounted == {}


@pytest.mark.parametrize("device", DEVICES)
def test_transformer_encoder_layer_training_adds_dropout(device):
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1, batch_first=True).train()
    m = fb.measure(layer, torch.randn(2, 5, 16), device=device)
    # dropout on the attention weights (2·heads·L·S), after attention, in the FFN and after it
    dropouts = 2 * (2 * 4 * 5 * 5) + 2 * (2 * 5 * 16) + 2 * (2 * 5 * 32) + 2 * (2 * 5 * 16)
    assert m.flops == encoder_layer_by_hand(2, 5, 16, 4, 32)[0] + dropouts


@pytest.mark.parametrize("device", DEVICES)
def test_transformer_encoder_paths_agree(device):
    encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), 2, enable_nested_tensor=True
    ).eval()
    x = torch.randn(2, 5, 16)
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[1, 3:] = True
    grad_mode = fb.measure(encoder, x, device=device)
    with torch.no_grad():
        fast = fb.measure(encoder, x, device=device)
        padded = fb.measure(encoder, {"src": x, "src_key_padding_mask": padding}, device=device)
    layer = encoder_layer_by_hand(2, 5, 16, 4, 32)
    assert (grad_mode.flops, grad_mode.macs) == (fast.flops, fast.macs) == (2 * layer[0], 2 * layer[1])
    # a key padding mask is one add per score (2·4 heads, 5×5 scores) in each layer, and turning
    # the boolean mask into an additive one is elementwise work on its 2×5 elements
    assert padded.flops - fast.flops == 2 * (2 * 4 * 5 * 5) + padded.ops.get("aten.masked_fill", 0) \
        + padded.ops.get("aten.logical_not", 0) + padded.ops.get("aten.where", 0) \
        + padded.ops.get("aten.masked_fill_", 0)
    assert padded.uncounted == {}


@pytest.mark.parametrize("device", DEVICES)
def test_transformer_decoder_layer_grad_and_no_grad(device):
    layer = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.1, batch_first=True).eval()
    tgt, memory = torch.randn(2, 5, 16), torch.randn(2, 4, 16)
    grad_mode = fb.measure(layer, (tgt, memory), device=device)
    with torch.no_grad():
        fast = fb.measure(layer, (tgt, memory), device=device)
    n = 2 * 5 * 16
    self_attn = mha_by_hand(2, 5, 16, 4, bias=True, need_weights=False)
    # cross attention: Q from 10 tokens, K and V from 8 memory tokens
    cross = [dot(10 * 16, 16, True), dot(8 * 16, 16, True), dot(8 * 16, 16, True),
             core(2 * 4, 5, 4, 4, 4), dot(10 * 16, 16, True)]
    ffn = [dot(10 * 32, 16, True), (10 * 32, 10 * 32), dot(10 * 16, 32, True)]
    flops = self_attn[0] + sum(c[0] for c in cross + ffn) + 3 * n + 3 * n  # 3 residuals, 3 norms
    macs = self_attn[1] + sum(c[1] for c in cross + ffn) + 3 * n + 3 * 2 * n
    assert (grad_mode.flops, grad_mode.macs) == (fast.flops, fast.macs) == (flops, macs)
    assert grad_mode.uncounted == {}


def test_counting_never_takes_the_fast_path_but_the_fast_path_alone_counts_the_same():
    """Under measure() a TorchFunctionMode is active, so nn.MultiheadAttention's fast path is
    skipped (torch checks has_torch_function); a registry without composite rules lets the
    fast path run, on fake (meta) tensors too, and its kernel's formula gives the same total."""
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(3, 5, 16)
    bare = Registry()
    bare.function_rules.clear()
    with torch.no_grad():
        fast = fb.measure(SelfAttention(mha, False), x, device="meta", registry=bare)
        counted = fb.measure(SelfAttention(mha, False), x, device="meta")
    assert "aten._native_multi_head_attention" in fast.ops
    assert fast.flops == counted.flops == mha_by_hand(3, 5, 16, 4, bias=True, need_weights=False)[0]


# -- shape level: the formula called with plain shapes --
# The attention formulas through their op-facing signatures: the function rules bound to the
# function's signature (positional parameters positional, keyword-only ones as keywords, as the
# counter's binder passes them) and the aten kernels' positional arguments, tensors as tuples.
# Q (2, 4, 5, 8), K (2, 4, 7, 8), V (2, 4, 7, 6): 8 query heads, L = 5, S = 7, E = 8, Ev = 6.

QS, KS, VS = (2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 6)
SCORES = 8 * 5 * 7
# Q·Kᵀ: 280 dot products of 8; scale and softmax one per score; A·V: 8·5·6 dot products of 7
PLAIN = (SCORES * (2 * 8 - 1) + 2 * SCORES + 8 * 5 * 6 * (2 * 7 - 1), SCORES * 8 + 2 * SCORES + 8 * 5 * 6 * 7)
SDPA = attention.FUNCTION_RULES["torch.nn.functional.scaled_dot_product_attention"][1]


@pytest.mark.parametrize(
    "mask, dropout_p, is_causal, extra_per_score",
    [(None, 0.0, False, 0), ((5, 7), 0.0, False, 1), ((2, 1, 5, 7), 0.0, False, 1), (None, 0.0, True, 0),
     (None, 0.1, False, 2), ((5, 7), 0.1, False, 3)],
    ids=["plain", "mask", "broadcast-mask", "causal", "dropout", "mask-dropout"],
)
def test_shape_sdpa(mask, dropout_p, is_causal, extra_per_score):
    # a mask tensor is one add per score; is_causal passes none (the masked half counted like the
    # rest); dropout two per score
    got = SDPA(QS, KS, VS, mask, dropout_p, is_causal, scale=None, enable_gqa=False, out_shape=(2, 4, 5, 6))
    assert got == (PLAIN[0] + extra_per_score * SCORES, PLAIN[1] + extra_per_score * SCORES)


def test_shape_sdpa_grouped_query_attention_counts_every_query_head():
    # 8 query heads share 2 key/value heads: L = 5, S = 7, E = Ev = 4
    scores = 8 * 5 * 7
    expected = (scores * (2 * 4 - 1) + 2 * scores + 8 * 5 * 4 * (2 * 7 - 1), scores * 4 + 2 * scores + 8 * 5 * 4 * 7)
    got = SDPA((1, 8, 5, 4), (1, 2, 7, 4), (1, 2, 7, 4), None, 0.0, False, scale=None, enable_gqa=True,
               out_shape=(1, 8, 5, 4))
    assert got == expected


def test_shape_sdpa_without_batch_dimension():
    # (3, 5, 8) queries: 3 heads
    scores = 3 * 5 * 7
    expected = (scores * 15 + 2 * scores + 3 * 5 * 8 * 13, scores * 8 + 2 * scores + 3 * 5 * 8 * 7)
    assert SDPA((3, 5, 8), (3, 7, 8), (3, 7, 8), None, 0.0, False, out_shape=(3, 5, 8)) == expected


def test_shape_sdpa_kernels_count_the_same():
    out = ((2, 4, 5, 6), (2, 4, 5))
    # _scaled_dot_product_flash_attention_for_cpu(q, k, v, dropout_p, is_causal, *, attn_mask, scale)
    cpu = attention.RULES["_scaled_dot_product_flash_attention_for_cpu"]
    assert cpu(QS, KS, VS, 0.0, True, attn_mask=None, scale=None, out_shape=out) == PLAIN
    assert cpu(QS, KS, VS, 0.0, False, attn_mask=(5, 7), scale=None, out_shape=out) == (
        PLAIN[0] + SCORES, PLAIN[1] + SCORES)
    # _scaled_dot_product_flash_attention(q, k, v, dropout_p, is_causal, return_debug_mask, *, scale)
    cuda = attention.RULES["_scaled_dot_product_flash_attention"]
    assert cuda(QS, KS, VS, 0.0, True, False, scale=None, out_shape=out) == PLAIN
    assert cuda(QS, KS, VS, 0.2, False, False, out_shape=out) == (PLAIN[0] + 2 * SCORES, PLAIN[1] + 2 * SCORES)
    # _scaled_dot_product_efficient_attention(q, k, v, attn_bias, compute_log_sumexp, dropout_p, is_causal)
    efficient = attention.RULES["_scaled_dot_product_efficient_attention"]
    assert efficient(QS, KS, VS, None, True, 0.0, True, scale=None, out_shape=out) == PLAIN
    assert efficient(QS, KS, VS, (2, 4, 5, 7), True, 0.5, False, out_shape=out) == (
        PLAIN[0] + 3 * SCORES, PLAIN[1] + 3 * SCORES)


def test_shape_sdpa_backward():
    # _scaled_dot_product_flash_attention_for_cpu_backward(grad_out, q, k, v, out, logsumexp,
    # dropout_p, is_causal): dV = Aᵀ·dO (8·7·6 dot products of L = 5), dA = dO·Vᵀ (280 of Ev = 6),
    # dQ = dS·K (8·5·8 of S = 7), dK = dSᵀ·Q (8·7·8 of L = 5), softmax backward and scaling 2·280
    flops = (8 * 7 * 6 * (2 * 5 - 1) + SCORES * (2 * 6 - 1) + 8 * 5 * 8 * (2 * 7 - 1) + 8 * 7 * 8 * (2 * 5 - 1)
             + 2 * SCORES)
    macs = 8 * 7 * 6 * 5 + SCORES * 6 + 8 * 5 * 8 * 7 + 8 * 7 * 8 * 5 + 2 * SCORES
    got = attention.RULES["_scaled_dot_product_flash_attention_for_cpu_backward"](
        (2, 4, 5, 6), QS, KS, VS, (2, 4, 5, 6), (2, 4, 5), 0.0, False, attn_mask=None, scale=None,
        out_shape=(QS, KS, VS))
    assert got == (flops, macs)


@pytest.mark.parametrize(
    "masked, score_mod_cost, extra_flops",
    [(False, (0, 0), 0), (True, (0, 0), 128), (False, (1, 1), 128), (True, (2, 1), 128 + 2 * 128)],
    ids=["plain", "block-mask", "score-mod", "both"],
)
def test_shape_flex_attention(masked, score_mod_cost, extra_flops):
    # as the higher-order counter calls it: (q, k, v) and the per-score cost of score_mod.
    # B=1, H=2, L=S=8, E=4: 128 scores; docs/formulas.md's example: 896 + 256 + 960 = 2 112
    scores = 1 * 2 * 8 * 8
    plain = scores * (2 * 4 - 1) + 2 * scores + 1 * 2 * 8 * 4 * (2 * 8 - 1)
    assert plain == 2112
    shape = (1, 2, 8, 4)
    got = attention.flex_attention(shape, shape, shape, score_mod_cost=score_mod_cost, masked=masked,
                                   out_shape=(shape, (1, 2, 8)))
    assert got[0] == plain + extra_flops


# nn.MultiheadAttention(8, 2) with biases: L = 3 queries, S = 4 keys, batch 2, head dim 4.
# Projections: Q 6 tokens × 8 outputs of 8 terms, K and V 8 tokens × 8, out 6 × 8, each + bias.
# Core: B·H = 4 heads, 4·3·4 = 48 scores of 4 terms, scale and softmax, 48 A·V outputs of 4 terms.
MHA_PROJECTIONS = [dot(6 * 8, 8, True), dot(8 * 8, 8, True), dot(8 * 8, 8, True), dot(6 * 8, 8, True)]
MHA_CORE = (48 * (2 * 4 - 1) + 2 * 48 + 48 * (2 * 4 - 1), 48 * 4 + 2 * 48 + 48 * 4)
MHA = (sum(p[0] for p in MHA_PROJECTIONS) + MHA_CORE[0], sum(p[1] for p in MHA_PROJECTIONS) + MHA_CORE[1])
HEAD_AVERAGE = 2 * 2 * 3 * 4  # averaging the returned weights over heads: one per score


@pytest.mark.parametrize("need_weights, average", [(True, True), (False, True), (True, False)])
def test_shape_native_multi_head_attention(need_weights, average):
    # _native_multi_head_attention(q, k, v, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight,
    # proj_bias, mask, need_weights, average_attn_weights, mask_type), batch first
    got = attention.native_mha((2, 3, 8), (2, 4, 8), (2, 4, 8), 8, 2, (24, 8), (24,), (8, 8), (8,), None,
                               need_weights, average, None, out_shape=((2, 3, 8), None))
    extra = HEAD_AVERAGE if need_weights and average else 0
    assert got == (MHA[0] + extra, MHA[1] + extra)


def mha_function_args(dropout_p=0.0, training=True, need_weights=True, average_attn_weights=True):
    """F.multi_head_attention_forward bound to its signature, every parameter positional, as the
    counter's binder passes it; (L, N, E) sequence-first inputs."""
    return ((3, 2, 8), (4, 2, 8), (4, 2, 8), 8, 2, (24, 8), (24,), None, None, False, dropout_p, (8, 8), (8,),
            training, None, need_weights, None, False, None, None, None, None, None, average_attn_weights, False)


@pytest.mark.parametrize(
    "kwargs, extra",
    [({}, HEAD_AVERAGE), ({"need_weights": False}, 0), ({"dropout_p": 0.1, "need_weights": False}, 2 * 48),
     ({"dropout_p": 0.1, "training": False, "need_weights": False}, 0)],
    ids=["weights-averaged", "no-weights", "dropout-training", "dropout-eval"],
)
def test_shape_multi_head_attention_forward(kwargs, extra):
    got = attention.mha_forward_function(*mha_function_args(**kwargs), out_shape=((3, 2, 8), None))
    assert got == (MHA[0] + extra, MHA[1] + extra)


def test_shape_multi_head_attention_forward_without_head_average():
    got = attention.mha_forward_function(*mha_function_args(average_attn_weights=False), out_shape=((3, 2, 8), None))
    assert got == MHA


def test_multihead_attention_weights_not_averaged_skip_the_head_average():
    """nn.MultiheadAttention(need_weights=True, average_attn_weights=False) returns every head's
    weights: the head average (heads-1 adds and one divide per averaged weight, N*L*S of them) is
    not computed, so the count is lower by exactly that."""
    mha = nn.MultiheadAttention(8, 2).train()
    query = torch.randn(3, 2, 8)  # (L, N, E)

    class Attend(nn.Module):
        def __init__(self, average: bool) -> None:
            super().__init__()
            self.mha, self.average = mha, average

        def forward(self, x):
            return self.mha(x, x, x, need_weights=True, average_attn_weights=self.average)[0]

    heads, n, length = 2, 2, 3
    averaged = fb.measure(Attend(True), query)
    per_head = fb.measure(Attend(False), query)
    assert averaged.flops - per_head.flops == ((heads - 1) + 1) * n * length * length


def test_multihead_attention_is_credited_to_its_own_row_not_to_out_proj():
    """nn.MultiheadAttention uses its projections' weights directly and never calls out_proj: the
    whole attention is the MHA row (as the README's Limits say), out_proj shows params and 0 flops."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x):
            return self.attn(x, x, x)[0]

    measured = fb.measure(Block().eval(), torch.randn(1, 5, 16))
    assert measured.modules["attn"].flops == measured.flops > 0
    assert measured.modules["attn.out_proj"].flops == 0
    assert measured.modules["attn.out_proj"].params == 16 * 16 + 16
