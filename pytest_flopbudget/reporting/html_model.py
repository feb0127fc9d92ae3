"""What the HTML report shows, as plain data: the summary rows and each test's module tree.

The page (html.py) renders only this model, so it can be built by the plugin at the end of a
session, by ``flopbudget --html`` for one model, or by a test from literal values. The adapters
from the engine's and the plugin's types are at the bottom of this module, in one place: the
plugin's summary types are read by their attributes, not imported (reporting sits below the
plugin).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from pytest_flopbudget.counting.measurement import Measurement, ModuleCost
from pytest_flopbudget.counting.names import module_depth, module_order
from pytest_flopbudget.counting.text import giga, human_count, passes, percent

# the metrics a chart can be sized by; "memory" is the bytes a module's code held at the peak,
# "backward" the FLOPs autograd's backward did for a module's forward
CHART_METRICS = ("flops", "macs", "params", "memory", "backward")
# the tests whose section is open when the page loads
OPEN_VERDICTS = ("over budget", "regressed")
HEADER = ("test", "GFLOPs", "GMACs", "params", "peak memory", "budget", "change", "verdict")


@dataclass(frozen=True)
class ModuleView:
    """One module's inclusive numbers: its own work plus that of every module it called."""

    name: str  # qualified name, "" for the model itself
    type: str
    flops: int
    macs: int
    params: int
    memory: int | None = None  # bytes live at the peak that its code allocated (None: not tracked)
    backward_flops: int = 0  # the part of flops done by the backward (0: none ran)

    def to_list(self) -> list[Any]:
        return [self.name, self.type, self.flops, self.macs, self.params, self.memory, self.backward_flops]


@dataclass(frozen=True)
class TreeView:
    """A measurement's modules in tree order (the root first) and, when the test has a baseline
    entry, the entry's modules; ``baseline_depth`` is how deep the entry records modules, so that a
    module deeper than that is "not in baseline" rather than "new"."""

    modules: tuple[ModuleView, ...]
    baseline: tuple[ModuleView, ...] | None = None
    baseline_depth: int | None = None


@dataclass(frozen=True)
class TestView:
    """One row of the summary table and its section: the terminal's cells and the module tree."""

    key: str
    cells: tuple[str, ...]  # HEADER order, as the terminal writes them
    verdicts: tuple[str, ...]  # the row's verdict words ("over budget", "regressed", "ok", ...)
    failing: bool
    open: bool  # the section is open when the page loads
    flops: int | None = None
    macs: int | None = None
    params: int | None = None
    peak_memory: int | None = None
    budget_used: float | None = None
    reasons: tuple[str, ...] = ()
    tree: TreeView | None = None
    __test__ = False  # not a pytest test class, despite the name

    def to_dict(self) -> dict[str, Any]:
        tree = self.tree
        return {
            "key": self.key, "cells": list(self.cells), "verdicts": list(self.verdicts), "failing": self.failing,
            "open": self.open, "flops": self.flops, "macs": self.macs, "params": self.params,
            "peak_memory": self.peak_memory, "budget_used": _finite(self.budget_used), "reasons": list(self.reasons),
            "tree": None if tree is None else {
                "modules": [m.to_list() for m in tree.modules],
                "baseline": None if tree.baseline is None else [m.to_list() for m in tree.baseline],
                "baseline_depth": tree.baseline_depth,
            },
        }


