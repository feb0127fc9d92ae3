"""What measure() needs to know of a module tree, read in one traversal: qualified names,
unique parameters and buffers, parameters per subtree, and a guard that keeps buffers intact.

One walk instead of the eight that named_parameters/named_buffers/named_modules calls would
make: on a ResNet-50 the repeated generator walks cost more than counting its 180 aten calls.
"""

from __future__ import annotations

import contextlib
import operator
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch
from torch import nn


@dataclass
class ModelState:
    """The tree of ``root``: each module once (first name), each tensor once (first name)."""

    root: nn.Module
    modules: list[tuple[str, nn.Module]] = field(default_factory=list)
    params: dict[str, nn.Parameter] = field(default_factory=dict)
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    params_per_module: dict[str, int] = field(default_factory=dict)
    # (owner, attribute, tensor) of every buffer slot, to put back what a forward replaced
    _buffer_slots: list[tuple[nn.Module, str, torch.Tensor]] = field(default_factory=list)

    @classmethod
    def read(cls, root: nn.Module) -> ModelState:
        state = cls(root)
        seen_modules: set[int] = set()
        seen_tensors: set[int] = set()
        # parameter -> the modules whose total includes it (a list until the parameter is seen again)
        credited: dict[int, list[str] | set[str]] = {}
        per_module = state.params_per_module
        for prefix, module, holders in _walk(root):
            first_visit = id(module) not in seen_modules
            if first_visit:
                seen_modules.add(id(module))
                state.modules.append((prefix, module))
            for key, param in module._parameters.items():
                if param is None:
                    continue
                size = param.numel()
                if id(param) not in seen_tensors:  # the common case: credited to its module and those above
                    seen_tensors.add(id(param))
                    state.params[_join(prefix, key)] = param
                    credited[id(param)] = holders
                    for ancestor in holders:
                        per_module[ancestor] = per_module.get(ancestor, 0) + size
                    continue
                # a weight tied across two subtrees counts in both, once in any module above both
                done = credited.get(id(param), ())  # () for a tensor seen first as a buffer
                if not isinstance(done, set):
                    done = credited[id(param)] = set(done)
                for ancestor in holders:
                    if ancestor not in done:
                        done.add(ancestor)
                        per_module[ancestor] = per_module.get(ancestor, 0) + size
            if not first_visit:
                continue
            for key, buffer in module._buffers.items():
                if buffer is None:
                    continue
                state._buffer_slots.append((module, key, buffer))
                if id(buffer) not in seen_tensors:
                    seen_tensors.add(id(buffer))
                    state.buffers[_join(prefix, key)] = buffer
        return state

    def names(self) -> dict[nn.Module, str]:
        """Module -> qualified name, the root excluded (its cost is the total)."""
        return {module: name for name, module in self.modules if name}

    def tensors_on(self, device: torch.device | None) -> bool:
        """Whether every parameter and buffer already lives on ``device`` (None: anywhere)."""
        if device is None:
            return True
        return all(_same_device(t.device, device) for t in (*self.params.values(), *self.buffers.values()))

    @contextlib.contextmanager
    def buffers_kept(self) -> Iterator[None]:
        """Run the caller's module in place while its buffers (BN running statistics, counters,
        caches) end up exactly as they were, whether the forward updates or replaces them."""
        saved = [(owner, key, tensor, tensor.detach().clone()) for owner, key, tensor in self._buffer_slots]
        try:
            yield
        finally:
            with torch.no_grad():
                for owner, key, tensor, copy in saved:
                    if owner._buffers.get(key) is not tensor:
                        owner._buffers[key] = tensor
                    if not torch.equal(tensor, copy):
                        tensor.copy_(copy)


    def attributes_kept(self) -> contextlib.AbstractContextManager[None]:
        """Whatever a forward writes onto the modules' attributes is undone afterwards: timm's
        LeViT and EfficientFormer cache attention biases per device in a plain dict during the
        forward, and a fake tensor left there by a meta count would be returned by the caller's
        next real forward."""
        return attributes_kept([module for _, module in self.modules])


