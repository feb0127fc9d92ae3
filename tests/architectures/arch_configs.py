"""Small-config builds of real architectures, from their transformers *Config classes (no
downloads, no weights): default layer types, fewer layers and smaller sizes for CI time."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers as tf  # noqa: E402


def resnet50_config():
    # ResNet-50's layout (bottleneck blocks [3, 4, 6, 3], widths 256..2048), 64×64 images
    return tf.ResNetConfig(layer_type="bottleneck", depths=[3, 4, 6, 3],
                           hidden_sizes=[256, 512, 1024, 2048], embedding_size=64, num_labels=1000)


def mobilenet_v2_config():
    return tf.MobileNetV2Config(image_size=64, num_labels=1000)


def convnext_tiny_config():
    # ConvNeXt-Tiny's depths and widths, 64×64 images
    return tf.ConvNextConfig(depths=[3, 3, 9, 3], hidden_sizes=[96, 192, 384, 768], image_size=64,
                             num_labels=1000)


def vit_config():
    # ViT-B/16's widths, 2 of its 12 layers, 64×64 images (16 patches and the class token)
    return tf.ViTConfig(image_size=64, patch_size=16, hidden_size=768, num_hidden_layers=2,
                        num_attention_heads=12, intermediate_size=3072, num_labels=1000,
                        attn_implementation="sdpa")


def swin_config():
    # Swin-Tiny as configured by default (224 px, patch 4, window 7, depths [2, 2, 6, 2])
    return tf.SwinConfig(num_labels=1000, attn_implementation="sdpa")


def bert_config(attn):
    return tf.BertConfig(hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=1024, vocab_size=1000, attn_implementation=attn)


def gpt2_config():
    return tf.GPT2Config(n_embd=256, n_layer=2, n_head=4, vocab_size=1000, n_positions=128,
                         attn_implementation="sdpa")


def llama_config():
    return tf.LlamaConfig(hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                          num_attention_heads=8, num_key_value_heads=2, vocab_size=1000,
                          attn_implementation="sdpa")


def t5_config():
    return tf.T5Config(d_model=128, d_kv=32, d_ff=512, num_layers=2, num_decoder_layers=2,
                       num_heads=4, vocab_size=1000)


def whisper_config():
    return tf.WhisperConfig(d_model=384, encoder_layers=2, encoder_attention_heads=6,
                            encoder_ffn_dim=1536, num_mel_bins=80, max_source_positions=50,
                            attn_implementation="sdpa")


def clip_vision_config():
    return tf.CLIPVisionConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
                               num_attention_heads=4, image_size=64, patch_size=16,
                               attn_implementation="sdpa")


def mixtral_config(experts="batched_mm"):
    # batched_mm: data-independent shapes, so the block runs on meta; eager loops over the hit experts
    return tf.MixtralConfig(hidden_size=128, intermediate_size=256, num_local_experts=4,
                            num_experts_per_tok=2, num_hidden_layers=1, num_attention_heads=4,
                            num_key_value_heads=2, vocab_size=1000, experts_implementation=experts)


def build(factory, config):
    torch.manual_seed(0)
    return factory(config).eval()
