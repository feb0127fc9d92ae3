"""``flopbudget merge`` and the session end it shares with the plugin, on hand-made shard records.

The end-to-end runs (real pytest-split shards against a serial run) are in tests/plugin/test_shards.py;
here each rule of the merge and of ``finish`` is checked on records small enough to reason about.
"""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from pytest_flopbudget.cli import main
from pytest_flopbudget.reporting.baseline import Baseline, Entry, dump, load
from pytest_flopbudget.reporting.merge import MergeError, merge
from pytest_flopbudget.reporting.outcome import EXIT_INTERRUPTED, EXIT_OK, EXIT_TESTS_FAILED, Ending, finish
from pytest_flopbudget.reporting.run import RunRecord
from pytest_flopbudget.reporting.verdict import Measured, TestVerdict, judge

TORCH = "2.13.0"
WHOLE = {"-k": None, "-m": None, "--deselect": [], "args": [""]}


def verdict(nodeid: str, flops: int, *, device: str = "cpu", baseline: dict[str, Entry] | None = None) -> TestVerdict:
    # a Linear(k, 1) without bias on one row: k multiplies and k - 1 adds, k MACs, k parameters
    k = (flops + 1) // 2
    return judge(nodeid, None, [Measured(None, Entry(flops, k, k, device=device))], baseline or {},
                 tolerance=Fraction(0), strict=False, update=False)


def record(*verdicts: TestVerdict, shard: tuple[str, int, int] | None = None, selection: dict[str, Any] | None = None,
           collected: tuple[str, ...] = (), selected: tuple[str, ...] | None = None, torch: str = TORCH,
           absent: tuple[str, ...] = (), selects: str | None = None) -> RunRecord:
    identity = None
    if shard is not None:
        kind, index, count = shard
        first = 1 if kind == "pytest-split" else 0
        identity = {"kind": kind, "index": index, "count": count, "first": first, "name": f"{index}/{count}"}
    ran = tuple(v.nodeid for v in verdicts)
    return RunRecord(identity, selection or WHOLE, torch, "cpu", 0, None if identity is None else "a shard", None,
                     collected or ran, ran if selected is None else selected, ran, absent, verdicts, selects)


def write(tmp_path: Path, name: str, run: RunRecord) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"tolerance": "0", "run": run.to_dict()}))
    return path


def committed(tmp_path: Path, entries: dict[str, Entry]) -> Baseline:
    path = tmp_path / "flop_baseline.yaml"
    path.write_text(dump(entries, TORCH))
    return load(path)


# -- finish: the session end as a value ------------------------------------------------------------

def test_finish_refuses_to_prune_a_partial_run_and_keeps_its_status(tmp_path: Path) -> None:
    base = committed(tmp_path, {"t.py::gone": Entry(1, 1, 1)})
    outcome = finish(Ending(base, {}, ("t.py::gone",), "-k selects part of the suite", prune=True))
    # the write still runs (it removes nothing) and says the file is unchanged
    assert outcome.pruned == () and outcome.stale == ("t.py::gone",) and outcome.written is False
    assert outcome.notes == ("--flop-prune-baseline refused: this run was partial (-k selects part of the suite); "
                             "run the whole suite to prune", f"baseline unchanged: {base.path} (1 entries)")
    assert outcome.exit_status == EXIT_OK and not outcome.stale_failed
    assert load(base.path).entries == base.entries


def test_finish_prunes_a_full_run_and_writes_what_was_measured(tmp_path: Path) -> None:
    base = committed(tmp_path, {"t.py::gone": Entry(1, 1, 1), "t.py::kept": Entry(5, 3, 3)})
    measured = {"t.py::new": Entry(7, 4, 4, device="cpu")}
    outcome = finish(Ending(base, measured, ("t.py::gone",), None, update=True, prune=True, strict=True))
    assert outcome.pruned == ("t.py::gone",) and outcome.stale == () and outcome.written is True
    assert not outcome.stale_failed and outcome.exit_status == EXIT_OK  # pruned entries are not stale any more
    assert load(base.path).entries == {"t.py::kept": Entry(5, 3, 3), "t.py::new": Entry(7, 4, 4, device="cpu")}
    assert outcome.notes[0] == "pruned 1 stale entry: t.py::gone"


