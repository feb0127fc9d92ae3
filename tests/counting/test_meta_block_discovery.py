"""How a count(device="meta") block finds the caller's objects without looking through every object
of the process (issue 24; the guarantee itself is issue 19 item 13, test_meta_block_restore.py).

Each path of caller_guard.py / reachable.py has a test whose block does something that would
change the caller's tensors if that path missed the object: ``zero_grad()`` before any forward
(found at the entry, from the block's frame: a local, an attribute of a local, a module-level
global), a first forward or a first step of an object the frame cannot name (found by the hooks),
a real leaf used outside every module, and a module first run under ``functional_call``.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from typing import Any, Iterator

import pytest
import torch
from test_meta_block_restore import OPTIMIZERS, _assert_unchanged, _everything, _net, _step
from torch import nn

import pytest_flopbudget as fb
from pytest_flopbudget.counting.reachable import DEPTH, Reachable

_GLOBAL_MODEL: nn.Module | None = None


class _Trainer:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.optimizer = optimizer


def _steady(kind: str = "adamw-foreach") -> tuple[nn.Module, torch.optim.Optimizer]:
    """A model and optimizer after one real step: gradients, moments and step counters exist."""
    model = _net()
    optimizer = OPTIMIZERS[kind](model.parameters())
    _step(model, optimizer, torch.randn(5, 8))
    return model, optimizer


def _hidden(value: Any) -> dict[str, list[list[Any]]]:
    """``value`` three levels below a local: deeper than the entry search looks."""
    return {"a": [[value]]}


def _copy(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Copies for a cpu reference count, gradients included (a deepcopy leaves ``.grad`` behind)."""
    twin, twin_optimizer = copy.deepcopy((model, optimizer))  # one memo: the state follows its params
    for param, other in zip(model.parameters(), twin.parameters()):
        other.grad = None if param.grad is None else param.grad.clone()
    return twin, twin_optimizer


def _cpu_step_flops(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> int:
    twin, twin_optimizer = _copy(model, optimizer)
    with fb.count() as cpu:
        _step(twin, twin_optimizer, x)
    return cpu.flops


def test_a_model_named_only_through_an_attribute_is_guarded_before_it_runs() -> None:
    trainer = _Trainer(*_steady())
    x = torch.randn(5, 8)
    before = _everything(trainer.model, trainer.optimizer)
    expected = _cpu_step_flops(trainer.model, trainer.optimizer, x)

    with fb.count(device="meta") as meta:
        trainer.model.zero_grad()  # before any forward: only the entry search can have guarded it
        trainer.model.eval()
        _step(trainer.model.train(), trainer.optimizer, x)

    _assert_unchanged(before, _everything(trainer.model, trainer.optimizer))
    assert all(m.training for m in trainer.model.modules())
    assert meta.flops == expected > 0


def test_zero_grad_before_any_forward_leaves_the_caller_s_gradients() -> None:
    model, optimizer = _steady("sgd-momentum")
    grads = [p.grad.clone() for p in model.parameters()]
    x = torch.randn(5, 8)

    with fb.count(device="meta") as meta:
        model.zero_grad()
        model(x).square().mean().backward()

    assert [torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads)] == [True] * len(grads)
    assert all(type(p.grad) is torch.Tensor for p in model.parameters())
    with fb.count() as cpu:
        copy.deepcopy(model)(x).square().mean().backward()
    assert meta.flops == cpu.flops > 0


def test_an_optimizer_made_before_the_block_is_guarded_before_its_zero_grad() -> None:
    model, optimizer = _steady("adamw-loop")
    hidden = _hidden(model)
    del model  # the block's frame names the optimizer, not the model
    before = _everything(hidden["a"][0][0], optimizer)
    x = torch.randn(5, 8)

    with fb.count(device="meta") as meta:
        optimizer.zero_grad()  # sets every parameter's .grad to None: on the twins only
        hidden["a"][0][0](x).square().mean().backward()
        optimizer.step()

    _assert_unchanged(before, _everything(hidden["a"][0][0], optimizer))
    assert meta.flops == _cpu_step_flops(hidden["a"][0][0], optimizer, x)


