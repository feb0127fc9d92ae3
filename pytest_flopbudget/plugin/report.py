"""What the controller shows and writes: the terminal table, the count line, JSON and Markdown.

All three come from the same rows, so the files say exactly what the terminal said.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_flopbudget.plugin.marker import format_count, human_count
from pytest_flopbudget.plugin.options import format_fraction
from pytest_flopbudget.plugin.verdict import (
    DEVICE_MISMATCH, IMPROVED, NEW, OK, OVER_BUDGET, REGRESSED, UNMEASURED, UPDATE_HINT, BudgetCheck, TestVerdict,
    change, describe_other_path, percent,
)

if TYPE_CHECKING:
    from pytest_flopbudget.plugin.manager import FlopBudgetPlugin

COUNTED = (OK, OVER_BUDGET, REGRESSED, IMPROVED, NEW)
TEST_FAILED = "test failed"  # measured, then failed on its own: shown, not judged, not recorded
ROWS_BEFORE_HIDING = 20
# columns dropped, in this order, when the table is wider than the terminal
OPTIONAL_COLUMNS = ("GMACs", "change", "params")
MIN_TEST_WIDTH = 16


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

    @property
    def gflops(self) -> float | None:
        return None if self.flops is None else self.flops / 1e9

    @property
    def gmacs(self) -> float | None:
        return None if self.macs is None else self.macs / 1e9

    @property
    def words(self) -> str:
        return ", ".join((self.verdict, *self.also)) + (" (xfail)" if self.xfail else "")

    @property
    def verdict_text(self) -> str:
        """The terminal's verdict cell: upper-case when the plugin fails the test."""
        return self.words.upper() if self.failing else self.words


def _exceeded(check: BudgetCheck) -> dict[str, Any]:
    limit = check.limit
    return {"argument": check.argument, "metric": check.metric,
            "limit": int(limit) if limit.denominator == 1 else float(limit),
            "measured": check.measured, "used": check.used}


def _exceeded_text(check: BudgetCheck) -> str:
    return (f"{check.argument}: {check.measured:,} {check.metric} > limit {format_count(check.limit, check.metric)} "
            f"({percent(check.used)[1:]} of the budget)")


def rows_of(verdicts: dict[str, TestVerdict]) -> list[Row]:
    """One row per measurement (per test when it measured nothing), in natural order of their keys."""
    rows = []
    for verdict in verdicts.values():
        exceeded = tuple(_exceeded(c) for c in verdict.over_budget)
        budget_reasons = tuple(f"over budget: {_exceeded_text(c)}" for c in verdict.over_budget)
        failing = verdict.failing and not verdict.xfail
        if not verdict.entries:
            rows.append(Row(verdict.nodeid, verdict.nodeid, None, None, None, None, verdict.budget_used, "-",
                            UNMEASURED, failing, None, xfail=verdict.xfail))
        for entry in verdict.entries:
            base = entry.baseline
            word = TEST_FAILED if verdict.test_failed else verdict.row_status(entry)
            also = (REGRESSED,) if word == OVER_BUDGET and entry.status == REGRESSED else ()
            grown = tuple({"name": g.name, "type": g.type, "old": dict(g.old), "new": dict(g.new), "repeat": g.repeat}
                          for g in entry.grown)
            regressions = tuple(
                f"{m} regressed: {getattr(entry.measured, m):,} vs baseline {getattr(base, m):,} "
                f"({percent(change(getattr(entry.measured, m), getattr(base, m)))})"
                for m in entry.regressed_metrics if base is not None
            )
            reasons = budget_reasons + regressions + tuple(f"grew: {g.describe()}" for g in entry.grown)
            rows.append(Row(
                entry.key, verdict.nodeid, entry.label, entry.measured.flops, entry.measured.macs,
                entry.measured.params, verdict.budget_used, entry.change_text(), word,
                failing and (entry.failing or bool(verdict.over_budget)),
                None if base is None else {"flops": base.flops, "macs": base.macs, "params": base.params},
                also=also, xfail=verdict.xfail, exceeded=exceeded, grown=grown,
                regressed=entry.regressed_metrics, reasons=reasons,
            ))
    return sorted(rows, key=lambda r: natural_key(r.key))


