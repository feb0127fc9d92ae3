"""A ``count(device="meta")`` block never changes the caller's real objects.

A meta block runs the user's own code under FakeTensorMode, and that code reaches objects made
before the block: a model, its optimizer, a training step's inputs. Left alone, FakeTensorMode
runs an op whose tensors are all real *for real* (AdamW's weight decay ``param.mul_``, BatchNorm's
``num_batches_tracked += 1``), and autograd and the optimizer store fake tensors on the caller's
objects (``.grad``, ``exp_avg``, ``step``), on which the next real step silently trains.

``CallerObjectsKept`` finds the modules and optimizers alive when the block starts (one scan of
the collector's objects, since code may touch them, ``zero_grad()`` first, before anything runs
through them), notes what the block may write onto them (parameters' ``.grad``, the attributes and
parameter/buffer slots of modules, optimizers' ``state`` and ``param_groups``), and for the block's
duration puts *fake twins* in place of their real parameters, buffers, gradients and optimizer
state: autograd then accumulates into the twins' ``.grad``, the optimizer steps the twins, and the
real tensors are never written. Everything is put back when the block ends, returned or raised.

Tensors that reach an op some other way (an input made before the block, a weight captured in a
closure) are replaced below autograd by the same twins (``FakeTwins.swap``). Twins are fake *cpu*
tensors, like everything a meta block creates and like measure()'s substitutes on meta, whether
the original was a real tensor or a plain meta one (a model built on meta); a 0-dim real tensor
(an optimizer's ``step``) becomes a fake *constant* that keeps a copy of its value, so ``.item()``
still works in a steady-state step.

What is not restored: other Python objects the block mutates (a list the user appends to, a
global counter), and random number generator state.
"""

from __future__ import annotations

import gc
from typing import Any

import torch
from torch import nn

from pytest_flopbudget.counting.model_state import attributes_kept

# a fake tensor (and a Parameter made from one, which is a FakeTensor) is never of these types
_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)
# where twins live: meta counts run on fake *cpu* tensors, so aten picks the kernels a real CPU
# picks, and device checks in Python (fused and foreach optimizers) see one real device type
_FAKE_DEVICE = torch.device("cpu")


class FakeTwins:
    """One fake twin per real tensor, made when first needed (see the module doc)."""

    def __init__(self, fake_mode: Any) -> None:
        self._fake_mode = fake_mode
        self._twins: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id -> (real kept alive, fake)

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
        with unset_fake_temporarily():
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
            # (twins are made for every parameter alive at a block's entry)
            fake.requires_grad_(real.requires_grad)
            fake._is_param = True
        elif real.requires_grad and fake.is_floating_point():
            fake.requires_grad_(True)
        self._twins[id(real)] = (real, fake)
        return fake


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
    """The modules and optimizers alive when the block begins run on fake twins inside it, and
    are put back as they were when it ends."""

    def __init__(self, twins: FakeTwins) -> None:
        self._twins = twins

    def __enter__(self) -> CallerObjectsKept:
        modules, optimizers = _live_modules_and_optimizers()
        self._grads = [(p, p.grad) for m in modules for p in m._parameters.values() if p is not None]
        self._grads += [(p, p.grad) for o in optimizers for g in o.param_groups for p in g["params"]]
        self._optimizers = [(o, dict(o.state), [(p, dict(s)) for p, s in o.state.items()],
                             list(o.param_groups), [dict(g) for g in o.param_groups]) for o in optimizers]
        self._attributes = attributes_kept([*modules, *optimizers])
        self._attributes.__enter__()
        try:
            for module in modules:
                self._swap_module(module)
            for optimizer in optimizers:
                self._swap_optimizer(optimizer)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _twin_with_grad(self, param: torch.Tensor) -> torch.Tensor:
        twin = self._twins.of(param)
        if param.grad is not None and twin.grad is None :
            twin.grad = self._twins.of(param.grad)
        return twin

    def _swap_module(self, module: nn.Module) -> None:
        for key, param in module._parameters.items():
            if param is not None and type(param) in _PLAIN_TENSORS :
                module._parameters[key] = self._twin_with_grad(param)
        for key, buffer in module._buffers.items():
            if buffer is not None and type(buffer) in _PLAIN_TENSORS :
                module._buffers[key] = self._twins.of(buffer)

    def _swap_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        def twin(value: Any) -> Any:
            return self._twins.of(value) if type(value) in _PLAIN_TENSORS else value

        state = {twin(p): {k: twin(v) for k, v in s.items()} for p, s in optimizer.state.items()}
        for group in optimizer.param_groups:
            group["params"] = [self._twin_with_grad(p) if type(p) in _PLAIN_TENSORS else p
                               for p in group["params"]]
        optimizer.state.clear()
        optimizer.state.update(state)

    def __exit__(self, *exc: Any) -> None:
        try:
            self._attributes.__exit__(*exc)
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
            for param, grad in self._grads:
                if param.grad is not grad:
                    # the .grad setter refuses a fake of another device; the slot itself does not
                    torch._C.TensorBase.grad.__set__(param, grad)


def _live_modules_and_optimizers() -> tuple[list[nn.Module], list[torch.optim.Optimizer]]:
    """Every nn.Module and optimizer alive now (one pass over the collector's objects, with the
    subclass test cached per type)."""
    modules: list[nn.Module] = []
    optimizers: list[torch.optim.Optimizer] = []
    kinds: dict[type, int] = {}
    for obj in gc.get_objects():
        cls = type(obj)
        kind = kinds.get(cls)
        if kind is None:
            kind = kinds[cls] = 1 if issubclass(cls, nn.Module) else 2 if issubclass(cls, torch.optim.Optimizer) else 0
        if kind == 1:
            modules.append(obj)
        elif kind == 2:
            optimizers.append(obj)
    return modules, optimizers
