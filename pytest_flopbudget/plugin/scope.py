"""Which part of the suite a run covered, to tell stale baseline entries from tests that just did
not run: pruning must never delete the entry of a test that was filtered out by -k, -m, --lf,
a node id or a file argument, a collection error or an early stop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import pytest

from pytest_flopbudget.plugin.baseline import Entry, nodeid_of


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


class RunScope:
    """What the run collected and ran; decides staleness at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.collected: set[str] = set()
        self.uncertain: set[str] = set()
        self.ran_clean: set[str] = set()
        self.deselected = 0
        self.collection_errors = 0
        self.partial_reason = partial_options(config)
        self.prefixes = self._covered_prefixes()

    def _covered_prefixes(self) -> list[str]:
        """Directory arguments as rootdir-relative prefixes: entries outside them are not judged."""
        root = Path(str(self.config.rootpath)).resolve()
        prefixes = []
        for arg in _args(self.config):
            path = Path(arg.split("::")[0])
            if not path.is_absolute():
                path = Path(str(self.config.invocation_params.dir)) / path
            try:
                relative = path.resolve().relative_to(root).as_posix()
            except ValueError:
                continue
            prefixes.append("" if relative == "." else relative)
        return prefixes

    def is_full(self, session: pytest.Session) -> bool:
        if self.partial_reason:
            return False
        if self.deselected:
            self.partial_reason = f"{self.deselected} tests were deselected"
        elif self.collection_errors:
            self.partial_reason = "some files failed to collect"
        elif session.shouldstop or session.shouldfail:
            self.partial_reason = "the run stopped early"
        elif self.config.getoption("maxfail", 0) and session.testsfailed >= self.config.getoption("maxfail"):
            self.partial_reason = "the run stopped at --maxfail / -x"
        return self.partial_reason is None

    def _covers(self, nodeid: str) -> bool:
        path = nodeid.split("::")[0]
        return any(p == "" or path == p or path.startswith(p + "/") for p in self.prefixes)

    def _uncertain(self, nodeid: str) -> bool:
        return any(nodeid == u or nodeid.startswith(u + "::") or nodeid.startswith(u + "/") or u == ""
                   for u in self.uncertain)

    def stale(self, entries: Mapping[str, Entry], measured: Mapping[str, Entry], *, full: bool) -> list[str]:
        """Entries of tests that no longer exist (full runs only), and entries a test that ran to
        the end no longer measures (any run)."""
        stale = []
        for key in sorted(entries):
            if key in measured:
                continue
            test = key if key in self.collected or key in self.ran_clean else nodeid_of(key)
            if test in self.ran_clean:
                stale.append(key)
            elif full and test not in self.collected and self._covers(test) and not self._uncertain(test):
                stale.append(key)
        return stale
