"""Repeated blocks written once: ``layers.[0-31].mlp.up_proj`` stands for 32 module names.

A 32-layer decoder has a few hundred leaf modules, most of them the same layer again; written one
per line, a baseline that reaches the leaves would be thousands of lines that nobody reviews. Each
module name is grouped with the same name in the consecutive integer-named siblings (ModuleList,
Sequential children) where it holds identical counts: ``layers.[0-31].mlp.up_proj``. Grouping is per
name, not per whole subtree, so the diff is proportional to the change: when one layer of one stage
widens, only the lines of the modules whose counts changed split their range (that layer, its
ancestors), and every other line keeps its key. Loading expands the ranges back, so comparisons
always work on real module names. The same grouping names repeated layers in failure messages.
"""

from __future__ import annotations

from typing import Callable, Hashable, Mapping, Sequence, TypeVar

from pytest_flopbudget.counting.names import INDEX_RANGE

V = TypeVar("V")

# a baseline entry never expands to more module names than this (a hostile range is refused)
MAX_EXPANDED = 1_000_000


class RangeError(ValueError):
    """A module key's index range is malformed or too large."""


def expand(name: str) -> list[str]:
    """``a.[0-2].b`` -> ``a.0.b``, ``a.1.b``, ``a.2.b``; a name without ranges is itself."""
    if "[" not in name:
        return [name]
    names = [""]
    for part in name.split("."):
        match = INDEX_RANGE.match(part)
        if match is None:
            if "[" in part or "]" in part:
                raise RangeError(f"module key {name!r}: {part!r} is not an index range like [0-11]")
            pieces = [part]
        else:
            first, last = int(match.group(1)), int(match.group(2))
            if last <= first:
                raise RangeError(f"module key {name!r}: range {part} must go upwards, e.g. [0-11]")
            if (last - first + 1) * len(names) > MAX_EXPANDED:
                raise RangeError(f"module key {name!r}: the ranges stand for more than {MAX_EXPANDED:,} modules")
            pieces = [str(i) for i in range(first, last + 1)]
        names = [f"{prefix}.{piece}" if prefix else piece for prefix in names for piece in pieces]
    return names


def expand_all(modules: Mapping[str, V]) -> dict[str, V]:
    """Every key expanded; a name given twice (directly and through a range) is an error."""
    expanded: dict[str, V] = {}
    for key, value in modules.items():
        for name in expand(key):
            if name in expanded:
                raise RangeError(f"module {name!r} is given twice (module key {key!r})")
            expanded[name] = value
    return expanded


def compress(modules: Mapping[str, V]) -> dict[str, V]:
    """Collapse each name's runs of identical values across consecutive siblings into index ranges
    (inverse of ``expand_all``); integer parts are grouped left to right, so a name with several
    (``layers.3.experts.5.w1``) can become ``layers.[0-31].experts.[0-7].w1``."""
    current: dict[str, V] = dict(modules)
    depth = max((name.count(".") + 1 for name in current), default=0)
    for position in range(depth):
        buckets: dict[tuple, dict[int, str]] = {}
        kept: dict[str, V] = {}
        for name, value in current.items():
            parts = name.split(".")
            part = parts[position] if position < len(parts) else ""
            if not (part.isdigit() and str(int(part)) == part):
                kept[name] = value
                continue
            key = (len(parts), tuple(parts[:position]), tuple(parts[position + 1:]), _hashable(value))
            buckets.setdefault(key, {})[int(part)] = name
        for (_, before, after, _), members in buckets.items():
            for run in _runs(sorted(members), lambda index: True):
                label = str(run[0]) if len(run) == 1 else f"[{run[0]}-{run[-1]}]"
                kept[".".join((*before, label, *after))] = current[members[run[0]]]
        current = kept
    return current


def _hashable(value: object) -> object:
    return value if isinstance(value, Hashable) else repr(value)


def _runs(indices: Sequence[int], key: Callable[[int], object]) -> list[list[int]]:
    """Consecutive indices with equal keys, as runs."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and runs[-1][-1] == index - 1 and key(runs[-1][-1]) == key(index):
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def group_names(names: Sequence[str], key: Callable[[str], object]) -> list[tuple[str, list[str]]]:
    """Names that differ in one integer part only, consecutive there, with equal ``key``, as one
    ``a.[0-5].b`` label with its members: ``transformer.layer.[0-5].ffn.lin1`` for six layers."""
    pending = list(dict.fromkeys(names))
    groups: list[tuple[str, list[str]]] = []
    while pending:
        name = pending.pop(0)
        parts = name.split(".")
        best: list[str] = [name]
        best_label = name
        for position, part in enumerate(parts):
            if not (part.isdigit() and str(int(part)) == part):
                continue
            members = {}
            for other in pending:
                other_parts = other.split(".")
                if (len(other_parts) == len(parts) and other_parts[:position] == parts[:position]
                        and other_parts[position + 1:] == parts[position + 1:]
                        and other_parts[position].isdigit() and key(other) == key(name)):
                    members[int(other_parts[position])] = other
            members[int(part)] = name
            run = _run_containing(sorted(members), int(part))
            if len(run) > len(best):
                best = [members[i] for i in run]
                best_label = ".".join(parts[:position] + [f"[{run[0]}-{run[-1]}]"] + parts[position + 1:])
        pending = [p for p in pending if p not in best]
        groups.append((best_label, best))
    return groups


def _run_containing(indices: list[int], index: int) -> list[int]:
    """The consecutive run of ``indices`` (sorted) that holds ``index``."""
    at = indices.index(index)
    start, end = at, at
    while start > 0 and indices[start - 1] == indices[start] - 1:
        start -= 1
    while end + 1 < len(indices) and indices[end + 1] == indices[end] + 1:
        end += 1
    return indices[start:end + 1]
