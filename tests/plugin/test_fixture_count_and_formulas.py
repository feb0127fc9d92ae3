"""The fixture's count() block, scoped formulas and the flop_formulas ini key, end to end."""

from __future__ import annotations

import random

import pytest
from plugin_project import Project, linear_flops, linear_params

TRAINING_STEP = """
@pytest.mark.flop_budget(max_gflops={limit}e-9)
def test_step(flop_budget):
    model = torch.nn.Linear(8, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with flop_budget.count() as counted:
        model(torch.zeros(3, 8)).sum().backward()
        optimizer.step()
    assert counted.flops > 0
"""


def training_step_flops() -> int:
    """Linear(8→4) on 3 rows: forward, the loss sum (12 adds), backward of the weights and bias
    (no input gradient: its input needs none), one SGD update per parameter."""
    forward = linear_flops(3, 8, 4)
    loss = 3 * 4
    grad_weight = 4 * 8 * (2 * 3 - 1)  # dYᵀ(4x3) @ X(3x8)
    grad_bias = 3 * 4  # sum over the rows
    return forward + loss + grad_weight + grad_bias + linear_params(8, 4)


def test_count_block_is_recorded_budgeted_and_baselined(project: Project) -> None:
    flops = training_step_flops()
    project.write("test_train.py", TRAINING_STEP.format(limit=flops))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    entry = project.load()["entries"]["test_train.py::test_step"]
    assert (entry["flops"], entry["params"]) == (flops, linear_params(8, 4))
    # one FLOP under the count: over budget, named like any measurement
    project.write("test_train.py", TRAINING_STEP.format(limit=flops - 1))
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*OVER BUDGET*test_train.py::test_step*"])


def test_labels_and_a_raising_block_records_nothing(project: Project) -> None:
    project.write("test_blocks.py", """
def test_two(flop_budget):
    with flop_budget.count(label="a"):
        torch.nn.Linear(8, 4)(torch.zeros(1, 8))
    flop_budget.measure(torch.nn.Linear(4, 2), torch.zeros(1, 4), label="b")

def test_unlabelled_twice(flop_budget):
    with flop_budget.count():
        torch.zeros(2) + 1
    with flop_budget.count():
        torch.zeros(2) + 1

@pytest.mark.flop_budget(max_gflops=1)
def test_raises(flop_budget):
    with pytest.raises(ValueError):
        with flop_budget.count():
            torch.nn.Linear(8, 4)(torch.zeros(1, 8))
            raise ValueError("half-way")
""")
    result = project.run("--flop-update-baseline")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*called more than once in one test*flop_budget.count(label='generate')*"])
    assert "contextlib.py" not in result.stdout.str()  # the user's line, not the fixture's machinery
    result.stdout.fnmatch_lines(["*NOT MEASURED*test_raises*"])
    entries = project.load()["entries"]
    assert entries["test_blocks.py::test_two#a"]["flops"] == linear_flops(1, 8, 4)
    assert entries["test_blocks.py::test_two#b"]["flops"] == linear_flops(1, 4, 2)
    assert not any(key.startswith("test_blocks.py::test_raises") for key in entries)


REGISTERS = """
import pytest_flopbudget as fb

def test_{name}_registers(flop_budget):
    fb.register_formula("aten::relu", lambda x, *, out_shape: (1000, 1000))
    flop_budget.measure(torch.nn.ReLU(), torch.zeros(10))
"""
PLAIN = """
def test_{name}_plain(flop_budget):
    flop_budget.measure(torch.nn.ReLU(), torch.zeros(10))

def test_{name}_scoped(flop_budget):
    flop_budget.measure(torch.nn.ReLU(), torch.zeros(10), formulas={{"aten::relu": lambda x, *, out_shape: (7, 7)}})
"""

SHUFFLE_CONFTEST = """
import os, random

def pytest_collection_modifyitems(items):
    seed = os.environ.get("SHUFFLE_SEED")
    if seed:
        random.Random(int(seed)).shuffle(items)
"""


def test_a_formula_registered_in_a_test_lasts_for_that_test(project: Project, monkeypatch) -> None:
    for name in ("a", "b", "c"):
        project.write(f"test_{name}.py", REGISTERS.format(name=name), PLAIN.format(name=name))
    project.pytester.makeconftest(SHUFFLE_CONFTEST)

    def baseline_bytes(*args: str) -> bytes:
        if project.baseline.exists():
            project.baseline.unlink()
        project.run("--flop-update-baseline", *args).assert_outcomes(passed=9)
        return project.baseline.read_bytes()

    reference = baseline_bytes()
    entries = project.load()["entries"]
    for name in "abc":
        assert entries[f"test_{name}.py::test_{name}_registers"]["flops"] == 1000
        assert entries[f"test_{name}.py::test_{name}_plain"]["flops"] == 10  # one per element
        assert entries[f"test_{name}.py::test_{name}_scoped"]["flops"] == 7
    for seed in random.Random(11).sample(range(1000), 3):
        monkeypatch.setenv("SHUFFLE_SEED", str(seed))
        assert baseline_bytes() == reference
    monkeypatch.delenv("SHUFFLE_SEED")
    assert baseline_bytes("-n", "2") == reference


FORMULAS_MODULE = """
import torch

@torch.library.custom_op("flopbudget_ini::triple", mutates_args=())
def triple(x: torch.Tensor) -> torch.Tensor:
    return x * 3

@triple.register_fake
def _(x):
    return torch.empty_like(x)

def triple_cost(x, *, out_shape):
    n = 1
    for size in x:
        n *= size
    return (n, n)

FLOP_FORMULAS = {triple: triple_cost}
"""

USES_TRIPLE = """
import myformulas

@pytest.mark.parametrize("size", [4, 6])
def test_triple(flop_budget, size):
    class M(torch.nn.Module):
        def forward(self, x):
            return torch.ops.flopbudget_ini.triple(x)
    flop_budget.measure(M(), torch.zeros(size, 5))
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_ini_key_imports_formulas_in_every_process(project: Project, workers: list[str]) -> None:
    project.pytester.makeini("[pytest]\npythonpath = .\nflop_formulas = myformulas\n")
    project.pytester.makepyfile(myformulas=FORMULAS_MODULE)
    project.write("test_custom.py", USES_TRIPLE)
    project.run("--flop-update-baseline", *workers).assert_outcomes(passed=2)
    entries = project.load()["entries"]
    assert entries["test_custom.py::test_triple[4]"]["flops"] == 4 * 5
    assert entries["test_custom.py::test_triple[6]"]["flops"] == 6 * 5


def test_ini_key_naming_a_missing_module_is_a_usage_error(project: Project) -> None:
    project.pytester.makeini("[pytest]\nflop_formulas = no_such_formulas_module\n")
    project.write("test_x.py", "def test_x():\n    pass\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*flop_formulas*could not import 'no_such_formulas_module'*"])
