"""Budgets of the language models: a module-level marker, overridden where a test needs its own."""

import pytest
import torch

from example_project.models import gpt, llama_7b

# Every test in this module gets this budget unless it carries its own marker (the closest wins).
pytestmark = pytest.mark.flop_budget(max_gflops=38.5, max_params="14.2M")


def tokens(length: int, batch: int = 1):
    return lambda: torch.zeros(batch, length, dtype=torch.long)


@pytest.mark.parametrize("length", [128, 512, 1024])
def test_gpt_forward(flop_budget, length):
    flop_budget.measure(gpt, tokens(length))


@pytest.mark.flop_budget(max_gflops=185, max_params="14.2M", max_activation_memory="460MiB")
def test_gpt_training_step(flop_budget):
    # backward=True adds the backward pass: the compute of one training step, optimizer excluded;
    # max_activation_memory limits what the step needs on top of the weights and inputs
    flop_budget.measure(gpt, tokens(256, batch=8), backward=True)


@pytest.mark.flop_budget(max_gflops=185, max_memory="640MiB")
def test_gpt_adamw_step_fits(flop_budget):
    # "will it fit?": one steady-state AdamW step (forward, backward, optimizer.step) holds the
    # weights, their gradients, AdamW's two moments and the activations at its peak
    flop_budget.measure(gpt, tokens(256, batch=8), optimizer=lambda ps: torch.optim.AdamW(ps, lr=3e-4))


@pytest.mark.flop_budget(max_gmacs=860, max_params=6.75e9, max_memory="26GiB")
def test_llama_7b_forward(flop_budget):
    # 27 GB of float32 weights: the factory is built on the counting device, and pytest.ini sets
    # flop_device = meta, so nothing is allocated and this takes about a second; max_memory asks
    # whether its inference fits a 26 GiB budget (weights, inputs and activations at the peak)
    measured = flop_budget.measure(llama_7b, tokens(128))
    assert measured.params == 6_738_415_616  # LLaMA-7B's published parameter count


@pytest.mark.flop_budget(max_gflops=4.4, max_params="14.2M")
def test_gpt_generate(flop_budget, flop_device):
    # a count() block budgets any code: here 8 new tokens after a 16-token prompt, each step a
    # forward over the whole sequence so far (this GPT has no KV cache). The model is built on the
    # counting device before the block, so on meta nothing is allocated.
    with flop_device:
        model = gpt().eval()
    with flop_budget.count() as counted:
        out = model.generate(torch.zeros(1, 16, dtype=torch.long), max_new_tokens=8)
    assert out.shape == (1, 24)
    assert counted.modules["GPT"].flops <= counted.flops  # argmax and the rest run outside the model


@pytest.mark.flop_budget(max_gflops=185, max_params="14.2M")
def test_gpt_full_training_step(flop_budget, flop_device):
    # one whole training step: forward, loss, backward and the optimizer's update of every weight
    with flop_device:
        model = gpt()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with flop_budget.count():
        tokens = torch.zeros(8, 256, dtype=torch.long)
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
