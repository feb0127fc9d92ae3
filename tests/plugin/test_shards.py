"""A suite split across machines: each shard knows it is one, and `flopbudget merge` joins their
JSON reports into what one serial run gives (the baseline byte for byte, the Markdown summary).

Each shard is a real pytest run on the same project (pytest-split's --splits/--group, pytest-shard's
--num-shards/--shard-id, or -k); the serial run it is compared with is another real run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plugin_project import Project, linear_flops, linear_params

from pytest_flopbudget.cli import main

# three files; what each test measures is chosen so that the serial run shows every verdict
FIRST = {
    "test_a.py": ("@pytest.mark.flop_budget(max_gflops=1)\ndef test_a1(flop_budget):\n"
                  "    flop_budget.measure(torch.nn.Linear(4, 3), torch.zeros(1, 4))\n\n"
                  "def test_a2(flop_budget):\n"
                  "    flop_budget.measure(torch.nn.Linear(5, 2), torch.zeros(2, 5), label='x')\n"
                  "    flop_budget.measure(torch.nn.Linear(3, 3), torch.zeros(1, 3), label='y')\n\n"
                  "def test_a3():\n    pass\n"),
    "test_b.py": ("def test_b1(flop_budget):\n"
                  "    flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(1, 8))\n\n"
                  "def test_b2(flop_budget):\n"
                  "    flop_budget.measure(torch.nn.Linear(6, 6), torch.zeros(3, 6))\n\n"
                  "def test_b3():\n    pass\n"),
    "test_c.py": ("def test_c1(flop_budget):\n"
                  "    flop_budget.measure(torch.nn.Linear(2, 9), torch.zeros(1, 2))\n\n"
                  "def test_c_deleted(flop_budget):\n"
                  "    flop_budget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2))\n\n"
                  "def test_c3():\n    pass\n"),
}


def changed_suite(project: Project) -> bytes:
    """The committed baseline of the first suite, then the suite changed: test_b1 grows (Linear(8, 5)),
    test_b2 shrinks (2 rows), test_c_deleted is gone, test_c4 is new. Returns the baseline's bytes."""
    for name, body in FIRST.items():
        project.write(name, body)
    project.run("--flop-update-baseline").assert_outcomes(passed=9)
    changed = dict(FIRST)
    changed["test_b.py"] = (FIRST["test_b.py"].replace("Linear(8, 4)", "Linear(8, 5)")
                            .replace("torch.zeros(3, 6)", "torch.zeros(2, 6)"))
    changed["test_c.py"] = (FIRST["test_c.py"].split("def test_c_deleted")[0] + "def test_c3():\n    pass\n\n"
                            "def test_c4(flop_budget):\n"
                            "    flop_budget.measure(torch.nn.Linear(3, 1), torch.zeros(1, 3))\n")
    for name, body in changed.items():
        project.write(name, body)
    return project.baseline.read_bytes()


def serial_update(project: Project, committed: bytes) -> tuple[bytes, str]:
    """What one serial `--flop-update-baseline` run writes and reports; the committed file is put back."""
    project.run("--flop-update-baseline", "--flop-report=serial.md").assert_outcomes(passed=9)
    written = project.baseline.read_bytes()
    project.baseline.write_bytes(committed)
    return written, (project.pytester.path / "serial.md").read_text()


def run_shards(project: Project, shards: list[list[str]]) -> list[Path]:
    reports = []
    for number, options in enumerate(shards, 1):
        report = project.pytester.path / f"shard-{number}.json"
        result = project.run(*options, f"--flop-report={report.name}")
        assert result.ret in (0, 1), result.stdout.str()  # 1: the regressed test fails its shard
        reports.append(report)
    return reports


def merged(project: Project, reports: list[Path], *options: str) -> tuple[int, str]:
    markdown = project.pytester.path / "merged.md"
    status = main(["merge", *map(str, reports), "--update", "--markdown", str(markdown), *options])
    return status, markdown.read_text() if markdown.exists() else ""


def check_like_serial(project: Project, reports: list[Path], committed: bytes) -> None:
    serial_bytes, serial_md = serial_update(project, committed)
    status, merged_md = merged(project, reports)
    assert status == 0  # an update run: the regression is accepted, as in the serial run
    assert project.baseline.read_bytes() == serial_bytes
    assert merged_md == serial_md
    entries = project.load()["entries"]
    # the counts come from the shards: each by the seed's FC formula
    assert entries["test_b.py::test_b1"]["flops"] == linear_flops(1, 8, 5)
    assert entries["test_b.py::test_b2"]["flops"] == linear_flops(2, 6, 6)
    assert entries["test_c.py::test_c4"]["params"] == linear_params(3, 1)
    assert entries["test_a.py::test_a2#y"]["flops"] == linear_flops(1, 3, 3)
    assert "test_c.py::test_c_deleted" in entries  # an update keeps it; it is listed stale
    lines = serial_md.splitlines()
    assert any(line.startswith("| `test_b.py::test_b1` |") and line.endswith(" | regressed |") for line in lines)
    assert any(line.startswith("| `test_b.py::test_b2` |") and line.endswith(" | improved |") for line in lines)
    assert any(line.startswith("| `test_c.py::test_c4` |") and line.endswith(" | new |") for line in lines)
    assert "- `test_c.py::test_c_deleted`" in lines
    assert "flopbudget: 4 ok, 1 regressed, 1 improved, 1 new, 1 stale" in lines


