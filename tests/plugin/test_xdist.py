"""pytest-xdist: workers judge their own tests, verdicts travel on the reports, only the controller writes."""

from __future__ import annotations

import pytest
from conftest import Project, linear_flops, linear_params

MANY = """
@pytest.mark.parametrize("i", range({count}))
def test_many(flop_budget, i):
    flop_budget.measure(torch.nn.Linear(8, 1 + i % 7), torch.zeros(1 + i % 3, 8), label="a")
    flop_budget.measure(torch.nn.Linear(4, 1 + i % 5), torch.zeros(1, 4), label="b")
"""


def run_bytes(project: Project, *args: str, ret: int = pytest.ExitCode.OK) -> bytes:
    if project.baseline.exists():
        project.baseline.unlink()
    result = project.pytester.runpytest_subprocess("-p", "no:cacheprovider", "--flop-update-baseline", *args)
    assert result.ret == ret, result.stdout.str()[-2000:]
    return project.baseline.read_bytes()


def test_verdicts_travel_to_the_controller(project: Project) -> None:
    project.write(
        "test_a.py",
        project.linear_test("test_fits", 8, 4, 3, f"max_gflops={linear_flops(3, 8, 4)}e-9"),
        project.linear_test("test_over", 8, 4, 3, f"max_params={linear_params(8, 4) - 1}"),
        project.linear_test("test_grows", 8, 4, 3),
        MANY.format(count=6),
    )
    sequential = run_bytes(project, ret=pytest.ExitCode.TESTS_FAILED)  # test_over fails, is still recorded
    assert b"test_a.py::test_over:" in sequential
    assert run_bytes(project, "-n", "2", ret=pytest.ExitCode.TESTS_FAILED) == sequential  # written by the controller from the reports
    project.write("test_a.py", project.linear_test("test_grows", 8, 6, 3))
    result = project.pytester.runpytest("-p", "no:cacheprovider", "-n", "2", "-v", "--flop-report=r.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*FLOPS REGRESSED*test_a.py::test_grows*",
        f"test_a.py::test_grows: flops regressed: {linear_flops(3, 8, 6)} vs baseline {linear_flops(3, 8, 4)}*",
        "test_a.py::test_grows * REGRESSED",
        "*1 regressed, 0 improved, 0 new, 14 stale",
    ])


@pytest.mark.slow
def test_300_tests_same_bytes_with_4_workers(project: Project) -> None:
    project.write("test_many.py", MANY.format(count=300))
    sequential = run_bytes(project, "-q")
    assert sequential.count(b"test_many.py::test_many[") == 600
    assert run_bytes(project, "-q", "-n", "4") == sequential


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
