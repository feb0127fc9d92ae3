"""--flop-report=PATH.html end to end: the plugin writes the page next to the other formats, with
each test's module tree and its baseline entry's, and writes it even when nothing was measured."""

from __future__ import annotations

import json

import pytest
import torch
from html_views import baseline_rows, page_json

import pytest_flopbudget

# torch, and what it imports on first use, is imported before any pytester run: in-process runs
# restore sys.modules afterwards, and torch does not survive being imported twice (as in tests/plugin)
pytest_flopbudget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2), device="cpu", backward=True)


def linear_flops(rows: int, cin: int, cout: int) -> int:
    """The seed's FC formula with a bias: 2*Cin - 1 per output, +1 for the bias."""
    return rows * cout * 2 * cin


def linear_params(cin: int, cout: int) -> int:
    return cin * cout + cout


class Project:
    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        pytester.makeini("[pytest]\n")

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest("-p", "no:cacheprovider", *args)

MLP = """
import pathlib

import pytest
import torch

WIDTH = int(pathlib.Path("width.txt").read_text())


def test_mlp(flop_budget):
    model = torch.nn.Sequential(torch.nn.Linear(8, WIDTH), torch.nn.ReLU(), torch.nn.Linear(WIDTH, 4))
    flop_budget.measure(model, torch.zeros(2, 8))


@pytest.mark.flop_budget(max_params=1000)
def test_head(flop_budget):
    flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(2, 8))
"""


def mlp_rows(width: int, memory: bool = True) -> dict[str, list]:
    """The MLP's modules worked by hand: [name, class, flops, macs, params, memory, backward flops]
    (memory None where it was not recorded; a forward-only measurement has no backward part)."""
    first, second = linear_flops(2, 8, width), linear_flops(2, width, 4)
    first_macs, second_macs = 2 * width * 9, 2 * 4 * (width + 1)  # ptflops: a MAC per weight use and per bias
    relu = 2 * width  # one per element
    params = linear_params(8, width) + linear_params(width, 4)
    # float32 bytes at the peak: the first Linear's (2, width) output and the ReLU's, both live while
    # the ReLU runs (more than the ReLU's and the last (2, 4) output); the root holds the whole peak:
    # the weights and the (2, 8) input as well
    held = 2 * width * 4 if memory else None
    peak = 4 * (params + 2 * 8) + 2 * held if memory else None
    return {"0": ["0", "Linear", first, first_macs, linear_params(8, width), held, 0],
            "1": ["1", "ReLU", relu, relu, 0, held, 0],
            "2": ["2", "Linear", second, second_macs, linear_params(width, 4), 0 if memory else None, 0],
            "": ["", "", first + relu + second, first_macs + relu + second_macs, params, peak, 0]}


@pytest.fixture
def project(pytester: pytest.Pytester) -> Project:
    return Project(pytester)


def test_the_page_holds_each_tests_tree_and_its_baseline_beside_the_json(project: Project) -> None:
    project.pytester.makepyfile(test_m=MLP)
    (project.pytester.path / "width.txt").write_text("16")
    project.run("--flop-update-baseline").assert_outcomes(passed=2)
    (project.pytester.path / "width.txt").write_text("32")  # the MLP grows
    result = project.run("--flop-report=out/report.html", "--flop-report=out/report.json")
    result.assert_outcomes(passed=1, failed=1)

    page = (project.pytester.path / "out/report.html").read_text(encoding="utf-8")
    data = page_json(page)
    rows = {row["key"]: row for row in json.loads((project.pytester.path / "out/report.json").read_text())["tests"]}
    tests = {t["key"]: t for t in data["tests"]}
    assert list(tests) == list(rows) == ["test_m.py::test_head", "test_m.py::test_mlp"]
    assert data["count_line"] == "flopbudget: 1 ok, 1 regressed"
    mlp, head = tests["test_m.py::test_mlp"], tests["test_m.py::test_head"]
    # the regressed test opens first and fails; the table's cells are the terminal's
    assert (mlp["open"], mlp["failing"], mlp["verdicts"]) == (True, True, ["regressed"])
    assert (head["open"], head["failing"], head["verdicts"]) == (False, False, ["ok"])
    assert mlp["cells"][0] == "test_m.py::test_mlp" and mlp["cells"][-1] == "REGRESSED"
    assert mlp["cells"][6] == rows["test_m.py::test_mlp"]["change"]
    assert head["cells"][5] == f"{linear_params(8, 4) / 1000 * 100:.1f}%"  # the budget used
    assert any(reason.startswith("flops regressed: ") for reason in mlp["reasons"])
    # the trees: measured now (width 32) and as the baseline recorded them (width 16)
    tree = mlp["tree"]
    assert {row[0]: row for row in tree["modules"]} == mlp_rows(32)
    assert baseline_rows(tree) == mlp_rows(16)
    assert tree["baseline_depth"] == 1
    assert baseline_rows(head["tree"]) == {row[0]: row for row in head["tree"]["modules"]}


