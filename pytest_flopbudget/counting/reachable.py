"""The models, optimizers and tensors a ``count(device="meta")`` block's code can name when it starts.

A meta block must put fake twins in place of the caller's tensors *before* its code touches them:
code may change a model before anything runs through it (``optimizer.zero_grad()`` first,
``p.grad = None``, ``model.train()``). Looking through every object of the process
(``gc.get_objects()``) finds them all, but costs about 90 ms in a process that imported
transformers, more than the forward of a small model on meta. The code of a block can only name
what its frame holds, so this looks there instead: the values of the frame's locals and globals,
and what those hold two levels down (the ``__dict__`` of objects, the items of lists, tuples, sets
and dicts), so ``self.model``, ``trainer.optimizer``, ``models["teacher"]`` and a module-level
``MODEL`` are found. An imported Python module among the globals is looked into one level
(``mymodels.MODEL``), not further. Modules and optimizers reachable only some other way are
guarded when they first run a forward or a step (caller_guard.py).

Where the frame is: the first caller outside this package and ``contextlib`` (the plugin's
``flop_budget.count()`` is a generator-based context manager); when that frame is itself a
generator (the user's own context manager wrapping ``count()``), the frame that entered it too.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from itertools import islice
from typing import Any, Iterable

import torch
from torch import nn

_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_CONTEXTLIB = os.path.abspath(contextlib.__file__)
_GENERATOR_FLAGS = 0x20 | 0x200  # CO_GENERATOR, CO_ASYNC_GENERATOR
# how far below a frame's locals and globals the search goes, and how many items of one container
# it reads (a list of a million samples is not where a model lives)
DEPTH = 2
MAX_ITEMS = 1000
# values that hold no model: skipped at once, whatever their depth
_ATOMS = (str, bytes, bytearray, int, float, complex, bool, type(None), type, range, slice,
          types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.CodeType,
          types.FrameType, torch.device, torch.dtype, torch.Size)


def caller_frames(frame: types.FrameType | None) -> list[types.FrameType]:
    """The frames whose code surrounds a block entered from ``frame`` (see the module doc)."""
    found: list[types.FrameType] = []
    while frame is not None:
        path = frame.f_code.co_filename
        if not (path.startswith(_OWN_DIR) or os.path.abspath(path) == _CONTEXTLIB):
            found.append(frame)
            if not frame.f_code.co_flags & _GENERATOR_FLAGS:
                break
        frame = frame.f_back
    return found


class Reachable:
    """The modules, optimizers and plain leaf tensors found from some frames (each once, in the
    order found)."""

    def __init__(self) -> None:
        self.modules: list[nn.Module] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.tensors: list[torch.Tensor] = []

    @classmethod
    def from_frames(cls, frames: Iterable[types.FrameType]) -> Reachable:
        found = cls()
        roots: list[Any] = []
        for frame in frames:
            roots.extend(frame.f_locals.values())
            roots.extend(frame.f_globals.values())
        found._search(roots)
        return found

    def _search(self, level: list[Any]) -> None:
        seen: set[int] = set()
        kinds: dict[type, int] = {}
        for depth in range(DEPTH + 1):
            below: list[Any] = []
            for value in level:
                # type(), not isinstance: a proxy or mock may claim any __class__
                cls = type(value)
                kind = kinds.get(cls)
                if kind is None:
                    kind = kinds[cls] = _kind(cls)
                if kind == _ATOM or id(value) in seen:
                    continue
                seen.add(id(value))
                if kind == _TENSOR:
                    if cls in _PLAIN_TENSORS and value.is_leaf:
                        self.tensors.append(value)
                elif kind == _MODULE:
                    self.modules.append(value)
                    if depth < DEPTH:  # a model holding another one outside its tree, or an optimizer
                        below.extend(_held_by(value))
                elif kind == _OPTIMIZER:
                    self.optimizers.append(value)
                elif depth < DEPTH:
                    if kind == _PYTHON_MODULE:
                        # an imported module's own globals: looked at, not into
                        if depth == 0:
                            self._look_at(vars(value).values(), seen, kinds)
                    else:
                        below.extend(_held_by(value))
            level = below

    def _look_at(self, values: Iterable[Any], seen: set[int], kinds: dict[type, int]) -> None:
        for value in values:
            cls = type(value)
            kind = kinds.get(cls)
            if kind is None:
                kind = kinds[cls] = _kind(cls)
            if kind in (_MODULE, _OPTIMIZER) and id(value) not in seen:
                seen.add(id(value))
                (self.modules if kind == _MODULE else self.optimizers).append(value)


_ATOM, _TENSOR, _MODULE, _OPTIMIZER, _PYTHON_MODULE, _OTHER = range(6)
_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)


def _kind(cls: type) -> int:
    if issubclass(cls, _ATOMS):
        return _ATOM
    if issubclass(cls, torch.Tensor):
        return _TENSOR
    if issubclass(cls, nn.Module):
        return _MODULE
    if issubclass(cls, torch.optim.Optimizer):
        return _OPTIMIZER
    if issubclass(cls, types.ModuleType):
        return _PYTHON_MODULE
    return _OTHER


def _held_by(value: Any) -> Iterable[Any]:
    """What ``value`` holds one level down: a container's items (a dict's values), an object's attributes."""
    cls = type(value)
    if issubclass(cls, dict):
        return islice(dict.values(value), MAX_ITEMS)
    if issubclass(cls, (list, tuple, set, frozenset)):
        return islice(value, MAX_ITEMS)
    try:
        attributes = object.__getattribute__(value, "__dict__")
    except (AttributeError, TypeError):
        return ()
    return islice(attributes.values(), MAX_ITEMS) if isinstance(attributes, dict) else ()


def reachable_from_caller() -> Reachable:
    """What the code around the block being entered can name (called from count.__enter__)."""
    return Reachable.from_frames(caller_frames(sys._getframe(1)))
