"""count(): the FLOPs, MACs and parameters of whatever code runs inside a ``with`` block: a
``generate()`` loop, a diffusion sampling loop, a training step with its optimizer, a pipeline of
several models and the tensor code between them.

The block runs the same counting modes as measure() (every aten call, composites as one unit) and
discovers the modules that run in it instead of being given one:

- **Names.** A module whose forward starts while no named module is running is a *top-level
  model* of the block. It is named by its class (``LlamaForCausalLM``; a second, different
  instance of the same class ``LlamaForCausalLM#2``) and every module below it by its qualified
  name under that (``LlamaForCausalLM.model.layers.0``). Modules called inside a named model but
  not part of its tree are not named; their work counts in the model that called them. The root
  row ``""`` is the block's total, including tensor code outside any module (scheduler
  arithmetic, an optimizer step, sampling).
- **Parameters.** ``params`` are the unique parameters owned directly by the modules that ran
  (tied weights once); a submodule that never ran adds nothing. Each named module's row carries
  its whole subtree's parameters, as in measure().
- **Devices.** The block's own code creates its tensors, so ``device`` is where that code
  creates them, not a place the engine moves anything to. ``None`` changes nothing. ``"cpu"`` or
  ``"cuda"`` makes it torch's default device inside the block (factories without an explicit
  device land there; models and tensors made before the block stay where they are). ``"meta"``
  runs the block under torch's FakeTensorMode: every tensor the block creates is a fake cpu tensor
  (the kernels a real CPU picks, as measure() on meta), and models and optimizers made before the
  block, on cpu or on meta, run on fake twins of their tensors and are put back untouched when the
  block ends (caller_guard.py: those the code around the block can name are guarded at its entry,
  any other when it first runs a forward or a step). Code that reads tensor values (``.item()``, ``if (x > 0).any()``,
  a stopping criterion of ``generate()``) cannot run on meta: a MeasurementError says what to do.
  Build models *before* the block: weight initialisation run inside it is counted.
- **Nesting.** Blocks nest: an inner block counts what runs inside it, the outer one counts
  that too. A measure() inside a block is counted by the block as well (its ops run inside it).
  A block object can be entered again; each exit makes a fresh measurement.
- **Exceptions.** An exception inside the block propagates unchanged; nothing is measured
  (reading a number raises) and nothing is left behind: modes, hooks and the default device are
  restored, and scoped ``formulas`` never touch the registry.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Mapping

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from pytest_flopbudget.counting.caller_guard import CallerObjectsKept, FakeTwins
from pytest_flopbudget.counting.devices import DeviceLike, device_of, resolve_device
from pytest_flopbudget.counting.errors import MeasurementError
from pytest_flopbudget.counting.measurement import Measurement, Memory
from pytest_flopbudget.counting.model_state import ModelState
from pytest_flopbudget.counting.reachable import reachable_from_caller
from pytest_flopbudget.counting.registry import Registry, default_registry
from pytest_flopbudget.counting.module_tracker import ModuleTracker
from pytest_flopbudget.counting.session import (
    CountingSession, device_scope, explain_meta_failure, optimizer_state_tensors,
)


class _Block(nn.Module):
    """Holds a block's top-level models as children, so one ModelState names the whole tree and
    measure()'s collection code builds the Measurement. Never run."""


_Block.__name__ = "count"


class _DiscoveringTracker(ModuleTracker):
    """ModuleTracker that names a top-level module the first time it runs and records every
    module that runs."""

    def __init__(self) -> None:
        super().__init__({}, track_backward=True)
        self.roots: dict[str, nn.Module] = {}
        self.ran: dict[int, nn.Module] = {}

    def __enter__(self) -> _DiscoveringTracker:
        super().__enter__()
        return self

    def _enter_forward(self, module: nn.Module, inputs: Any) -> None:
        self.ran.setdefault(id(module), module)
        if module not in self._names and not self._stack:
            self._discover(module)
        super()._enter_forward(module, inputs)

    def _discover(self, root: nn.Module) -> None:
        base = type(root).__name__ or "module"
        name, n = base, 1
        while name in self.roots:
            n += 1
            name = f"{base}#{n}"
        self.roots[name] = root
        for prefix, module in root.named_modules():
            self._names.setdefault(module, f"{name}.{prefix}" if prefix else name)