def test_finish_fails_stale_entries_under_strict_and_never_writes_after_an_interrupt(tmp_path: Path) -> None:
    base = committed(tmp_path, {"t.py::old": Entry(1, 1, 1)})
    before = base.path.read_bytes()
    strict = finish(Ending(base, {}, ("t.py::old",), None, strict=True))
    assert strict.stale_failed and strict.exit_status == EXIT_TESTS_FAILED
    stopped = finish(Ending(base, {"t.py::x": Entry(3, 2, 2)}, (), None, update=True, exit_status=EXIT_INTERRUPTED))
    assert stopped.written is None and stopped.exit_status == EXIT_INTERRUPTED
    assert stopped.notes == (f"baseline {base.path} not written: the run was interrupted or errored",)
    assert base.path.read_bytes() == before
    # --sw stops with INTERRUPTED on purpose: what ran is written
    on_purpose = finish(Ending(base, {"t.py::x": Entry(3, 2, 2)}, (), None, update=True,
                               exit_status=EXIT_INTERRUPTED, stopped_on_purpose=True))
    assert on_purpose.written is True and set(load(base.path).entries) == {"t.py::old", "t.py::x"}


def test_finish_turns_a_failed_write_into_a_failed_run(tmp_path: Path) -> None:
    base = committed(tmp_path, {})

    def cannot_write(*args: Any, **kwargs: Any) -> tuple[bool, int]:
        raise OSError(28, "No space left on device")

    outcome = finish(Ending(base, {"t.py::x": Entry(3, 2, 2)}, (), None, update=True), write=cannot_write)
    assert outcome.write_failed and outcome.exit_status == EXIT_TESTS_FAILED
    assert outcome.notes == (f"baseline {base.path} not written: [Errno 28] No space left on device",)


# -- merge -----------------------------------------------------------------------------------------

def test_numbered_shards_merge_into_one_baseline_with_the_shards_torch(tmp_path: Path) -> None:
    base = committed(tmp_path, {"a.py::t": Entry(9, 5, 5, device="cpu")})
    a, b = verdict("a.py::t", 11, baseline=dict(base.entries)), verdict("b.py::t", 5)
    reports = [write(tmp_path, "1.json", record(a, shard=("pytest-split", 1, 2))),
               write(tmp_path, "2.json", record(b, shard=("pytest-split", 2, 2)))]
    merged = merge(reports, base, update=False)
    # a.py::t grew from 9 to 11 FLOPs: regressed, and without --update the run fails and nothing is written
    assert [(r.key, r.verdict, r.failing) for r in merged.summary.rows] == [("a.py::t", "regressed", True),
                                                                            ("b.py::t", "new", False)]
    assert merged.outcome.exit_status == EXIT_TESTS_FAILED and merged.outcome.written is None
    updated = merge(reports, load(base.path), update=True)
    assert updated.outcome.exit_status == EXIT_OK and updated.outcome.written is True
    assert base.path.read_text() == dump({"a.py::t": Entry(11, 6, 6, device="cpu"),
                                          "b.py::t": Entry(5, 3, 3, device="cpu")}, TORCH)


def test_a_missing_or_repeated_numbered_shard_is_refused(tmp_path: Path) -> None:
    base = committed(tmp_path, {})
    one = write(tmp_path, "0.json", record(verdict("a.py::t", 5), shard=("pytest-shard", 0, 3)))
    three = write(tmp_path, "2.json", record(verdict("c.py::t", 5), shard=("pytest-shard", 2, 3)))
    with pytest.raises(MergeError, match=r"missing the report of shard --shard-id 1 of 3 \(pytest-shard\)"):
        merge([one, three], base)
    with pytest.raises(MergeError, match=r"shard 0 of 3 \(pytest-shard\) is given twice: .*0.json and .*0.json"):
        merge([one, one, three], base)
    split = write(tmp_path, "s.json", record(verdict("b.py::t", 5), shard=("pytest-split", 2, 3)))
    with pytest.raises(MergeError, match="different splits of the suite"):
        merge([one, split, three], base)


