"""Bytes of tensor storage a run holds, seen from the dispatch mode that already counts its FLOPs.

Each tensor lives in an untyped storage; torch keeps one Python object per storage for as long as
the storage lives, so a storage can be recognised again (views, tied weights, in-place ops, ``out=``
arguments and aliasing outputs all share it) and its death seen through a weak reference. The
tracker counts every storage once, at its ``nbytes()``:

- a storage first seen as an op's *output* was allocated by the run, by the innermost module
  running at the time ("" outside every module), in the current phase;
- a storage first seen as an op's *argument*, or registered with ``register_entry``, existed before
  the run (live at entry);
- its death is an event too. Events go to a log (allocations and frees, in order); the peak is kept
  as they arrive and the live set at the peak is found by replaying the log once, at ``finish``.

Fake tensors (FakeTensorMode, the "meta" count) have storages with the same ``nbytes()`` as real
ones, so the same run gives the same bytes on cpu and meta. What kernels allocate and free inside
themselves (workspaces), allocator rounding and fragmentation are below what dispatch sees.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any, Callable, Iterable

import torch
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from pytest_flopbudget.counting.arguments import tensor_positions as _plan
from pytest_flopbudget.counting.measurement import MEMORY_CATEGORIES, MEMORY_PHASES, Memory
from pytest_flopbudget.counting.names import ancestors

_Tensor = torch.Tensor
# categories a tensor can have before the run starts
ENTRY_CATEGORIES = ("parameters", "buffers", "inputs", "optimizer_state")
# ops whose argument is a constant made during the run outside dispatch (torch.tensor(...)): its
# storage is an allocation of the run, not something that existed before it
_FRESH_ARGUMENT_OPS = frozenset(
    getattr(torch.ops.aten, name).default for name in ("lift_fresh", "lift_fresh_copy")
    if hasattr(torch.ops.aten, name)
)
# id(op) -> (op kept alive, where its tensor arguments are: False none looked at (a constant made
# during the run), a tuple of positions, None anywhere); see arguments.py
_PLANS: dict[int, tuple[Any, Any]] = {}
# tensor type -> whether it wraps other tensors (nested jagged tensors, DTensor): asked once per type
_WRAPPERS: dict[type, bool] = {_Tensor: False}


class _StorageRef(weakref.ref):
    """A weak reference to a storage that knows its record (the callback gets the reference)."""

    __slots__ = ("key", "index")


class MemoryTracker:
    """The storages one run allocates and frees, attributed to modules and phases.

    Feed it from a dispatch mode: ``record(func, args, kwargs, out)`` after every aten call. Enter
    it (``with tracker:``) around the run to note the tensors autograd saves for backward
    (activations) and to hold Python's cyclic garbage collector, so storages die at the same point
    whatever the device (a collection triggered at a different moment would move the peak).
    """

    def __init__(self, active_modules: Callable[[], tuple[str, ...]], *, saved_hooks: bool = True) -> None:
        self._active_modules = active_modules
        # torch.func's grad transforms refuse to run under saved-tensor hooks: where the code is the
        # user's own (a count() block), activations are not told apart and count as temporaries
        self._saved_hooks = saved_hooks
        self.phase = "block"
        self._start_phase: str | None = None
        # one record per storage (a resize ends one record and starts another): parallel lists
        self._bytes: list[int] = []
        self._module: list[str] = []
        self._phase: list[str] = []
        self._entry: list[str | None] = []  # the entry category, None for what the run allocated
        self._saved: set[int] = set()  # records autograd saved for backward
        # record index -> category named while the storage lived (gradients freed before the end)
        self._named: dict[int, str] = {}
        self._refs: dict[int, _StorageRef] = {}  # id(storage) -> its reference, while it lives
        # events in order: a record's index when allocated, ~index when freed
        self._log: list[int] = []
        self._entry_bytes = 0
        self._live = 0
        self._peak = 0
        self._peak_event = 0  # how many events the log held when the peak was reached
        self._peak_phase: str | None = None
        self._closed = False
        self._on_free = self._freed  # one bound method for every reference
        self._hooks: Any = None
        self._gc_was_enabled = False

    # -- context: saved-tensor hooks and a steady garbage collector ---------------------------------

    def __enter__(self) -> MemoryTracker:
        if self._saved_hooks:
            self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)
            self._hooks.__enter__()
        self._gc_was_enabled = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._hooks is not None:
                self._hooks.__exit__(*exc)
                self._hooks = None
        finally:
            if self._gc_was_enabled:
                gc.enable()

    def _pack(self, tensor: Any) -> Any:
        """Autograd saves ``tensor`` for backward: its storage holds an activation while it lives."""
        if isinstance(tensor, _Tensor):
            for storage in _storages(tensor):
                ref = self._refs.get(id(storage))
                if ref is not None:
                    self._saved.add(ref.index)
        return tensor

    # -- feeding --------------------------------------------------------------------------------

    def set_phase(self, name: str) -> None:
        """Where the run is now: forward, backward, optimizer, or block (a count() block)."""
        if name not in MEMORY_PHASES:
            raise ValueError(f"unknown memory phase {name!r}; expected one of {', '.join(MEMORY_PHASES)}")
        if self._start_phase is None:
            self._start_phase = name
        self.phase = name

    def register_entry(self, tensors: Iterable[Any], category: str) -> None:
        """Tensors that exist before the run (parameters, buffers, inputs, optimizer state): live at
        entry whether or not the run touches them. A storage registered twice counts once, under
        the category it was first registered with."""
        if category not in ENTRY_CATEGORIES:
            raise ValueError(
                f"unknown entry category {category!r}; expected one of {', '.join(ENTRY_CATEGORIES)}"
            )
        for tensor in tensors:
            if isinstance(tensor, _Tensor):
                for storage in _storages(tensor):
                    if id(storage) not in self._refs:
                        self._existing(storage, category)

    def name(self, tensors: Iterable[Any], category: str) -> None:
        """Say what live tensors are, for the categories at the peak, while they live: gradients
        that ``autograd.grad`` returned and nobody kept, or that ``zero_grad()`` frees before the
        run ends, would otherwise read as temporaries. The first name given to a storage holds."""
        if category not in MEMORY_CATEGORIES:
            raise ValueError(f"unknown memory category {category!r}; expected one of {', '.join(MEMORY_CATEGORIES)}")
        for tensor in tensors:
            if isinstance(tensor, _Tensor):
                for storage in _storages(tensor):
                    ref = self._refs.get(id(storage))
                    if ref is not None:
                        self._named.setdefault(ref.index, category)

    def record(self, func: Any, args: Any, kwargs: Any, out: Any) -> None:
        """After one aten call: new storages among its arguments existed before the run; new ones
        among its outputs were allocated by it (a storage whose size changed was resized)."""
        found = _PLANS.get(id(func))
        if found is None or found[0] is not func:
            found = _PLANS[id(func)] = (func, False if func in _FRESH_ARGUMENT_OPS else _plan(func))
        plan = found[1]
        if plan is not False:
            refs = self._refs
            try:
                if plan is None:  # tensors may be anywhere, lists included
                    for value in args:
                        if isinstance(value, _Tensor):
                            if id(value.untyped_storage()) not in refs:
                                self._argument(value)
                        elif type(value) in (list, tuple):
                            for item in value:
                                if isinstance(item, _Tensor) and id(item.untyped_storage()) not in refs:
                                    self._argument(item)
                else:  # only where the schema puts tensors
                    size = len(args)
                    for i in plan:
                        if i < size:
                            value = args[i]
                            if isinstance(value, _Tensor) and id(value.untyped_storage()) not in refs:
                                self._argument(value)
                if kwargs:
                    for value in kwargs.values():
                        if isinstance(value, _Tensor) and id(value.untyped_storage()) not in refs:
                            self._argument(value)
            except (RuntimeError, NotImplementedError):  # a storage-less layout among them (sparse)
                self._arguments_one_by_one(args, kwargs)
        if isinstance(out, _Tensor):
            self._output(out)
        elif type(out) in (list, tuple):
            for item in out:
                if isinstance(item, _Tensor):
                    self._output(item)

    def _arguments_one_by_one(self, args: Any, kwargs: Any) -> None:
        values = [*args, *(kwargs or {}).values()]
        for value in values:
            items = value if type(value) in (list, tuple) else (value,)
            for item in items:
                if isinstance(item, _Tensor):
                    self._argument(item)

    def _argument(self, tensor: _Tensor) -> None:
        for storage in _storages(tensor):
            if id(storage) not in self._refs:
                self._existing(storage, None)

    def _output(self, tensor: _Tensor) -> None:
        # the hot path (one call per op output), written out in one function
        wraps = _WRAPPERS.get(type(tensor))
        if wraps is None:
            wraps = _is_wrapper(tensor)
        if wraps:
            storages = _storages(tensor)
        else:
            try:
                storages = [tensor.untyped_storage()]
            except (RuntimeError, NotImplementedError):  # sparse and other storage-less layouts
                return
        refs = self._refs
        for storage in storages:
            key = id(storage)
            ref = refs.get(key)
            if ref is not None:
                if storage.nbytes() != self._bytes[ref.index]:
                    self._resized(storage, ref)
                continue
            # allocated by this call
            nbytes = storage.nbytes()
            index = len(self._bytes)
            active = self._active_modules()
            self._bytes.append(nbytes)
            self._module.append(active[-1] if active else "")
            self._phase.append(self.phase)
            self._entry.append(None)
            ref = _StorageRef(storage, self._on_free)
            ref.key = key
            ref.index = index
            refs[key] = ref
            self._log.append(index)
            self._live += nbytes
            if self._live > self._peak:
                self._peak = self._live
                self._peak_event = len(self._log)
                self._peak_phase = self.phase

    # -- the log ----------------------------------------------------------------------------------

    def _new_record(self, storage: Any, nbytes: int, module: str, phase: str, entry: str | None) -> int:
        index = len(self._bytes)
        self._bytes.append(nbytes)
        self._module.append(module)
        self._phase.append(phase)
        self._entry.append(entry)
        ref = _StorageRef(storage, self._on_free)
        ref.key = id(storage)
        ref.index = index
        self._refs[ref.key] = ref
        return index

    def _existing(self, storage: Any, category: str | None) -> None:
        """A storage that was live before the run: it adds to every moment up to now, the peak
        so far included (it was there all along)."""
        nbytes = storage.nbytes()
        self._new_record(storage, nbytes, "", self.phase, category or "")
        self._entry_bytes += nbytes
        self._live += nbytes
        self._peak += nbytes

    def _grow(self, nbytes: int) -> None:
        self._live += nbytes
        if self._live > self._peak:
            self._peak = self._live
            self._peak_event = len(self._log)
            self._peak_phase = self.phase

    def _resized(self, storage: Any, ref: _StorageRef) -> None:
        """A storage that changed size in place (``out=`` tensors resized, ``resize_``): the old
        size is freed and the new one allocated, by whatever is running now."""
        old = ref.index
        self._log.append(~old)
        self._live -= self._bytes[old]
        active = self._active_modules()
        index = len(self._bytes)
        self._bytes.append(storage.nbytes())
        self._module.append(active[-1] if active else "")
        self._phase.append(self.phase)
        self._entry.append(None)
        if old in self._saved:
            self._saved.add(index)
        ref.index = index
        self._log.append(index)
        self._grow(self._bytes[index])

    def _freed(self, ref: _StorageRef) -> None:
        """The weak reference's callback: the storage is gone."""
        if self._closed:
            return
        if self._refs.get(ref.key) is ref:
            del self._refs[ref.key]
        self._log.append(~ref.index)
        self._live -= self._bytes[ref.index]

    # -- the result -------------------------------------------------------------------------------

    def finish(
        self,
        *,
        parameters: Iterable[Any] = (),
        buffers: Iterable[Any] = (),
        gradients: Iterable[Any] = (),
        optimizer_state: Iterable[Any] = (),
    ) -> Memory:
        """The run's Memory. ``parameters``/``buffers``/``gradients``/``optimizer_state`` name what
        their storages are, for the categories at the peak (a ``.grad`` made during the run is a
        gradient, not a temporary) and ``param_bytes``. Call it once, when the run is over."""
        kinds: dict[int, str] = dict(self._named)  # record index -> category (first name wins)
        param_bytes: dict[str, int] = {}
        param_storages: set[int] = set()
        for category, tensors in (("parameters", parameters), ("buffers", buffers),
                                  ("gradients", gradients), ("optimizer_state", optimizer_state)):
            for tensor in tensors:
                if not isinstance(tensor, _Tensor):
                    continue
                for storage in _storages(tensor):
                    ref = self._refs.get(id(storage))
                    if ref is not None:
                        kinds.setdefault(ref.index, category)
                    if category == "parameters" and id(storage) not in param_storages:
                        param_storages.add(id(storage))
                        dtype = str(tensor.dtype).removeprefix("torch.")
                        param_bytes[dtype] = param_bytes.get(dtype, 0) + storage.nbytes()
        self._closed = True
        at_peak, at_end = self._replay()
        self._refs.clear()
        self._on_free = None  # the bound method held this tracker in a cycle (freed at once instead)

        categories = dict.fromkeys(MEMORY_CATEGORIES, 0)
        modules: dict[str, int] = {"": 0}
        lineage: dict[str, list[str]] = {}  # module -> its ancestors, computed once per module
        for index in at_peak:
            nbytes = self._bytes[index]
            categories[self._category(index, kinds)] += nbytes
            if self._entry[index] is None:
                module = self._module[index]
                names = lineage.get(module)
                if names is None:
                    names = lineage[module] = ancestors(module)
                for name in names:
                    modules[name] = modules.get(name, 0) + nbytes
        retained = sum(self._bytes[i] for i in at_end if self._entry[i] is None)
        return Memory(
            peak=self._peak,
            at_entry=self._entry_bytes,
            phase=self._peak_phase or self._start_phase or self.phase,
            categories=categories,
            param_bytes=dict(sorted(param_bytes.items())),
            modules=modules,
            retained=retained,
        )

    def _category(self, index: int, kinds: dict[int, str]) -> str:
        named = kinds.get(index)
        if named is not None:
            return named
        entry = self._entry[index]
        if entry is not None:
            return entry or "inputs"  # read by the run without being registered: given to it
        return "activations" if index in self._saved else "temporaries"

    def _replay(self) -> tuple[list[int], list[int]]:
        """Records live at the peak and at the end, from the log (entry records are live until
        freed)."""
        live = {i for i, entry in enumerate(self._entry) if entry is not None}
        at_peak: list[int] | None = None
        for position, event in enumerate(self._log):
            if position == self._peak_event:
                at_peak = sorted(live)
            if event >= 0:
                live.add(event)
            else:
                live.discard(~event)
        if at_peak is None:
            at_peak = sorted(live)
        return at_peak, sorted(live)


def _unpack(tensor: Any) -> Any:
    return tensor


def _is_wrapper(tensor: _Tensor) -> bool:
    kind = type(tensor)
    wraps = _WRAPPERS.get(kind)
    if wraps is None:
        wraps = _WRAPPERS[kind] = bool(is_traceable_wrapper_subclass(tensor))
    return wraps


def _storages(tensor: _Tensor) -> list[Any]:
    """The untyped storages behind a tensor: its own, or, for a wrapper subclass (nested jagged
    tensors, DTensor), those of the plain tensors inside it."""
    if _WRAPPERS.get(type(tensor)) is False:  # a plain tensor (its type seen before): the common case
        try:
            return [tensor.untyped_storage()]
        except (RuntimeError, NotImplementedError):  # sparse and other storage-less layouts
            return []
    pending, found = [tensor], []
    while pending:
        value = pending.pop()
        if _is_wrapper(value):
            names, _ = value.__tensor_flatten__()
            pending.extend(v for v in (getattr(value, n) for n in names) if isinstance(v, _Tensor))
            continue
        try:
            found.append(value.untyped_storage())
        except (RuntimeError, NotImplementedError):  # sparse and other storage-less layouts
            continue
    return found
