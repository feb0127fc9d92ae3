"""Qualified module names ("encoder.layers.3.mlp") and the orders things are listed in.

Torch-free: the engine attributes costs by these names, the plugin's baseline stores them.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

# an index range standing for repeated blocks in a baseline: "layers.[0-31].mlp"
INDEX_RANGE = re.compile(r"^\[(\d+)-(\d+)\]$")


def module_depth(name: str) -> int:
    """Depth of a qualified module name: "" is 0, "layer1" is 1, "layer1.0" is 2."""
    return 0 if name == "" else name.count(".") + 1


def ancestors(name: str) -> list[str]:
    """"a.b" -> ["", "a", "a.b"]: every module whose subtree holds this one, itself included."""
    if not name:
        return [""]
    parts = name.split(".")
    return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]


def module_order(name: str) -> tuple[Any, ...]:
    """Sort key of module names in tree order, numbers as numbers (layers.2 before layers.10,
    numbered children before named ones, an index range by its first index)."""
    key = []
    for part in name.split("."):
        match = INDEX_RANGE.match(part)
        if match is not None:
            key.append((0, int(match.group(1)), ""))
        elif part.isdigit():
            key.append((0, int(part), ""))
        else:
            key.append((1, 0, part))
    return tuple(key)


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key of test ids as people read them: numbers compare as numbers, test[2] before test[10]."""
    parts = re.split(r"(\d+)", text)  # text, number, text, ...: the same type at the same position
    return (tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), text)


_STEP_SITE = re.compile(r"^\w+\.step\(\)$")


def input_dependent(reads: Mapping[str, Mapping[str, int]]) -> dict[str, Mapping[str, int]]:
    """The reads whose values can come from the inputs: all but those inside an optimizer's or a
    learning-rate scheduler's ``step()`` (named 'AdamW.step()' by their call site), which read the
    object's own step counter; a hint to seed the inputs is no help there."""
    return {place: ops for place, ops in reads.items() if not _STEP_SITE.match(place)}
