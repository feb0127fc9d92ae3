"""measure(..., optimizer=): one steady-state training step (issue 18, item 3).

The step's FLOPs are the backward=True count plus the optimizer's update, worked by hand per
parameter element from the update rule; loop, foreach and fused implementations count the same;
meta equals cpu; the caller's model is never stepped.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pytest_flopbudget as fb

ADAMW = {
    "loop": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=False),
    "foreach": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True),
    "fused": lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
}


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def _elements_and_tensors(model: nn.Module) -> tuple[int, int]:
    params = [p for p in model.parameters() if p.requires_grad]
    return sum(p.numel() for p in params), len(params)


# AdamW per element: weight decay p*=(1-lr*wd) 1; exp_avg.lerp_(g, 1-b1) 2; exp_avg_sq.mul_(b2) 1 and
# .addcmul_(g, g, 1-b2) 2; sqrt 1; / bias correction 1; + eps 1; p.addcdiv_(exp_avg, denom) 2 = 11;
# plus one add per parameter tensor for its step counter
ADAMW_PER_ELEMENT = 11
# SGD with momentum per element: buf.mul_(momentum) 1, buf.add_(g) 1, p.add_(buf, alpha=-lr) 1
SGD_MOMENTUM_PER_ELEMENT = 3


@pytest.mark.parametrize("kind", ADAMW)
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_adamw_step_is_backward_plus_the_update_rule(kind: str, device: str) -> None:
    model, x = _mlp(), torch.randn(5, 8)
    elements, tensors = _elements_and_tensors(model)
    backward = fb.measure(model, x, backward=True)
    step = fb.measure(model, x, optimizer=ADAMW[kind], device=device)
    assert step.flops == backward.flops + ADAMW_PER_ELEMENT * elements + tensors
    assert step.backward and step.device == device
    # the update runs outside every module: the root's own work
    assert step.modules["0"].flops == backward.modules["0"].flops


def test_sgd_momentum_step() -> None:
    model, x = _mlp(), torch.randn(5, 8)
    elements, _ = _elements_and_tensors(model)
    backward = fb.measure(model, x, backward=True)
    step = fb.measure(model, x, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9))
    assert step.flops == backward.flops + SGD_MOMENTUM_PER_ELEMENT * elements


def test_frozen_parameters_are_not_stepped() -> None:
    model, x = _mlp(), torch.randn(5, 8)
    model[0].requires_grad_(False)
    elements, tensors = _elements_and_tensors(model)
    assert elements == 16 * 4 + 4
    with_step = fb.measure(model, x, optimizer=ADAMW["foreach"])
    backward = fb.measure(model, x, backward=True)
    assert with_step.flops == backward.flops + ADAMW_PER_ELEMENT * elements + tensors


def test_the_callers_model_is_never_stepped() -> None:
    model, x = _mlp(), torch.randn(5, 8)
    weights = [p.detach().clone() for p in model.parameters()]
    for device in ("cpu", "meta"):
        fb.measure(model, x, optimizer=ADAMW["loop"], device=device)
    assert all(torch.equal(p, w) and p.grad is None for p, w in zip(model.parameters(), weights))


def test_an_optimizer_instance_is_refused_with_the_function_form_shown() -> None:
    model = _mlp()
    with pytest.raises(fb.MeasurementError, match=r"lambda ps: torch.optim.AdamW\(ps, lr=1e-3\).*got AdamW"):
        fb.measure(model, torch.randn(5, 8), optimizer=torch.optim.AdamW(model.parameters()))


def test_a_function_that_returns_no_optimizer_is_refused() -> None:
    with pytest.raises(fb.MeasurementError, match="returned list, not an optimizer"):
        fb.measure(_mlp(), torch.randn(5, 8), optimizer=lambda ps: list(ps))


def test_a_model_without_trainable_parameters_is_refused() -> None:
    model = _mlp().requires_grad_(False)
    with pytest.raises(fb.MeasurementError, match="no trainable parameters"):
        fb.measure(model, torch.randn(5, 8), optimizer=ADAMW["loop"])


def test_an_optimizers_own_step_counter_read_does_not_make_a_run_value_dependent():
    model, x = nn.Linear(4, 2), torch.ones(3, 4)
    step = fb.measure(model, x, optimizer=lambda ps: torch.optim.AdamW(ps, lr=1e-3))
    # AdamW reads its step counter on the host (loop implementation on cpu): recorded where it read
    assert "AdamW.step()" in step.value_reads
    assert not step.value_dependent  # the same on every device and for every input

    class Branchy(nn.Module):
        def forward(self, v):
            return v * 2 if v.sum() > 0 else v

    assert fb.measure(Branchy(), x).value_dependent  # a read of the inputs still is
