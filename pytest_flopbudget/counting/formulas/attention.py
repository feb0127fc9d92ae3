"""Attention: scaled dot-product attention and the fused multi-head attention kernels.

One canonical count, whatever kernel aten picks (CPU flash, CUDA flash/efficient/cudnn, or the
math decomposition seen on meta), for queries of shape (..., L, E), keys (..., S, E) and values
(..., S, Ev), with Q = prod(leading dims of the query) query heads:

    scores   Q·L·S dot products of E terms            (the seed's (H·W)·(2C-1)·(H·W))
    scale    Q·L·S                                    (one multiply per score)
    mask     Q·L·S when an explicit mask is given     (one add per score)
    softmax  Q·L·S                                    (one per output element)
    dropout  2·Q·L·S when dropout_p > 0           (the project's dropout rule: two per element)
    A·V      Q·L·Ev dot products of S terms           (left out by the seed, counted here)

A causal mask is not a tensor the kernel reads; the masked half is counted like the rest, as
torch's FlopCounterMode and DeepSpeed do. Grouped-query attention counts every query head.
Multi-head attention adds its projections: Q from L tokens, K and V from S tokens, the output
projection from L tokens, each a linear layer's count (with bias when it has one); averaging the
returned weights over heads is a reduction over Q·L·S elements.
"""

from __future__ import annotations

from math import prod

from pytest_flopbudget.counting.formulas import Cost, Shape, by_name, dot_products, numel, sum_costs


def attention_core(q: Shape, k: Shape, v: Shape, *, masked: bool, dropout: bool) -> Cost:
    """The canonical count above, from the shapes of Q, K and V."""
    heads, length, embed = prod(q[:-2]), q[-2], q[-1]
    source, value_dim = k[-2], v[-1]
    n_scores = heads * length * source
    elementwise = n_scores * (2 + int(masked) + 2 * int(dropout))
    return sum_costs(
        dot_products(n_scores, embed),
        (elementwise, elementwise),
        dot_products(heads * length * value_dim, source),
    )


def attention_core_backward(q: Shape, k: Shape, v: Shape, *, dropout: bool) -> Cost:
    """Gradients of Q, K, V: four products (dV = Aᵀ·dO, dA = dO·Vᵀ, dQ = dS·K, dK = dSᵀ·Q), the
    softmax backward and the scaling; recomputation inside flash kernels is not counted, so
    every kernel gives one total."""
    heads, length, embed = prod(q[:-2]), q[-2], q[-1]
    source, value_dim = k[-2], v[-1]
    n_scores = heads * length * source
    elementwise = n_scores * (2 + int(dropout))  # dropout's backward: one per element
    return sum_costs(
        dot_products(heads * source * value_dim, length),
        dot_products(n_scores, value_dim),
        dot_products(heads * length * embed, source),
        dot_products(heads * source * embed, length),
        (elementwise, elementwise),
    )


