"""A ``count(device="meta")`` block never changes the caller's real objects.

A meta block runs the user's own code under FakeTensorMode, and that code reaches objects made
before the block: a model, its optimizer, a training step's inputs. Left alone, FakeTensorMode
runs an op whose tensors are all real *for real* (AdamW's weight decay ``param.mul_``, BatchNorm's
``num_batches_tracked += 1``), and autograd and the optimizer store fake tensors on the caller's
objects (``.grad``, ``exp_avg``, ``step``), on which the next real step silently trains.

``CallerObjectsKept`` guards the caller's modules and optimizers: it notes what the block may write
onto them (parameters' ``.grad``, the attributes and parameter/buffer slots of modules,
optimizers' ``state`` and ``param_groups``) and for the block's duration puts *fake twins* in
place of their real parameters, buffers, gradients and optimizer state: autograd then accumulates
into the twins' ``.grad``, the optimizer steps the twins, and the real tensors are never written.
Everything is put back when the block ends, returned or raised. A module or optimizer is guarded

- at the block's entry when the code around the block can name it (reachable.py: the frame's
  locals and globals, two levels down), since code may touch it before anything runs through it
  (``optimizer.zero_grad()`` first);
- else the first time it runs in the block: a global forward pre-hook guards a module's whole tree
  when the module's forward starts, a global optimizer step pre-hook an optimizer before its step.

Tensors that reach an op some other way (an input made before the block, a weight captured in a
closure) are replaced below autograd by the same twins (``FakeTwins.swap``); a real leaf's
``.grad`` is noted when its twin is made and put back at the end. Twins are fake *cpu* tensors,
like everything a meta block creates and like measure()'s substitutes on meta, whether the
original was a real tensor or a plain meta one (a model built on meta); a 0-dim real tensor (an
optimizer's ``step``) becomes a fake *constant* that keeps a copy of its value, so ``.item()``
still works in a steady-state step.

What is not restored: other Python objects the block mutates (a list the user appends to, a
global counter), random number generator state, and Python-level writes (``p.grad = None``,
``zero_grad()``, ``train()``, ``requires_grad_()``, attribute assignments) to a module or optimizer
that the code around the block cannot name and that has not yet run a forward or step when they
happen: such an object is guarded as it is when it first runs.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook
from torch.nn.utils import stateless
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils._python_dispatch import _disable_current_modes

from pytest_flopbudget.counting.model_state import attributes_kept
from pytest_flopbudget.counting.reachable import Reachable

# a fake tensor (and a Parameter made from one, which is a FakeTensor) is never of these types
_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)
# where twins live: meta counts run on fake *cpu* tensors, so aten picks the kernels a real CPU
# picks, and device checks in Python (fused and foreach optimizers) see one real device type
_FAKE_DEVICE = torch.device("cpu")
_NOT_A_LEAF = object()  # a non-leaf's .grad is never set by autograd (and reading it warns)


class FakeTwins:
    """One fake twin per real tensor, made when first needed (see the module doc)."""

    def __init__(self, fake_mode: Any) -> None:
        self._fake_mode = fake_mode
        # id -> (real kept alive, fake, the real one's .grad when the twin was made)
        self._twins: dict[int, tuple[torch.Tensor, torch.Tensor, Any]] = {}

    def swap(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """An op's arguments with their real tensors replaced by twins (called for every op)."""
        if not (_any_real(args) or (kwargs and _any_real(kwargs.values()))):
            return args, kwargs
        return tuple(self._swap(a) for a in args), {k: self._swap(v) for k, v in kwargs.items()}

    def _swap(self, value: Any) -> Any:
        if type(value) in _PLAIN_TENSORS:
            return self.of(value)
        if isinstance(value, (list, tuple)) and any(type(v) in _PLAIN_TENSORS for v in value):
            return type(value)(self.of(v) if type(v) in _PLAIN_TENSORS else v for v in value)
        return value

    def of(self, real: torch.Tensor) -> torch.Tensor:
        """The twin of ``real``: a leaf Parameter for a Parameter, with the same requires_grad."""
        found = self._twins.get(id(real))
        if found is not None and found[0] is real:
            return found[1]
        from torch._subclasses.fake_tensor import unset_fake_temporarily

        mode = self._fake_mode
        converter = mode.fake_tensor_converter
        with unset_fake_temporarily(), torch.inference_mode(False):
            # the constant is a copy: FakeTensorMode computes in-place ops on constants for real
            copy = real.detach().cpu().clone() if real.dim() == 0 and real.device.type != "meta" else None
            shell = torch.empty_strided(real.shape, real.stride(), dtype=real.dtype, device="meta")
            if copy is not None:
                fake = converter.from_real_tensor(mode, copy, make_constant=True)
            else:
                fake = converter.from_meta_and_device(mode, shell, _FAKE_DEVICE)
        if isinstance(real, nn.Parameter):
            # what nn.Parameter(fake) does for a tensor subclass, without its detach(): the fake is
            # new and ours alone, so marking it in place is the same and costs no fake dispatch
            fake.requires_grad_(real.requires_grad)
            fake._is_param = True
        elif real.requires_grad and fake.is_floating_point():
            fake.requires_grad_(True)
        grad = real.grad if real.is_leaf else _NOT_A_LEAF
        self._twins[id(real)] = (real, fake, grad)
        if grad is not None and grad is not _NOT_A_LEAF and type(grad) in _PLAIN_TENSORS:
            # a backward in the block accumulates into the twin as it would into the real leaf
            fake.grad = self.of(grad)
        return fake

    def put_back_grads(self) -> None:
        """Every real leaf that got a twin has the ``.grad`` it had then."""
        for real, _, grad in self._twins.values():
            if grad is not _NOT_A_LEAF and real.grad is not grad:
                _set_grad(real, grad)