def natural_key(text: str) -> tuple[Any, ...]:
    """Numbers compare as numbers, as people read parametrized ids: test[2] before test[10]."""
    parts = re.split(r"(\d+)", text)  # text, number, text, ...: the same type at the same position
    return (tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), text)


def counts_of(rows: list[Row], stale: list[str]) -> dict[str, int]:
    counts = {word: 0 for word in COUNTED}
    for row in rows:
        for word in (row.verdict, *row.also):
            counts[word] = counts.get(word, 0) + 1
    counts["stale"] = len(stale)
    return counts


def count_line(counts: dict[str, int]) -> str:
    parts = [f"{counts[w]} {w}" for w in (*COUNTED, "stale")]
    for word in (UNMEASURED, DEVICE_MISMATCH, TEST_FAILED):
        if counts.get(word):
            parts.append(f"{counts[word]} {word}")
    return "flopbudget: " + ", ".join(parts)


def hints(plugin: FlopBudgetPlugin, counts: dict[str, int]) -> list[str]:
    lines = list(plugin.notes)
    for verdict in plugin.verdicts.values():
        for entry in verdict.entries:
            if entry.status == DEVICE_MISMATCH and not entry.failing:
                lines.extend(describe_other_path(entry))
    if counts[OVER_BUDGET]:
        lines.append("over budget: if intended, raise the limit in the test's @pytest.mark.flop_budget(...); "
                     "the baseline does not change a budget")
    if not plugin.settings.update and (counts[REGRESSED] or counts[IMPROVED] or counts[NEW]):
        lines.append(f"accept these changes: {UPDATE_HINT} (then commit {plugin.baseline.path.name})")
    if plugin.stale and not plugin.settings.prune:
        lines.append("remove stale entries: pytest --flop-prune-baseline"
                     + (" (failing: --flop-strict)" if plugin.stale_failed else ""))
    note = plugin.torch_note()
    if note and (counts[REGRESSED] or counts[IMPROVED]):
        lines.append(f"note: {note}")
    return lines


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return f"{value:.3f}" if value >= 0.01 else f"{value:.3g}"