@dataclass(frozen=True)
class ReportView:
    """The whole page: a title, lines about the run, the tests, and what to do next."""

    title: str
    tests: tuple[TestView, ...]
    about: tuple[str, ...] = ()  # device, tolerance, baseline file
    count_line: str = ""
    hints: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    header: tuple[str, ...] = field(default=HEADER)

    def to_dict(self, tests: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {"title": self.title, "about": list(self.about), "count_line": self.count_line,
                                "hints": list(self.hints), "stale": list(self.stale), "header": list(self.header)}
        if tests:
            data["tests"] = [t.to_dict() for t in self.tests]
        return data


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: a budget used beyond any float reads as no number."""
    return value if value is not None and math.isfinite(value) else None


def bytes_text(value: int | None) -> str:
    """Bytes for a table cell, in powers of 1024: '512 B', '1.5 KiB', '13.48 GiB'."""
    if value is None:
        return "-"
    number = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(number) < 1024:
            return f"{int(number)} B" if unit == "B" else f"{number:.2f}".rstrip("0").rstrip(".") + f" {unit}"
        number /= 1024
    return f"{number:.2f}".rstrip("0").rstrip(".") + " TiB"


def budget_text(used: float | None) -> str:
    """The budget column as the terminal writes it."""
    return percent(used, signed=False, missing="-")


# -- adapters from the engine's and the plugin's types ---------------------------------------------


def tree_of(modules: Mapping[str, ModuleCost], totals: ModuleCost, memory: Mapping[str, int] | None = None,
            peak: int | None = None) -> tuple[ModuleView, ...]:
    """Module rows in tree order, the root first: ``totals`` stands for the root when ``modules``
    lacks it (a baseline entry keeps the root's numbers as its totals); the root's memory is the
    whole peak, its children's the bytes their code held at it."""
    rows = {name: cost for name, cost in modules.items() if name != ""}
    root = modules.get("", totals)
    views = [ModuleView("", root.type, root.flops, root.macs, root.params, peak, root.backward_flops)]
    for name in sorted(rows, key=module_order):
        cost = rows[name]
        held = None if memory is None else memory.get(name, 0)
        views.append(ModuleView(name, cost.type, cost.flops, cost.macs, cost.params, held, cost.backward_flops))
    return tuple(views)


def tree_of_measurement(measurement: Measurement) -> tuple[ModuleView, ...]:
    memory = measurement.memory
    totals = ModuleCost("", measurement.flops, measurement.macs, measurement.params)
    return tree_of(measurement.modules, totals, None if memory is None else memory.modules,
                   None if memory is None else memory.peak)


def _tree_of_entry(entry: Any) -> tuple[ModuleView, ...]:
    """A baseline entry (Entry: totals and modules to the baseline depth, each module's bytes at the
    peak where memory was recorded)."""
    totals = ModuleCost("", entry.flops, entry.macs, entry.params, backward_flops=entry.backward_flops,
                        backward_macs=entry.backward_macs, optimizer_flops=entry.optimizer_flops,
                        optimizer_macs=entry.optimizer_macs)
    peak = getattr(entry, "peak_memory", None)
    memory = None if peak is None else {name: cost.memory or 0 for name, cost in entry.modules.items()}
    return tree_of(entry.modules, totals, memory, peak)


def view_of_measurement(title: str, measurement: Measurement, about: tuple[str, ...] = ()) -> ReportView:
    """One model's picture, for ``flopbudget --html``: no budget, no baseline, its section open."""
    memory = measurement.memory
    peak = None if memory is None else memory.peak
    cells = (title, giga(measurement.gflops), giga(measurement.gmacs), human_count(measurement.params),
             bytes_text(peak), "-", "-", "")
    test = TestView(title, cells, (), failing=False, open=True, flops=measurement.flops, macs=measurement.macs,
                    params=measurement.params, peak_memory=peak, tree=TreeView(tree_of_measurement(measurement)))
    counted = f"device {measurement.device}, {passes(measurement.backward, bool(measurement.phases.optimizer_flops))}"
    return ReportView(title, (test,), (*about, counted))


def _shown(path: Any) -> str:
    """A path as the reader's shell would name it: relative to the current directory when below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)
    return str(path) if relative.startswith("..") else relative


def view_of_session(summary: Any, verdicts: Iterable[Any], count_line: str,
                    title: str = "pytest-flopbudget") -> ReportView:
    """The session's page from the plugin's SessionSummary (its rows, stale entries and hints), its
    verdicts (each measurement's entry and baseline entry, for the module trees) and the count line
    the terminal printed."""
    entries = {entry.key: entry for verdict in verdicts for entry in verdict.entries}
    tests = []
    for row in summary.rows:
        words = (row.verdict, *row.also)
        peak = getattr(row, "peak_memory", None)
        cells = (row.key, giga(row.gflops), giga(row.gmacs), "-" if row.params is None else human_count(row.params),
                 bytes_text(peak), budget_text(row.budget_used), row.change, row.verdict_text)
        entry = entries.get(row.key)
        tree = None
        if entry is not None:
            base = entry.baseline
            baseline = None if base is None else _tree_of_entry(base)
            depth = None if baseline is None else max(module_depth(m.name) for m in baseline)
            tree = TreeView(_tree_of_entry(entry.measured), baseline, depth)
        tests.append(TestView(
            row.key, cells, words, failing=bool(row.failing), open=any(w in OPEN_VERDICTS for w in words),
            flops=row.flops, macs=row.macs, params=row.params, peak_memory=peak, budget_used=row.budget_used,
            reasons=tuple(row.reasons), tree=tree,
        ))
    about = (f"device {summary.device}", f"tolerance {summary.tolerance}", f"baseline {_shown(summary.baseline_path)}")
    return ReportView(title, tuple(tests), about, count_line, tuple(summary.hints),
                      tuple(summary.stale))
