"""``flopbudget merge``: the JSON reports of a suite run in shards, joined into one session end.

Each shard's report (``--flop-report=...json``) records which shard it was, what it collected and
ran, and its verdicts (reporting/run.py). The merge checks that the shards make one whole run
(every numbered shard present, every collected test run by some shard, one torch, one measurement
per test), judges the union against the committed baseline with the merge's own ``--update`` and
``--strict``, and hands it to the same ``finish`` as a serial run's end: the baseline it writes is
the one a serial ``--flop-update-baseline`` run writes, byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pytest_flopbudget.reporting.baseline import DEFAULT_BASELINE, Baseline, nodeid_of
from pytest_flopbudget.reporting.commands import merge_update_command
from pytest_flopbudget.reporting.outcome import EXIT_OK, EXIT_TESTS_FAILED, Ending, Outcome, finish, measured_entries
from pytest_flopbudget.reporting.run import RunRecord
from pytest_flopbudget.reporting.summary import SessionSummary
from pytest_flopbudget.reporting.verdict import TestVerdict, judge_entry

SHOWN = 5  # tests named in one message before "and N more"


class MergeError(Exception):
    """The reports cannot be joined into one run; the message names the shards or tests and says why."""


@dataclass(frozen=True)
class ShardReport:
    path: Path
    record: RunRecord
    tolerance: str

    @property
    def name(self) -> str:
        return f"{self.path} ({self.record.name})"


@dataclass(frozen=True)
class Merged:
    """The whole suite's session end, as a serial run would have it."""

    outcome: Outcome
    summary: SessionSummary
    verdicts: tuple[TestVerdict, ...]


def read(path: Path) -> ShardReport:
    """One shard's JSON report; anything else is an error naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MergeError(f"{path}: no such report; give the JSON file each shard wrote with --flop-report") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise MergeError(f"{path}: not a JSON report: {error}") from None
    run = data.get("run") if isinstance(data, dict) else None
    if not isinstance(run, dict):
        raise MergeError(f"{path}: not a shard's report: written by `pytest --flop-report={path.name}` with "
                         "pytest-flopbudget 0.2 or later (a Markdown report or a baseline cannot be merged)")
    try:
        record = RunRecord.from_dict(run)
    except (KeyError, TypeError, ValueError) as error:
        raise MergeError(f"{path}: the report's run record is damaged ({type(error).__name__}: {error})") from None
    return ShardReport(path, record, str(data.get("tolerance", "0")))


def merge(paths: Sequence[Path], baseline: Baseline, *, update: bool = False, strict: bool = False) -> Merged:
    """Join the shards' reports with the committed baseline; writes the baseline only with ``update``."""
    if not paths:
        raise MergeError("give the JSON report of every shard")
    shards = [read(Path(p)) for p in paths]
    torch = _one_torch(shards)
    _check_distinct(shards)
    partial = _check_complete(shards, baseline)
    verdicts = _union(shards)
    judged = tuple(_rejudge(v, baseline, update=update, strict=strict) for v in verdicts)
    measured = measured_entries(judged)
    failing = any(v.failing and not v.xfail for v in judged)
    ending = Ending(baseline, measured, _stale(shards, baseline, measured, full=partial is None), partial,
                    update=update, strict=strict, exit_status=EXIT_TESTS_FAILED if failing else EXIT_OK,
                    torch_version=torch)
    outcome = finish(ending)
    if partial is not None:
        # said where the merge's reader looks: a lost shard of a -k split looks exactly like this
        outcome = dataclasses.replace(outcome, notes=(
            f"partial: {partial}; their baseline entries are kept and not judged. If another shard ran "
            "them, its report is missing: give every shard's report", *outcome.notes))
    devices = sorted({s.record.device for s in shards})
    note = None
    if baseline.torch_version is not None and baseline.torch_version != torch:
        note = (f"baseline written by torch {baseline.torch_version}; the shards used torch {torch} "
                "(counts can change between torch releases; `flopbudget merge --update` rewrites it)")
    default = Path(DEFAULT_BASELINE).resolve()
    command = merge_update_command(paths, None if Path(baseline.path).resolve() == default else str(baseline.path))
    summary = SessionSummary.of(
        judged, outcome, baseline_path=baseline.path, device=", ".join(devices), tolerance=shards[0].tolerance,
        update=update, prune=False, torch_note=note, update_command=command,
    )
    return Merged(outcome, summary, judged)


