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


def shard_of(config: pytest.Config) -> dict[str, Any] | None:
    """Which numbered shard of a suite split across machines this run is: pytest-split's
    ``--splits N --group I`` (groups 1..N) or pytest-shard's ``--num-shards N --shard-id I``
    (shards 0..N-1); None when neither splits the run. Both collect the whole suite and deselect
    the rest, so nothing else on the command line says the run is partial."""
    splits, group = config.getoption("splits", None), config.getoption("group", None)
    if isinstance(splits, int) and isinstance(group, int) and splits >= 1:
        return {"kind": "pytest-split", "index": group, "count": splits, "first": 1,
                "name": f"--splits {splits} --group {group}"}
    shards, shard = config.getoption("num_shards", None), config.getoption("shard_id", None)
    if isinstance(shards, int) and isinstance(shard, int) and shards > 1:
        return {"kind": "pytest-shard", "index": shard, "count": shards, "first": 0,
                "name": f"--num-shards {shards} --shard-id {shard}"}
    return None


def selection_of(config: pytest.Config) -> dict[str, Any]:
    """The options that choose which collected tests run (-k, -m, --deselect, path arguments,
    relative to the rootdir): a shard split by them is named by them."""
    root = Path(str(config.rootpath)).resolve()
    invocation = Path(str(config.invocation_params.dir))
    args = []
    for arg in _args(config):
        path, sep, rest = arg.partition("::")
        full = (Path(path) if os.path.isabs(path) else invocation / path).resolve()
        try:
            relative = full.relative_to(root).as_posix()
        except ValueError:
            relative = path
        args.append(("" if relative == "." else relative) + sep + rest)
    return {"-k": config.getoption("keyword", None) or None, "-m": config.getoption("markexpr", None) or None,
            "--deselect": sorted(config.getoption("deselect", None) or []), "args": sorted(args)}


def cache_selection(config: pytest.Config) -> str | None:
    """Selections made from the last run's results (--lf, --sw): never a planned split of the suite."""
    for dest, flag in (("lf", "--lf"), ("stepwise", "--sw"), ("stepwise_skip", "--sw-skip")):
        if config.getoption(dest, None):
            return f"{flag} selects part of the suite"
    return None


def partial_options(config: pytest.Config) -> str | None:
    """Why the command line selects only part of the suite, or None (known at start-up)."""
    shard = shard_of(config)
    if shard is not None:
        return f"{shard['name']} runs one shard of the suite ({shard['kind']})"
    return selected_part(config)


def selected_part(config: pytest.Config) -> str | None:
    """Why the options other than a shard plugin's select part of the suite, or None."""
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
        self.selected: set[str] | None = None  # what remained after deselection (-k, -m, shard plugins)
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

    def collection_finished(self, items: Iterable[pytest.Item]) -> None:
        """The items left to run once every plugin has deselected its share."""
        self.selected = {test_id(item) for item in items}

    def to_worker_output(self) -> dict[str, Any]:
        return {"seen": sorted(self.seen), "seen_files": sorted(self.seen_files), "uncertain": sorted(self.uncertain),
                "selected": sorted(self.selected or ())}

    def add_worker_output(self, data: Mapping[str, Iterable[str]]) -> None:
        """What an xdist worker's collection saw (the controller collects nothing itself)."""
        self.seen.update(data.get("seen", ()))
        self.seen_files.update(data.get("seen_files", ()))
        self.uncertain.update(data.get("uncertain", ()))
        self.selected = (self.selected or set()) | set(data.get("selected", ()))

    def partial_at_end(self, session: pytest.Session, *, stopped: bool = False) -> str | None:
        """Why the run covered only part of the suite, now that it has ended; None if it covered all."""
        return self.partial_reason or self.incomplete_at_end(session, stopped=stopped)

    def incomplete_at_end(self, session: pytest.Session, *, stopped: bool = False) -> str | None:
        """Why the run did not run all it selected (or selected from the last run's results): a
        merge of shards cannot judge the whole suite from it."""
        cached = cache_selection(self.config)
        if cached:
            return cached
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

    def absent(self, entries: Mapping[str, Entry]) -> list[str]:
        """Entries of tests this run's collection shows to be gone (whether or not it was partial)."""
        return [key for key in sorted(entries)
                if self._gone(key if key in self.seen else nodeid_of(key)) and key not in self.seen]

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
