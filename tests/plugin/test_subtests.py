"""A failed test never writes its baseline entry, however its failure is reported (issue 19.7):
pytest 9's subtests fail the test's report after the plugin read it."""

from __future__ import annotations

import pytest
from plugin_project import Project, linear_flops

pytest_version = tuple(int(part) for part in pytest.__version__.split(".")[:2])


@pytest.mark.skipif(pytest_version < (9, 0), reason="the subtests fixture is built into pytest 9")
def test_a_test_whose_subtest_failed_writes_no_entry(project: Project) -> None:
    project.write("test_sub.py", (
        "def test_sub(flop_budget, subtests):\n"
        "    flop_budget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2))\n"
        "    with subtests.test(msg='broken'):\n"
        "        assert False\n\n"
    ), project.linear_test("test_fine", 2, 2))
    result = project.run("--flop-update-baseline")
    result.assert_outcomes(failed=2, passed=1)  # the subtest and its test; test_fine
    result.stdout.fnmatch_lines(["*test_sub.py::test_sub*test failed", "*1 new*1 test failed*"])
    assert list(project.load()["entries"]) == ["test_sub.py::test_fine"]
    assert project.load()["entries"]["test_sub.py::test_fine"]["flops"] == linear_flops(1, 2, 2)