def _one_torch(shards: Sequence[ShardReport]) -> str:
    versions = {s.record.torch for s in shards}
    if len(versions) > 1:
        listed = "; ".join(f"{s.path}: torch {s.record.torch}" for s in shards)
        raise MergeError(f"the shards ran different torch releases ({listed}); counts can differ between "
                         "releases: run every shard with the same torch")
    return versions.pop()


def _check_distinct(shards: Sequence[ShardReport]) -> None:
    """The same report given twice (the same file, or a copy: the same tests selected with the same
    options on the same device) would make a split look whole: refused, naming both."""
    seen: dict[object, ShardReport] = {}
    for shard in shards:
        record = shard.record
        if record.shard is not None:  # numbered shards: _check_numbered names the index given twice
            continue
        for key in (("file", shard.path.resolve()),
                    ("run", record.selected, record.device, json.dumps(record.selection, sort_keys=True))):
            if key[0] == "run" and not record.selected:
                continue
            first = seen.setdefault(key, shard)
            if first is not shard:
                what = "the same file" if key[0] == "file" else "the same run (the same tests, options and device)"
                raise MergeError(f"{first.path} and {shard.path} are {what}: one shard's report is given twice; "
                                 "give each shard's report once")


def _check_complete(shards: Sequence[ShardReport], baseline: Baseline) -> str | None:
    """Raise if a shard is missing or given twice; return why the union is partial, or None."""
    numbered = [s for s in shards if s.record.shard is not None]
    if numbered and len(numbered) != len(shards):
        others = [s.name for s in shards if s.record.shard is None]
        raise MergeError(f"numbered shards ({numbered[0].name}) mixed with other runs ({', '.join(others)}): "
                         "give the reports of one sharded run")
    reasons = [f"{s.name}: {s.record.incomplete}" for s in shards if s.record.incomplete]
    if numbered:
        _check_numbered(shards)
        # -m, -k, --lf, a file or a node id next to the shard plugin: the union is that part of the suite
        reasons += sorted({f"{s.name}: {s.record.selects}" for s in shards if s.record.selects})
        if not reasons:
            _check_split_covers(shards)
    else:
        reasons += _check_selections(shards)
    _check_covered(shards, baseline)
    return "; ".join(reasons) or None


def _check_numbered(shards: Sequence[ShardReport]) -> None:
    kinds = {(s.record.shard["kind"], s.record.shard["count"], s.record.shard["first"]) for s in shards}  # type: ignore[index]
    if len(kinds) > 1:
        listed = "; ".join(s.name for s in shards)
        raise MergeError(f"the reports come from different splits of the suite ({listed}): give the reports of one "
                         "sharded run")
    kind, count, first = kinds.pop()
    seen: dict[int, ShardReport] = {}
    for shard in shards:
        index = int(shard.record.shard["index"])  # type: ignore[index]
        if index in seen:
            raise MergeError(f"shard {index} of {count} ({kind}) is given twice: {seen[index].path} and {shard.path}")
        seen[index] = shard
    missing = [i for i in range(first, first + count) if i not in seen]
    if missing:
        option = "--group" if kind == "pytest-split" else "--shard-id"
        raise MergeError(
            f"missing the report of shard {', '.join(f'{option} {i}' for i in missing)} of {count} ({kind}); "
            f"merged without it, its tests would be neither judged nor updated: give every shard's report "
            f"(present: {', '.join(str(s.path) for s in sorted(shards, key=lambda s: s.path))})"
        )


def _check_split_covers(shards: Sequence[ShardReport]) -> None:
    """Every shard present, none filtering: every collected test ran in some shard. Runners that
    split differently (pytest-split reading another .test_durations on one of them) can each be
    present and still leave tests to none."""
    unrun = _unrun(shards)
    if unrun:
        raise MergeError(
            f"{len(unrun)} collected test(s) were run by no shard: {_some(unrun)}; the shards split the suite "
            "differently: every runner must collect the same tests and, with pytest-split, read the same "
            ".test_durations (commit it, or give none to any)"
        )


def _unrun(shards: Sequence[ShardReport]) -> list[str]:
    """The tests some shard collected and no shard selected, sorted."""
    collected = set().union(*(s.record.collected for s in shards))
    return sorted(collected - set().union(*(s.record.selected for s in shards)))