def test_a_model_in_a_module_level_global_is_guarded_before_it_runs() -> None:
    global _GLOBAL_MODEL
    _GLOBAL_MODEL, optimizer = _steady()
    hidden_optimizer = _hidden(optimizer)
    del optimizer
    before = _everything(_GLOBAL_MODEL, hidden_optimizer["a"][0][0])
    try:
        with fb.count(device="meta"):
            _GLOBAL_MODEL.zero_grad()
            _GLOBAL_MODEL.eval()  # an attribute of every module, written before any forward
            _GLOBAL_MODEL(torch.randn(5, 8)).sum().backward()
        _assert_unchanged(before, _everything(_GLOBAL_MODEL, hidden_optimizer["a"][0][0]))
        assert all(m.training for m in _GLOBAL_MODEL.modules())
    finally:
        _GLOBAL_MODEL = None


def test_the_entry_search_stops_two_levels_below_the_frame() -> None:
    shallow = {"a": [_net()]}  # the dict, the list, the model: two levels below a local
    deep = _hidden(nn.Linear(2, 2))
    found = Reachable.from_frames([sys._getframe()])
    assert DEPTH == 2
    assert any(m is shallow["a"][0] for m in found.modules)
    assert not any(m is deep["a"][0][0] for m in found.modules)
    assert len(found.modules) == len({id(m) for m in found.modules})


def test_a_model_the_frame_cannot_name_is_guarded_when_its_forward_starts() -> None:
    model, optimizer = _steady()
    hidden = _hidden(model)
    hidden_optimizer = _hidden(optimizer)
    del model, optimizer
    assert not any(m is hidden["a"][0][0] for m in Reachable.from_frames([sys._getframe()]).modules)
    before = _everything(hidden["a"][0][0], hidden_optimizer["a"][0][0])
    x = torch.randn(5, 8)

    with fb.count(device="meta") as meta:
        # train mode: BatchNorm updates its running statistics and counter in place
        hidden["a"][0][0](x).square().mean().backward()
        hidden["a"][0][0].cache = torch.zeros(2)

    _assert_unchanged(before, _everything(hidden["a"][0][0], hidden_optimizer["a"][0][0]))
    assert not hasattr(hidden["a"][0][0], "cache")
    with fb.count() as cpu:
        _copy(hidden["a"][0][0], hidden_optimizer["a"][0][0])[0](x).square().mean().backward()
    assert meta.flops == cpu.flops > 0


@pytest.mark.parametrize("kind", OPTIMIZERS)
@pytest.mark.parametrize("steady", [True, False], ids=["steady-state", "first-step"])
def test_an_optimizer_the_frame_cannot_name_is_guarded_before_its_first_step(kind: str, steady: bool) -> None:
    if steady:
        model, optimizer = _steady(kind)
    else:  # no state yet: the step creates it, on the caller's optimizer unless guarded
        model = _net()
        optimizer = OPTIMIZERS[kind](model.parameters())
    hidden = _hidden((model, optimizer))
    del model, optimizer
    before = _everything(*hidden["a"][0][0])
    x = torch.randn(5, 8)

    with fb.count(device="meta") as meta:
        model, optimizer = hidden["a"][0][0]  # named only now, after the block began
        model(x).square().mean().backward()
        optimizer.step()
        optimizer.step()  # the second step reads the first one's state (on the twins)

    _assert_unchanged(before, _everything(*hidden["a"][0][0]))
    twin, twin_optimizer = _copy(*hidden["a"][0][0])
    with fb.count() as cpu:
        twin(x).square().mean().backward()
        twin_optimizer.step()
        twin_optimizer.step()
    assert meta.flops == cpu.flops > 0


