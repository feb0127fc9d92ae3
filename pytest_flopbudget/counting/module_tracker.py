"""Which modules are running: the module stack the counter attributes each op to.

Forward: global forward hooks (removed on exit) keep a stack of qualified names, so an op is added
to every module it runs inside (nested totals, like ptflops' table). Modules outside the measured
model are not named and not tracked.

Backward: no hook is put on any tensor. Gradient hooks on a module's inputs and outputs (the
approach of torch's own ModuleTracker) make ``torch.autograd.grad`` raise when an input is a leaf
("A leaf node was passed to _will_engine_execute_node ..."), which broke gradient penalties,
``torch.func`` transforms and meta-learning loops. Instead torch says which autograd node is
running (``torch._C._current_autograd_node()``), and every node carries the sequence number it was
created with (a per-thread counter that only node creation advances). The tracker notes the counter
each time the running modules change, so a node's number falls in the stretch of the modules that
were running when it was made: backward work is attributed to the modules whose forward created the
node it belongs to. Nodes made while a backward ran with ``create_graph=True`` (gradients of
gradients) take the modules of the node whose backward made them. Where torch cannot tell (a node
made outside every tracked module, before the block, or an ``AccumulateGrad``), the work goes to the
modules whose forward is running while the backward runs, i.e. where ``autograd.grad`` or
``.backward()`` was called, else to no module (the root, ""). Nothing here can make code raise.

CPU and meta run the backward on the calling thread. CUDA runs it on a device thread whose counter
is its own: nodes made there (double backward on CUDA) are looked up in that thread's stretches
first, so in rare cases a gradient-of-gradient op may be attributed to another module; totals are
never affected.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

_current_node = torch._C._current_autograd_node
_next_sequence_nr = torch._C._autograd._get_sequence_nr
# AccumulateGrad and other nodes outside the sequence carry the largest 64-bit number
_NO_SEQUENCE = 2**63


class _Stretches:
    """One thread's sequence numbers where the modules that own new nodes changed, and those
    modules from there on."""

    __slots__ = ("starts", "scopes", "task", "floor")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.scopes: list[tuple[str, ...]] = []
        self.task = -1  # the graph task whose gradients of gradients are being marked
        self.floor = 0  # where that task's next stretch starts

    def mark(self, scopes: tuple[str, ...], start: int | None = None) -> None:
        """Nodes numbered from ``start`` (default: the next node made) on belong to ``scopes``."""
        start = _next_sequence_nr() if start is None else start
        if self.starts and self.starts[-1] >= start:
            # no node was made since the last mark: the earlier modules own nothing from here
            self.scopes[-1] = scopes
        else:
            self.starts.append(start)
            self.scopes.append(scopes)

    def made_by(self, node_nr: int, task: int, scopes: tuple[str, ...]) -> None:
        """Inside a backward with create_graph=True: the nodes made since the last call belong to
        ``scopes``. Autograd makes an op's node before the op runs, so by the time an op is seen
        its node exists: stretches are closed here, not opened."""
        end = _next_sequence_nr()
        if task != self.task:
            # nodes up to the one running were made before this backward began
            self.task, self.floor = task, max(self.starts[-1] if self.starts else 0, node_nr + 1)
        if end > self.floor:
            self.mark(scopes, self.floor)
            self.floor = end

    def owner(self, sequence_nr: int) -> tuple[str, ...] | None:
        """The modules running when the node numbered ``sequence_nr`` was made; None before the first mark."""
        i = bisect_right(self.starts, sequence_nr) - 1
        return self.scopes[i] if i >= 0 else None


class ModuleTracker:
    """Context manager: ``active`` is the tuple of module names the running op belongs to (unique)."""

    def __init__(self, names: dict[nn.Module, str], *, track_backward: bool = False) -> None:
        self._names = names
        # kept for callers that pass it: backward attribution costs nothing when no backward runs
        self._track_backward = track_backward
        self._stack: list[str] = []
        self._forward_active: tuple[str, ...] = ()
        self._stretches: dict[int, _Stretches] = {}
        self._forward_thread: int | None = None
        self._handles: list[Any] = []
        self._restore_queued = -1  # the graph task whose end re-marks the forward's modules
        self.saw_backward = False

    def __enter__(self) -> ModuleTracker:
        self._forward_thread = threading.get_ident()
        self._mark()
        self._handles.append(register_module_forward_pre_hook(self._enter_forward))
        self._handles.append(register_module_forward_hook(self._exit_forward, always_call=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stack.clear()
        self._stretches.clear()
        self._forward_active = ()

    @property
    def active(self) -> tuple[str, ...]:
        """The modules the current op is attributed to: the running forwards, and during a backward
        also the modules whose forward created the autograd node being run."""
        node = _current_node()
        if node is None:
            return self._forward_active
        return self._backward_scopes(node)

    def locate(self) -> tuple[tuple[str, ...], bool]:
        """``active`` and whether the op runs inside an autograd backward, asking autograd once."""
        node = _current_node()
        if node is None:
            return self._forward_active, False
        return self._backward_scopes(node), True

    def end_backward(self) -> None:
        """Nothing to forget: backward scopes are read from the running node, never left open."""

    def _refresh(self) -> None:
        self._forward_active = tuple(dict.fromkeys(self._stack))
        self._mark()

    def _thread_stretches(self) -> _Stretches:
        thread = threading.get_ident()
        stretches = self._stretches.get(thread)
        if stretches is None:
            stretches = self._stretches[thread] = _Stretches()
        return stretches

    def _mark(self) -> None:
        """From the next node made on this thread on, nodes belong to the forwards running now."""
        self._thread_stretches().mark(self._forward_active)

    def _owner(self, number: int) -> tuple[str, ...] | None:
        if number >= _NO_SEQUENCE:
            return None
        thread = threading.get_ident()
        for key in (thread, self._forward_thread) if thread != self._forward_thread else (thread,):
            stretches = self._stretches.get(key)
            owner = stretches.owner(number) if stretches is not None else None
            if owner is not None:
                return owner
        return None

    def _backward_scopes(self, node: Any) -> tuple[str, ...]:
        self.saw_backward = True
        number = node._sequence_nr()
        owner = self._owner(number)
        # the forwards running now (where autograd.grad / .backward() was called) always hold the
        # work; the node's own modules, when known, are the innermost
        scopes = self._forward_active + owner if owner else self._forward_active
        if len(scopes) > 1:
            scopes = tuple(dict.fromkeys(scopes))
        if torch.is_grad_enabled():
            # create_graph=True: nodes made from here on are this node's gradients of gradients,
            # until the backward ends and the forward's modules own new nodes again
            task = torch._C._current_graph_task_id()
            self._thread_stretches().made_by(number, task, scopes)
            if task != self._restore_queued:
                self._restore_queued = task
                torch.autograd.Variable._execution_engine.queue_callback(self._backward_ended)
        return scopes

    def _backward_ended(self) -> None:
        self._restore_queued = -1
        if threading.get_ident() == self._forward_thread:
            self._thread_stretches().task = -1
            self._mark()

    def _enter_forward(self, module: nn.Module, inputs: Any) -> None:
        name = self._names.get(module)
        if name is None:
            return
        self._stack.append(name)
        self._refresh()

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