def test_numbered_shards_that_split_differently_are_refused_naming_the_tests_no_shard_ran(tmp_path: Path) -> None:
    """Every shard present is not enough: runners reading different .test_durations split the same
    suite differently, and a test can fall to no shard."""
    base = committed(tmp_path, {})
    everything = ("a.py::t", "b.py::t", "c.py::t", "d.py::t")
    one = record(verdict("a.py::t", 5), verdict("b.py::t", 5), shard=("pytest-split", 1, 2), collected=everything)
    two = record(verdict("d.py::t", 5), shard=("pytest-split", 2, 2), collected=everything)  # c.py::t fell between
    reports = [write(tmp_path, "1.json", one), write(tmp_path, "2.json", two)]
    with pytest.raises(MergeError, match=r"1 collected test\(s\) were run by no shard: c.py::t; the shards split the "
                                         r"suite differently.*\.test_durations"):
        merge(reports, base, strict=True)
    whole = record(verdict("c.py::t", 5), verdict("d.py::t", 5), shard=("pytest-split", 2, 2), collected=everything)
    assert merge([reports[0], write(tmp_path, "2.json", whole)], base).outcome.exit_status == EXIT_OK
    # a shard that also filters (-m) covers part of the suite on purpose: partial, not refused
    filtered = dataclasses.replace(two, selects="-m selects part of the suite")
    assert merge([reports[0], write(tmp_path, "2.json", filtered)], base).outcome.notes[0].startswith("partial:")


def test_shards_on_different_torch_releases_are_refused_naming_each(tmp_path: Path) -> None:
    base = committed(tmp_path, {})
    old = write(tmp_path, "1.json", record(verdict("a.py::t", 5), shard=("pytest-split", 1, 2), torch="2.6.0"))
    new = write(tmp_path, "2.json", record(verdict("b.py::t", 5), shard=("pytest-split", 2, 2)))
    with pytest.raises(MergeError, match=rf"1.json: torch 2.6.0; .*2.json: torch {TORCH}"):
        merge([old, new], base)


def test_one_test_measured_differently_by_two_shards_names_the_test_and_both_values(tmp_path: Path) -> None:
    base = committed(tmp_path, {})
    collected = ("a.py::t", "b.py::t")
    cpu = write(tmp_path, "cpu.json", record(verdict("a.py::t", 9), verdict("b.py::t", 5), collected=collected,
                                             selection={**WHOLE, "-k": "a or b"}))
    meta = write(tmp_path, "meta.json", record(verdict("a.py::t", 7, device="meta"), collected=collected,
                                               selection={**WHOLE, "-k": "a"}))
    with pytest.raises(MergeError) as error:
        merge([cpu, meta], base)
    assert "a.py::t was measured differently by two shards: flops 9, macs 5, params 5, on cpu in " in str(error.value)
    assert "flops 7, macs 4, params 4, on meta in " in str(error.value)


def test_k_split_without_one_shard_names_the_tests_no_shard_ran(tmp_path: Path) -> None:
    base = committed(tmp_path, {})
    everything = ("a.py::t", "b.py::t", "c.py::t")
    a = write(tmp_path, "a.json", record(verdict("a.py::t", 5), collected=everything, selection={**WHOLE, "-k": "a"}))
    b = write(tmp_path, "b.json", record(verdict("b.py::t", 5), collected=everything, selection={**WHOLE, "-k": "b"}))
    with pytest.raises(MergeError, match=r"1 test\(s\) collected by the shards were run by none of them: c.py::t"):
        merge([a, b], base)
    c = write(tmp_path, "c.json", record(verdict("c.py::t", 5), collected=everything,
                                         selection={**WHOLE, "-k": "not a and not b"}))
    assert [r.key for r in merge([a, b, c], base).summary.rows] == list(everything)


def test_the_one_report_left_of_a_k_split_merges_as_partial_and_says_so(tmp_path: Path) -> None:
    base = committed(tmp_path, {"b.py::t": Entry(5, 3, 3, device="cpu")})
    everything = ("a.py::t", "b.py::t")
    a = write(tmp_path, "a.json", record(verdict("a.py::t", 5), collected=everything, selection={**WHOLE, "-k": "a"}))
    # a serial `pytest -k a` looks the same: merged, but never silently
    merged = merge([a], base, strict=True)
    assert [r.key for r in merged.summary.rows] == ["a.py::t"] and merged.outcome.stale == ()
    assert merged.outcome.notes[0] == (
        "partial: 1 collected test(s) run by no shard (-k 'a'); their baseline entries are kept and not judged. "
        "If another shard ran them, its report is missing: give every shard's report")
    whole = write(tmp_path, "whole.json", record(verdict("a.py::t", 5), verdict("b.py::t", 5)))
    assert not any(note.startswith("partial") for note in merge([whole], base).outcome.notes)


