"""A count(device="meta") block never changes the caller's real objects (issue 19, item 13).

Each test builds a model and optimizer outside the block, as a user's training-step test does,
runs a step inside a meta block, and checks every tensor the caller owns bit for bit afterwards:
parameters, buffers, gradients, optimizer state and param_groups, all still plain tensors. The
block's count must equal the cpu count of the same step on an identical copy (meta == cpu).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

import pytest_flopbudget as fb

OPTIMIZERS = {
    "adamw-loop": lambda ps: torch.optim.AdamW(ps, lr=1e-2, foreach=False),
    "adamw-foreach": lambda ps: torch.optim.AdamW(ps, lr=1e-2, foreach=True),
    "adamw-fused": lambda ps: torch.optim.AdamW(ps, lr=1e-2, fused=True),
    "sgd-momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4)).train()


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> None:
    optimizer.zero_grad()
    model(x).square().mean().backward()
    optimizer.step()


def _everything(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, object]:
    """Every tensor and setting the caller owns, as copies, by name."""
    seen: dict[str, object] = {}
    for name, param in model.named_parameters():
        seen[f"param {name}"] = param
        seen[f"grad {name}"] = param.grad
    for name, buffer in model.named_buffers():
        seen[f"buffer {name}"] = buffer
    for index, param in enumerate(optimizer.param_groups[0]["params"]):
        for key, value in optimizer.state.get(param, {}).items():
            seen[f"state {index}.{key}"] = value
    for index, group in enumerate(optimizer.param_groups):
        seen[f"group {index}"] = {k: v for k, v in group.items() if k != "params"}
        seen[f"group {index} params"] = [id(p) for p in group["params"]]
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in seen.items()}


def _assert_unchanged(before: dict[str, object], after: dict[str, object]) -> None:
    assert after.keys() == before.keys()
    for key, old in before.items():
        new = after[key]
        if isinstance(old, torch.Tensor):
            assert type(new) is torch.Tensor and not isinstance(new, FakeTensor), f"{key} is {type(new).__name__}"
            assert new.dtype == old.dtype and new.device == old.device, key
            assert torch.equal(new, old), f"{key} changed"
        else:
            assert new == old, key


@pytest.mark.parametrize("kind", OPTIMIZERS)
@pytest.mark.parametrize("steady", [True, False], ids=["steady-state", "first-step"])
def test_meta_training_step_leaves_the_caller_bit_for_bit(kind: str, steady: bool) -> None:
    model, x = _net(), torch.randn(5, 8)
    optimizer = OPTIMIZERS[kind](model.parameters())
    if steady:
        _step(model, optimizer, x)  # the optimizer has state: exp_avg, a real step tensor, momentum
    twin, twin_optimizer = copy.deepcopy((model, optimizer))  # one memo: the state follows its params
    before = _everything(model, optimizer)

    with fb.count(device="meta") as meta:
        _step(model, optimizer, x)
        _step(model, optimizer, x)  # a second step inside the block reads the first one's state

    _assert_unchanged(before, _everything(model, optimizer))
    with fb.count() as cpu:
        _step(twin, twin_optimizer, x)
        _step(twin, twin_optimizer, x)
    assert meta.flops == cpu.flops > 0
    assert meta.ops == cpu.ops
    assert {n: c.flops for n, c in meta.modules.items()} == {n: c.flops for n, c in cpu.modules.items()}
    assert meta.params == cpu.params == sum(p.numel() for p in model.parameters())


def test_after_a_meta_block_the_model_trains_as_if_it_never_ran() -> None:
    model, x = _net(), torch.randn(5, 8)
    optimizer = OPTIMIZERS["adamw-foreach"](model.parameters())
    _step(model, optimizer, x)
    twin, twin_optimizer = copy.deepcopy((model, optimizer))

    with fb.count(device="meta"):
        _step(model, optimizer, x)
    _step(model, optimizer, x)
    _step(twin, twin_optimizer, x)

    for (name, param), other in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(param, other), name
    assert all(type(p.grad) is torch.Tensor for p in model.parameters())


def test_a_block_that_raises_still_puts_everything_back() -> None:
    model, x = _net(), torch.randn(5, 8)
    optimizer = OPTIMIZERS["adamw-loop"](model.parameters())
    _step(model, optimizer, x)
    before = _everything(model, optimizer)

    with pytest.raises(ZeroDivisionError):
        with fb.count(device="meta"):
            _step(model, optimizer, x)
            model.cache = torch.zeros(3)  # an attribute written by the block
            1 / 0

    _assert_unchanged(before, _everything(model, optimizer))
    assert not hasattr(model, "cache")


def test_inputs_made_before_the_block_are_never_written() -> None:
    x = torch.randn(4, 8)
    kept = x.clone()
    layer = nn.Linear(8, 8)
    with fb.count(device="meta") as counted:
        y = layer(x)
        x.mul_(2)  # an in-place op whose only tensor is the caller's
        y.add_(x)
    assert torch.equal(x, kept)
    # the Linear (4*8 outputs of 8-term dot products + bias) and one multiply and one add per element
    assert counted.flops == 4 * 8 * (2 * 8 - 1) + 4 * 8 + 4 * 8 + 4 * 8


def test_batchnorm_statistics_and_counter_are_untouched() -> None:
    model = _net()
    statistics = {n: b.clone() for n, b in model.named_buffers()}
    with fb.count(device="meta"):
        model(torch.randn(5, 8))
    for name, buffer in model.named_buffers():
        assert type(buffer) is torch.Tensor and torch.equal(buffer, statistics[name]), name
    assert int(model[1].num_batches_tracked) == 0
