"""Repeated blocks written once: ``layers.[0-31].mlp.up_proj`` stands for 32 module names.

A 32-layer decoder has a few hundred leaf modules, most of them the same layer again; written one
per line, a baseline that reaches the leaves would be thousands of lines that nobody reviews. Runs
of consecutive integer-named siblings (ModuleList, Sequential children) whose whole subtrees hold
identical counts are collapsed into one index range; when one layer changes, its range splits and
the diff shows exactly which layer moved. Loading expands the ranges back, so comparisons always
work on real module names. The same grouping names repeated layers in failure messages.
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
    """Collapse runs of identical sibling subtrees into index ranges (inverse of ``expand_all``)."""
    tree = _Tree.build(modules)
    out: dict[str, V] = {}
    tree.emit("", out)
    return out


class _Tree:
    """A module-name trie holding the value of each module that has one."""

    def __init__(self) -> None:
        self.value: object = _NONE
        self.children: dict[str, _Tree] = {}
        self._signature: tuple | None = None

    @classmethod
    def build(cls, modules: Mapping[str, V]) -> _Tree:
        root = cls()
        for name, value in modules.items():
            node = root
            for part in name.split("."):
                node = node.children.setdefault(part, cls())
            node.value = value
        return root

    def signature(self) -> tuple:
        """Everything in this subtree, relative to it: equal signatures mean identical subtrees."""
        if self._signature is None:
            value = self.value if isinstance(self.value, Hashable) else repr(self.value)
            self._signature = (value, tuple((k, c.signature()) for k, c in sorted(self.children.items())))
        return self._signature

    def emit(self, prefix: str, out: dict) -> None:
        for label, child in self._grouped_children():
            name = f"{prefix}.{label}" if prefix else label
            if child.value is not _NONE:
                out[name] = child.value
            child.emit(name, out)

    def _grouped_children(self) -> list[tuple[str, _Tree]]:
        """Children in name order, integer-named ones as runs of identical consecutive subtrees."""
        numbered = sorted((int(k), k) for k in self.children if k.isdigit() and str(int(k)) == k)
        others = [(k, self.children[k]) for k in sorted(self.children) if not (k.isdigit() and str(int(k)) == k)]
        grouped: list[tuple[str, _Tree]] = []
        for run in _runs([n for n, _ in numbered], lambda n: self.children[str(n)].signature()):
            first, last = run[0], run[-1]
            label = str(first) if first == last else f"[{first}-{last}]"
            grouped.append((label, self.children[str(first)]))
        return grouped + others


_NONE = object()


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