def sdpa(q: Shape, k: Shape, v: Shape, attn_mask: Shape | None = None, dropout_p: float = 0.0,
         *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa)``."""
    mask = kwargs.get("attn_mask", attn_mask)
    p = kwargs.get("dropout_p", dropout_p)
    return attention_core(q, k, v, masked=isinstance(mask, (tuple, list)), dropout=bool(p))


def flash_cpu(q: Shape, k: Shape, v: Shape, dropout_p: float = 0.0, *args: object,
              out_shape: object, **kwargs: object) -> Cost:
    """``_scaled_dot_product_flash_attention_for_cpu(q, k, v, dropout_p, is_causal, *, attn_mask, scale)``."""
    mask = kwargs.get("attn_mask")
    return attention_core(q, k, v, masked=mask is not None, dropout=bool(dropout_p))


def flash_cuda(q: Shape, k: Shape, v: Shape, dropout_p: float = 0.0, *args: object,
               out_shape: object, **kwargs: object) -> Cost:
    """``_scaled_dot_product_flash_attention(q, k, v, dropout_p, is_causal, ...)``: no mask."""
    return attention_core(q, k, v, masked=False, dropout=bool(dropout_p))


def with_bias(q: Shape, k: Shape, v: Shape, attn_bias: Shape | None = None, *args: object,
              out_shape: object, **kwargs: object) -> Cost:
    """Efficient, cudnn and overrideable kernels: ``(q, k, v, attn_bias, ..., dropout_p, ...)``."""
    floats = [a for a in args if isinstance(a, float)]
    dropout = bool(kwargs.get("dropout_p", floats[0] if floats else 0.0))
    return attention_core(q, k, v, masked=attn_bias is not None, dropout=dropout)


def flash_cpu_backward(grad_out: Shape, q: Shape, k: Shape, v: Shape, *args: object,
                       out_shape: object, **kwargs: object) -> Cost:
    floats = [a for a in args if isinstance(a, float)]
    return attention_core_backward(q, k, v, dropout=bool(floats and floats[0]))


def flex_attention(q: Shape, k: Shape, v: Shape, *args: object, score_mod_cost: Cost = (0, 0),
                   masked: bool = False, out_shape: object = None, **kwargs: object) -> Cost:
    """``flex_attention``: the canonical count above (no dropout), a block mask counted as one
    operation per score (applying it; the mask function's index logic is not floating-point
    work), and ``score_mod_cost`` (what the score function costs on one score) once per score.
    Every score is counted, including those in blocks the kernel skips as fully masked: the
    same rule as a causal mask, so the count does not depend on the kernel's block size."""
    n_scores = prod(q[:-1]) * k[-2]
    core = attention_core(q, k, v, masked=masked, dropout=False)
    return sum_costs(core, (n_scores * score_mod_cost[0], n_scores * score_mod_cost[1]))


def flex_attention_backward(q: Shape, k: Shape, v: Shape, *args: object, out_shape: object = None,
                            **kwargs: object) -> Cost:
    """Its backward: the four products, softmax backward and scaling of attention_core_backward;
    the gradient of a score function is not counted."""
    return attention_core_backward(q, k, v, dropout=False)


def _linear(tokens: int, in_features: int, out_features: int, bias: bool) -> Cost:
    return dot_products(tokens * out_features, in_features, bias=bias)



def multi_head_attention(
    tokens_q: int,
    tokens_kv: int,
    batch: int,
    embed: int,
    heads: int,
    kdim: int,
    vdim: int,
    *,
    in_bias: bool,
    out_bias: bool,
    masked: bool,
    dropout: bool,
    average_weights: bool,
) -> Cost:
    """Projections + attention core + output projection (+ the head average of the weights)."""
    head_dim = embed // heads
    length, source = tokens_q // batch, tokens_kv // batch
    q_shape, kv_shape = (batch, heads, length, head_dim), (batch, heads, source, head_dim)
    costs = [
        _linear(tokens_q, embed, embed, in_bias),
        _linear(tokens_kv, kdim, embed, in_bias),
        _linear(tokens_kv, vdim, embed, in_bias),
        attention_core(q_shape, kv_shape, kv_shape, masked=masked, dropout=dropout),
        _linear(tokens_q, embed, embed, out_bias),
    ]
    if average_weights:
        n = batch * heads * length * source
        costs.append((n, n))
    return sum_costs(*costs)


