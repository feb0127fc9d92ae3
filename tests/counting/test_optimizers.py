"""Optimizer steps counted inside a count() block: for-loop, foreach and fused implementations of
SGD (momentum), Adam and AdamW give one total, equal to the elementwise steps of the update rule
worked by hand (docs/formulas.md, "Optimizers"), and nothing is uncounted."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pytest_flopbudget as fb
from pytest_flopbudget.counting.formulas import optimizer as optimizer_formulas

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


# -- shape level: the formula called with plain shapes --
# A _foreach_<op> costs <op> once per element of each tensor of its first list; a fused kernel
# the elementwise steps of its for-loop implementation per parameter element (formulas/optimizer.py).

PARAMS = [(5, 6), (5,)]  # a Linear(6, 5)'s weight and bias: 35 elements
N_P = 5 * 6 + 5


@pytest.mark.parametrize(
    "name, args, kwargs, per_element",
    [("_foreach_add", (PARAMS, PARAMS), {"alpha": 1}, 1), ("_foreach_mul", (PARAMS, 0.9), {}, 1),
     ("_foreach_sqrt", (PARAMS,), {}, 1), ("_foreach_maximum", (PARAMS, PARAMS), {}, 1),
     ("_foreach_max", (PARAMS,), {}, 1), ("_foreach_addcmul", (PARAMS, PARAMS, PARAMS, 0.5), {}, 2),
     ("_foreach_addcdiv", (PARAMS, PARAMS, PARAMS, 1.0), {}, 2), ("_foreach_lerp", (PARAMS, PARAMS, 0.1), {}, 2),
     ("_foreach_norm", (PARAMS, 2, None), {}, 2)],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_shape_foreach_ops(name, args, kwargs, per_element):
    assert optimizer_formulas.RULES[name](*args, out_shape=tuple(PARAMS), **kwargs) == (per_element * N_P, per_element * N_P)


def test_shape_foreach_mm_is_one_product_per_pair():
    # (2, 3) @ (3, 4): 8 dot products of 3 terms; (4, 5) @ (5, 2): 8 of 5
    got = optimizer_formulas.RULES["_foreach_mm"]([(2, 3), (4, 5)], [(3, 4), (5, 2)], out_shape=((2, 4), (4, 2)))
    assert got == (8 * (2 * 3 - 1) + 8 * (2 * 5 - 1), 8 * 3 + 8 * 5)


def adam_call(name, **flags):
    # _fused_adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *, lr, beta1, ...)
    kwargs = dict(lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
    kwargs.update(flags)
    return optimizer_formulas.RULES[name](PARAMS, PARAMS, PARAMS, PARAMS, [], [(), ()], out_shape=None, **kwargs)


@pytest.mark.parametrize(
    "name, flags, per_element",
    [("_fused_adam", {}, 10), ("_fused_adam", {"weight_decay": 0.01}, 11), ("_fused_adam", {"amsgrad": True}, 11),
     ("_fused_adam", {"maximize": True}, 11), ("_fused_adamw", {"weight_decay": 0.01}, 11),
     ("_fused_adamw", {"weight_decay": 0.01, "amsgrad": True, "maximize": True}, 13)],
    ids=["adam", "adam-wd", "adam-amsgrad", "adam-maximize", "adamw", "adamw-all"],
)
def test_shape_fused_adam(name, flags, per_element):
    # exp_avg lerp 2, exp_avg_sq scale + addcmul 3, sqrt / bias correction / eps 3, addcdiv 2 = 10;
    # + 1 each for weight decay, amsgrad's running maximum, maximize's negation
    assert adam_call(name, **flags) == (per_element * N_P, per_element * N_P)


@pytest.mark.parametrize(
    "flags, per_element",
    [({"momentum": 0.0}, 1), ({"momentum": 0.9, "is_first_step": True}, 1), ({"momentum": 0.9}, 1 + 2),
     ({"momentum": 0.9, "nesterov": True}, 1 + 2 + 1), ({"momentum": 0.9, "weight_decay": 1e-4}, 1 + 2 + 1),
     ({"momentum": 0.0, "maximize": True}, 1 + 1)],
    ids=["plain", "momentum-first-step", "momentum", "nesterov", "weight-decay", "maximize"],
)
def test_shape_fused_sgd(flags, per_element):
    # the update 1; buf·m + grad 2 once a buffer exists (the first step copies the gradient, free)
    kwargs = dict(weight_decay=0.0, momentum=0.0, lr=0.1, dampening=0.0, nesterov=False, maximize=False,
                  is_first_step=False)
    kwargs.update(flags)
    got = optimizer_formulas.RULES["_fused_sgd"](PARAMS, PARAMS, PARAMS, out_shape=None, **kwargs)
    assert got == (per_element * N_P, per_element * N_P)


@pytest.mark.parametrize("weight_decay, per_element", [(0.0, 6), (0.01, 7)])
def test_shape_fused_adagrad(weight_decay, per_element):
    # state_sum addcmul 2, sqrt and eps 2, addcdiv 2 (+ 1 weight decay)
    got = optimizer_formulas.RULES["_fused_adagrad"](PARAMS, PARAMS, PARAMS, [(), ()], lr=0.01, lr_decay=0.0,
                                            weight_decay=weight_decay, eps=1e-10, maximize=False, out_shape=None)
    assert got == (per_element * N_P, per_element * N_P)