def refused(project: Project, reports: list[Path], committed: bytes, capsys: pytest.CaptureFixture[str]) -> str:
    """Merge with one shard's report lost: an error, and the committed baseline untouched (no entry of
    the lost shard's tests dropped, none of the others' written either)."""
    status, markdown = merged(project, reports, "--strict")
    assert status == 2 and markdown == ""
    assert project.baseline.read_bytes() == committed
    return capsys.readouterr().err


def test_three_pytest_split_shards_merge_into_the_serial_baseline_and_summary(
        project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pytest_split")
    committed = changed_suite(project)
    reports = run_shards(project, [["--splits", "3", "--group", str(g)] for g in (1, 2, 3)])
    runs = [json.loads(r.read_text())["run"] for r in reports]
    assert [r["shard"]["name"] for r in runs] == [f"--splits 3 --group {g}" for g in (1, 2, 3)]
    assert all(len(r["collected"]) == 9 for r in runs)  # each collected the whole suite...
    assert sorted(t for r in runs for t in r["selected"]) == sorted(runs[0]["collected"])  # ...and ran its part
    assert all(sorted(r["deselected"] + r["selected"]) == sorted(r["collected"]) for r in runs)
    assert project.baseline.read_bytes() == committed  # no shard wrote the baseline
    assert runs[1]["selected"]  # the shard about to be lost ran tests of its own
    err = refused(project, [reports[0], reports[2]], committed, capsys)
    assert ("missing the report of shard --group 2 of 3 (pytest-split); merged without it, its tests would be "
            "neither judged nor updated") in err
    check_like_serial(project, reports, committed)


def test_k_split_shards_merge_into_the_serial_baseline_and_summary(
        project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    committed = changed_suite(project)
    reports = run_shards(project, [["-k", "test_a"], ["-k", "test_b"], ["-k", "not test_a and not test_b"]])
    assert [json.loads(r.read_text())["run"]["selection"]["-k"] for r in reports] == [
        "test_a", "test_b", "not test_a and not test_b"]
    # the tests only the lost shard ran are named
    err = refused(project, reports[:2], committed, capsys)
    assert "3 test(s) collected by the shards were run by none of them: test_c.py::test_c1, test_c.py::test_c3, " \
           "test_c.py::test_c4; a shard's report is missing" in err
    check_like_serial(project, reports, committed)


def test_a_shard_never_prunes_and_judges_staleness_only_on_what_it_ran(project: Project) -> None:
    pytest.importorskip("pytest_split")
    project.write("test_one.py", project.linear_test("test_kept", 3, 2), project.linear_test("test_gone", 2, 2),
                  "def test_plain():\n    pass\n")
    project.run("--flop-update-baseline").assert_outcomes(passed=3)
    project.write("test_one.py", project.linear_test("test_kept", 3, 2), "def test_plain():\n    pass\n")
    # the whole suite under --flop-strict fails the entry of the deleted test...
    serial = project.run("--flop-strict")
    assert serial.ret == 1
    serial.stdout.fnmatch_lines(["flopbudget: 1 ok, 1 stale"])
    # ...one shard does not: the deleted test is no more its part than any other shard's
    for group in ("1", "2"):
        shard = project.run("--splits", "2", "--group", group, "--flop-strict", "--flop-report=shard.json")
        assert shard.ret == 0, shard.stdout.str()
        assert json.loads((project.pytester.path / "shard.json").read_text())["stale"] == []
    refused = project.run("--splits", "2", "--group", "1", "--flop-prune-baseline")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*--flop-prune-baseline refused: --splits 2 --group 1 runs one shard of the suite "
                                  "(pytest-split)*"])
    assert "test_one.py::test_gone" in project.load()["entries"]


def test_pytest_shard_is_recognised_and_an_empty_shard_still_reports(project: Project) -> None:
    pytest.importorskip("pytest_shard")
    project.write("test_one.py", "def test_plain():\n    pass\n")
    result = project.run("--num-shards", "2", "--shard-id", "1", "--flop-report=shard.json")
    assert result.ret in (0, pytest.ExitCode.NO_TESTS_COLLECTED)
    run = json.loads((project.pytester.path / "shard.json").read_text())["run"]
    assert run["shard"] == {"kind": "pytest-shard", "index": 1, "count": 2, "first": 0,
                            "name": "--num-shards 2 --shard-id 1"}
    assert run["collected"] == ["test_one.py::test_plain"] and run["measured"] == [] and run["verdicts"] == []