def test_a_page_is_written_when_nothing_was_measured_and_ini_paths_apply(project: Project) -> None:
    project.pytester.makeini("[pytest]\nflop_report =\n    reports/r.html\n    reports/r.json\n")
    project.pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    project.run().assert_outcomes(passed=1)
    data = page_json((project.pytester.path / "reports/r.html").read_text(encoding="utf-8"))
    assert data["tests"] == [] and data["count_line"] == "flopbudget: nothing measured"
    assert json.loads((project.pytester.path / "reports/r.json").read_text())["tests"] == []
    # the command line wins over the ini file, path by path list
    project.run("--flop-report=cli.html").assert_outcomes(passed=1)
    assert (project.pytester.path / "cli.html").exists()


def test_the_trees_survive_the_trip_from_an_xdist_worker() -> None:
    """Under xdist a verdict reaches the controller as a dict: the page's trees come out the same."""
    from fractions import Fraction
    from pathlib import Path

    from pytest_flopbudget.counting.measurement import ModuleCost
    from pytest_flopbudget.reporting.baseline import Entry
    from pytest_flopbudget.reporting.summary import SessionSummary, count_line
    from pytest_flopbudget.reporting.verdict import Measured, TestVerdict, judge
    from pytest_flopbudget.reporting.html_model import view_of_session

    def entry(width: int) -> Entry:
        rows = mlp_rows(width, memory=False)
        return Entry(rows[""][2], rows[""][3], rows[""][4],
                     {name: ModuleCost(row[1], row[2], row[3], row[4]) for name, row in rows.items() if name})

    # twelve identical layers: the baseline writes them as one range, the trip must expand it again
    layers = {f"layers.{i}": ModuleCost("Linear", 10, 5, 2) for i in range(12)}
    old = Entry(120, 60, 24, layers)
    grown = Entry(130, 65, 24, {**layers, "layers.11": ModuleCost("Linear", 20, 10, 2)})
    verdicts = [judge("t.py::test_mlp", None, [Measured(None, entry(32))], {"t.py::test_mlp": entry(16)},
                      tolerance=Fraction(0), strict=False, update=False),
                judge("t.py::test_layers", None, [Measured(None, grown)], {"t.py::test_layers": old},
                      tolerance=Fraction(0), strict=False, update=False)]
    travelled = [TestVerdict.from_dict(json.loads(json.dumps(v.to_dict()))) for v in verdicts]

    def trees(given: list) -> dict:
        summary = SessionSummary.build(given, stale=(), stale_failed=False, notes=(), baseline_path=Path("b.yaml"),
                                       device="cpu", tolerance="0", update=False, prune=False, torch_note=None)
        view = view_of_session(summary, given, count_line(summary.counts))
        return {t.key: t.tree for t in view.tests}

    before, after = trees(verdicts), trees(travelled)
    assert before == after
    mlp = after["t.py::test_mlp"]
    assert {m.name: m.to_list() for m in mlp.modules} == mlp_rows(32, memory=False)
    assert {m.name: m.to_list() for m in mlp.baseline} == mlp_rows(16, memory=False)
    layered = after["t.py::test_layers"]
    assert [m.name for m in layered.modules] == [""] + [f"layers.{i}" for i in range(12)]
    assert layered.modules[-1].flops == 20 and [m.flops for m in layered.baseline] == [120] + [10] * 12
