"""The benchmark workloads: every model is built from a transformers ``*Config`` (no downloads).

Each workload gives a model factory and an inputs factory. Inputs are one positional tensor, the
form every peer accepts (fvcore traces positional arguments only; thop and ptflops call
``model(x)``). Each model is wrapped in ``FirstOutput``, which returns the model's first output
(logits or last hidden state) as a plain tensor so that fvcore's jit trace can follow it; it adds
no arithmetic. (``return_dict=False`` would do the same, but LlamaForCausalLM in transformers 5
then fails on ``outputs.last_hidden_state``.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    build: Callable[[], Any]  # zero-argument factory of the nn.Module
    make_input: Callable[[], Any]  # zero-argument factory of the single positional input
    meta_only: bool = False  # too big for a real forward here: counted on meta only
    quick: bool = True  # part of the --quick smoke run


def _first_output(build: Callable[[], Any]) -> Callable[[], Any]:
    def wrapped() -> Any:
        from torch import nn

        class FirstOutput(nn.Module):
            def __init__(self, model: nn.Module) -> None:
                super().__init__()
                self.model = model

            def forward(self, x: Any) -> Any:
                return self.model(x)[0]

        return FirstOutput(build())

    wrapped.__qualname__ = getattr(build, "__qualname__", "build")
    return wrapped


def _image() -> Any:
    import torch

    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def _tokens(vocab: int, length: int = 128) -> Callable[[], Any]:
    def make() -> Any:
        import torch

        return torch.randint(0, vocab, (1, length), generator=torch.Generator().manual_seed(0))

    return make


def _tokens_meta_safe(length: int = 128) -> Callable[[], Any]:
    # zeros, not randint: a factory called under FakeTensorMode / on meta has no generator to use
    def make() -> Any:
        import torch

        return torch.zeros(1, length, dtype=torch.long)

    return make


def resnet50() -> Any:
    import transformers as T

    return T.ResNetForImageClassification(T.ResNetConfig(num_labels=1000))


def mobilenet_v2() -> Any:
    import transformers as T

    return T.MobileNetV2ForImageClassification(T.MobileNetV2Config(num_labels=1000))


def vit_b16() -> Any:
    import transformers as T

    # ViTConfig's defaults are ViT-B/16 at 224x224 (12 layers, hidden 768, 12 heads, patch 16)
    return T.ViTForImageClassification(T.ViTConfig(num_labels=1000))


def bert_base(attn: str) -> Callable[[], Any]:
    def build() -> Any:
        import transformers as T

        return T.BertModel(T.BertConfig(attn_implementation=attn))

    return build


def gpt2_small() -> Any:
    import transformers as T

    return T.GPT2LMHeadModel(T.GPT2Config())


def llama_small() -> Any:
    import transformers as T

    # a LLaMA-style decoder small enough for a real forward: RMSNorm, rotary, SwiGLU, grouped-query attention
    cfg = T.LlamaConfig(
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        vocab_size=32000,
    )
    return T.LlamaForCausalLM(cfg)


def llama_7b() -> Any:
    import transformers as T

    cfg = T.LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
    )
    return T.LlamaForCausalLM(cfg)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("resnet50", "ResNet-50 (1×3×224×224)", _first_output(resnet50), _image),
        Workload("mobilenet_v2", "MobileNetV2 (1×3×224×224)", _first_output(mobilenet_v2), _image, quick=False),
        Workload("vit_b16", "ViT-B/16 (1×3×224×224, sdpa)", _first_output(vit_b16), _image, quick=False),
        Workload("bert_base_sdpa", "BERT-base, sdpa attention (1×128 tokens)", _first_output(bert_base("sdpa")), _tokens(30522)),
        Workload("bert_base_eager", "BERT-base, eager attention (1×128 tokens)", _first_output(bert_base("eager")), _tokens(30522), quick=False),
        Workload("gpt2_small", "GPT-2 small (1×128 tokens, sdpa)", _first_output(gpt2_small), _tokens(50257), quick=False),
        Workload("llama_small", "LLaMA-style decoder, 4 layers, hidden 512, GQA 8/4 heads (1×128 tokens)", _first_output(llama_small), _tokens(32000), quick=False),
        Workload("llama_7b", "7B-shaped LLaMA decoder on meta (32 layers, hidden 4096, 1×128 tokens)", _first_output(llama_7b), _tokens_meta_safe(), meta_only=True),
    )
}
