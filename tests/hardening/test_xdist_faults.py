"""pytest-xdist: a worker killed mid-run (SIGKILL, as the OOM killer does) makes the update refuse
to write and say why, even when xdist replaces the worker and the rest of the suite passes.
(-n 4 vs -n 0 byte-identity, three times: tests/plugin/test_xdist.py.)"""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

SUITE = """
import os, signal, pytest, torch

@pytest.mark.parametrize("i", range(12))
def test_many(flop_budget, i):
    flop_budget.measure(torch.nn.Linear(4, 1 + i), torch.zeros(1, 4))

def test_killed(flop_budget):
    flop_budget.measure(torch.nn.Linear(4, 9), torch.zeros(1, 4))
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_a_worker_killed_mid_run_blocks_the_update(user_project: pytest.Pytester) -> None:
    path = user_project.path / "flop_baseline.yaml"
    user_project.makepyfile(test_suite=SUITE.replace("signal.SIGKILL)", "0)"))  # first: a clean run
    user_project.runpytest_subprocess("-p", "no:cacheprovider", "--flop-update-baseline").assert_outcomes(passed=13)
    before = path.read_bytes()
    user_project.makepyfile(test_suite=SUITE.replace("1 + i", "2 + i"))  # every count changes
    result = user_project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--flop-update-baseline")
    assert result.ret != pytest.ExitCode.OK
    text = result.stdout.str()
    assert "INTERNALERROR" not in text
    result.stdout.fnmatch_lines(["*test_suite.py::test_killed*", "*baseline * not written: a worker crashed*"])
    assert "test_suite.py::test_killed" in text.split("not written: a worker crashed", 1)[1]  # says which
    assert path.read_bytes() == before  # nothing from the run is written, not even the tests that passed
