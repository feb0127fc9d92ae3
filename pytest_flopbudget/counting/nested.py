"""Nested tensors: counted by their real sizes.

A jagged nested tensor (``layout=torch.jagged``, a Python subclass) computes on its packed values
buffer, whose ops the counter sees as plain tensors (counter.py lets the subclass run). Some of its
ops (attention on CPU) pass through the older strided nested layout, a tensor of components of
different sizes with no single shape: an op on it is counted as the same op on each component,
by the component's own sizes, summed (attention's cost is then the sum of squared lengths). Those
sizes are values: on meta they do not exist, and counting such an op is an error saying so.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from pytest_flopbudget.counting.errors import MeasurementError


def holds_nested(args: Any, out: Any) -> bool:
    """Whether a call reads or returns a strided-layout nested tensor (components of several sizes)."""
    for value in (out, *args):
        if isinstance(value, torch.Tensor):
            if value.is_nested:
                return True
        elif isinstance(value, (list, tuple)):
            if any(isinstance(v, torch.Tensor) and v.is_nested for v in value):
                return True
    return False


def per_component(args: Any, kwargs: dict[str, Any], out: Any) -> Iterator[tuple[list[Any], dict[str, Any], Any]]:
    """The call's shapes once per component: (argument shapes, keyword shapes, output shape), a
    nested tensor giving its i-th component's sizes and any other tensor its own shape."""
    sizes: dict[int, list[tuple[int, ...]]] = {}
    count = None
    for value in _tensors(args, kwargs, out):
        if value.is_nested and id(value) not in sizes:
            sizes[id(value)] = _component_sizes(value)
            count = len(sizes[id(value)]) if count is None else min(count, len(sizes[id(value)]))
    for i in range(count or 0):
        def shape(value: Any, i: int = i) -> Any:
            if isinstance(value, torch.Tensor):
                return sizes[id(value)][i] if value.is_nested else value.shape
            if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
                return [shape(v) for v in value]
            return value

        out_shape = tuple(shape(o) if isinstance(o, torch.Tensor) else None for o in out) \
            if isinstance(out, (list, tuple)) else shape(out) if isinstance(out, torch.Tensor) else None
        yield [shape(a) for a in args], {k: shape(v) for k, v in kwargs.items()}, out_shape


def require_lengths(op_name: str, args: Any) -> None:
    """Raise the meta error now for an op whose count needs each component's length."""
    for value in _tensors(args, {}, None):
        if value.is_nested:
            _component_sizes(value, op_name)


def _tensors(args: Any, kwargs: dict[str, Any], out: Any) -> Iterator[torch.Tensor]:
    for value in (*args, *kwargs.values(), *(out if isinstance(out, (list, tuple)) else (out,))):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, torch.Tensor))


def _component_sizes(tensor: torch.Tensor, op_name: str = "this op") -> list[tuple[int, ...]]:
    """Each component's sizes (the batch dimension dropped): read from a strided nested tensor's
    size table, or from a jagged one's offsets (the ragged dimension set to each length)."""
    jagged = hasattr(tensor, "_offsets")
    table = tensor._offsets if jagged else tensor
    if table.device.type == "meta" or _is_fake(table):
        raise MeasurementError(
            f"{op_name} on a nested tensor is counted by each component's length, and the lengths are values "
            "(its offsets), which meta does not have: ops that need each length (attention's sum of squared "
            "lengths) must be counted on 'cpu'; ops that need only the total length count on meta",
            use_device="cpu",
        )
    if not jagged:
        return [tuple(int(n) for n in row) for row in tensor._nested_tensor_size().tolist()]
    lengths = tensor._lengths if getattr(tensor, "_lengths", None) is not None else tensor._offsets.diff()
    ragged = tensor._ragged_idx - 1
    shape = list(tensor.shape[1:])
    return [tuple(int(n) if d == ragged else shape[d] for d in range(len(shape)))
            for n in lengths.tolist()]


def _is_fake(tensor: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import is_fake

    return is_fake(tensor)
