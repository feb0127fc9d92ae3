"""What the controller shows and writes: the terminal table, the count line, JSON and Markdown.

All of them render one SessionSummary (summary.py), so the files say exactly what the terminal said.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from pytest_flopbudget.counting.text import giga, human_bytes, human_count, layout, percent
from pytest_flopbudget.reporting.commands import prune_hint
from pytest_flopbudget.reporting.summary import Row, SessionSummary, count_line
from pytest_flopbudget.reporting.verdict import OK, TestVerdict

if TYPE_CHECKING:
    import pytest

ROWS_BEFORE_HIDING = 20
# columns dropped, in this order, when the table is wider than the terminal (the change against
# the baseline goes last: it is what a reviewer reads the table for)
OPTIONAL_COLUMNS = ("GMACs", "peak mem", "params", "change")
MIN_TEST_WIDTH = 16
HEADER = ("test", "GFLOPs", "GMACs", "params", "peak mem", "budget", "change", "verdict")


def _cells(row: Row, verdict: str) -> tuple[str, ...]:
    """A row's cells in HEADER order (the verdict cell as the caller words it)."""
    return (row.key, giga(row.gflops), giga(row.gmacs), "-" if row.params is None else human_count(row.params),
            "-" if row.peak_memory is None else human_bytes(row.peak_memory),
            percent(row.budget_used, signed=False, missing="-"), row.change, verdict)


def table_lines(rows: list[Row] | tuple[Row, ...], width: int | None = None) -> list[str]:
    """The table, narrowed to ``width`` columns: optional columns go first, then test ids are
    shortened from the left (their end, the test's name and parameters, stays readable)."""
    cells = [HEADER] + [_cells(r, r.verdict_text) for r in rows]
    columns = list(range(len(HEADER)))
    widths = [max(len(c[i]) for c in cells) for i in columns]

    def total(cols: list[int], test_width: int) -> int:
        return test_width + sum(widths[i] + 2 for i in cols if i != 0)

    if width is not None:
        for name in OPTIONAL_COLUMNS:
            if total(columns, widths[0]) <= width:
                break
            columns.remove(HEADER.index(name))
        widths[0] = max(MIN_TEST_WIDTH, min(widths[0], width - total(columns, 0)))
    kept = [[_fit(cell[0], widths[0])] + [cell[i] for i in columns[1:]] for cell in cells]
    verdict_column = len(columns) - 1
    return layout(kept, left={0, verdict_column}, widths=[widths[i] for i in columns])


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else "\u2026" + text[len(text) - width + 1:]


def write_terminal(terminal: pytest.TerminalReporter, summary: SessionSummary, verbosity: int, width: int) -> None:
    """-q: the count line, and whatever changed the baseline file or the exit status; default: the
    table (hiding ok rows past 20); -v: every row."""
    if verbosity < 0:
        terminal.write_line(count_line(summary.counts))
        if summary.stale_failed:
            terminal.write_line(f"stale baseline entries: {', '.join(summary.stale)}")
            terminal.write_line(prune_hint(failing=True))
        for note in summary.notes:
            terminal.write_line(note)
        return
    terminal.write_sep("=", "flop budget")
    rows = summary.rows
    shown = rows
    if verbosity == 0 and len(rows) > ROWS_BEFORE_HIDING:
        shown = tuple(r for r in rows if r.verdict != OK)
    if rows:
        for line in table_lines(shown, width):
            terminal.write_line(line)
        if len(shown) < len(rows):
            terminal.write_line(f"({len(rows) - len(shown)} ok rows hidden; -v shows every row)")
    for row in summary.rows:  # what was not counted is never left unsaid
        for note in row.notes:
            terminal.write_line(note if note.startswith(" ") else f"{row.key}: {note}")
    if summary.stale:
        terminal.write_line("stale baseline entries (tests that no longer exist or no longer measure):")
        for key in summary.stale:
            terminal.write_line(f"  {key}")
    terminal.write_line(count_line(summary.counts))
    for line in summary.hints:
        terminal.write_line(line)


def report_data(summary: SessionSummary) -> dict[str, Any]:
    return {
        "format": 1,
        "baseline": str(summary.baseline_path),
        "device": summary.device,
        "tolerance": summary.tolerance,
        "tests": [{**asdict(r), "gflops": r.gflops, "gmacs": r.gmacs} for r in summary.rows],
        "torch_note": summary.torch_note,
        "counts": dict(summary.counts),
        "stale": list(summary.stale),
        "notes": list(summary.notes),
        # what the run covered (shard identity, collected, deselected, ran, verdicts): flopbudget merge reads it
        "run": summary.run.to_dict() if summary.run is not None else None,
    }


def markdown(summary: SessionSummary) -> str:
    rows = summary.rows
    lines = ["## pytest-flopbudget", ""]
    if rows:
        lines += ["| " + " | ".join(HEADER) + " |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            cells = list(_cells(r, f"**{r.words}**" if r.failing else r.words))
            cells[0] = f"`{cells[0]}`"
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    why = [r for r in rows if r.reasons and (r.failing or r.xfail)]
    if why:
        # why each failing test failed, so a reviewer need not open the job's log
        lines += ["Why:", ""]
        for r in why:
            lines.append(f"- `{r.key}`")
            lines += [f"  - {reason}" for reason in r.reasons]
        lines.append("")
    noted = [r for r in rows if r.notes and not (r.failing or r.xfail)]
    if noted:
        lines += ["Not counted by shapes alone:", ""]
        for r in noted:
            lines.append(f"- `{r.key}`")
            lines += [f"  - {note}" for note in r.notes]
        lines.append("")
    if summary.stale:
        lines += ["Stale baseline entries:", ""] + [f"- `{key}`" for key in summary.stale] + [""]
    lines.append(count_line(summary.counts))
    lines += ["", *(f"> {hint}" for hint in summary.hints)] if summary.hints else []
    return "\n".join(lines) + "\n\n"


def is_markdown(path: Path) -> bool:
    """A .md path, or GitHub's step summary file (whose name has no suffix: .../step_summary_<uuid>)."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if path.suffix.lower() == ".md":
        return True
    return summary is not None and summary != "" and Path(summary).resolve() == path.resolve()


def write_file(path: Path, summary: SessionSummary, verdicts: Iterable[TestVerdict] = ()) -> None:
    """JSON (replaced), Markdown (appended, as GitHub's $GITHUB_STEP_SUMMARY expects) or, for a
    .html path, the page with each test's module tree (from the verdicts' entries; replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".html", ".htm"):
        from pytest_flopbudget.reporting import html
        from pytest_flopbudget.reporting.html_model import view_of_session

        html.write(path, view_of_session(summary, verdicts, count_line(summary.counts)))
    elif is_markdown(path):
        with path.open("a", encoding="utf-8") as handle:
            handle.write(markdown(summary))
    else:
        path.write_text(json.dumps(report_data(summary), indent=2, sort_keys=True) + "\n", encoding="utf-8")