def test_a_report_given_twice_is_refused_whether_the_same_file_or_a_copy(tmp_path: Path) -> None:
    base = committed(tmp_path, {})
    everything = ("a.py::t", "b.py::t")
    run = record(verdict("a.py::t", 5), collected=everything, selection={**WHOLE, "-k": "a"})
    a = write(tmp_path, "a.json", run)
    copy = write(tmp_path, "copy.json", run)
    # both copies apply the same -k, which alone would read as a filter every shard applies
    with pytest.raises(MergeError, match="a.json and .*a.json are the same file: one shard's report is given twice"):
        merge([a, tmp_path / "." / "a.json"], base)
    with pytest.raises(MergeError, match=r"a.json and .*copy.json are the same run \(the same tests, options and device\)"):
        merge([a, copy], base)
    # two shards that ran nothing (an empty -k match) are not the same run
    empty = [write(tmp_path, f"e{i}.json", record(collected=everything, selected=(), selection={**WHOLE, "-k": k}))
             for i, k in enumerate(("x", "y"))]
    b = write(tmp_path, "b.json", record(verdict("b.py::t", 5), collected=everything, selection={**WHOLE, "-k": "b"}))
    assert merge([a, b, *empty], base).outcome.exit_status == EXIT_OK


def test_path_split_without_one_shard_names_the_entries_outside_every_path(tmp_path: Path) -> None:
    base = committed(tmp_path, {f"tests/{p}/t.py::t": Entry(5, 3, 3, device="cpu") for p in "abc"})
    a, b, c = (write(tmp_path, f"{p}.json",
                     record(verdict(f"tests/{p}/t.py::t", 5), selection={**WHOLE, "args": [f"tests/{p}"]}))
               for p in "abc")
    outside = r"1 baseline entry outside every shard's paths \(tests/a, tests/c\): tests/b/t.py::t"
    with pytest.raises(MergeError, match=outside):
        merge([a, c], base)
    assert merge([a, b, c], base).outcome.exit_status == EXIT_OK
    # one run of one path (a serial `pytest tests/a`) keeps the entries outside it, unjudged
    alone = merge([a], base)
    assert [r.key for r in alone.summary.rows] == ["tests/a/t.py::t"] and alone.outcome.stale == ()


def test_strict_merge_fails_entries_gone_from_the_whole_suite_only_when_every_shard_ran(tmp_path: Path) -> None:
    base = committed(tmp_path, {"a.py::t": Entry(9, 5, 5, device="cpu"), "a.py::deleted": Entry(1, 1, 1)})
    a = record(verdict("a.py::t", 9, baseline=dict(base.entries)), shard=("pytest-split", 1, 2),
               absent=("a.py::deleted",))
    b = record(shard=("pytest-split", 2, 2), absent=("a.py::deleted",))
    reports = [write(tmp_path, "1.json", a), write(tmp_path, "2.json", b)]
    merged = merge(reports, base, strict=True)
    assert merged.outcome.stale == ("a.py::deleted",) and merged.outcome.stale_failed
    assert merged.outcome.exit_status == EXIT_TESTS_FAILED
    assert merge(reports, base).outcome.exit_status == EXIT_OK  # stale entries fail under --strict only
    # shards that also filter with -m cover that part of the suite only: a test missing from it is not gone
    filtered = [write(tmp_path, "1.json", dataclasses.replace(a, selects="-m selects part of the suite")),
                write(tmp_path, "2.json", b)]
    partial = merge(filtered, base, strict=True)
    assert partial.outcome.stale == () and partial.outcome.exit_status == EXIT_OK