def _set_grad(tensor: torch.Tensor, grad: Any) -> None:
    # the .grad setter refuses a fake of another device; the slot itself does not
    torch._C.TensorBase.grad.__set__(tensor, grad)


def _any_real(values: Any) -> bool:
    for value in values:
        if type(value) in _PLAIN_TENSORS:
            return True
        if isinstance(value, (list, tuple)):
            for item in value:
                if type(item) in _PLAIN_TENSORS:
                    return True
    return False


class CallerObjectsKept:
    """The caller's modules and optimizers run on fake twins inside the block, and are put back as
    they were when it ends: those in ``reachable`` from the block's entry, any other the first time
    it runs a forward or a step (see the module doc)."""

    def __init__(self, twins: FakeTwins, reachable: Reachable) -> None:
        self._twins = twins
        self._reachable = reachable
        self._guarded: set[int] = set()  # ids of modules and optimizers guarded (kept alive below)
        self._kept: list[Any] = []  # attributes_kept managers, entered
        self._optimizers: list[tuple[Any, ...]] = []
        self._grads: list[tuple[torch.Tensor, Any]] = []
        self._handles: list[Any] = []

    def __enter__(self) -> CallerObjectsKept:
        try:
            found = self._reachable
            self._grads = [(t, t.grad) for t in found.tensors]  # p.grad = None on a list of parameters
            self._guard_modules(found.modules)
            for optimizer in found.optimizers:
                self._guard_optimizer(optimizer)
            self._handles = [register_module_forward_pre_hook(self._on_forward),
                             register_optimizer_step_pre_hook(self._on_step)]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _on_forward(self, module: nn.Module, inputs: Any) -> None:
        if id(module) not in self._guarded and not _reparametrized():
            with _outside_modes():
                self._guard_modules((module,))

    def _on_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if id(optimizer) not in self._guarded:
            with _outside_modes():
                self._guard_optimizer(optimizer)

    def _guard_modules(self, roots: Iterable[nn.Module]) -> None:
        """Guard every module of the trees under ``roots`` not guarded yet."""
        new = []
        guarded = self._guarded
        for root in roots:
            if id(root) in guarded:
                continue  # its tree was guarded with it (a submodule added since is guarded when it runs)
            for module in root.modules():
                if id(module) not in guarded:
                    guarded.add(id(module))
                    new.append(module)
        if not new:
            return
        self._enter_kept(new)
        for module in new:
            self._swap_module(module)

    def _guard_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        if id(optimizer) in self._guarded:
            return
        self._guarded.add(id(optimizer))
        self._optimizers.append((optimizer, dict(optimizer.state),
                                 [(p, dict(s)) for p, s in optimizer.state.items()],
                                 list(optimizer.param_groups), [dict(g) for g in optimizer.param_groups]))
        self._enter_kept([optimizer])
        self._swap_optimizer(optimizer)

    def _enter_kept(self, objects: list[Any]) -> None:
        kept = attributes_kept(objects)
        kept.__enter__()
        self._kept.append(kept)

    def _swap_module(self, module: nn.Module) -> None:
        for key, param in module._parameters.items():
            if param is not None and type(param) in _PLAIN_TENSORS :
                module._parameters[key] = self._twins.of(param)
        for key, buffer in module._buffers.items():
            if buffer is not None and type(buffer) in _PLAIN_TENSORS :
                module._buffers[key] = self._twins.of(buffer)

    def _swap_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        def twin(value: Any) -> Any:
            return self._twins.of(value) if type(value) in _PLAIN_TENSORS else value

        state = {twin(p): {k: twin(v) for k, v in s.items()} for p, s in optimizer.state.items()}
        for group in optimizer.param_groups:
            group["params"] = [self._twins.of(p) if type(p) in _PLAIN_TENSORS else p
                               for p in group["params"]]
        optimizer.state.clear()
        optimizer.state.update(state)

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        try:
            while self._kept:
                self._kept.pop().__exit__(*exc)
        finally:
            for optimizer, state, per_param, groups, group_items in self._optimizers:
                optimizer.state.clear()
                optimizer.state.update(state)
                for param, items in per_param:
                    kept = optimizer.state[param]
                    kept.clear()
                    kept.update(items)
                optimizer.param_groups[:] = groups
                for group, items in zip(groups, group_items):
                    group.clear()
                    group.update(items)
            self._twins.put_back_grads()
            for tensor, grad in self._grads:
                if tensor.grad is not grad:
                    _set_grad(tensor, grad)


def _reparametrized() -> bool:
    """Whether a module runs under ``torch.func.functional_call`` (measure() runs on substitutes
    that way): its slots hold the substitutes now, and guarding it would note them as what to put
    back. Its tensors are swapped at each op instead, and it is guarded when it runs outside."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code in _REPARAMETRIZING:
            return True
        frame = frame.f_back
    return False


_REPARAMETRIZING = frozenset(
    fn.__code__ for fn in (getattr(stateless, "_functional_call", None),) if fn is not None
)


def _outside_modes() -> Any:
    """Twins made from a hook are made outside the block's modes: the counter must not count, nor
    the memory tracker see, the tensors that make them."""
    return _disable_current_modes()
