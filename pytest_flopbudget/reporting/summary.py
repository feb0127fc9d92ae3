"""The session's outcome as one frozen value, built once when the session ends.

The terminal table, the count line, the JSON and the Markdown report all render this value (see
report.py); nothing reads the plugin object's state after it is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from pytest_flopbudget.counting.names import natural_key
from pytest_flopbudget.counting.text import GIGA
from pytest_flopbudget.reporting.commands import UPDATE_HINT, prune_hint
from pytest_flopbudget.reporting.outcome import Outcome
from pytest_flopbudget.reporting.run import RunRecord
from pytest_flopbudget.reporting.verdict import (
    DEVICE_MISMATCH, IMPROVED, NEW, OK, OVER_BUDGET, REGRESSED, UNCOUNTED, UNMEASURED, BudgetCheck,
    TestVerdict, change_line, describe_other_path,
)

COUNTED = (OK, OVER_BUDGET, REGRESSED, IMPROVED, NEW)
TEST_FAILED = "test failed"  # measured, then failed on its own: shown, not judged, not recorded


@dataclass(frozen=True)
class Row:
    key: str
    nodeid: str
    label: str | None
    flops: int | None
    macs: int | None
    params: int | None
    budget_used: float | None
    change: str
    verdict: str
    failing: bool
    baseline: dict[str, int] | None
    also: tuple[str, ...] = ()  # a second verdict: over budget and regressed
    xfail: bool = False
    exceeded: tuple[dict[str, Any], ...] = ()  # the marker's limits this test is over
    grown: tuple[dict[str, Any], ...] = ()  # modules that grew against the baseline, largest first
    regressed: tuple[str, ...] = ()  # metrics above baseline x (1 + tolerance)
    reasons: tuple[str, ...] = field(default=(), compare=False)  # the same, as readable lines
    uncounted: dict[str, int] = field(default_factory=dict)  # op -> calls with no formula (0 FLOPs)
    new_uncounted: tuple[str, ...] = ()  # of those, the ops the baseline entry did not have
    estimated: dict[str, str] = field(default_factory=dict)  # op -> the convention its count follows
    notes: tuple[str, ...] = field(default=(), compare=False)  # uncounted and estimated, as readable lines
    peak_memory: int | None = None  # bytes at the memory peak (None: not tracked)
    activation_memory: int | None = None  # the peak less what was live at entry

    @property
    def gflops(self) -> float | None:
        return None if self.flops is None else self.flops / GIGA

    @property
    def gmacs(self) -> float | None:
        return None if self.macs is None else self.macs / GIGA

    @property
    def words(self) -> str:
        extra = [f"{len(self.uncounted)} uncounted"] if self.uncounted and self.verdict != UNCOUNTED else []
        extra += [f"{len(self.estimated)} estimated"] if self.estimated else []
        return (", ".join((self.verdict, *self.also)) + (" (xfail)" if self.xfail else "")
                + (f" ({', '.join(extra)})" if extra else ""))

    @property
    def verdict_text(self) -> str:
        """The terminal's verdict cell: upper-case when the plugin fails the test."""
        return self.words.upper() if self.failing else self.words


def _exceeded(check: BudgetCheck) -> dict[str, Any]:
    limit = check.limit
    return {"argument": check.argument, "metric": check.metric,
            "limit": int(limit) if limit.denominator == 1 else float(limit),
            "measured": check.measured, "used": check.used}


def rows_of(verdicts: Iterable[TestVerdict]) -> list[Row]:
    """One row per measurement (per test when it measured nothing), in natural order of their keys."""
    rows = []
    for verdict in verdicts:
        exceeded = tuple(_exceeded(c) for c in verdict.over_budget)
        budget_reasons = tuple(f"over budget: {c.describe()}" for c in verdict.over_budget)  # as the failure says
        failing = verdict.failing and not verdict.xfail
        if not verdict.entries:
            rows.append(Row(verdict.nodeid, verdict.nodeid, None, None, None, None, verdict.budget_used, "-",
                            UNMEASURED, failing, None, xfail=verdict.xfail))
        for entry in verdict.entries:
            base = entry.baseline
            word = TEST_FAILED if verdict.test_failed else verdict.row_status(entry)
            also = (REGRESSED,) if word == OVER_BUDGET and entry.status == REGRESSED else ()
            grown = tuple(g.to_dict() for g in entry.grown)
            regressions = tuple(change_line(m, entry.measured, base) for m in entry.regressed_metrics if base is not None)
            reasons = budget_reasons + regressions + tuple(f"grew: {g.describe()}" for g in entry.grown)
            rows.append(Row(
                entry.key, verdict.nodeid, entry.label, entry.measured.flops, entry.measured.macs,
                entry.measured.params, verdict.budget_used, entry.change_text(), word,
                failing and (entry.failing or bool(verdict.over_budget)),
                None if base is None else _baseline_numbers(base),
                also=also, xfail=verdict.xfail, exceeded=exceeded, grown=grown,
                regressed=entry.regressed_metrics, reasons=reasons + tuple(entry.uncounted_lines()),
                uncounted=dict(entry.measured.uncounted or {}), new_uncounted=entry.new_uncounted,
                estimated=dict(entry.measured.estimated or {}), notes=tuple(entry.uncounted_lines()),
                peak_memory=entry.measured.peak_memory, activation_memory=entry.measured.activation_memory,
            ))
    return sorted(rows, key=lambda r: natural_key(r.key))


