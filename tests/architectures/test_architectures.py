"""Real architectures, built from transformers configs (no downloads, no weights).

For each: nothing uncounted on cpu and on meta; identical flops, macs and memory (to the byte) on
cpu and meta and with and without torch.no_grad(), parameter bytes equal to the model's own; and the matmul/conv part of the total (the MACs of aten.mm,
addmm, bmm, baddbmm and convolution, plus the attention units' MACs) equal to an analytic count
worked here from the config: convolutions, projections, MLPs, Q·Kᵀ and A·V per layer, the head.
An attention unit's MACs also hold its per-score elementwise work (scale, softmax, and the mask
add when a mask tensor is given), which the analytic side adds as ``scores × (2 + masked)``.
"""

from __future__ import annotations

import math

import pytest
import torch
import transformers as tf

import pytest_flopbudget as fb

from arch_configs import (
    bert_config,
    build,
    clip_vision_config,
    convnext_tiny_config,
    gpt2_config,
    llama_config,
    mixtral_config,
    mobilenet_v2_config,
    resnet50_config,
    swin_config,
    t5_config,
    vit_config,
    whisper_config,
)

MATMUL_OPS = ("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm", "aten.convolution")
ATTENTION_UNITS = ("aten.scaled_dot_product_attention", "aten.multi_head_attention_forward")


def matmul_part(m: fb.Measurement) -> int:
    return sum(m.op_macs.get(op, 0) for op in MATMUL_OPS + ATTENTION_UNITS)


def linear(tokens: int, fan_in: int, fan_out: int, bias: bool = True) -> int:
    return tokens * fan_out * fan_in + (tokens * fan_out if bias else 0)


