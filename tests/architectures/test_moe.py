"""Mixture-of-experts decoders of transformers 5, built from small configs.

transformers runs experts with ``torch._grouped_mm`` (the default ``grouped_mm`` experts
implementation): tokens sorted by expert, tokens per expert counted with ``histc``, one grouped
GEMM for gate+up and one for down. For each family: nothing uncounted; identical counts on cpu
and meta (meta needs the counter's own output for the grouped GEMM, whose fake kernel refuses
float32); the experts' MACs equal tokens × top-k × (gate+up and down products) worked from the
config, and equal what the ``batched_mm`` implementation (one bmm per routed token: every
product is visible, so it is the reference) counts for the same model.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers as tf  # noqa: E402

import pytest_flopbudget as fb  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(torch, "_grouped_mm"), reason="this torch has no _grouped_mm")

TOKENS = 8
SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=256)


def every_layer(config):
    return list(range(config.num_hidden_layers))


# family: (config class, model class, config keywords, expert width key, layers with routed experts)
FAMILIES = {
    "Mixtral": ("MixtralConfig", "MixtralForCausalLM",
                dict(num_local_experts=4, num_experts_per_tok=2), "intermediate_size", every_layer),
    "Qwen2Moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM",
                 dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                      shared_expert_intermediate_size=48), "moe_intermediate_size", every_layer),
    "Qwen3Moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                 dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, head_dim=16),
                 "moe_intermediate_size", every_layer),
    "Olmoe": ("OlmoeConfig", "OlmoeForCausalLM", dict(num_experts=4, num_experts_per_tok=2, eos_token_id=0),
              "intermediate_size", every_layer),
    "DeepseekV3": ("DeepseekV3Config", "DeepseekV3ForCausalLM",
                   dict(n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, n_shared_experts=1,
                        first_k_dense_replace=1, n_group=2, topk_group=1, q_lora_rank=32, kv_lora_rank=16,
                        qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16),
                   "moe_intermediate_size", lambda c: list(range(c.first_k_dense_replace, c.num_hidden_layers))),
    "Jamba": ("JambaConfig", "JambaForCausalLM",
              dict(num_experts=4, num_experts_per_tok=2, attn_layer_period=2, attn_layer_offset=1,
                   expert_layer_period=2, expert_layer_offset=1, mamba_d_state=8),
              "intermediate_size",
              lambda c: [i for i in range(c.num_hidden_layers)
                         if i % c.expert_layer_period == c.expert_layer_offset]),
    "GraniteMoe": ("GraniteMoeConfig", "GraniteMoeForCausalLM",
                   dict(num_local_experts=4, num_experts_per_tok=2), "intermediate_size", every_layer),
    "GptOss": ("GptOssConfig", "GptOssForCausalLM",
               dict(num_local_experts=4, num_experts_per_tok=2, head_dim=16,
                    layer_types=["sliding_attention", "full_attention"]),
               "intermediate_size", every_layer),
}


def build(family: str, experts: str):
    config_name, model_name, extra, _, _ = FAMILIES[family]
    if not hasattr(tf, model_name):
        pytest.skip(f"transformers {tf.__version__} has no {model_name}")
    config = getattr(tf, config_name)(**SMALL, **extra, experts_implementation=experts)
    torch.manual_seed(0)
    return config, getattr(tf, model_name)(config).eval()


def expert_macs(family: str, config) -> int:
    """Every token runs top-k experts, each gate and up (h → 2·w) and down (w → h), no bias in
    the products (GPT-OSS adds its expert biases with a separate add)."""
    _, _, _, width_key, moe_layers = FAMILIES[family]
    h, w, k = config.hidden_size, getattr(config, width_key), config.num_experts_per_tok
    per_token = 2 * w * h + w * h
    return len(moe_layers(config)) * TOKENS * k * per_token


def token_ids():
    return {"input_ids": torch.randint(0, 256, (1, TOKENS), generator=torch.Generator().manual_seed(0))}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_grouped_experts_counted_exactly_on_cpu_and_meta(family):
    config, model = build(family, "grouped_mm")
    cpu = fb.measure(model, token_ids(), device="cpu")
    meta = fb.measure(model, token_ids(), device="meta")
    assert cpu.uncounted == {} and meta.uncounted == {}
    assert (cpu.flops, cpu.macs, cpu.params, cpu.ops) == (meta.flops, meta.macs, meta.params, meta.ops)
    assert cpu.op_macs["aten._grouped_mm"] == expert_macs(family, config)
    # routing's token histogram is bookkeeping
    assert cpu.ops["aten.histc"] == 0


@pytest.mark.parametrize("family", ["Mixtral", "Qwen2Moe", "DeepseekV3", "GptOss"])
def test_grouped_experts_equal_the_batched_reference(family):
    config, grouped_model = build(family, "grouped_mm")
    _, batched_model = build(family, "batched_mm")
    grouped = fb.measure(grouped_model, token_ids(), device="meta")
    batched = fb.measure(batched_model, token_ids(), device="cpu")
    assert batched.uncounted == {}
    # the batched experts are one bmm per routed token; whatever else runs bmm is common to both
    experts_in_batched = batched.op_macs["aten.bmm"] - grouped.op_macs.get("aten.bmm", 0)
    assert grouped.op_macs["aten._grouped_mm"] == experts_in_batched == expert_macs(family, config)


def test_grouped_experts_backward_on_meta():
    """Training counts too: the grouped GEMM's backward runs grouped GEMMs (2-D × 2-D for the
    weight gradient), three products per forward product in all."""
    config, model = build("Mixtral", "grouped_mm")
    cpu = fb.measure(model, token_ids(), device="cpu", backward=True)
    meta = fb.measure(model, token_ids(), device="meta", backward=True)
    assert cpu.uncounted == {} and (cpu.flops, cpu.macs) == (meta.flops, meta.macs)
    assert cpu.op_macs["aten._grouped_mm"] == 3 * expert_macs("Mixtral", config)