def _baseline_numbers(base: Any) -> dict[str, int]:
    """The baseline's totals for a row: counts, and memory peaks where the entry recorded them."""
    numbers = {"flops": base.flops, "macs": base.macs, "params": base.params}
    if base.peak_memory is not None:
        numbers.update(peak_memory=base.peak_memory, activation_memory=base.activation_memory)
    return numbers


def counts_of(rows: Iterable[Row], stale: Iterable[str]) -> dict[str, int]:
    counts = {word: 0 for word in COUNTED}
    for row in rows:
        for word in (row.verdict, *row.also):
            counts[word] = counts.get(word, 0) + 1
    counts["stale"] = len(tuple(stale))
    return counts


def count_line(counts: Mapping[str, int]) -> str:
    """'flopbudget: 3 ok, 1 regressed': the non-zero counts only, in a fixed order."""
    words = (*COUNTED, "stale", UNMEASURED, DEVICE_MISMATCH, UNCOUNTED, TEST_FAILED)
    parts = [f"{counts[word]} {word}" for word in words if counts.get(word)]
    return "flopbudget: " + (", ".join(parts) or "nothing measured")


@dataclass(frozen=True)
class SessionSummary:
    """Every measured test's row, the counts by verdict, stale entries, and what to tell the user."""

    rows: tuple[Row, ...]
    counts: Mapping[str, int]
    stale: tuple[str, ...]
    stale_failed: bool  # stale entries fail the run (--flop-strict)
    notes: tuple[str, ...]  # what happened to the baseline file and the run (printed even at -q)
    hints: tuple[str, ...]  # the notes, then what to do next
    baseline_path: Path
    device: str
    tolerance: str
    torch_note: str | None = None
    run: RunRecord | None = field(default=None, compare=False)  # what the run covered, for the JSON report

    @property
    def empty(self) -> bool:
        """Nothing to show: no test measured or was marked, no stale entry, no note."""
        return not (self.rows or self.stale or self.notes)

    @classmethod
    def of(cls, verdicts: Iterable[TestVerdict], outcome: Outcome, *, baseline_path: Path, device: str,
           tolerance: str, update: bool, prune: bool, torch_note: str | None,
           update_command: str = UPDATE_HINT, run: RunRecord | None = None) -> SessionSummary:
        """The summary of a session's outcome (reporting.outcome.finish)."""
        summary = cls.build(verdicts, stale=outcome.stale, stale_failed=outcome.stale_failed, notes=outcome.notes,
                            baseline_path=baseline_path, device=device, tolerance=tolerance, update=update,
                            prune=prune, torch_note=torch_note, update_command=update_command)
        return dataclasses.replace(summary, run=run)

    @classmethod
    def build(cls, verdicts: Iterable[TestVerdict], *, stale: Iterable[str], stale_failed: bool, notes: Iterable[str],
              baseline_path: Path, device: str, tolerance: str, update: bool, prune: bool,
              torch_note: str | None, update_command: str = UPDATE_HINT) -> SessionSummary:
        verdicts = list(verdicts)
        rows = rows_of(verdicts)
        stale = tuple(stale)
        counts = counts_of(rows, stale)
        notes = tuple(notes)
        hints = list(notes)
        for verdict in verdicts:
            for entry in verdict.entries:
                if entry.status == DEVICE_MISMATCH and not entry.failing:
                    hints.extend(describe_other_path(entry, update_command))
        if counts[OVER_BUDGET]:
            hints.append("over budget: if intended, raise the limit in the test's @pytest.mark.flop_budget(...); "
                         "the baseline does not change a budget")
        if not update and (counts[REGRESSED] or counts[IMPROVED] or counts[NEW]):
            hints.append(f"accept these changes: {update_command} (then commit {baseline_path.name})")
        if stale and not prune:
            hints.append(prune_hint(stale_failed))
        if torch_note and (counts[REGRESSED] or counts[IMPROVED]):
            hints.append(f"note: {torch_note}")
        return cls(tuple(rows), counts, stale, stale_failed, notes, tuple(hints), baseline_path, device, tolerance,
                   torch_note)