def conv(out_spatial: int, c_in: int, c_out: int, taps: int, groups: int = 1, bias: bool = False) -> int:
    """MACs of a convolution whose kernel has ``taps`` positions (k·k in 2-D, k in 1-D)."""
    return out_spatial * c_out * (taps * c_in // groups) + (out_spatial * c_out if bias else 0)


def attention(heads: int, length: int, source: int, head_dim: int, *, unit: bool, masked: bool = False) -> int:
    """Q·Kᵀ and A·V; for an SDPA unit also its per-score scale, softmax and mask add."""
    scores = heads * length * source
    products = 2 * scores * head_dim
    return products + (scores * (2 + masked) if unit else 0)


def assert_consistent(model, inputs, *, devices=("cpu", "meta")):
    """Counts on every device and grad mode agree, nothing uncounted; returns the cpu count."""
    results = []
    for device in devices:
        for grad in (True, False):
            with torch.set_grad_enabled(grad):
                m = fb.measure(model, inputs, device=device)
            assert m.uncounted == {}, (device, grad, m.uncounted)
            results.append(m)
    first = results[0]
    for m in results[1:]:
        assert (m.flops, m.macs, m.params) == (first.flops, first.macs, first.params), m.device
        # memory too, to the byte: a storage's nbytes() is the same for a fake tensor
        assert m.memory == first.memory, m.device
    assert first.memory.categories["parameters"] == sum(p.numel() * p.element_size() for p in _unique_params(model))
    return first


def _unique_params(model):
    model = model() if callable(model) and not isinstance(model, torch.nn.Module) else model
    return {id(p): p for p in model.parameters()}.values()


def images(size: int) -> torch.Tensor:
    return torch.randn(1, 3, size, size)


def token_ids(n: int) -> torch.Tensor:
    return torch.randint(0, 1000, (1, n), generator=torch.Generator().manual_seed(0))


# --- convolutional networks ------------------------------------------------------------------

@pytest.mark.slow
def test_resnet50():
    config = resnet50_config()
    m = assert_consistent(build(tf.ResNetForImageClassification, config), images(64), devices=("meta", "cpu"))
    # stem: 7×7/2 conv 3→64 (64 → 32), 3×3/2 max pool (→ 16); bottlenecks reduce 4×
    expected = conv(32 * 32, 3, config.embedding_size, 7 * 7)
    side, c_in = 16, config.embedding_size
    for stage, (width, depth) in enumerate(zip(config.hidden_sizes, config.depths)):
        for block in range(depth):
            stride = 2 if stage > 0 and block == 0 else 1
            out_side = side // stride
            mid = width // 4
            expected += conv(side * side, c_in, mid, 1)  # 1×1 reduce
            expected += conv(out_side * out_side, mid, mid, 3 * 3)  # 3×3 (strided)
            expected += conv(out_side * out_side, mid, width, 1)  # 1×1 expand
            if c_in != width or stride != 1:
                expected += conv(out_side * out_side, c_in, width, 1)  # projection shortcut
            side, c_in = out_side, width
    expected += linear(1, 2048, config.num_labels)
    assert matmul_part(m) == expected
    assert m.params == 25_557_032  # torchvision's resnet50: the layout is ResNet-50's


def test_mobilenet_v2():
    config = mobilenet_v2_config()
    m = assert_consistent(build(tf.MobileNetV2ForImageClassification, config), images(64))
    # stem: 3×3/2 conv 3→32 (64 → 32), depthwise 3×3, 1×1 32→16; then the (t, c, n, s) table
    expected = conv(32 * 32, 3, 32, 3 * 3) + conv(32 * 32, 32, 32, 3 * 3, groups=32) + conv(32 * 32, 32, 16, 1)
    side, c_in = 32, 16
    for t, c, n, s in [(6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            out_side = math.ceil(side / (s if i == 0 else 1))  # TF "same" padding
            hidden = c_in * t
            expected += conv(side * side, c_in, hidden, 1)
            expected += conv(out_side * out_side, hidden, hidden, 3 * 3, groups=hidden)
            expected += conv(out_side * out_side, hidden, c, 1)
            side, c_in = out_side, c
    expected += conv(side * side, 320, 1280, 1) + linear(1, 1280, config.num_labels)
    assert matmul_part(m) == expected


def test_convnext_tiny():
    config = convnext_tiny_config()
    m = assert_consistent(build(tf.ConvNextForImageClassification, config), images(64))
    side = 64 // 4  # 4×4/4 patchify stem
    expected = conv(side * side, 3, config.hidden_sizes[0], 4 * 4, bias=True)
    c_in = config.hidden_sizes[0]
    for stage, (width, depth) in enumerate(zip(config.hidden_sizes, config.depths)):
        if stage > 0:  # 2×2/2 downsampling conv
            side //= 2
            expected += conv(side * side, c_in, width, 2 * 2, bias=True)
        tokens = side * side
        for _ in range(depth):
            expected += conv(tokens, width, width, 7 * 7, groups=width, bias=True)  # depthwise 7×7
            expected += linear(tokens, width, 4 * width) + linear(tokens, 4 * width, width)
        c_in = width
    expected += linear(1, 768, config.num_labels)
    assert matmul_part(m) == expected


# --- vision transformers ---------------------------------------------------------------------

def test_vit_b16():
    config = vit_config()
    m = assert_consistent(build(tf.ViTForImageClassification, config), images(64))
    h, heads, tokens = config.hidden_size, config.num_attention_heads, (64 // 16) ** 2 + 1
    expected = conv((64 // 16) ** 2, 3, h, 16 * 16, bias=True)
    per_layer = 4 * linear(tokens, h, h) + attention(heads, tokens, tokens, h // heads, unit=True) \
        + linear(tokens, h, config.intermediate_size) + linear(tokens, config.intermediate_size, h)
    expected += config.num_hidden_layers * per_layer + linear(1, h, config.num_labels)
    assert matmul_part(m) == expected


@pytest.mark.slow
def test_swin_tiny():
    config = swin_config()
    model = build(tf.SwinForImageClassification, config)
    m = assert_consistent(model, images(config.image_size), devices=("meta", "cpu"))
    side = config.image_size // config.patch_size
    dim, window = config.embed_dim, config.window_size
    expected = conv(side * side, 3, dim, config.patch_size ** 2, bias=True)
    for stage, (depth, heads) in enumerate(zip(config.depths, config.num_heads)):
        if stage > 0:  # patch merging: 2×2 neighbours concatenated, 4·dim → 2·dim, no bias
            side //= 2
            expected += linear(side * side, 4 * dim, 2 * dim, bias=False)
            dim *= 2
        tokens = side * side
        windows = tokens // (window * window)
        # every block masks: relative position bias (and the shift mask) is an additive mask
        per_block = 4 * linear(tokens, dim, dim) \
            + attention(windows * heads, window * window, window * window, dim // heads, unit=True, masked=True) \
            + linear(tokens, dim, 4 * dim) + linear(tokens, 4 * dim, dim)
        expected += depth * per_block
    expected += linear(1, dim, config.num_labels)
    assert matmul_part(m) == expected


def test_clip_vision_tower():
    config = clip_vision_config()
    m = assert_consistent(build(tf.CLIPVisionModel, config), images(64))
    h, heads, tokens = config.hidden_size, config.num_attention_heads, (64 // 16) ** 2 + 1
    expected = conv((64 // 16) ** 2, 3, h, 16 * 16)  # patch embedding, no bias
    per_layer = 4 * linear(tokens, h, h) + attention(heads, tokens, tokens, h // heads, unit=True) \
        + linear(tokens, h, config.intermediate_size) + linear(tokens, config.intermediate_size, h)
    expected += config.num_hidden_layers * per_layer
    assert matmul_part(m) == expected


# --- language and speech models --------------------------------------------------------------

def bert_matmuls(config, tokens: int, *, unit: bool, masked: bool) -> int:
    h, heads = config.hidden_size, config.num_attention_heads
    per_layer = 4 * linear(tokens, h, h) + attention(heads, tokens, tokens, h // heads, unit=unit, masked=masked) \
        + linear(tokens, h, config.intermediate_size) + linear(tokens, config.intermediate_size, h)
    return config.num_hidden_layers * per_layer + linear(1, h, h)  # + pooler on [CLS]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_bert_base_layout(attn):
    config = bert_config(attn)
    m = assert_consistent(build(tf.BertModel, config), {"input_ids": token_ids(16)})
    assert matmul_part(m) == bert_matmuls(config, 16, unit=attn == "sdpa", masked=False)


def test_bert_sdpa_and_eager_differ_only_by_elementwise_work():
    """Eager: Q·Kᵀ and A·V are bmm ops, scores divided by √d (one per score), softmax; SDPA: one
    unit with the same products, scale and softmax. Without a mask they are equal; with a
    padding mask both add it once per score, eager also builds its additive mask with a `where`
    over B·L·S elements and a `ge`/`bitwise_and` on the way, which SDPA's path runs too."""
    ids = token_ids(16)
    mask = torch.ones(1, 16, dtype=torch.long)
    mask[0, 12:] = 0
    for inputs in ({"input_ids": ids}, {"input_ids": ids, "attention_mask": mask}):
        sdpa = fb.measure(build(tf.BertModel, bert_config("sdpa")), inputs, device="meta")
        eager = fb.measure(build(tf.BertModel, bert_config("eager")), inputs, device="meta")
        assert matmul_part(eager) + eager.ops.get("aten.mul", 0) + eager.ops["aten._softmax"] \
            + eager.ops.get("aten.add", 0) == matmul_part(sdpa) + sdpa.ops.get("aten.add", 0)
        difference = eager.flops - sdpa.flops
        # the eager mask is materialised with one `where` over its 1·16·16 elements
        assert difference == eager.ops.get("aten.where", 0) - sdpa.ops.get("aten.where", 0)
        assert abs(difference) <= 16 * 16


def test_bert_all_ones_mask_is_dropped_on_cpu_only():
    """transformers inspects an all-ones attention mask on real tensors and drops it; on meta it
    cannot look at values, so it keeps the mask: one add per score more, and the mask building."""
    config = bert_config("sdpa")
    inputs = {"input_ids": token_ids(16), "attention_mask": torch.ones(1, 16, dtype=torch.long)}
    cpu = fb.measure(build(tf.BertModel, config), inputs, device="cpu")
    meta = fb.measure(build(tf.BertModel, config), inputs, device="meta")
    assert matmul_part(cpu) == bert_matmuls(config, 16, unit=True, masked=False)
    assert matmul_part(meta) == bert_matmuls(config, 16, unit=True, masked=True)


def test_gpt2_small_layout():
    config = gpt2_config()
    m = assert_consistent(build(tf.GPT2LMHeadModel, config), {"input_ids": token_ids(16)})
    h, heads, t = config.n_embd, config.n_head, 16
    # causal: is_causal, no mask tensor; the masked half is counted
    per_layer = linear(t, h, 3 * h) + attention(heads, t, t, h // heads, unit=True) + linear(t, h, h) \
        + linear(t, h, 4 * h) + linear(t, 4 * h, h)
    expected = config.n_layer * per_layer + linear(t, h, config.vocab_size, bias=False)  # tied head
    assert matmul_part(m) == expected


def test_llama_style_decoder():
    config = llama_config()
    m = assert_consistent(build(tf.LlamaForCausalLM, config), {"input_ids": token_ids(16)})
    h, heads, kv, t = config.hidden_size, config.num_attention_heads, config.num_key_value_heads, 16
    d, inter = h // heads, config.intermediate_size
    per_layer = linear(t, h, heads * d, False) + 2 * linear(t, h, kv * d, False) + linear(t, heads * d, h, False) \
        + attention(heads, t, t, d, unit=True) \
        + 2 * linear(t, h, inter, False) + linear(t, inter, h, False)  # SwiGLU: gate, up, down
    # the rotary frequencies (positions ⊗ inv_freq) are a broadcast multiply: elementwise, not here
    expected = config.num_hidden_layers * per_layer + linear(t, h, config.vocab_size, False)
    assert matmul_part(m) == expected
    assert "aten.silu" in m.ops and "aten.rsqrt" in m.ops  # SwiGLU and RMSNorm counted


def test_t5_small_encoder_decoder():
    config = t5_config()
    inputs = {"input_ids": token_ids(16), "decoder_input_ids": token_ids(8)}
    m = assert_consistent(build(tf.T5ForConditionalGeneration, config), inputs)
    dm, inner, heads, dk, ff = config.d_model, config.num_heads * config.d_kv, config.num_heads, config.d_kv, config.d_ff
    te, td = 16, 8
    # the relative position bias is an additive mask in every attention
    encoder = 4 * linear(te, dm, inner, False) + attention(heads, te, te, dk, unit=True, masked=True) \
        + linear(te, dm, ff, False) + linear(te, ff, dm, False)
    decoder = 4 * linear(td, dm, inner, False) + attention(heads, td, td, dk, unit=True, masked=True) \
        + 2 * linear(td, dm, inner, False) + 2 * linear(te, dm, inner, False) \
        + attention(heads, td, te, dk, unit=True, masked=True) \
        + linear(td, dm, ff, False) + linear(td, ff, dm, False)
    expected = config.num_layers * encoder + config.num_decoder_layers * decoder \
        + linear(td, dm, config.vocab_size, False)
    assert matmul_part(m) == expected


def test_whisper_tiny_encoder():
    config = whisper_config()
    encoder = build(lambda c: tf.WhisperModel(c).encoder, config)
    frames = 2 * config.max_source_positions
    m = assert_consistent(encoder, torch.randn(1, config.num_mel_bins, frames))
    d, heads, t = config.d_model, config.encoder_attention_heads, config.max_source_positions
    # conv front end: k=3 80→d over all frames, then k=3 stride 2 d→d
    expected = conv(frames, config.num_mel_bins, d, 3, bias=True) + conv(t, d, d, 3, bias=True)
    per_layer = linear(t, d, d) + linear(t, d, d, bias=False) + linear(t, d, d) + linear(t, d, d) \
        + attention(heads, t, t, d // heads, unit=True) \
        + linear(t, d, config.encoder_ffn_dim) + linear(t, config.encoder_ffn_dim, d)
    expected += config.encoder_layers * per_layer
    assert matmul_part(m) == expected


def moe_matmuls(config, tokens: int) -> int:
    h, inter, k = config.hidden_size, config.intermediate_size, config.num_experts_per_tok
    router = linear(tokens, h, config.num_local_experts, False)
    # every token runs k experts: gate and up (h → 2·inter), down (inter → h), no biases
    return router + tokens * k * (2 * inter * h + h * inter)


def test_mixtral_moe_block():
    config = mixtral_config("batched_mm")
    block = build(tf.models.mixtral.modeling_mixtral.MixtralSparseMoeBlock, config)
    x = torch.randn(1, 16, config.hidden_size)
    m = assert_consistent(block, x)
    assert matmul_part(m) == moe_matmuls(config, 16)


def test_mixtral_eager_experts_loop_on_cpu():
    """The eager experts loop over the experts that were hit, with data-dependent shapes: it runs
    on cpu only (meta raises a MeasurementError that says so), and counts the same products."""
    config = mixtral_config("eager")
    block = build(tf.models.mixtral.modeling_mixtral.MixtralSparseMoeBlock, config)
    x = torch.randn(1, 16, config.hidden_size)
    m = fb.measure(block, x, device="cpu")
    assert m.uncounted == {}
    assert matmul_part(m) == moe_matmuls(config, 16)
    with pytest.raises(fb.MeasurementError, match="cannot run on meta"):
        fb.measure(block, x, device="meta")
