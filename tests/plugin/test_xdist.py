"""pytest-xdist: workers judge their own tests, verdicts travel on the reports, only the controller writes."""

from __future__ import annotations

import json

import pytest
from plugin_project import Project, linear_flops, linear_params

MANY = """
@pytest.mark.parametrize("i", range({count}))
def test_many(flop_budget, i):
    flop_budget.measure(torch.nn.Linear(8, 1 + i % 7), torch.zeros(1 + i % 3, 8), label="a")
    flop_budget.measure(torch.nn.Linear(4, 1 + i % 5), torch.zeros(1, 4), label="b")
"""


def run_bytes(project: Project, *args: str, ret: int = pytest.ExitCode.OK) -> bytes:
    if project.baseline.exists():
        project.baseline.unlink()
    result = project.pytester.runpytest("-p", "no:cacheprovider", "--flop-update-baseline", *args)
    assert result.ret == ret, result.stdout.str()[-2000:]
    return project.baseline.read_bytes()


def test_verdicts_travel_to_the_controller(project: Project) -> None:
    fits = project.linear_test("test_fits", 8, 4, 3, f"max_gflops={linear_flops(3, 8, 4)}e-9")
    over = project.linear_test("test_over", 8, 4, 3, f"max_params={linear_params(8, 4) - 1}")
    project.write("test_a.py", fits, over, project.linear_test("test_grows", 8, 4, 3), MANY.format(count=6))
    project.run("--flop-update-baseline").assert_outcomes(passed=8, failed=1)
    # one xdist run: workers judge against the baseline (a regression, accepted by the update; an
    # over-budget failure); the controller reports both and writes the merged baseline
    project.write("test_a.py", fits, over, project.linear_test("test_grows", 8, 6, 3), MANY.format(count=6))
    result = project.run("-n", "2", "-v", "--flop-update-baseline", "--flop-report=r.json")
    result.assert_outcomes(passed=8, failed=1)
    result.stdout.fnmatch_lines([
        "*OVER BUDGET*test_a.py::test_over*",
        f"over budget: max_params: {linear_params(8, 4)} params > limit {linear_params(8, 4) - 1} *",
        "test_a.py::test_grows * +50.0% flops  regressed",
        "test_a.py::test_over * OVER BUDGET",
        "flopbudget: 13 ok, 1 over budget, 1 regressed",
    ])
    rows = {r["key"]: r for r in json.loads((project.pytester.path / "r.json").read_text())["tests"]}
    assert rows["test_a.py::test_grows"]["baseline"]["flops"] == linear_flops(3, 8, 4)
    assert rows["test_a.py::test_grows"]["flops"] == linear_flops(3, 8, 6)
    parallel = project.baseline.read_bytes()
    assert run_bytes(project, ret=pytest.ExitCode.TESTS_FAILED) == parallel  # same bytes from scratch, -n 0


@pytest.mark.slow
def test_300_tests_same_bytes_with_4_workers(project: Project) -> None:
    project.write("test_many.py", MANY.format(count=300))
    sequential = run_bytes(project, "-q")
    assert sequential.count(b"test_many.py::test_many[") == 600
    for dist in ("load", "worksteal", "load"):  # three runs, scheduled differently each time
        assert run_bytes(project, "-q", "-n", "4", "--dist", dist) == sequential, dist


def test_nothing_is_written_if_a_worker_crashed(project: Project) -> None:
    project.write(
        "test_a.py",
        project.linear_test("test_a", 8, 4),
        "def test_crash(flop_budget):\n"
        "    flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(1, 8))\n"
        "    import os; os._exit(3)\n",
    )
    result = project.pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "1", "--flop-update-baseline",
                                                   "--max-worker-restart=0")
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*baseline * not written: a worker crashed*"])
    assert not project.baseline.exists()