def mha_forward_function(
    query: Shape, key: Shape, value: Shape, embed_dim_to_check: int, num_heads: int,
    in_proj_weight: Shape | None, in_proj_bias: Shape | None, bias_k: Shape | None,
    bias_v: Shape | None, add_zero_attn: bool, dropout_p: float, out_proj_weight: Shape,
    out_proj_bias: Shape | None, training: bool = True, key_padding_mask: Shape | None = None,
    need_weights: bool = True, attn_mask: Shape | None = None, use_separate_proj_weight: bool = False,
    q_proj_weight: Shape | None = None, k_proj_weight: Shape | None = None, v_proj_weight: Shape | None = None,
    static_k: Shape | None = None, static_v: Shape | None = None, average_attn_weights: bool = True,
    *args: object, out_shape: object = None, **kwargs: object,
) -> Cost:
    """``F.multi_head_attention_forward``: the path nn.MultiheadAttention takes off its fast path.
    The counter binds the call to this signature, so every argument arrives in its place."""
    training = kwargs.get("training", training)  # type: ignore[assignment]
    key_padding_mask = kwargs.get("key_padding_mask", key_padding_mask)  # type: ignore[assignment]
    need_weights = kwargs.get("need_weights", need_weights)  # type: ignore[assignment]
    attn_mask = kwargs.get("attn_mask", attn_mask)  # type: ignore[assignment]
    average = bool(kwargs.get("average_attn_weights", average_attn_weights))
    is_batched = len(query) == 3
    # inputs are (L, N, E) unless unbatched (L, E); nn.MultiheadAttention transposes batch_first
    batch = query[1] if is_batched else 1
    return multi_head_attention(
        numel(query[:-1]), numel(key[:-1]), batch, embed_dim_to_check, num_heads,
        key[-1], value[-1],
        in_bias=in_proj_bias is not None, out_bias=out_proj_bias is not None,
        masked=isinstance(attn_mask, (tuple, list)) or isinstance(key_padding_mask, (tuple, list)),
        dropout=bool(training and dropout_p), average_weights=bool(need_weights and average),
    )


def native_mha(
    query: Shape, key: Shape, value: Shape, embed_dim: int, num_head: int, qkv_weight: Shape,
    qkv_bias: Shape | None, proj_weight: Shape, proj_bias: Shape | None, mask: Shape | None = None,
    need_weights: bool = True, average_attn_weights: bool = True, *args: object, out_shape: object = None,
    **kwargs: object,
) -> Cost:
    """``_native_multi_head_attention``, nn.MultiheadAttention's inference fast path (batch first)."""
    need_weights = kwargs.get("need_weights", need_weights)  # type: ignore[assignment]
    average = kwargs.get("average_attn_weights", average_attn_weights)
    mask = kwargs.get("mask", mask)  # type: ignore[assignment]
    batch = query[0] if len(query) == 3 else 1
    return multi_head_attention(
        numel(query[:-1]), numel(key[:-1]), batch, embed_dim, num_head, key[-1], value[-1],
        in_bias=qkv_bias is not None, out_bias=proj_bias is not None,
        masked=mask is not None, dropout=False, average_weights=bool(need_weights and average),
    )


def transformer_encoder_layer(
    src: Shape, embed_dim: int, num_heads: int, qkv_weight: Shape, qkv_bias: Shape | None,
    proj_weight: Shape, proj_bias: Shape | None, use_gelu: bool, norm_first: bool, eps: float,
    norm_weight_1: Shape | None, norm_bias_1: Shape | None, norm_weight_2: Shape | None,
    norm_bias_2: Shape | None, ffn_weight_1: Shape, ffn_bias_1: Shape | None, ffn_weight_2: Shape,
    ffn_bias_2: Shape | None, mask: Shape | None = None, *args: object, out_shape: object = None,
    **kwargs: object,
) -> Cost:
    """``_transformer_encoder_layer_fwd``, nn.TransformerEncoderLayer's inference fast path: the
    same total as its modules (attention, two residual adds, two layer norms, the feed-forward
    block with its relu/gelu), with the work attributed to the layer itself."""
    mask = kwargs.get("mask", mask)  # type: ignore[assignment]
    tokens = numel(src[:-1])
    batch = src[0] if len(src) == 3 else 1
    hidden = ffn_weight_1[0]
    n = tokens * embed_dim
    affine_1 = norm_weight_1 is not None or norm_bias_1 is not None
    affine_2 = norm_weight_2 is not None or norm_bias_2 is not None
    return sum_costs(
        multi_head_attention(
            tokens, tokens, batch, embed_dim, num_heads, embed_dim, embed_dim,
            in_bias=qkv_bias is not None, out_bias=proj_bias is not None,
            masked=mask is not None, dropout=False, average_weights=False,
        ),
        (2 * n, 2 * n),  # two residual adds
        (n, 2 * n if affine_1 else n),
        (n, 2 * n if affine_2 else n),
        _linear(tokens, embed_dim, hidden, ffn_bias_1 is not None),
        (tokens * hidden, tokens * hidden),  # relu or gelu
        _linear(tokens, hidden, embed_dim, ffn_bias_2 is not None),
    )


