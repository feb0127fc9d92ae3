"""What the controller shows and writes: the terminal table, the count line, JSON and Markdown.

All three come from the same rows, so the files say exactly what the terminal said.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_flopbudget.plugin.marker import human_count
from pytest_flopbudget.plugin.options import format_fraction
from pytest_flopbudget.plugin.verdict import (
    DEVICE_MISMATCH, IMPROVED, NEW, OK, OVER_BUDGET, REGRESSED, UNMEASURED, UPDATE_HINT, TestVerdict,
    describe_other_path,
)

if TYPE_CHECKING:
    from pytest_flopbudget.plugin.manager import FlopBudgetPlugin

COUNTED = (OK, OVER_BUDGET, REGRESSED, IMPROVED, NEW)
ROWS_BEFORE_HIDING = 20


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

    @property
    def gflops(self) -> float | None:
        return None if self.flops is None else self.flops / 1e9

    @property
    def gmacs(self) -> float | None:
        return None if self.macs is None else self.macs / 1e9


def rows_of(verdicts: dict[str, TestVerdict]) -> list[Row]:
    """One row per measurement (per test when it measured nothing), sorted by key."""
    rows = []
    for verdict in verdicts.values():
        if not verdict.entries:
            rows.append(Row(verdict.nodeid, verdict.nodeid, None, None, None, None, verdict.budget_used, "-",
                            UNMEASURED, verdict.failing, None))
        for entry in verdict.entries:
            base = entry.baseline
            rows.append(Row(
                entry.key, verdict.nodeid, entry.label, entry.measured.flops, entry.measured.macs,
                entry.measured.params, verdict.budget_used, entry.change_text(), verdict.row_status(entry),
                verdict.failing and (entry.failing or bool(verdict.over_budget)),
                None if base is None else {"flops": base.flops, "macs": base.macs, "params": base.params},
            ))
    return sorted(rows, key=lambda r: r.key)


def counts_of(rows: list[Row], stale: list[str]) -> dict[str, int]:
    counts = {word: 0 for word in COUNTED}
    for row in rows:
        counts[row.verdict] = counts.get(row.verdict, 0) + 1
    counts["stale"] = len(stale)
    return counts


def count_line(counts: dict[str, int]) -> str:
    parts = [f"{counts[w]} {w}" for w in (*COUNTED, "stale")]
    for word in (UNMEASURED, DEVICE_MISMATCH):
        if counts.get(word):
            parts.append(f"{counts[word]} {word}")
    return "flopbudget: " + ", ".join(parts)


def hints(plugin: FlopBudgetPlugin, counts: dict[str, int]) -> list[str]:
    lines = list(plugin.notes)
    for verdict in plugin.verdicts.values():
        for entry in verdict.entries:
            if entry.status == DEVICE_MISMATCH and not entry.failing:
                lines.extend(describe_other_path(entry))
    if not plugin.settings.update and (counts[REGRESSED] or counts[IMPROVED] or counts[NEW]):
        lines.append(f"accept these changes: {UPDATE_HINT} (then commit {plugin.baseline.path.name})")
    if plugin.stale and not plugin.settings.prune:
        lines.append("remove stale entries: pytest --flop-prune-baseline"
                     + (" (failing: --flop-strict)" if plugin.stale_failed else ""))
    return lines


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return f"{value:.3f}" if value >= 0.01 else f"{value:.3g}"


def _used(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%" if value < 1e6 else f"{value * 100:.3g}%"


def table_lines(rows: list[Row]) -> list[str]:
    header = ("test", "GFLOPs", "GMACs", "params", "budget", "change", "verdict")
    cells = [header] + [
        (r.key, _number(r.gflops), _number(r.gmacs), "-" if r.params is None else human_count(r.params),
         _used(r.budget_used), r.change, r.verdict.upper() if r.failing else r.verdict)
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = []
    for index, cell in enumerate(cells):
        text = "  ".join(
            value.ljust(widths[i]) if i in (0, 6) else value.rjust(widths[i]) for i, value in enumerate(cell)
        ).rstrip()
        lines.append(text)
        if index == 0:
            lines.append("-" * len(text))
    return lines


def write_terminal(terminal: pytest.TerminalReporter, plugin: FlopBudgetPlugin, verbosity: int) -> None:
    """-q: the count line only; default: the table (hiding ok rows past 20); -v: every row."""
    rows = rows_of(plugin.verdicts)
    counts = counts_of(rows, plugin.stale)
    if verbosity < 0:
        terminal.write_line(count_line(counts))
        return
    terminal.write_sep("=", "flop budget")
    shown = rows
    if verbosity == 0 and len(rows) > ROWS_BEFORE_HIDING:
        shown = [r for r in rows if r.verdict != OK]
    if rows:
        for line in table_lines(shown):
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
            verdict = f"**{r.verdict}**" if r.failing else r.verdict
            lines.append(f"| `{r.key}` | {_number(r.gflops)} | {_number(r.gmacs)} | "
                         f"{'-' if r.params is None else human_count(r.params)} | {_used(r.budget_used)} | "
                         f"{r.change} | {verdict} |")
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
