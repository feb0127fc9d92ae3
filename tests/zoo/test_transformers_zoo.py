"""transformers families built from small configs (random weights, no downloads): encoders,
decoders (MoE included), encoder-decoders, speech, vision and state-space models.

Per model: nothing uncounted, the same counts on cpu and meta for one ready instance, params
equal to the unique parameters (tied embeddings once). These run in the pinned environment too
(transformers needs no torchvision for them).
"""

from __future__ import annotations

import pytest
import torch

import pytest_flopbudget as fb

from zoo_helpers import assert_counts_everywhere, require, unique_params

tf = require("transformers")

LAYERS = dict(num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=128)
DECODER = dict(LAYERS, num_key_value_heads=2, vocab_size=256)


def ids(n: int = 8) -> dict:
    return {"input_ids": torch.randint(1, 250, (1, n), generator=torch.Generator().manual_seed(0))}


def audio(n: int = 1600) -> torch.Tensor:
    return torch.randn(1, n, generator=torch.Generator().manual_seed(0))


def image(side: int = 32, channels: int = 3) -> torch.Tensor:
    return torch.randn(1, channels, side, side, generator=torch.Generator().manual_seed(0))


# name: (config class, config keywords, model class, inputs)
FAMILIES = {
    # encoders
    "bert": ("BertConfig", dict(LAYERS, vocab_size=256), "BertModel", ids),
    "distilbert": ("DistilBertConfig", dict(dim=64, n_layers=2, n_heads=4, hidden_dim=128, vocab_size=256),
                   "DistilBertModel", ids),
    "roberta": ("RobertaConfig", dict(LAYERS, vocab_size=256), "RobertaModel", ids),
    "albert": ("AlbertConfig", dict(LAYERS, embedding_size=32, vocab_size=256), "AlbertModel", ids),
    "electra": ("ElectraConfig", dict(LAYERS, embedding_size=32, vocab_size=256), "ElectraModel", ids),
    "deberta_v2": ("DebertaV2Config", dict(LAYERS, vocab_size=256), "DebertaV2Model", ids),
    # decoders
    "gpt2": ("GPT2Config", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=256), "GPT2LMHeadModel", ids),
    "llama": ("LlamaConfig", DECODER, "LlamaForCausalLM", ids),
    "mistral": ("MistralConfig", DECODER, "MistralForCausalLM", ids),
    "qwen2": ("Qwen2Config", DECODER, "Qwen2ForCausalLM", ids),
    "qwen3": ("Qwen3Config", dict(DECODER, head_dim=16), "Qwen3ForCausalLM", ids),
    "gemma": ("GemmaConfig", dict(DECODER, head_dim=16), "GemmaForCausalLM", ids),
    "phi": ("PhiConfig", dict(DECODER), "PhiForCausalLM", ids),
    "gpt_neox": ("GPTNeoXConfig", dict(LAYERS, vocab_size=256), "GPTNeoXForCausalLM", ids),
    "opt": ("OPTConfig", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128,
                              word_embed_proj_dim=64, vocab_size=256), "OPTForCausalLM", ids),
    "falcon": ("FalconConfig", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=256),
               "FalconForCausalLM", ids),
    "mixtral": ("MixtralConfig", dict(DECODER, num_local_experts=4, num_experts_per_tok=2), "MixtralForCausalLM", ids),
    "qwen2_moe": ("Qwen2MoeConfig", dict(DECODER, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                         shared_expert_intermediate_size=48), "Qwen2MoeForCausalLM", ids),
    # encoder-decoders
    "t5": ("T5Config", dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, vocab_size=256),
           "T5ForConditionalGeneration", lambda: dict(ids(), decoder_input_ids=ids(4)["input_ids"])),
    "bart": ("BartConfig", dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=256),
             "BartForConditionalGeneration", lambda: dict(ids(), decoder_input_ids=ids(4)["input_ids"])),
    # speech
    "whisper": ("WhisperConfig", dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                      decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                                      num_mel_bins=16, max_source_positions=20, vocab_size=256,
                                      pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1),
                "WhisperForConditionalGeneration",
                lambda: dict(input_features=torch.randn(1, 16, 40), decoder_input_ids=ids(4)["input_ids"])),
    "wav2vec2": ("Wav2Vec2Config", dict(LAYERS, conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3),
                                        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4),
                 "Wav2Vec2Model", audio),
    "hubert": ("HubertConfig", dict(LAYERS, conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3),
                                    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4),
               "HubertModel", audio),
    # vision
    "vit": ("ViTConfig", dict(LAYERS, image_size=32, patch_size=8), "ViTModel", image),
    "swin": ("SwinConfig", dict(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                                window_size=4), "SwinModel", image),
    "convnext": ("ConvNextConfig", dict(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2), "ConvNextModel", image),
    "clip_vision": ("CLIPVisionConfig", dict(LAYERS, image_size=32, patch_size=8), "CLIPVisionModel", image),
    "dinov2": ("Dinov2Config", dict(LAYERS, image_size=32, patch_size=8), "Dinov2Model", image),
    "segformer": ("SegformerConfig", dict(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                                          hidden_sizes=[16, 32], num_attention_heads=[1, 2], decoder_hidden_size=32,
                                          patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2]),
                  "SegformerForSemanticSegmentation", image),
    # state-space
    "mamba": ("MambaConfig", dict(hidden_size=64, num_hidden_layers=2, state_size=8, vocab_size=256),
              "MambaForCausalLM", ids),
    "mamba2": ("Mamba2Config", dict(hidden_size=64, num_hidden_layers=2, state_size=8, num_heads=8, head_dim=16,
                                    n_groups=1, vocab_size=256, chunk_size=8), "Mamba2ForCausalLM", ids),
}


# Families whose forward reads tensor values on the host and takes another path without them:
# their cpu and meta counts may differ, and the cpu count must say where it read values.
VALUE_DEPENDENT = {
    "bart": "the encoder-decoder mask preparation inspects the ids/mask values on real tensors",
}


def build(family):
    config_name, config_kwargs, model_name, inputs = FAMILIES[family]
    if not hasattr(tf, model_name):
        pytest.skip(f"transformers {tf.__version__} has no {model_name}")
    config = getattr(tf, config_name)(**config_kwargs)
    torch.manual_seed(0)
    return getattr(tf, model_name)(config).eval(), inputs


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in VALUE_DEPENDENT])
def test_transformers_family(family):
    model, inputs = build(family)
    assert_counts_everywhere(model, inputs())


@pytest.mark.parametrize("family", list(VALUE_DEPENDENT))
def test_value_dependent_family_says_so(family):
    model, inputs = build(family)
    cpu = fb.measure(model, inputs(), device="cpu")
    meta = fb.measure(model, inputs(), device="meta")
    assert cpu.uncounted == {} and meta.uncounted == {}
    assert cpu.params == meta.params == unique_params(model)
    if (cpu.flops, cpu.macs) != (meta.flops, meta.macs):
        assert cpu.value_dependent, f"cpu and meta differ but no value read was recorded ({VALUE_DEPENDENT[family]})"