RULES = {
    "_scaled_dot_product_flash_attention_for_cpu": flash_cpu,
    "_scaled_dot_product_flash_attention": flash_cuda,
    "_scaled_dot_product_efficient_attention": with_bias,
    "_scaled_dot_product_cudnn_attention": with_bias,
    "_scaled_dot_product_fused_attention_overrideable": with_bias,
    "_scaled_dot_product_flash_attention_for_cpu_backward": flash_cpu_backward,
    "_native_multi_head_attention": native_mha,
    "_transformer_encoder_layer_fwd": transformer_encoder_layer,
}

# Composite functions counted as one unit, whatever aten lowers them to on each device: the
# key is the function's import path, the value its name in Measurement.ops and its formula.
FUNCTION_RULES = {
    "torch.nn.functional.scaled_dot_product_attention": ("aten.scaled_dot_product_attention", sdpa),
    "torch.nn.functional.multi_head_attention_forward": ("aten.multi_head_attention_forward", mha_forward_function),
    "torch._native_multi_head_attention": ("aten._native_multi_head_attention", native_mha),
    "torch._transformer_encoder_layer_fwd": ("aten._transformer_encoder_layer_fwd", transformer_encoder_layer),
    # the composite aten entry points, called directly: aten would decompose them before the
    # dispatch mode sees them (the math path scales Q and K, not the scores), so they are units too
    "torch.ops.aten.scaled_dot_product_attention": ("aten.scaled_dot_product_attention", sdpa),
    "torch.ops.aten.scaled_dot_product_attention.default": ("aten.scaled_dot_product_attention", sdpa),
    "torch.ops.aten._scaled_dot_product_attention_math": ("aten.scaled_dot_product_attention", sdpa),
    "torch.ops.aten._scaled_dot_product_attention_math.default": ("aten.scaled_dot_product_attention", sdpa),
}


# The CUDA kernels behind the SDPA entry points, when a graph (export, compile, a library) calls
# them directly. Their tensors are laid out (batch, length, heads, dim), not SDPA's (batch, heads,
# length, dim): moved to SDPA's layout they count exactly what the SDPA kernel counts, so a graph
# that names the CUDA kernel counts what CPU's SDPA counts for the same attention.


def _heads_first(shape: Shape) -> Shape:
    """(..., L, H, E) -> (..., H, L, E); a varlen (total, H, E) tensor becomes (H, total, E)."""
    return (*shape[:-3], shape[-2], shape[-3], shape[-1])


# Private kernels: bound by their schema's names (formulas.by_name), never by position, so an
# argument torch inserts before dropout_p in a later release cannot be read as dropout_p
# (tests/counting/test_torch_internals.py checks the schema still has the names read here).


@by_name
def flash_attention_forward(*, query: Shape, key: Shape, value: Shape, dropout_p: float,
                            alibi_slopes: Shape | None = None, out_shape: object = None, **kwargs: object) -> Cost:
    """``_flash_attention_forward(query, key, value, cum_seq_q, cum_seq_k, max_q, max_k, dropout_p,
    is_causal, ..., *, alibi_slopes)``. Variable-length batches (``cum_seq_q`` given) pack every
    sequence into one (total, H, E) tensor, counted as one sequence of ``total`` tokens attending to
    ``total`` keys (an upper bound: the real per-sequence lengths are values)."""
    return attention_core(_heads_first(query), _heads_first(key), _heads_first(value),
                          masked=alibi_slopes is not None, dropout=bool(dropout_p))  # alibi: one add per score


