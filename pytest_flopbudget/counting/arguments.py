"""Where an aten call's tensors are, by its schema: the counter takes shapes and the memory tracker
looks for storages only there, instead of testing every argument of every call.

Most aten ops take tensors at fixed positions and ints, floats, bools, devices or int lists
elsewhere (convolution: input, weight, bias, then stride, padding, dilation...). An op that can
take a tensor anywhere else (a tensor list as ``cat`` and ``index`` do, a type variable, ``Any``)
gets None: every argument is looked at, as before.
"""

from __future__ import annotations

from typing import Any

import torch

# schema types of positional arguments that cannot hold a tensor (ScalarType, Layout, MemoryFormat
# and SymInt print as int, Scalar as number)
_NEVER_TENSORS = frozenset({
    "int", "float", "bool", "number", "complex", "str", "Device", "Generator", "AnyEnumType",
    "List[int]", "List[float]", "List[bool]", "List[complex]", "List[str]",
})
# id(op) -> (op kept alive, its positions): asked once per op and process
_POSITIONS: dict[int, tuple[Any, tuple[int, ...] | None]] = {}


def tensor_positions(func: Any) -> tuple[int, ...] | None:
    """The positions of ``func``'s ``Tensor`` and ``Tensor?`` positional arguments when no other
    positional argument can hold a tensor, else None (see the module doc). Keyword-only arguments
    are not covered: callers look at every keyword argument."""
    found = _POSITIONS.get(id(func))
    if found is not None and found[0] is func:
        return found[1]
    positions = _from_schema(getattr(func, "_schema", None))
    _POSITIONS[id(func)] = (func, positions)
    return positions


def _from_schema(schema: Any) -> tuple[int, ...] | None:
    if schema is None:
        return None
    positions = []
    for i, argument in enumerate(schema.arguments):
        if argument.kwarg_only:
            continue
        kind = argument.type
        if isinstance(kind, torch._C.OptionalType):
            kind = kind.getElementType()
        if isinstance(kind, torch._C.TensorType):
            positions.append(i)
        elif str(kind) not in _NEVER_TENSORS:
            return None
    return tuple(positions)