def _closure_over_a_leaf() -> tuple[Any, torch.Tensor]:
    weight = torch.randn(8, 3, requires_grad=True)

    def project(x: torch.Tensor) -> torch.Tensor:
        return x @ weight

    return project, weight


def test_a_real_leaf_used_outside_every_module_keeps_its_gradient() -> None:
    project, weight = _closure_over_a_leaf()
    hidden = _hidden(weight)
    del weight
    x = torch.randn(5, 8)

    with fb.count(device="meta") as meta:
        project(x).sum().backward()  # autograd stores .grad on the leaf it recorded: the real one

    assert hidden["a"][0][0].grad is None
    # x @ w (5x3 outputs of 8-term dot products), the sum (one per element, FORMULAS.md),
    # dW = xᵀ @ ones (8x3 outputs of 5 terms)
    assert meta.flops == 5 * 3 * (2 * 8 - 1) + 5 * 3 + 8 * 3 * (2 * 5 - 1)


def test_gradients_cleared_through_a_list_of_parameters_are_put_back() -> None:
    model, _ = _steady()
    params = list(model.parameters())
    hidden = _hidden(model)
    del model
    grads = [p.grad.clone() for p in params]

    with fb.count(device="meta"):
        for param in params:
            param.grad = None

    assert [torch.equal(p.grad, g) for p, g in zip(hidden["a"][0][0].parameters(), grads)] == [True] * len(grads)


def test_a_module_first_run_under_functional_call_keeps_its_own_parameters() -> None:
    layer = nn.Linear(8, 4)
    originals = dict(layer.named_parameters())
    substitutes = {name: torch.randn_like(p) for name, p in originals.items()}
    hidden = _hidden(layer)
    del layer
    x = torch.randn(5, 8)

    with fb.count(device="meta") as meta:
        torch.func.functional_call(hidden["a"][0][0], substitutes, (x,))
        hidden["a"][0][0](x)  # now outside functional_call: guarded here

    assert all(hidden["a"][0][0].get_parameter(n) is p for n, p in originals.items())  # the same objects
    assert all(type(p) is nn.Parameter for p in originals.values())
    assert meta.flops == 2 * (5 * 4 * (2 * 8 - 1) + 5 * 4)


@contextlib.contextmanager
def _counted_on_meta() -> Iterator[Any]:
    """A user's own context manager around count(): the frame that enters it is searched too."""
    with fb.count(device="meta") as counted:
        yield counted


def test_a_block_entered_through_the_user_s_own_context_manager_searches_the_frame_that_entered_it() -> None:
    model, optimizer = _steady("sgd-momentum")
    before = _everything(model, optimizer)
    with _counted_on_meta():
        model.zero_grad()
        optimizer.zero_grad()
    _assert_unchanged(before, _everything(model, optimizer))


def test_the_entry_search_is_not_fooled_by_mocks_and_reads_a_bounded_part_of_big_containers() -> None:
    from unittest import mock

    from pytest_flopbudget.counting.reachable import MAX_ITEMS

    impostor = mock.MagicMock(spec=nn.Module)  # claims to be a Module through __class__
    samples = [torch.zeros(1)] * (MAX_ITEMS + 5) + [_net()]  # the model past the items read
    found = Reachable.from_frames([sys._getframe()])
    assert not any(m is impostor for m in found.modules)
    assert not any(m is samples[-1] for m in found.modules)
    x = torch.randn(5, 8)
    with fb.count(device="meta") as meta:  # the impostor in the frame does not break the block
        samples[-1](x)
    # two Linear layers (5 rows: 8->16, 16->4), BatchNorm1d in train mode over 5x16, ReLU on 5x16
    with fb.count() as cpu:
        copy.deepcopy(samples[-1])(x)
    assert meta.flops == cpu.flops > 5 * (16 * (2 * 8 - 1) + 16) + 5 * (4 * (2 * 16 - 1) + 4)