@by_name
def flash_attention_forward_into(*, out: Shape, query: Shape, key: Shape, value: Shape, dropout_p: float,
                                 alibi_slopes: Shape | None = None, out_shape: object = None,
                                 **kwargs: object) -> Cost:
    """``_flash_attention_forward_no_dropout_inplace(out, query, key, value, ...)``: the forward,
    written into ``out``."""
    return flash_attention_forward(query=query, key=key, value=value, dropout_p=dropout_p, alibi_slopes=alibi_slopes)


@by_name
def efficient_attention_forward(*, query: Shape, key: Shape, value: Shape, bias: Shape | None, dropout_p: float,
                                out_shape: object = None, **kwargs: object) -> Cost:
    """``_efficient_attention_forward(query, key, value, bias, cu_seqlens_q, cu_seqlens_k,
    max_seqlen_q, max_seqlen_k, dropout_p, custom_mask_type, ...)``: a bias tensor is one add per score."""
    return attention_core(_heads_first(query), _heads_first(key), _heads_first(value), masked=bias is not None,
                          dropout=bool(dropout_p))


@by_name
def flash_attention_backward(*, query: Shape, key: Shape, value: Shape, dropout_p: float,
                             out_shape: object = None, **kwargs: object) -> Cost:
    """``_flash_attention_backward(grad_out, query, key, value, out, logsumexp, cum_seq_q, cum_seq_k,
    max_q, max_k, dropout_p, ...)``: the gradients of attention_core_backward."""
    return attention_core_backward(_heads_first(query), _heads_first(key), _heads_first(value),
                                   dropout=bool(dropout_p))


@by_name
def efficient_attention_backward(*, query: Shape, key: Shape, value: Shape, dropout_p: float,
                                 out_shape: object = None, **kwargs: object) -> Cost:
    """``_efficient_attention_backward(grad_out_, query, key, value, bias, out, cu_seqlens_q,
    cu_seqlens_k, max_seqlen_q, max_seqlen_k, logsumexp, dropout_p, ...)``."""
    return attention_core_backward(_heads_first(query), _heads_first(key), _heads_first(value),
                                   dropout=bool(dropout_p))


RULES.update({
    "_flash_attention_forward": flash_attention_forward,
    "_flash_attention_forward_no_dropout_inplace": flash_attention_forward_into,
    "_efficient_attention_forward": efficient_attention_forward,
    "_flash_attention_backward": flash_attention_backward,
    "_efficient_attention_backward": efficient_attention_backward,
    # the SDPA kernels' own backward: (grad_out, q, k, v, ...) in SDPA's layout, dropout_p the
    # first float argument, as for the CPU kernel
    "_scaled_dot_product_flash_attention_backward": flash_cpu_backward,
    "_scaled_dot_product_efficient_attention_backward": flash_cpu_backward,
    "_scaled_dot_product_cudnn_attention_backward": flash_cpu_backward,
    "_scaled_dot_product_fused_attention_overrideable_backward": flash_cpu_backward,
    "_scaled_dot_product_attention_math_for_mps": sdpa,
})

def cudnn_attention_into(out: Shape, q: Shape, k: Shape, v: Shape, *args: object, out_shape: object = None,
                         **kwargs: object) -> Cost:
    """``_cudnn_attention_forward_no_dropout_inplace(out, q, k, v, ...)`` (torch 2.15): SDPA's
    layout, no mask, no dropout."""
    return attention_core(q, k, v, masked=False, dropout=False)


# the cudnn kernel behind _scaled_dot_product_cudnn_attention (SDPA's layout), the prototype
# triton kernels, all counted as the unit they implement
RULES.update({
    "_cudnn_attention_forward_no_dropout_inplace": cudnn_attention_into,
    "_cudnn_attention_forward": with_bias,
    "_cudnn_attention_backward": flash_cpu_backward,
    "_triton_scaled_dot_attention": flash_cuda,
    "_triton_multi_head_attention": native_mha,
})