@contextlib.contextmanager
def attributes_kept(objects: Iterable[object]) -> Iterator[None]:
    """The attributes of ``objects`` as they were, afterwards: attributes added are removed,
    rebound ones are put back, and dicts, lists and sets filled or emptied in place get their old
    contents back (by identity: values are never compared, so tensors inside are fine).

    Runs around every measure(): a module holds about fifteen containers (hooks, parameters,
    submodules), most of them empty. Which attributes are containers is looked up once per layout
    of ``__dict__`` (its keys and the types of its values) and read with one ``itemgetter``; empty
    ones are only checked for emptiness afterwards (all together, in C), and unchanged attribute
    dicts are recognised in C (``map(operator.is_, ...)``) rather than key by key."""
    saved = []
    empty: list[dict | list | set] = []
    filled: list[tuple[dict | list | set, object]] = []
    for obj in objects:
        attrs = obj.__dict__.copy()
        saved.append((obj, attrs))
        for container in _containers(attrs):
            if container:
                filled.append((container, _contents(container)))
            else:
                empty.append(container)
    try:
        yield
    finally:
        for obj, attrs in saved:
            current = obj.__dict__
            if current.keys() != attrs.keys() or not all(map(operator.is_, current.values(), attrs.values())):
                for key in [k for k in current if k not in attrs]:
                    del current[key]
                for key, value in attrs.items():
                    if current.get(key, _MISSING) is not value:
                        current[key] = value
        if any(empty):
            for container in empty:
                if container:
                    container.clear()
        for container, old in filled:
            _restore_contents(container, old)


_CONTAINERS = (dict, list, set)
_MISSING = object()
# (keys, types of the values) of an attribute dict -> a function returning its containers
_LAYOUTS: dict[tuple[tuple[str, ...], tuple[type, ...]], Callable[[dict], tuple]] = {}


def _containers(attrs: dict) -> tuple:
    """The dict, list and set values of ``attrs``, in order."""
    layout = (tuple(attrs), tuple(map(type, attrs.values())))
    getter = _LAYOUTS.get(layout)
    if getter is None:
        keys = [key for key, value in attrs.items() if isinstance(value, _CONTAINERS)]
        if len(keys) > 1:
            getter = operator.itemgetter(*keys)
        elif keys:
            only = keys[0]
            getter = lambda values: (values[only],)  # noqa: E731 - itemgetter of one key returns no tuple
        else:
            getter = lambda values: ()  # noqa: E731
        if len(_LAYOUTS) > 4096:  # generated classes or attribute soup: never grow without bound
            _LAYOUTS.clear()
        _LAYOUTS[layout] = getter
    return getter(attrs)


def _contents(value: dict | list | set) -> object:
    return dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else set(value)


def _restore_contents(container: dict | list | set, old: object) -> None:
    """Put ``old`` (a shallow copy taken before) back into ``container`` if anything changed (a
    reordering counts as a change: the old order comes back too)."""
    if isinstance(container, dict):
        assert isinstance(old, dict)
        if container.keys() != old.keys() or not all(map(operator.is_, container.values(), old.values())):
            container.clear()
            container.update(old)
    elif isinstance(container, list):
        assert isinstance(old, list)
        if len(container) != len(old) or not all(map(operator.is_, container, old)):
            container[:] = old
    else:
        assert isinstance(old, set)
        if container != old:
            container.clear()
            container.update(old)


_DEEPEST = 1000


def _walk(root: nn.Module) -> Iterator[tuple[str, nn.Module, list[str]]]:
    """``root.named_modules(remove_duplicate=False)`` in the same order, each module with its
    ancestors' names (itself included): one loop over an explicit stack, where torch's nested
    generators pass every module up through each level above it."""
    pending: list[tuple[str, nn.Module, list[str]]] = [("", root, [""])]
    while pending:
        prefix, module, holders = pending.pop()
        yield prefix, module, holders
        children = module._modules
        if children:
            if len(holders) > _DEEPEST:  # torch's own walk would exhaust the stack; this one would not end
                raise RecursionError(f"the module tree of {type(root).__name__} is deeper than {_DEEPEST} levels "
                                     f"(at ...{prefix[-60:]!r}): does a module contain itself?")
            below = []
            for key, child in children.items():
                if child is not None:
                    name = _join(prefix, key)
                    below.append((name, child, [*holders, name]))
            pending.extend(reversed(below))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    if actual.type != wanted.type:
        return False
    return wanted.index is None or actual.index == wanted.index
