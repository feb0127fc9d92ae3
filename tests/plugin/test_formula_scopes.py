"""Formulas hold where they were registered, however pytest is started (issue 19.5): a nested
conftest.py for its directory, a test module's top level for its tests, a module- or
session-scoped fixture for the tests using it; one registered inside a test ends with it."""

from __future__ import annotations

import pytest
from plugin_project import Project

RELU = "torch.nn.ReLU(), torch.zeros(10)"
NESTED_CONFTEST = """
import pytest_flopbudget as fb

def sub_relu(x, *, out_shape):
    return 1000, 0

fb.register_formula("aten::relu", sub_relu)
"""
SUB_TESTS = f"""
import pytest
import torch

def test_one(flop_budget):
    flop_budget.measure({RELU})

def test_two(flop_budget):
    flop_budget.measure({RELU})

def test_three(flop_budget):
    flop_budget.measure({RELU})
"""
TOP_LEVEL = f"""
import pytest
import torch
import pytest_flopbudget as fb

fb.register_formula("aten::relu", lambda x, *, out_shape: (300, 0))

def test_top_a(flop_budget):
    flop_budget.measure({RELU})

def test_top_b(flop_budget):
    flop_budget.measure({RELU})
"""
FIXTURES = f"""
import pytest
import torch
import pytest_flopbudget as fb

@pytest.fixture(scope="module")
def sigmoid_formula():
    fb.register_formula("aten::sigmoid", lambda x, *, out_shape: (50, 0))
    yield

def test_fix_a(flop_budget, sigmoid_formula):
    flop_budget.measure(torch.nn.Sigmoid(), torch.zeros(10))

def test_fix_b(flop_budget, sigmoid_formula):
    flop_budget.measure(torch.nn.Sigmoid(), torch.zeros(10))

def test_fix_unused(flop_budget):
    flop_budget.measure(torch.nn.Sigmoid(), torch.zeros(10))

def test_inside(flop_budget):
    fb.register_formula("aten::relu", lambda x, *, out_shape: (9, 0))
    flop_budget.measure({RELU})

def test_after_inside(flop_budget):
    flop_budget.measure({RELU})
"""


def _flops(project: Project) -> dict[str, int]:
    return {key.split("::")[-1]: entry["flops"] for key, entry in project.load()["entries"].items()}


@pytest.mark.parametrize("how", [(), ("sub",), ("-p", "no:randomly", "-p", "xdist", "-n", "2")],
                         ids=["pytest", "pytest sub", "xdist"])
def test_registrations_hold_where_they_were_made_however_pytest_starts(project: Project, how: tuple[str, ...]) -> None:
    project.pytester.mkpydir("sub")
    (project.pytester.path / "sub" / "conftest.py").write_text(NESTED_CONFTEST)
    (project.pytester.path / "sub" / "test_sub.py").write_text(SUB_TESTS)
    project.pytester.makepyfile(test_top=TOP_LEVEL, test_fixtures=FIXTURES)
    project.run("--flop-update-baseline", *how).assert_outcomes(passed=3 if how == ("sub",) else 10)
    flops = _flops(project)
    assert {flops[t] for t in ("test_one", "test_two", "test_three")} == {1000}  # the nested conftest's, every test
    if how == ("sub",):
        return
    assert flops["test_top_a"] == flops["test_top_b"] == 300  # the module's own formula, for its tests
    assert flops["test_fix_a"] == flops["test_fix_b"] == 50  # the module-scoped fixture's, for its users
    assert flops["test_fix_unused"] == 10  # built-in sigmoid: one per element
    assert flops["test_inside"] == 9 and flops["test_after_inside"] == 10  # a test's ends with it (relu: 10)
