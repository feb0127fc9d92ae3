"""The flop_budget marker and fixtures, end to end in a pytester project."""

from __future__ import annotations

import pytest
from plugin_project import Project, linear_flops, linear_params

FLOPS = linear_flops(3, 8, 4)  # Linear(8, 4) on 3 rows: 3 * (15 * 4 + 4) = 192
PARAMS = linear_params(8, 4)


def test_budget_just_under_and_just_over(project: Project) -> None:
    assert FLOPS == 192
    project.write(
        "test_budget.py",
        project.linear_test("test_flops_at_limit", 8, 4, 3, f"max_gflops={FLOPS}e-9"),
        project.linear_test("test_flops_over", 8, 4, 3, f"max_gflops={FLOPS - 1}e-9"),
        project.linear_test("test_params_at_limit", 8, 4, 3, f"max_params={PARAMS}"),
        project.linear_test("test_params_over", 8, 4, 3, f"max_params='{PARAMS - 1}'"),
        project.linear_test("test_string_unit", 8, 4, 3, "max_params='0.036k'"),
    )
    result = project.run("-v")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines([
        "*::test_flops_at_limit PASSED*",
        "*::test_flops_over OVER BUDGET*",
        "*::test_params_over OVER BUDGET*",
        f"over budget: max_gflops: {FLOPS} flops * > limit *",
        f"over budget: max_params: {PARAMS} params > limit 35 *",
    ])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


BAD_MARKERS = [
    ("max_glops=1", "max_glops=1: unknown keyword; did you mean 'max_gflops'?"),
    ("8.5", "positional argument=8.5: *keyword arguments only*"),
    ("max_gflops=True", "max_gflops=True: a bool is not a limit*"),
    ("max_params=-5", "max_params=-5: a limit cannot be negative"),
    ("max_params=0", "max_params=0: a limit of zero*"),
    ("max_gflops=float('nan')", "max_gflops=nan: NaN is not a limit"),
    ("max_params='26 megs'", "max_params='26 megs': not a number*"),
    ("max_params='__import__(\"os\").getcwd()'", "max_params=*not a number*"),
    ("tolerance=0.1", "limits={'tolerance': 0.1}: no limit given*"),
    ("max_params=10, tolerance=-1", "tolerance=-1: cannot be negative"),
]


def test_every_bad_marker_is_an_error_for_that_test_alone(project: Project) -> None:
    bodies = []
    for index, (args, _) in enumerate(BAD_MARKERS):
        bodies.append(
            f"@pytest.mark.flop_budget({args})\n"
            f"def test_bad_{index}(flop_budget):\n"
            f"    open('built_{index}', 'w').close()\n\n"
        )
    bodies.append(project.linear_test("test_good", 8, 4, 3, "max_params=100"))
    project.write("test_bad.py", *bodies)
    result = project.run()
    result.assert_outcomes(passed=1, errors=len(BAD_MARKERS))
    assert "INTERNALERROR" not in result.stdout.str()
    for index, (_, message) in enumerate(BAD_MARKERS):
        result.stdout.fnmatch_lines([f"test_bad.py::test_bad_{index}: invalid @pytest.mark.flop_budget: {message}*"])
        assert not (project.pytester.path / f"built_{index}").exists()  # failed before the test body


def test_marker_is_registered(project: Project) -> None:
    result = project.run("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.flop_budget(*, max_gflops=None, max_gmacs=None, max_params=None, max_memory=None, max_activation_memory=None, tolerance=None, device=None): *'24GiB'*device*overrides --flop-device*"])
    project.write("test_strict.py", project.linear_test("test_a", 8, 4, 3, "max_params=100"))
    project.run("--strict-markers").assert_outcomes(passed=1)


def test_a_misspelt_marker_is_an_error_not_a_test_without_budget(project: Project) -> None:
    project.write(
        "test_typos.py",
        project.linear_test("test_typo", 8, 4).replace("def test_typo", "@pytest.mark.flop_budgt(max_gflops=1)\ndef test_typo"),
        "pytestmark = [pytest.mark.flopbudget]\n\n",  # a module-level typo reaches every test of the module
        "@pytest.mark.slow\ndef test_other_marker():\n    pass\n",
    )
    project.pytester.makeini("[pytest]\nmarkers =\n    flop_budgets: a project's own marker, registered\n")
    result = project.run("-rE")
    result.assert_outcomes(errors=2)  # test_other_marker carries flopbudget from the module
    result.stdout.fnmatch_lines([
        "*test_typos.py::test_typo: @pytest.mark.flop_budgt is no marker: did you mean @pytest.mark.flop_budget?*",
    ])
    # a registered marker, however close its name, is the project's own
    project.write("test_typos.py", project.linear_test("test_mine", 8, 4).replace(
        "def test_mine", "@pytest.mark.flop_budgets\ndef test_mine"))
    project.run().assert_outcomes(passed=1)


