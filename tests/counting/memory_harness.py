"""A minimal stand-in for the counting session, to test the memory tracker on its own: one dispatch
mode feeding every aten call to a MemoryTracker, a ModuleTracker naming the running modules, on
real cpu tensors or under FakeTensorMode ("meta").

A scenario is a ``build()`` that makes the model, inputs and optimizer (run on the chosen device,
so on meta they are fake tensors) and returns a ``Run``: what exists at entry, the step itself
(which moves the tracker's phase), and the tensors the finished run names as parameters,
gradients and optimizer state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from pytest_flopbudget.counting.measurement import Memory
from pytest_flopbudget.counting.memory import MemoryTracker
from pytest_flopbudget.counting.module_tracker import ModuleTracker


class _Feeder(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # as the counter's mode: torch's default imports dynamo on the first call, and what that
        # import leaves in reference cycles would hold the first run's tensors to its end
        return False

    def __init__(self, tracker: MemoryTracker) -> None:
        super().__init__()
        self.tracker = tracker

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.tracker.record(func, args, kwargs, out)
        return out


@dataclass
class Run:
    """One run to track: ``step(tracker)`` runs it (what it returns stays alive until the run is
    finished, so it counts as retained); ``entry`` maps entry categories to the tensors that exist
    before it."""

    step: Callable[[MemoryTracker], Any]
    model: nn.Module | None = None
    entry: dict[str, list[Any]] = field(default_factory=dict)
    optimizer: torch.optim.Optimizer | None = None


def run_memory(build: Callable[[], Run], device: str) -> tuple[Memory, Any]:
    """Build on ``device`` ("cpu" or "meta") with a fixed seed, run under the tracker; the Memory
    and what the step returned."""
    torch.manual_seed(0)
    if device == "meta":
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode(allow_non_fake_inputs=True):
            return _tracked(build())
    if device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'meta', got {device!r}")
    return _tracked(build())


def _tracked(run: Run) -> tuple[Memory, Any]:
    names = {module: name for name, module in run.model.named_modules()} if run.model is not None else {}
    modules = ModuleTracker(names, track_backward=True)
    tracker = MemoryTracker(lambda: modules.active)
    entry = dict(run.entry)
    if run.model is not None:
        entry.setdefault("parameters", list(run.model.parameters()))
        entry.setdefault("buffers", list(run.model.buffers()))
    if run.optimizer is not None:
        entry.setdefault("optimizer_state", optimizer_tensors(run.optimizer))
    for category, tensors in entry.items():
        tracker.register_entry(tensors, category)
    with modules, tracker, _Feeder(tracker):
        result = run.step(tracker)
    params = list(run.model.parameters()) if run.model is not None else list(entry.get("parameters", []))
    memory = tracker.finish(
        parameters=params,
        buffers=list(run.model.buffers()) if run.model is not None else [],
        gradients=[p.grad for p in params if p.grad is not None],
        optimizer_state=optimizer_tensors(run.optimizer) if run.optimizer is not None else [],
    )
    return memory, result


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every tensor in an optimizer's state (moments, momentum buffers, step counters)."""
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


def both(build: Callable[[], Run]) -> tuple[Memory, Memory]:
    """The same scenario on cpu and on meta."""
    return run_memory(build, "cpu")[0], run_memory(build, "meta")[0]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_of: Callable[[], torch.Tensor]) -> Callable[
        [MemoryTracker], None]:
    """A training step as a Run's step: forward (a scalar loss), backward, optimizer step."""

    def step(tracker: MemoryTracker) -> None:
        tracker.set_phase("forward")
        loss = loss_of()
        tracker.set_phase("backward")
        loss.backward()
        del loss
        tracker.set_phase("optimizer")
        optimizer.step()

    return step


def warm_up(optimizer: torch.optim.Optimizer, loss_of: Callable[[], torch.Tensor]) -> None:
    """One untracked step, so the tracked one is in steady state (optimizer state exists); the
    gradients are cleared as a training loop does before its next step."""
    loss_of().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
