"""Terminal summary verbosity, JSON and Markdown reports, JUnit properties, and torch staying unimported."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from plugin_project import Project, linear_flops, linear_params


def three_tests(project: Project) -> None:
    project.write(
        "test_r.py",
        project.linear_test("test_ok", 8, 4, 2, f"max_params={2 * linear_params(8, 4)}"),
        project.linear_test("test_over", 8, 4, 2, f"max_params={linear_params(8, 4) - 1}"),
        project.linear_test("test_pair", 4, 2, 1, label="enc"),
    )


def test_summary_table_and_verbosity(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")  # wide enough for every column of tiny positional numbers
    three_tests(project)
    result = project.run()
    result.stdout.fnmatch_lines([
        "*= flop budget =*",
        "test * GFLOPs * GMACs * params * budget * change * verdict",
        # positional, never scientific (issue 19.8): 128 flops are 0.000000128 GFLOPs
        f"test_r.py::test_ok * {linear_flops(2, 8, 4) / 1e9:.9f} * {linear_params(8, 4)} * 50.0% * new * new",
        "test_r.py::test_over * 102.9% * new * OVER BUDGET",
        "test_r.py::test_pair#enc * - * new * new",
        "flopbudget: 1 over budget, 2 new",
    ])
    quiet = project.run("-q")
    assert "GFLOPs" not in quiet.stdout.str()
    quiet.stdout.fnmatch_lines(["flopbudget: 1 over budget, 2 new"])


def test_default_hides_ok_rows_of_long_tables_and_v_shows_them(project: Project) -> None:
    project.write("test_many.py", "@pytest.mark.parametrize('i', range(22))\ndef test_m(flop_budget, i):\n"
                                  "    flop_budget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2))\n")
    project.run("--flop-update-baseline", "-q")
    result = project.run()
    result.stdout.fnmatch_lines(["(22 ok rows hidden; -v shows every row)", "flopbudget: 22 ok"])
    assert "test_many.py::test_m[0]  " not in result.stdout.str()
    verbose = project.run("-v")
    assert sum(line.startswith("test_many.py::test_m[") and line.endswith(" ok") for line in verbose.outlines) == 22


def test_json_and_markdown_reports(project: Project) -> None:
    three_tests(project)
    project.run("--flop-report=report.json")
    data = json.loads((project.pytester.path / "report.json").read_text())
    rows = {row["key"]: row for row in data["tests"]}
    assert list(rows) == sorted(rows)
    assert rows["test_r.py::test_ok"]["flops"] == linear_flops(2, 8, 4)
    assert rows["test_r.py::test_ok"]["params"] == linear_params(8, 4)
    assert rows["test_r.py::test_ok"]["budget_used"] == 0.5
    assert rows["test_r.py::test_over"]["verdict"] == "over budget" and rows["test_r.py::test_over"]["failing"]
    assert rows["test_r.py::test_pair#enc"]["label"] == "enc"
    assert data["counts"] == {"ok": 0, "over budget": 1, "regressed": 0, "improved": 0, "new": 2, "stale": 0}

    summary = project.pytester.path / "summary.md"
    summary.write_text("# earlier step\n")
    project.run(f"--flop-report={summary}")
    project.run(f"--flop-report={summary}")
    text = summary.read_text()
    assert text.startswith("# earlier step\n")  # appended, as $GITHUB_STEP_SUMMARY expects
    assert text.count("## pytest-flopbudget") == 2
    assert f"| `test_r.py::test_ok` | {linear_flops(2, 8, 4) / 1e9:.9f} |" in text
    assert "| **over budget** |" in text
    assert "flopbudget: 1 over budget, 2 new" in text


def test_github_step_summary_gets_markdown(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    three_tests(project)
    summary = project.pytester.path / "step_summary_1234"
    summary.write_text("previous\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    project.run(f"--flop-report={summary}")
    text = summary.read_text()
    assert text.startswith("previous\n## pytest-flopbudget")
    assert "| `test_r.py::test_over` |" in text


def test_junit_properties_are_opt_in(project: Project) -> None:
    project.write("test_j.py", project.linear_test("test_j", 8, 4, 3))
    project.run("--junit-xml=plain.xml")
    assert ET.parse(project.pytester.path / "plain.xml").find(".//property") is None
    project.pytester.makeini("[pytest]\nflop_junit_properties = true\n")
    project.run("--junit-xml=out.xml")
    props = {p.get("name"): p.get("value") for p in ET.parse(project.pytester.path / "out.xml").iter("property")}
    # float32 bytes at the peak: weights and the 3x8 input at entry, the 3x4 output on top
    assert props == {"flops": str(linear_flops(3, 8, 4)), "macs": "108", "params": str(linear_params(8, 4)),
                     "peak_memory": str(4 * (linear_params(8, 4) + 3 * 8 + 3 * 4)), "activation_memory": str(4 * 3 * 4)}


def test_torch_is_not_imported_without_measuring(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_plain="import sys\n\n"
                   "def test_plain():\n    assert 1 + 1 == 2\n\n"
                   "def test_no_torch_yet():\n    assert 'torch' not in sys.modules\n",
        conftest="import sys\n\n"
                 "def pytest_collection_finish(session):\n"
                 "    open('after_collect.txt', 'w').write(str('torch' in sys.modules))\n\n"
                 "def pytest_unconfigure(config):\n"
                 "    open('at_end.txt', 'w').write(str('torch' in sys.modules))\n",
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "flopbudget", "-v")
    result.assert_outcomes(passed=2)
    assert "flopbudget: baseline" in result.stdout.str()  # the plugin was loaded (-v shows its header)
    assert (pytester.path / "after_collect.txt").read_text() == "False"
    assert (pytester.path / "at_end.txt").read_text() == "False"


def test_a_narrow_terminal_drops_gmacs_and_params_before_the_change_column() -> None:
    """The change against the baseline is what a reviewer reads the table for: at the 80 columns of
    a CI log it stays, after GMACs and params have gone."""
    from pytest_flopbudget.reporting.report import table_lines
    from pytest_flopbudget.reporting.summary import Row

    row = Row(key="tests/test_growth.py::test_grows_layer", nodeid="tests/test_growth.py::test_grows_layer",
              label=None, flops=11_756_544, macs=5_900_000, params=164_096, budget_used=0.5,
              change="+15.4% flops", verdict="regressed", failing=True, baseline=None)
    full = table_lines([row])
    assert len(full[0]) > 80 and "GMACs" in full[0] and "params" in full[0]
    narrow = table_lines([row], 80)
    assert all(len(line) <= 80 for line in narrow), narrow
    assert "change" in narrow[0] and "+15.4% flops" in narrow[2] and "GMACs" not in narrow[0]
    assert narrow[1] == "-" * max(len(line) for line in narrow)  # the rule spans the widest row