def test_module_and_class_markers_closest_wins(project: Project) -> None:
    project.write(
        "test_levels.py",
        f"pytestmark = pytest.mark.flop_budget(max_params={PARAMS - 1})\n\n",
        project.linear_test("test_module_level", 8, 4, 3),
        f"@pytest.mark.flop_budget(max_params={PARAMS})\nclass TestClass:\n"
        "    def test_class_level(self, flop_budget):\n"
        "        flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(3, 8))\n\n"
        f"    @pytest.mark.flop_budget(max_params={PARAMS - 2})\n"
        "    def test_function_level(self, flop_budget):\n"
        "        flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(3, 8))\n",
    )
    result = project.run("-v")
    result.stdout.fnmatch_lines([
        "*::test_module_level OVER BUDGET*",
        "*::TestClass::test_class_level PASSED*",
        "*::TestClass::test_function_level OVER BUDGET*",
        f"*max_params: {PARAMS} params*> limit {PARAMS - 2} *",
    ])


def test_marked_test_that_never_measures_fails_with_how_to(project: Project) -> None:
    project.write("test_none.py", "@pytest.mark.flop_budget(max_params=10)\ndef test_forgot():\n    pass\n")
    result = project.run("-v")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*::test_forgot NOT MEASURED*",
                                 "*measured nothing: request the `flop_budget` fixture (add it to the test's arguments), "
                                 "then call `flop_budget.measure(model, inputs)`*`with flop_budget.count():`*"])


def test_a_test_that_requested_the_fixture_is_not_asked_for_it_again(project: Project) -> None:
    project.write("test_none.py", "@pytest.mark.flop_budget(max_params=10)\ndef test_forgot(flop_budget):\n    pass\n")
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*measured nothing: call `flop_budget.measure(model, inputs)`*"
                                 "or count any code with `with flop_budget.count():`*"])
    assert "request the `flop_budget` fixture" not in result.stdout.str()


def test_several_measurements_need_labels_and_the_budget_applies_to_the_sum(project: Project) -> None:
    total = linear_params(8, 4) + linear_params(4, 2)
    body = ("    flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(1, 8), label='enc')\n"
            "    flop_budget.measure(torch.nn.Linear(4, 2), torch.zeros(1, 4), label='dec')\n\n")
    project.write(
        "test_multi.py",
        f"@pytest.mark.flop_budget(max_params={total})\ndef test_sum_fits(flop_budget):\n" + body,
        f"@pytest.mark.flop_budget(max_params={total - 1})\ndef test_sum_over(flop_budget):\n" + body,
        "def test_unlabelled(flop_budget):\n"
        "    flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(1, 8))\n"
        "    flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(1, 8))\n",
    )
    result = project.run("--flop-update-baseline")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([f"*max_params: {total} params*> limit {total - 1}*",
                                 "*measure() called more than once in one test: give every measurement a distinct label*"])
    # a misuse reads like a user's error: the user's line, not the fixture's source
    failures = result.stdout.str().split("= FAILURES =")[1]
    unlabelled = failures[failures.index("test_unlabelled"):]
    assert "FlopBudgetUsageError" in unlabelled and "_check_label" not in unlabelled
    assert "flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(1, 8))" in unlabelled
    entries = project.load()["entries"]
    assert entries["test_multi.py::test_sum_fits#enc"]["params"] == linear_params(8, 4)
    assert entries["test_multi.py::test_sum_fits#dec"]["flops"] == linear_flops(1, 4, 2)
    assert "test_multi.py::test_unlabelled" not in entries


def test_unmarked_measuring_test_is_reported_and_baselined(project: Project) -> None:
    project.write("test_free.py", project.linear_test("test_free", 16, 8, 2))
    result = project.run("--flop-update-baseline")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_free.py::test_free * - * new"])
    entry = project.load()["entries"]["test_free.py::test_free"]
    assert (entry["flops"], entry["params"]) == (linear_flops(2, 16, 8), linear_params(16, 8))


def test_fixtures_use_the_flop_device(project: Project) -> None:
    project.write(
        "test_dev.py",
        "def test_dev(flop_budget, flop_device):\n"
        "    assert flop_device == torch.device('meta')\n"
        "    m = flop_budget.measure(lambda: torch.nn.Linear(8, 4), lambda: torch.zeros(3, 8, device=flop_device))\n"
        f"    assert m.device == 'meta' and m.flops == {FLOPS}\n",
    )
    project.run("--flop-device=meta").assert_outcomes(passed=1)
