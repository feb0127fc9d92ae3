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
  runs the block under torch's FakeTensorMode with meta as the default device: every tensor the
  block creates is fake, and models built on meta before the block (``with torch.device("meta"):
  model = build()``) run without memory. Code that reads tensor values (``.item()``, ``if
  (x > 0).any()``, a stopping criterion of ``generate()``) cannot run on meta, and a real tensor
  meeting a meta one is a device mismatch: both are a MeasurementError saying what to do.
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

from pytest_flopbudget.counting.collect import collect
from pytest_flopbudget.counting.counter import OpCounter
from pytest_flopbudget.counting.devices import DeviceLike, device_of, fake_mode, is_meta, resolve_device
from pytest_flopbudget.counting.errors import FormulaError, MeasurementError, first_line, mixes_devices, needs_values
from pytest_flopbudget.counting.measurement import Measurement, ModuleCost
from pytest_flopbudget.counting.model_state import ModelState
from pytest_flopbudget.counting.registry import Registry, default_registry
from pytest_flopbudget.counting.module_tracker import ModuleTracker


class _Block(nn.Module):
    """Holds a block's top-level models as children, so one ModelState names the whole tree and
    measure()'s collection code builds the Measurement. Never run."""


_Block.__name__ = "count"


class _DiscoveringTracker(ModuleTracker):
    """ModuleTracker that names a top-level module the first time it runs and records every module
    that runs."""

    def __init__(self, *, track_backward: bool) -> None:
        super().__init__({}, track_backward=track_backward)
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
            if is_meta(self.target):
                stack.enter_context(fake_mode())
            if self.target is not None:
                stack.enter_context(torch.device(self.target))
            self._scopes: _DiscoveringTracker = stack.enter_context(_DiscoveringTracker(track_backward=True))
            self._counter = stack.enter_context(OpCounter(self.registry, self._scopes))
        except BaseException:
            stack.close()
            raise
        self._stack, self._counted = stack, counted
        return counted

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        stack, counted = self._stack, self._counted
        self._stack = self._counted = None
        assert stack is not None and counted is not None
        scopes, counter = self._scopes, self._counter
        roots, ran = dict(scopes.roots), list(scopes.ran.values())
        stack.__exit__(kind, error, traceback)
        if error is not None:
            counted._state = f"the block raised {kind.__name__}"
            explained = self._explain(error)
            if explained is not error:
                raise explained from error
            return
        counted._measurement = self._measurement(roots, ran, counter, scopes.saw_backward)
        counted._state = "done"

    def _measurement(self, roots: dict[str, nn.Module], ran: list[nn.Module], counter: OpCounter,
                     backward: bool) -> Measurement:
        block = _Block()
        for name, root in roots.items():
            block._modules[name] = root  # names may hold '#', which add_module would refuse
        state = ModelState.read(block)
        collected = collect(state, counter, self.target, backward)
        params: dict[int, torch.Tensor] = {}
        for module in ran:
            for param in module._parameters.values():
                if param is not None:
                    params.setdefault(id(param), param)
        total = sum(p.numel() for p in params.values())
        modules = dict(collected.modules)
        modules[""] = ModuleCost("count", collected.flops, collected.macs, total)
        return dataclasses.replace(
            collected,
            params=total,
            trainable_params=sum(p.numel() for p in params.values() if p.requires_grad),
            modules=modules,
            device=str(self.target) if self.target is not None else device_of(params.values()),
        )

    def _explain(self, error: BaseException) -> BaseException:
        """Errors only meta causes get a MeasurementError saying what to do; others stay as they are."""
        if isinstance(error, (MeasurementError, FormulaError)) or not is_meta(self.target):
            return error
        if mixes_devices(error):
            return MeasurementError(
                f"count(device='meta'): a real tensor met a meta one ({first_line(error)}). Inside a meta block "
                "every tensor the code creates is on meta; build models before the block with "
                "`with torch.device('meta'): model = build()` (or count on 'cpu').",
            )
        if needs_values(error):
            return MeasurementError(
                f"count(device='meta'): the code reads tensor values, which meta tensors do not have "
                f"({first_line(error)}). Code whose control flow depends on values (.item(), stopping criteria, "
                "nonzero, masks built from data) must be counted on 'cpu'.",
                use_device="cpu",
            )
        return error
