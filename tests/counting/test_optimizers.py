"""Optimizer steps counted inside a count() block: for-loop, foreach and fused implementations of
SGD (momentum), Adam and AdamW give one total, equal to the elementwise steps of the update rule
worked by hand (docs/formulas.md, "Optimizers"), and nothing is uncounted."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pytest_flopbudget as fb

IMPLEMENTATIONS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_tensors(model: nn.Module) -> int:
    return len(list(model.parameters()))


def step_costs(optimizer_name: str, impl: dict, steps: int = 2) -> list:
    """The counts of ``steps`` optimizer steps, each in its own block (gradients set before)."""
    model = make_model()
    make = {
        "SGD": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, **impl),
        "Adam": lambda p: torch.optim.Adam(p, lr=1e-3, **impl),
        "AdamW": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01, **impl),
    }[optimizer_name]
    optimizer = make(model.parameters())
    results = []
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        with fb.count() as counted:
            optimizer.step()
        results.append(counted)
    return results


def by_hand(optimizer_name: str, model: nn.Module, step: int) -> int:
    """Per parameter element: the update rule's elementwise operations (see the module doc of
    formulas/optimizer.py); Adam-family steps also advance one step counter per tensor."""
    n = n_params(model)
    if optimizer_name == "SGD":
        # step 1: buf = grad (a copy), p -= lr·buf; later: buf = buf·m + grad (2), p -= lr·buf (1)
        return n if step == 1 else 3 * n
    per = 2 + 3 + 3 + 2  # lerp; mul + addcmul; sqrt, div, add eps; addcdiv
    if optimizer_name == "AdamW":
        per += 1  # decoupled weight decay: p *= 1 - lr·wd
    return per * n + n_tensors(model)


@pytest.mark.parametrize("optimizer_name", ["SGD", "Adam", "AdamW"])
def test_three_implementations_count_the_same(optimizer_name):
    counts = {}
    for impl_name, impl in IMPLEMENTATIONS.items():
        results = step_costs(optimizer_name, impl)
        for counted in results:
            assert counted.uncounted == {}, impl_name
        counts[impl_name] = [(c.flops, c.macs) for c in results]
    model = make_model()
    expected = [(by_hand(optimizer_name, model, s),) * 2 for s in (1, 2)]
    assert counts["for-loop"] == counts["foreach"] == counts["fused"] == expected


def test_foreach_ops_are_reported_under_their_functional_names():
    (counted, _) = step_costs("Adam", {"foreach": True})
    assert "aten._foreach_addcdiv" in counted.ops and "aten._foreach_addcdiv_" not in counted.ops
    (fused, _) = step_costs("Adam", {"fused": True})
    assert fused.ops["aten._fused_adam"] == 10 * n_params(make_model())


def test_training_step_is_forward_backward_and_step():
    """A whole training step in one block: forward + backward (measure(backward=True)'s count)
    + the optimizer step (counted on its own above)."""
    model = make_model()
    x = torch.randn(4, 6)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with fb.count() as counted:
        loss = model(x).sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    forward_backward = fb.measure(make_model(), x, backward=True)
    assert counted.uncounted == {}
    # measure's backward seeds the output with ones (free); the block sums it (one per output)
    # and SGD without momentum does one update per parameter element
    assert counted.flops == forward_backward.flops + 4 * 3 + n_params(model)
    assert counted.params == n_params(model) and counted.backward is True
    # the loss sum and the optimizer step ran outside any module: in the total, not the model's row
    assert counted.modules["Sequential"].flops == counted.flops - 4 * 3 - n_params(model)