def _check_selections(shards: Sequence[ShardReport]) -> list[str]:
    """Shards split by -k, --deselect or paths: every test some shard collected ran in some shard."""
    unrun = _unrun(shards)
    if not unrun:
        return []
    common = [f"{option} {value!r}" for option in ("-m", "-k")
              for value in [shards[0].record.selection.get(option)]
              if value and all(s.record.selection.get(option) == value for s in shards)]
    if common or len(shards) == 1:
        # deselected by a filter every shard applies (or by the one run's own selection), like a serial
        # run with that option: the union is partial, nothing is missing
        return [f"{len(unrun)} collected test(s) run by no shard ({', '.join(common) or shards[0].record.name})"]
    raise MergeError(
        f"{len(unrun)} test(s) collected by the shards were run by none of them: {_some(unrun)}; "
        "a shard's report is missing (or every shard deselects them): give every shard's report"
    )


def _check_covered(shards: Sequence[ShardReport], baseline: Baseline) -> None:
    """Path splits: a baseline entry outside every shard's paths belongs to a shard not given. Shards
    that all run the same paths (testpaths, or none) split otherwise: like a serial run on those
    paths, entries outside them are kept and not judged."""
    if len({tuple(s.record.selection.get("args", ())) for s in shards}) == 1:
        return
    collected = set().union(*(s.record.collected for s in shards))
    prefixes = {arg.split("::")[0] for s in shards for arg in s.record.selection.get("args", [""]) or [""]}
    if "" in prefixes:
        return
    outside = [key for key in sorted(baseline.entries)
               if nodeid_of(key) not in collected and key not in collected
               and not any(_under(nodeid_of(key).split("::")[0], p) for p in prefixes)]
    if outside:
        raise MergeError(
            f"{len(outside)} baseline entr{'y' if len(outside) == 1 else 'ies'} outside every shard's paths "
            f"({', '.join(sorted(prefixes))}): {_some(outside)}; a shard's report is missing: give every shard's report"
        )


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _union(shards: Sequence[ShardReport]) -> list[TestVerdict]:
    """Every shard's verdicts; a test in two shards must have measured the same in both."""
    found: dict[str, tuple[TestVerdict, ShardReport]] = {}
    for shard in shards:
        for verdict in shard.record.verdicts:
            if verdict.nodeid not in found:
                found[verdict.nodeid] = (verdict, shard)
                continue
            first, where = found[verdict.nodeid]
            _check_same(first, where, verdict, shard)
    return [found[key][0] for key in sorted(found)]


def _check_same(a: TestVerdict, where_a: ShardReport, b: TestVerdict, where_b: ShardReport) -> None:
    entries_a = {e.key: e.measured.to_dict() for e in a.entries}
    entries_b = {e.key: e.measured.to_dict() for e in b.entries}
    if entries_a == entries_b:
        return
    for key in sorted(set(entries_a) | set(entries_b)):
        left, right = entries_a.get(key), entries_b.get(key)
        if left != right:
            raise MergeError(
                f"{key} was measured differently by two shards: {_describe(left)} in {where_a.name}, "
                f"{_describe(right)} in {where_b.name}; a test must count the same everywhere (same torch, "
                "same device): run it in one shard, or find what differs between the machines"
            )


def _describe(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "not measured"
    shown = [f"{m} {entry[m]:,}" for m in ("flops", "macs", "params") if m in entry]
    if "device" in entry:
        shown.append(f"on {entry['device']}")
    return ", ".join(shown)


def _rejudge(verdict: TestVerdict, baseline: Baseline, *, update: bool, strict: bool) -> TestVerdict:
    """The verdict as a serial run with the merge's options gives it: each measurement against the
    committed baseline (the shard's budget checks and tolerance stay)."""
    entries = tuple(judge_entry(e.key, e.label, e.measured, baseline.entries.get(e.key), verdict.tolerance,
                                strict=strict, update=update) for e in verdict.entries)
    return dataclasses.replace(verdict, entries=entries, update=update)


def _stale(shards: Sequence[ShardReport], baseline: Baseline, measured: Mapping[str, Any], *, full: bool) -> tuple[str, ...]:
    """As a serial run decides it (plugin/collected.py): entries a test that ran no longer measures,
    and, when the shards together ran the whole suite, entries of tests that are gone."""
    collected = set().union(*(s.record.collected for s in shards))
    ran = set().union(*(s.record.ran for s in shards))
    absent = set().union(*(s.record.absent for s in shards))
    stale = []
    for key in sorted(baseline.entries):
        if key in measured:
            continue
        test = key if key in collected or key in ran else nodeid_of(key)
        if test in ran or (full and key in absent and test not in collected and key not in collected):
            stale.append(key)
    return tuple(stale)


def _some(names: Iterable[str]) -> str:
    names = list(names)
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


__all__ = ["MergeError", "Merged", "ShardReport", "merge", "read"]