def test_cli_merge_prints_the_table_appends_markdown_and_reports_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    committed(tmp_path, {})
    report = write(tmp_path, "whole.json", record(verdict("a.py::t", 5)))
    assert main(["merge", str(report), "--markdown", "summary.md", "--update"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "a.py::t" in out and "flopbudget: 1 new\n" in out
    assert "| `a.py::t` | 0.00000000500 | 0.00000000300 | 3 | - | - | new | new |" in (tmp_path / "summary.md").read_text()
    assert load(tmp_path / "flop_baseline.yaml").entries == {"a.py::t": Entry(5, 3, 3, device="cpu")}
    (tmp_path / "bad.json").write_text('{"tests": []}')
    assert main(["merge", "bad.json"]) == 2
    assert "bad.json: not a shard's report" in capsys.readouterr().err


def test_cli_merge_refuses_an_empty_baseline_file_unless_it_updates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flop_baseline.yaml").write_text("")
    report = write(tmp_path, "whole.json", record(verdict("a.py::t", 5)))
    assert main(["merge", str(report)]) == 2
    assert "the baseline file is empty (no header, no entries)" in capsys.readouterr().err
    assert main(["merge", str(report), "--update"]) == EXIT_OK
    assert load(tmp_path / "flop_baseline.yaml").entries == {"a.py::t": Entry(5, 3, 3, device="cpu")}


def test_cli_merge_writes_the_html_page_and_says_how_a_sharded_run_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    committed(tmp_path, {"a.py::t": Entry(5, 3, 3, device="cpu")})
    one = write(tmp_path, "1.json", record(verdict("a.py::t", 9), shard=("pytest-split", 1, 2)))
    two = write(tmp_path, "2.json", record(verdict("b.py::t", 5), shard=("pytest-split", 2, 2)))
    assert main(["merge", "1.json", "2.json", "--html", "out/merged.html"]) == EXIT_TESTS_FAILED
    out = capsys.readouterr().out
    # the merge's own update command, which writes what a serial update run writes
    assert "accept these changes: flopbudget merge 1.json 2.json --update (then commit flop_baseline.yaml)" in out
    page = (tmp_path / "out" / "merged.html").read_text(encoding="utf-8")
    assert "a.py::t" in page and "b.py::t" in page and "flopbudget: 1 regressed, 1 new" in page
    assert main(["merge", "1.json", "2.json", "--html", "merged.txt"]) == 2
    assert "give a path ending in .html" in capsys.readouterr().err


def test_merging_imports_no_torch(tmp_path: Path) -> None:
    """The final job of a sharded CI run needs the plugin and PyYAML, not torch."""
    import subprocess
    import sys

    committed(tmp_path, {})
    report = write(tmp_path, "whole.json", record(verdict("a.py::t", 5)))
    code = ("import sys\nfrom pytest_flopbudget.cli import main\n"
            f"status = main(['merge', {str(report)!r}, '--update', '-q'])\n"
            "print('torch' in sys.modules, status)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "False 0", done.stdout + done.stderr
    assert load(tmp_path / "flop_baseline.yaml").entries == {"a.py::t": Entry(5, 3, 3, device="cpu")}


def test_the_readme_matrix_recipe_uses_real_options() -> None:
    """The README's sharded CI recipe: each shard a pytest-split group writing JSON, one merge job
    whose command line `flopbudget merge` accepts (tests/plugin/test_shards.py runs the recipe)."""
    import re
    import shlex

    import yaml

    from pytest_flopbudget.cli import build_merge_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    recipe = next(yaml.safe_load(block) for block in re.findall(r"^```yaml\n(.*?)^```", readme, re.M | re.S)
                  if "flops-merge" in block)
    shard = [step["run"] for step in recipe["jobs"]["flops"]["steps"] if "run" in step]
    assert shard == ["python -m pytest --splits 3 --group ${{ matrix.group }} "
                     "--flop-report=shard-${{ matrix.group }}.json"]
    assert recipe["jobs"]["flops"]["strategy"]["matrix"]["group"] == [1, 2, 3]
    merge_step = next(step["run"] for step in recipe["jobs"]["flops-merge"]["steps"]
                      if "run" in step and "flopbudget merge" in step["run"])
    words = shlex.split(merge_step.replace("$GITHUB_STEP_SUMMARY", "summary.md"))
    assert words[:2] == ["flopbudget", "merge"]
    args = build_merge_parser().parse_args(words[2:])
    assert args.reports == ["shard-*.json"] and args.strict and args.markdown == "summary.md"
    assert recipe["jobs"]["flops-merge"]["needs"] == "flops"