def _used(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%" if value < 1e6 else f"{value * 100:.3g}%"


def table_lines(rows: list[Row], width: int | None = None) -> list[str]:
    """The table, narrowed to ``width`` columns: optional columns go first, then test ids are
    shortened from the left (their end, the test's name and parameters, stays readable)."""
    header = ("test", "GFLOPs", "GMACs", "params", "budget", "change", "verdict")
    cells = [header] + [
        (r.key, _number(r.gflops), _number(r.gmacs), "-" if r.params is None else human_count(r.params),
         _used(r.budget_used), r.change, r.verdict_text)
        for r in rows
    ]
    columns = list(range(len(header)))
    widths = [max(len(c[i]) for c in cells) for i in columns]

    def total(cols: list[int], test_width: int) -> int:
        return test_width + sum(widths[i] + 2 for i in cols if i != 0)

    if width is not None:
        for name in OPTIONAL_COLUMNS:
            if total(columns, widths[0]) <= width:
                break
            columns.remove(header.index(name))
        widths[0] = max(MIN_TEST_WIDTH, min(widths[0], width - total(columns, 0)))
    lines = []
    for index, cell in enumerate(cells):
        values = [_fit(cell[0], widths[0])] + [cell[i] for i in columns[1:]]
        text = "  ".join(
            value.ljust(widths[i]) if i in (0, 6) else value.rjust(widths[i]) for i, value in zip(columns, values)
        ).rstrip()
        lines.append(text)
        if index == 0:
            lines.append("-" * len(text))
    return lines


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else "\u2026" + text[len(text) - width + 1:]


def write_terminal(terminal: pytest.TerminalReporter, plugin: FlopBudgetPlugin, verbosity: int) -> None:
    """-q: the count line, and whatever changed the baseline file or the exit status; default: the
    table (hiding ok rows past 20); -v: every row."""
    rows = rows_of(plugin.verdicts)
    counts = counts_of(rows, plugin.stale)
    if verbosity < 0:
        terminal.write_line(count_line(counts))
        if plugin.stale_failed:
            terminal.write_line(f"stale baseline entries: {', '.join(plugin.stale)}")
            terminal.write_line("remove stale entries: pytest --flop-prune-baseline (failing: --flop-strict)")
        for note in plugin.notes:
            terminal.write_line(note)
        return
    terminal.write_sep("=", "flop budget")
    shown = rows
    if verbosity == 0 and len(rows) > ROWS_BEFORE_HIDING:
        shown = [r for r in rows if r.verdict != OK]
    if rows:
        width = plugin.config.get_terminal_writer().fullwidth
        for line in table_lines(shown, width):
            terminal.write_line(line)
        if len(shown) < len(rows):
            terminal.write_line(f"({len(rows) - len(shown)} ok rows hidden; -v shows every row)")
    if plugin.stale:
        terminal.write_line("stale baseline entries (tests that no longer exist or no longer measure):")
        for key in plugin.stale:
            terminal.write_line(f"  {key}")
    terminal.write_line(count_line(counts))
    for line in hints(plugin, counts):
        terminal.write_line(line)


def report_data(plugin: FlopBudgetPlugin) -> dict[str, Any]:
    rows = rows_of(plugin.verdicts)
    return {
        "format": 1,
        "baseline": str(plugin.baseline.path),
        "device": plugin.settings.device,
        "tolerance": format_fraction(plugin.settings.tolerance),
        "tests": [{**asdict(r), "gflops": r.gflops, "gmacs": r.gmacs} for r in rows],
        "torch_note": plugin.torch_note(),
        "counts": counts_of(rows, plugin.stale),
        "stale": list(plugin.stale),
        "notes": list(plugin.notes),
    }


def markdown(plugin: FlopBudgetPlugin) -> str:
    rows = rows_of(plugin.verdicts)
    counts = counts_of(rows, plugin.stale)
    lines = ["## pytest-flopbudget", ""]
    if rows:
        lines += ["| test | GFLOPs | GMACs | params | budget | change | verdict |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            verdict = f"**{r.words}**" if r.failing else r.words
            lines.append(f"| `{r.key}` | {_number(r.gflops)} | {_number(r.gmacs)} | "
                         f"{'-' if r.params is None else human_count(r.params)} | {_used(r.budget_used)} | "
                         f"{r.change} | {verdict} |")
        lines.append("")
    why = [r for r in rows if r.reasons and (r.failing or r.xfail)]
    if why:
        # why each failing test failed, so a reviewer need not open the job's log
        lines += ["Why:", ""]
        for r in why:
            lines.append(f"- `{r.key}`")
            lines += [f"  - {reason}" for reason in r.reasons]
        lines.append("")
    if plugin.stale:
        lines += ["Stale baseline entries:", ""] + [f"- `{key}`" for key in plugin.stale] + [""]
    lines.append(count_line(counts))
    notes = hints(plugin, counts)
    lines += ["", *(f"> {hint}" for hint in notes)] if notes else []
    return "\n".join(lines) + "\n\n"


def is_markdown(path: Path) -> bool:
    """A .md path, or GitHub's step summary file (whose name has no suffix)."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if path.suffix.lower() == ".md":
        return True
    return summary is not None and summary != "" and Path(summary).resolve() == path.resolve()


def write_file(path: Path, plugin: FlopBudgetPlugin) -> None:
    """JSON (replaced) or Markdown (appended, as GitHub's $GITHUB_STEP_SUMMARY expects)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # GitHub's $GITHUB_STEP_SUMMARY has no .md suffix (.../step_summary_<uuid>) but is Markdown
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if path.suffix.lower() == ".md" or (step_summary and path.resolve() == Path(step_summary).resolve()):
        with path.open("a", encoding="utf-8") as handle:
            handle.write(markdown(plugin))
    else:
        path.write_text(json.dumps(report_data(plugin), indent=2, sort_keys=True) + "\n", encoding="utf-8")
