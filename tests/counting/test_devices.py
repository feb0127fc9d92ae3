"""One model, one input: identical counts on cpu, meta and cuda, with and without grad; a
LLaMA-7B-shaped decoder counted on meta without allocating its weights."""

from __future__ import annotations

import os
import resource

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pytest_flopbudget as fb

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class Mixed(nn.Module):
    """A little of everything a modern model runs: conv stem, norms, pooling, embeddings,
    fused attention (functional and nn.MultiheadAttention), GELU, residual adds."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.pos = nn.Embedding(16, 16)
        self.norm = nn.LayerNorm(16)
        self.qkv = nn.Linear(16, 48)
        self.mha = nn.MultiheadAttention(16, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.head = nn.Linear(16, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(image))  # (B, 16, 4, 4)
        tokens = x.flatten(2).transpose(1, 2)  # (B, 16, 16)
        tokens = tokens + self.pos(torch.arange(16, device=image.device))
        q, k, v = self.qkv(self.norm(tokens)).chunk(3, dim=-1)
        q, k, v = (t.unflatten(-1, (2, 8)).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).flatten(2)
        tokens = tokens + attended
        tokens = tokens + self.mha(tokens, tokens, tokens, need_weights=False)[0]
        tokens = tokens + self.mlp(tokens)
        return self.head(tokens.mean(dim=1))


def _counts(m: fb.Measurement) -> tuple[int, int, int]:
    return (m.flops, m.macs, m.params)


@pytest.fixture(scope="module")
def mixed_cpu():
    torch.manual_seed(0)
    model = Mixed().eval()
    return model, fb.measure(model, torch.randn(2, 3, 16, 16))


def test_mixed_model_is_fully_counted(mixed_cpu):
    _, m = mixed_cpu
    assert m.uncounted == {}
    # the fused attention kernel is counted, not lost (torch's FlopCounterMode counts it as 0 on CPU)
    b, heads, length, head_dim = 2, 2, 16, 8
    scores = b * heads * length * length
    assert m.ops["aten.scaled_dot_product_attention"] == (
        scores * (2 * head_dim - 1) + 2 * scores + b * heads * length * head_dim * (2 * length - 1)
    )


def test_cpu_and_meta_agree(mixed_cpu):
    model, cpu = mixed_cpu
    meta = fb.measure(model, torch.randn(2, 3, 16, 16), device="meta")
    assert _counts(meta) == _counts(cpu)
    assert meta.ops == cpu.ops
    assert {n: (c.flops, c.macs) for n, c in meta.modules.items()} == {
        n: (c.flops, c.macs) for n, c in cpu.modules.items()
    }


def test_a_model_built_on_meta_counts_like_cpu(mixed_cpu):
    _, cpu = mixed_cpu
    with torch.device("meta"):
        torch.manual_seed(0)
        model = Mixed().eval()
    assert _counts(fb.measure(model, torch.randn(2, 3, 16, 16), device="meta")) == _counts(cpu)


def test_grad_and_no_grad_agree(mixed_cpu):
    model, cpu = mixed_cpu
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        no_grad = fb.measure(model, x)
        no_grad_meta = fb.measure(model, x, device="meta")
    with torch.inference_mode():
        inference = fb.measure(model, x)
    assert _counts(no_grad) == _counts(no_grad_meta) == _counts(inference) == _counts(cpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_agrees_with_cpu(mixed_cpu):
    model, cpu = mixed_cpu
    x = torch.randn(2, 3, 16, 16)
    assert _counts(fb.measure(model, x, device="cuda")) == _counts(cpu)
    for dtype in (torch.float16, torch.bfloat16):  # flash / efficient / cudnn kernels
        half = fb.measure(lambda: Mixed().eval().to(dtype), lambda: x.to(dtype), device="cuda")
        assert _counts(half) == _counts(cpu)
    with torch.no_grad():
        assert _counts(fb.measure(model, x, device="cuda")) == _counts(cpu)


def _linear_flops(tokens: int, cin: int, cout: int) -> int:
    return tokens * cout * (2 * cin - 1)


@pytest.mark.slow
def test_llama_7b_on_meta_without_weights():
    """transformers' own LlamaForCausalLM on its default (sdpa) attention, 1×128 tokens."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=32000,
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m = fb.measure(
        lambda: transformers.LlamaForCausalLM(config),
        lambda: torch.zeros(1, 128, dtype=torch.long),
        device="meta",
    )
    rss_growth_gb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 2**20
    assert rss_growth_gb < 2, "the 27 GB of fp32 weights must never be allocated"
    assert m.uncounted == {}
    tokens, hidden, mlp, layers, heads, vocab = 128, 4096, 11008, 32, 32, 32000
    head_dim = hidden // heads
    per_layer_linear = 4 * _linear_flops(tokens, hidden, hidden) + 2 * _linear_flops(tokens, hidden, mlp)
    per_layer_linear += _linear_flops(tokens, mlp, hidden)
    assert m.ops["aten.mm"] == layers * per_layer_linear + _linear_flops(tokens, hidden, vocab)
    scores = heads * tokens * tokens
    attention = scores * (2 * head_dim - 1) + 2 * scores + heads * tokens * head_dim * (2 * tokens - 1)
    assert m.ops["aten.scaled_dot_product_attention"] == layers * attention
    params = vocab * hidden * 2 + layers * (4 * hidden * hidden + 3 * hidden * mlp + 2 * hidden) + hidden
    assert m.params == params
    # the usual estimate: 2 · (params outside the embedding) · tokens, plus attention
    estimate = 2 * (params - vocab * hidden) * tokens + layers * 4 * scores * head_dim
    assert abs(m.flops - estimate) / estimate < 0.01
    assert 1690 < m.gflops < 1710


def test_factories_with_value_dependent_initialisers_build_on_meta():
    """trunc_normal_ asks its tensor for values (ViT, ConvNeXt and Swin use it); on meta the
    factory must still build without memory and count like cpu."""

    class Truncated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 4)
            nn.init.trunc_normal_(self.layer.weight, std=0.02)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x) + torch.arange(4)  # a tensor created in forward, on the default device

    expected = 2 * 4 * (2 * 4 - 1) + 2 * 4 + 2 * 4  # linear, its bias, the add
    assert fb.measure(Truncated, lambda: torch.randn(2, 4), device="meta").flops == expected
    assert fb.measure(Truncated, lambda: torch.randn(2, 4), device="cpu").flops == expected


def test_a_shape_error_on_meta_is_raised_without_torchs_logged_traceback(caplog):
    """FakeTensorMode logs the failing op's whole traceback before raising: 40 lines of captured
    log beside the two-line failure in a pytest run. The caller's level for that logger is kept."""
    import logging

    logger = logging.getLogger("torch._subclasses.fake_tensor")
    logger.setLevel(logging.WARNING)
    try:
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(RuntimeError, match=r"\[3, 5\] X \[4, 4\]"):  # torch's own words, kept
                fb.measure(nn.Linear(4, 4), torch.randn(3, 5), device="meta")
            with pytest.raises(RuntimeError, match=r"\[3, 5\] X \[4, 4\]"):
                with fb.count(device="meta"):
                    nn.Linear(4, 4)(torch.randn(3, 5))
        assert [r.getMessage() for r in caplog.records if r.name.startswith("torch._subclasses")] == []
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(logging.NOTSET)
