"""Which part of the suite a run covered, to tell stale baseline entries from tests that just did
not run: pruning must never delete the entry of a test that was filtered out by -k, -m, --lf,
--ignore, a conftest's ``collect_ignore``, another plugin's deselection, a node id or a file argument,
a collection error or an early stop.

Staleness is decided from what collection saw, not from what ran: a test is gone when its file was
collected without it, or when its file no longer exists. Files that exist but were not collected
(ignored, outside the arguments) keep their entries.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import pytest

from pytest_flopbudget.reporting.baseline import Entry, nodeid_of

REPEAT_PARAM = "__pytest_repeat_step_number"  # pytest-repeat's parameter; its id is "<step>-<count>"


def test_id(item: pytest.Item) -> str:
    """The id a test's measurements are kept under: its node id, without pytest-repeat's "1-3" part.

    pytest-repeat (``--count N``) parametrizes every test once more, last, with ids "1-N" .. "N-N";
    all repetitions are the same test and share its baseline entry. pytest-rerunfailures reruns an
    item under its own node id, so reruns need nothing here.
    """
    params = getattr(getattr(item, "callspec", None), "params", {})
    if REPEAT_PARAM not in params:
        return item.nodeid
    step = params[REPEAT_PARAM]
    match = re.fullmatch(rf"(?P<base>.*)\[(?:(?P<rest>.*)-)?{int(step) + 1}-\d+\]", item.nodeid, re.S)
    if match is None:
        return item.nodeid
    rest = match["rest"]
    return match["base"] + (f"[{rest}]" if rest else "")


def partial_options(config: pytest.Config) -> str | None:
    """Why the command line selects only part of the suite, or None (known at start-up)."""
    checks = (
        ("keyword", "-k"), ("markexpr", "-m"), ("lf", "--lf"), ("deselect", "--deselect"),
        ("stepwise", "--sw"), ("stepwise_skip", "--sw-skip"),
    )
    for dest, flag in checks:
        value = config.getoption(dest, None)
        if value:
            return f"{flag} selects part of the suite"
    for arg in _args(config):
        if "::" in arg:
            return f"{arg!r} is a single test"
        path = Path(arg) if os.path.isabs(arg) else Path(str(config.invocation_params.dir)) / arg
        if not path.is_dir():
            return f"{arg!r} is a single file"
    return None


def _args(config: pytest.Config) -> list[str]:
    return [str(a) for a in config.args]


class CollectedTests:
    """What the run collected and ran; decides staleness at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.root = Path(str(config.rootpath)).resolve()
        self.seen: set[str] = set()  # test ids of every collected item, deselected ones included
        self.seen_files: set[str] = set()  # files whose collection succeeded
        self.uncertain: set[str] = set()
        self.ran_clean: set[str] = set()
        self.collection_errors = 0
        self.partial_reason = partial_options(config)
        self.prefixes = self._covered_prefixes()

    def _covered_prefixes(self) -> list[str]:
        """Directory arguments as rootdir-relative prefixes: entries outside them are not judged."""
        prefixes = []
        for arg in _args(self.config):
            path = Path(arg.split("::")[0])
            if not path.is_absolute():
                path = Path(str(self.config.invocation_params.dir)) / path
            try:
                relative = path.resolve().relative_to(self.root).as_posix()
            except ValueError:
                continue
            prefixes.append("" if relative == "." else relative)
        return prefixes

    def collected_file(self, report: pytest.CollectReport) -> None:
        """Note a collector's report: a file collected whole, or a part of the tree not known."""
        if report.failed:
            self.collection_errors += 1
        if not report.passed:
            # tests under a module that failed or skipped collection are not gone, just not known
            self.uncertain.add(report.nodeid)
        elif "::" not in report.nodeid and report.nodeid and (self.root / report.nodeid).is_file():
            self.seen_files.add(report.nodeid)

    def to_worker_output(self) -> dict[str, Any]:
        return {"seen": sorted(self.seen), "seen_files": sorted(self.seen_files), "uncertain": sorted(self.uncertain)}

    def add_worker_output(self, data: Mapping[str, Iterable[str]]) -> None:
        """What an xdist worker's collection saw (the controller collects nothing itself)."""
        self.seen.update(data.get("seen", ()))
        self.seen_files.update(data.get("seen_files", ()))
        self.uncertain.update(data.get("uncertain", ()))

    def partial_at_end(self, session: pytest.Session, *, stopped: bool = False) -> str | None:
        """Why the run covered only part of the suite, now that it has ended; None if it covered all."""
        if self.partial_reason:
            return self.partial_reason
        if self.collection_errors:
            return "some files failed to collect"
        if stopped or session.shouldstop or session.shouldfail:
            return "the run stopped early"
        if self.config.getoption("maxfail", 0) and session.testsfailed >= self.config.getoption("maxfail"):
            return "the run stopped at --maxfail / -x"
        return None

    def _covers(self, nodeid: str) -> bool:
        path = nodeid.split("::")[0]
        return any(p == "" or path == p or path.startswith(p + "/") for p in self.prefixes)

    def _uncertain(self, nodeid: str) -> bool:
        return any(nodeid == u or nodeid.startswith(u + "::") or nodeid.startswith(u + "/") or u == ""
                   for u in self.uncertain)

    def _gone(self, test: str) -> bool:
        """Collection saw the test's file without the test, or the file no longer exists."""
        if test in self.seen or self._uncertain(test):
            return False
        path = test.split("::")[0]
        if path in self.seen_files:
            return True
        return self._covers(test) and not (self.root / path).exists()

    def stale(self, entries: Mapping[str, Entry], measured: Mapping[str, Entry], *, full: bool) -> list[str]:
        """Entries of tests that no longer exist (full runs only), and entries a test that ran to
        the end no longer measures (any run)."""
        stale = []
        for key in sorted(entries):
            if key in measured:
                continue
            test = key if key in self.seen or key in self.ran_clean else nodeid_of(key)
            if test in self.ran_clean:
                stale.append(key)
            elif full and self._gone(test):
                stale.append(key)
        return stale
