"""generate() inside a count() block: a small transformers decoder with its KV cache costs the
prefill plus N - 1 decode steps, each at its cache length, as worked here from the config."""

from __future__ import annotations

import os

import pytest
import torch

import pytest_flopbudget as fb

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

HIDDEN, INTER, LAYERS, HEADS, KV_HEADS, VOCAB = 64, 128, 2, 4, 2, 100
HEAD_DIM = HIDDEN // HEADS
PROMPT = 5


def dots(n: int, k: int) -> int:
    return n * (2 * k - 1)


def decoder():
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=64,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def projections_per_token() -> int:
    """q, k, v, o and the SwiGLU MLP of every layer (Llama's linears have no bias)."""
    kv = KV_HEADS * HEAD_DIM
    per_layer = (dots(HIDDEN, HIDDEN) + 2 * dots(kv, HIDDEN) + dots(HIDDEN, HIDDEN)
                 + 2 * dots(INTER, HIDDEN) + dots(HIDDEN, INTER))
    return LAYERS * per_layer


def attention(queries: int, cache: int) -> int:
    """One layer's attention of ``queries`` new tokens over ``cache`` keys (every query head):
    scores, scaling and softmax, A·V. No mask tensor: prefill is causal, a decode step sees all."""
    scores = HEADS * queries * cache
    return dots(scores, HEAD_DIM) + 2 * scores + dots(HEADS * queries * HEAD_DIM, cache)


def step(queries: int, cache: int) -> tuple[int, int]:
    """(matrix products, attention) of one forward: the LM head runs on the last position only."""
    return queries * projections_per_token() + dots(VOCAB, HIDDEN), LAYERS * attention(queries, cache)


def generate_by_hand(new_tokens: int) -> tuple[int, int]:
    """Prefill of the prompt, then N - 1 decode steps of one token at cache length P + t."""
    steps = [step(PROMPT, PROMPT)] + [step(1, PROMPT + t) for t in range(1, new_tokens)]
    return sum(s[0] for s in steps), sum(s[1] for s in steps)


def count_generate(model, new_tokens: int):
    ids = torch.randint(0, VOCAB, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    with fb.count() as counted:
        out = model.generate(ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert out.shape == (1, PROMPT + new_tokens)
    return counted


@pytest.mark.parametrize("new_tokens", [1, 4])
def test_generate_is_prefill_plus_decode_steps(new_tokens):
    counted = count_generate(decoder(), new_tokens)
    assert counted.uncounted == {}
    products, attn = generate_by_hand(new_tokens)
    assert counted.ops["aten.mm"] == products
    assert counted.ops["aten.scaled_dot_product_attention"] == attn
    assert counted.params == sum(p.numel() for p in decoder().parameters())
    assert counted.modules["LlamaForCausalLM"].flops <= counted.flops  # sampling runs outside


def test_one_more_token_costs_one_decode_step_at_its_cache_length():
    model = decoder()
    three, four = count_generate(model, 3), count_generate(model, 4)
    products, attn = step(1, PROMPT + 3)
    assert four.ops["aten.mm"] - three.ops["aten.mm"] == products
    assert (four.ops["aten.scaled_dot_product_attention"] - three.ops["aten.scaled_dot_product_attention"]) == attn


def test_generate_on_meta_is_refused_clearly():
    """Stopping criteria read token values (unfinished sequences, eos checks): meta has none."""
    with torch.device("meta"):
        model = decoder()
    with pytest.raises(fb.MeasurementError, match="reads tensor values"):
        with fb.count(device="meta"):
            model.generate(torch.zeros(1, PROMPT, dtype=torch.long), max_new_tokens=2, do_sample=False,
                           pad_token_id=0, eos_token_id=None)
    with fb.count(device="meta") as one_forward:  # a single forward has no such reads
        model(torch.zeros(1, PROMPT, dtype=torch.long))
    assert one_forward.ops["aten.mm"] == PROMPT * projections_per_token() + PROMPT * dots(VOCAB, HIDDEN)