class Counted:
    """What a ``count()`` block measured: after the block, every attribute of a Measurement
    (``flops``, ``macs``, ``params``, ``modules``, ``ops``, ``uncounted``, ``table()``, ...)."""

    def __init__(self) -> None:
        self._measurement: Measurement | None = None
        self._state = "the block has not finished yet"

    @property
    def measurement(self) -> Measurement:
        if self._measurement is None:
            raise MeasurementError(f"nothing was counted: {self._state}; read the numbers after the block")
        return self._measurement

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.measurement, name)

    def __str__(self) -> str:
        return str(self.measurement)

    def __repr__(self) -> str:
        if self._measurement is None:
            return f"<Counted: {self._state}>"
        return f"<Counted: {self._measurement!r}>"


class count:  # noqa: N801 - a context manager used like a function: ``with fb.count() as c``
    """Count everything that runs inside ``with count(...) as counted:``; see the module docstring
    for what ``device``, names, parameters, nesting and exceptions mean."""

    def __init__(self, device: DeviceLike = None, *, formulas: Mapping[Any, Any] | None = None,
                 registry: Registry | None = None) -> None:
        self.target = resolve_device(device)
        self.registry = (registry or default_registry()).scoped(formulas)
        self._stack: contextlib.ExitStack | None = None
        self._counted: Counted | None = None

    def __enter__(self) -> Counted:
        if self._stack is not None:
            raise MeasurementError("this count() block is already running; nest a new count() instead")
        counted = Counted()
        stack = contextlib.ExitStack()
        try:
            fake_mode = stack.enter_context(device_scope(self.target, default_device=True))
            twins = FakeTwins(fake_mode) if fake_mode is not None else None
            if twins is not None:
                stack.enter_context(CallerObjectsKept(twins, reachable_from_caller()))
            self._scopes = _DiscoveringTracker()
            self._stepped: dict[int, Any] = {}
            stack.callback(register_optimizer_step_pre_hook(self._note_optimizer).remove)
            self._session = stack.enter_context(CountingSession(self.registry, self._scopes, grad=None))
            self._session.phase("block")
            if twins is not None:
                self._session.counter.fakify = twins.swap
        except BaseException:
            stack.close()
            raise
        self._stack, self._counted = stack, counted
        return counted

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        stack, counted = self._stack, self._counted
        self._stack = self._counted = None
        assert stack is not None and counted is not None
        scopes, session = self._scopes, self._session
        roots, ran = dict(scopes.roots), list(scopes.ran.values())
        try:
            # while the block's tensors are still in place (on meta: the twins, put back below)
            memory = self._memory(session, ran) if error is None else None
        finally:
            stack.__exit__(kind, error, traceback)
        if error is not None:
            counted._state = f"the block raised {kind.__name__}"
            explained = explain_meta_failure(error, "the count(device='meta') block", self.target)
            if explained is not error:
                # the traceback of the user's line that failed, not of this __exit__
                raise explained.with_traceback(traceback) from error
            return
        counted._measurement = self._measurement(roots, ran, session, scopes.saw_backward, memory)
        counted._state = "done"

    def _note_optimizer(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """A step pre-hook: the optimizers stepped in the block, whose state is optimizer_state."""
        self._stepped.setdefault(id(optimizer), optimizer)

    def _memory(self, session: CountingSession, ran: list[nn.Module]) -> Memory:
        """The block's memory, its storages named by what they are now: the parameters and buffers
        of the modules that ran, their gradients, the state of the optimizers stepped."""
        optimizers = list(self._stepped.values())
        params = {id(p): p for m in ran for p in m._parameters.values() if p is not None}
        params.update((id(p), p) for o in optimizers for g in o.param_groups for p in g["params"])
        buffers = {id(b): b for m in ran for b in m._buffers.values() if b is not None}
        return session.finish_memory(
            parameters=params.values(), buffers=buffers.values(),
            gradients=[p.grad for p in params.values() if p.grad is not None],
            optimizer_state=optimizer_state_tensors(optimizers),
        )

    def _measurement(self, roots: dict[str, nn.Module], ran: list[nn.Module], session: CountingSession,
                     backward: bool, memory: Memory | None) -> Measurement:
        block = _Block()
        for name, root in roots.items():
            block._modules[name] = root  # names may hold '#', which add_module would refuse
        state = ModelState.read(block)
        collected = session.measurement(state, self.target, backward, memory)
        params: dict[int, torch.Tensor] = {}
        for module in ran:
            for param in module._parameters.values():
                if param is not None:
                    params.setdefault(id(param), param)
        total = sum(p.numel() for p in params.values())
        modules = dict(collected.modules)
        modules[""] = dataclasses.replace(modules[""], type="count", params=total)
        return dataclasses.replace(
            collected,
            params=total,
            trainable_params=sum(p.numel() for p in params.values() if p.requires_grad),
            modules=modules,
            device=str(self.target) if self.target is not None else device_of(params.values()),
        )
