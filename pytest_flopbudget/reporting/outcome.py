"""The end of a session as a value: from what was collected and measured to what happens next.

As syrupy's ``session.finish() -> int``: one function decides which entries are stale or pruned,
writes the baseline when asked, and returns the notes and the exit status; the pytest hook only
applies that outcome, and ``flopbudget merge`` calls the same function on the union of the shards.
No pytest here: exit statuses are pytest's documented numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from pytest_flopbudget.reporting.baseline import Baseline, BaselineError, Entry, update
from pytest_flopbudget.reporting.commands import PRUNE_OPTION
from pytest_flopbudget.reporting.verdict import TestVerdict

# pytest.ExitCode's values (stable, documented): the plugin only ever turns OK into TESTS_FAILED
EXIT_OK, EXIT_TESTS_FAILED, EXIT_INTERRUPTED, EXIT_INTERNAL_ERROR, EXIT_USAGE_ERROR = 0, 1, 2, 3, 4

# (path, measured, remove=, torch=) -> (written, entries in the file): reporting.baseline.update
Writer = Callable[..., tuple[bool, int]]


@dataclass(frozen=True)
class Ending:
    """What a run collected and measured, how it ended, and what it was asked to do."""

    baseline: Baseline
    measured: Mapping[str, Entry]  # the entries the tests that ran (and did not fail on their own) measured
    stale: tuple[str, ...]  # baseline entries judged stale from what was collected
    partial_reason: str | None  # why the run covered part of the suite; None for the whole suite
    update: bool = False
    prune: bool = False
    strict: bool = False
    exit_status: int = EXIT_OK
    crashed: tuple[str, ...] = ()  # xdist workers (or their tests) that crashed: never write then
    stopped_on_purpose: bool = False  # --sw or xdist's -x: its INTERRUPTED status is not a Ctrl-C
    torch_version: str | None = None  # written in the header; None: the running torch's


@dataclass(frozen=True)
class Outcome:
    """What the end of a session decided: the summary and the exit status are built from this."""

    stale: tuple[str, ...]  # still stale after pruning
    pruned: tuple[str, ...] = ()
    written: bool | None = None  # None: no write was asked for or attempted
    notes: tuple[str, ...] = ()
    stale_failed: bool = False  # stale entries fail the run (--flop-strict)
    write_failed: bool = False
    exit_status: int = EXIT_OK


def finish(ending: Ending, write: Writer = update) -> Outcome:
    """Decide pruning, write the baseline when asked (through ``write``), fail stale entries under
    strict, and give the exit status: the run's own, or TESTS_FAILED where it was OK and the
    baseline could not be written or stale entries fail."""
    stale = ending.stale
    notes: list[str] = []
    pruned: tuple[str, ...] = ()
    if ending.prune and ending.partial_reason is not None:
        notes.append(f"{PRUNE_OPTION} refused: this run was partial ({ending.partial_reason}); "
                     "run the whole suite to prune")
    elif ending.prune:
        pruned = stale
    written: bool | None = None
    write_failed = False
    if ending.update or ending.prune:
        written, write_failed, stale, note_lines = _write(ending, pruned, stale, write)
        notes.extend(note_lines)
    status = ending.exit_status
    if write_failed and status == EXIT_OK:
        status = EXIT_TESTS_FAILED
    stale_failed = ending.strict and bool(stale) and not pruned
    if stale_failed and status == EXIT_OK:
        status = EXIT_TESTS_FAILED
    return Outcome(stale, pruned, written, tuple(notes), stale_failed, write_failed, status)


def _write(ending: Ending, pruned: tuple[str, ...], stale: tuple[str, ...], write: Writer,
           ) -> tuple[bool | None, bool, tuple[str, ...], list[str]]:
    """(written, failed, stale left, notes) of the baseline write."""
    path = ending.baseline.path
    if ending.crashed:
        return None, False, stale, [f"baseline {path} not written: a worker crashed ({', '.join(ending.crashed)})"]
    interrupted = ending.exit_status == EXIT_INTERRUPTED and not ending.stopped_on_purpose
    if interrupted or ending.exit_status in (EXIT_INTERNAL_ERROR, EXIT_USAGE_ERROR):
        return None, False, stale, [f"baseline {path} not written: the run was interrupted or errored"]
    try:
        # merged into the file as it is now, under a lock: a concurrent update's entries are kept
        written, count = write(path, ending.measured if ending.update else {}, remove=pruned,
                               torch=ending.torch_version)
    except (BaselineError, OSError) as error:
        return None, True, stale, [f"baseline {path} not written: {error}"]
    notes = []
    if pruned:
        notes.append(f"pruned {len(pruned)} stale entr{'y' if len(pruned) == 1 else 'ies'}: {', '.join(pruned)}")
        stale = ()
    notes.append(f"baseline {'written' if written else 'unchanged'}: {path} ({count} entries)")
    return written, False, stale, notes


def measured_entries(verdicts: Iterable[TestVerdict]) -> dict[str, Entry]:
    """What the baseline keeps of the verdicts: every entry of a test that did not fail on its own."""
    return {entry.key: entry.measured for verdict in verdicts if not verdict.test_failed for entry in verdict.entries}


__all__ = ["EXIT_OK", "EXIT_TESTS_FAILED", "Ending", "Outcome", "finish", "measured_entries"]
