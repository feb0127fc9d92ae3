"""Which modules are running: the module stack the counter attributes each op to.

Global forward hooks (removed on exit) keep a stack of qualified names, so an op is added to every
module it runs inside (nested totals, like ptflops' table). With ``track_backward``, gradient hooks
re-enter a module while its backward runs (the approach of torch's ModuleTracker), so backward
kernels are attributed too. Modules outside the measured model are not named and not tracked.

A backward scope closes when the gradients of the module's inputs are computed; a module whose
inputs need no gradient (the first layer) never gets that signal, so every scope still open is
closed when the autograd pass ends (a callback queued on the engine by the pass's first hook),
whoever started the pass: measure(), or a block's own ``loss.backward()``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd.graph import register_multi_grad_hook
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._pytree import tree_flatten


class ModuleTracker:
    """Context manager: ``active`` is the tuple of module names currently running (unique)."""

    def __init__(self, names: dict[nn.Module, str], *, track_backward: bool = False) -> None:
        self._names = names
        self._track_backward = track_backward
        self._stack: list[str] = []
        self._backward_active: dict[str, int] = {}
        self._handles: list[Any] = []
        self._end_queued = False
        self.saw_backward = False
        self.active: tuple[str, ...] = ()

    def __enter__(self) -> ModuleTracker:
        self._handles.append(register_module_forward_pre_hook(self._enter_forward))
        self._handles.append(register_module_forward_hook(self._exit_forward, always_call=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stack.clear()
        self._backward_active.clear()
        self.active = ()

    def _refresh(self) -> None:
        names = dict.fromkeys(self._stack)
        names.update(dict.fromkeys(self._backward_active))
        self.active = tuple(names)

    def _enter_forward(self, module: nn.Module, inputs: Any) -> None:
        name = self._names.get(module)
        if name is None:
            return
        self._stack.append(name)
        self._refresh()
        if self._track_backward and torch.is_grad_enabled():
            grads_in = _grad_tensors(inputs)
            if grads_in:
                # the module's backward ends once the gradients of its inputs are computed
                self._handles.append(register_multi_grad_hook(grads_in, self._leave_backward(name)))

    def _exit_forward(self, module: nn.Module, inputs: Any, output: Any) -> None:
        name = self._names.get(module)
        if name is None:
            return
        # pop the innermost occurrence; an exception may skip levels, so search from the top
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i] == name:
                del self._stack[i]
                break
        self._refresh()
        if self._track_backward and torch.is_grad_enabled():
            grads_out = _grad_tensors(output)
            if grads_out:
                # its backward starts when the gradients of its outputs arrive
                self._handles.append(register_multi_grad_hook(grads_out, self._enter_backward(name)))

    def _enter_backward(self, name: str) -> Any:
        def hook(*_: object) -> None:
            self._backward_active[name] = self._backward_active.get(name, 0) + 1
            self._refresh()
            self.saw_backward = True
            if not self._end_queued:
                # scopes of modules whose inputs need no gradient never close by themselves: close
                # them when this pass ends, or an optimizer step after it would be attributed to
                # the first layer
                self._end_queued = True
                torch.autograd.Variable._execution_engine.queue_callback(self._backward_ended)

        return hook

    def _leave_backward(self, name: str) -> Any:
        def hook(*_: object) -> None:
            count = self._backward_active.get(name, 0) - 1
            if count > 0:
                self._backward_active[name] = count
            else:
                self._backward_active.pop(name, None)
            self._refresh()

        return hook

    def _backward_ended(self) -> None:
        """Forget backward scopes whose inputs needed no gradient (their exit hook never fires)."""
        self._end_queued = False
        self._backward_active.clear()
        self._refresh()


def _grad_tensors(value: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(value)
    return [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad]
