"""Memory of real architectures through the public API (issue 18): measure(..., optimizer=) and a
count() block give the same bytes on cpu and meta, to the byte, and the parts with a closed form
hold: gradients are the trainable parameter bytes, AdamW's state twice the parameter bytes plus one
float32 step counter per parameter tensor, SGD momentum's once.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

import pytest_flopbudget as fb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "architectures"))

import transformers as tf  # noqa: E402

from arch_configs import (  # noqa: E402
    bert_config, build, convnext_tiny_config, gpt2_config, llama_config, mobilenet_v2_config, vit_config,
)

pytestmark = pytest.mark.slow


def _ids() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(0, 1000, (2, 16), generator=torch.Generator().manual_seed(0))}


def _images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


ARCHITECTURES = {
    "gpt2": (lambda: build(tf.GPT2LMHeadModel, gpt2_config()), _ids),
    "llama": (lambda: build(tf.LlamaForCausalLM, llama_config()), _ids),
    "bert": (lambda: build(tf.BertModel, bert_config("sdpa")), _ids),
    "vit": (lambda: build(tf.ViTForImageClassification, vit_config()), _images),
    "mobilenet_v2": (lambda: build(tf.MobileNetV2ForImageClassification, mobilenet_v2_config()), _images),
    "convnext": (lambda: build(tf.ConvNextForImageClassification, convnext_tiny_config()), _images),
}
OPTIMIZERS = {
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=False),
    "sgd-momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
}


def _param_bytes(model: torch.nn.Module, trainable_only: bool = False) -> tuple[int, int]:
    params = {id(p): p for p in model.parameters() if p.requires_grad or not trainable_only}.values()
    return sum(p.numel() * p.element_size() for p in params), len(params)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_training_step_memory_is_the_same_on_cpu_and_meta(name: str, optimizer: str) -> None:
    make_model, make_inputs = ARCHITECTURES[name]
    model, inputs = make_model(), make_inputs()
    cpu = fb.measure(model, inputs, optimizer=OPTIMIZERS[optimizer])
    meta = fb.measure(model, inputs, optimizer=OPTIMIZERS[optimizer], device="meta")
    assert cpu.memory == meta.memory
    assert cpu.flops == meta.flops

    memory = cpu.memory
    weights, tensors = _param_bytes(model)
    assert memory.categories["parameters"] == weights
    state = 2 * weights + 4 * tensors if optimizer == "adamw" else weights
    assert memory.categories["optimizer_state"] == state
    buffers = sum(b.numel() * b.element_size() for b in {id(b): b for b in model.buffers()}.values())
    assert memory.categories["buffers"] == buffers
    assert memory.at_entry == weights + buffers + state + sum(
        t.numel() * t.element_size() for t in (inputs.values() if isinstance(inputs, dict) else [inputs]))
    if memory.phase == "optimizer":  # every gradient exists while the step runs
        assert memory.categories["gradients"] == _param_bytes(model, trainable_only=True)[0]
    assert memory.peak == sum(memory.categories.values())


def test_a_count_block_training_step_matches_measure() -> None:
    """The same steady-state step written by hand in a block, on cpu and meta, holds the same
    bytes at its peak as measure(..., optimizer=) (the block adds the loss's reduction)."""
    model = build(tf.GPT2LMHeadModel, gpt2_config())
    ids = _ids()["input_ids"]
    optimizer = OPTIMIZERS["adamw"](model.parameters())

    def step(m: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad()
        m(input_ids=ids).logits.sum().backward()
        opt.step()

    step(model, optimizer)
    twin, twin_optimizer = copy.deepcopy((model, optimizer))
    with fb.count() as cpu:
        step(twin, twin_optimizer)
    with fb.count(device="meta") as meta:
        step(model, optimizer)
    assert cpu.memory == meta.memory
    weights, tensors = _param_bytes(model)
    assert cpu.memory.categories["optimizer_state"] == 2 * weights + 4 * tensors
    assert cpu.memory.retained == weights  # the gradients outlive the block


def test_kv_cache_of_a_greedy_loop_on_cpu_and_meta() -> None:
    """A hand-written greedy decoding loop with transformers' KV cache: what the block retains is
    2 * layers * batch * kv_heads * length * head_dim * itemsize, on cpu and on meta alike."""
    config = llama_config()
    model = build(tf.LlamaForCausalLM, config)
    batch, prompt, steps = 2, 8, 4

    def decode(device: str | None) -> fb.Measurement:
        with torch.no_grad(), fb.count(device=device) as counted:
            ids = torch.zeros(batch, prompt, dtype=torch.long)
            out = model(input_ids=ids, use_cache=True)
            cache = out.past_key_values
            for _ in range(steps):
                token = out.logits[:, -1:].argmax(-1)
                out = model(input_ids=token, past_key_values=cache, use_cache=True)
                cache = out.past_key_values
            kept.append((cache, out))
        return counted

    kept: list = []
    cpu, meta = decode(None), decode("meta")
    head_dim = config.hidden_size // config.num_attention_heads
    cache = 2 * config.num_hidden_layers * batch * config.num_key_value_heads * (prompt + steps) * head_dim * 4
    # alive after the block too: the last step's logits, the prompt's ids and the last token (int64)
    logits, tokens = batch * 1 * config.vocab_size * 4, batch * (prompt + 1) * 8
    assert cpu.memory.retained == meta.memory.retained == cache + logits + tokens
