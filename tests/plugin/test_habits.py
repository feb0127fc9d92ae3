"""The plugin next to the habits and plugins pytest users have: --help, pytest-rerunfailures,
pytest-repeat, xfail, --ignore and other ways of narrowing collection, -q, --sw, pytest 9's TOML
config, and the failure messages a newcomer reads first (issue 12)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest
from plugin_project import Project, linear_flops, linear_params

# --- 1. pytest --help ---------------------------------------------------------------------------

FLAGS = ("--flop-device", "--flop-baseline", "--flop-update-baseline", "--flop-prune-baseline",
         "--flop-tolerance", "--flop-strict", "--flop-report")
INI_KEYS = ("flop_device", "flop_baseline", "flop_update_baseline", "flop_prune_baseline", "flop_tolerance",
            "flop_strict", "flop_report", "flop_junit_properties", "flop_baseline_depth")


def test_help_lists_every_option_and_ini_key(project: Project) -> None:
    result = project.run("--help")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()[-2000:]
    out = result.stdout.str()
    for flag in FLAGS:
        assert re.search(rf"^\s+{flag}\b", out, re.M), flag
    for key in INI_KEYS:
        assert re.search(rf"^\s+{key} \(", out, re.M), key
    assert "(0.05 or 5%; default 0)" in " ".join(out.split())


# --- 2. pytest-rerunfailures --------------------------------------------------------------------

FLAKY = """
import pathlib

def attempt():
    path = pathlib.Path("attempts_" + __name__)
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    return n

def test_flaky(flop_budget):
    n = attempt()
    flop_budget.measure(torch.nn.Linear(8, 3 + n), torch.zeros(1, 8))
    assert n >= 2, "flaky on the first attempt"

@pytest.mark.flop_budget(max_params=10)
def test_over(flop_budget):
    flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(1, 8))
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_a_rerun_starts_clean_and_the_last_attempt_counts(project: Project, workers: list[str]) -> None:
    project.write("test_flaky.py", FLAKY)
    project.pytester.makeini("[pytest]\nflop_junit_properties = true\n")
    result = project.run("--reruns", "2", "-p", "rerunfailures", "--flop-update-baseline", "--junit-xml=out.xml",
                         "-rf", *workers)
    outcomes = result.parseoutcomes()
    assert (outcomes["passed"], outcomes["failed"], outcomes["rerun"]) == (1, 1, 3)
    out = result.stdout.str()
    assert "more than once" not in out
    result.stdout.fnmatch_lines(["*test_over*OVER BUDGET*",
                                 "flopbudget: 1 over budget, 1 new"])
    # pytest 8.0 prints the status word's markup tuple in the short summary; later releases the word
    result.stdout.fnmatch_lines(["*OVER BUDGET* test_flaky.py::test_over - over budget: *"])
    entries = project.load()["entries"]
    # the second attempt of test_flaky measured Linear(8, 5): that one is recorded
    assert entries["test_flaky.py::test_flaky"]["flops"] == linear_flops(1, 8, 5)
    assert entries["test_flaky.py::test_over"]["params"] == linear_params(8, 4)
    cases = {c.get("name"): c for c in ET.parse(project.pytester.path / "out.xml").iter("testcase")}
    props = [(p.get("name"), p.get("value")) for p in cases["test_flaky"].iter("property")]
    # macs as ptflops counts them: 8 x 5 multiply-accumulates and 5 bias adds for the one row
    # float32 bytes: the weights and the 1x8 input live at entry, the 1x5 output on top at the peak
    peak = 4 * (linear_params(8, 5) + 8 + 5)
    assert props == [("flops", str(linear_flops(1, 8, 5))), ("macs", str(8 * 5 + 5)), ("params", str(linear_params(8, 5))),
                     ("peak_memory", str(peak)), ("activation_memory", str(4 * 5))]


# --- 3. --ignore, --ignore-glob, collect_ignore, deselecting plugins ------------------------------

def three_files(project: Project) -> None:
    project.write("test_a.py", project.linear_test("test_keep", 8, 4), project.linear_test("test_gone", 8, 4))
    project.write("test_b.py", project.linear_test("test_b", 8, 4))
    project.write("test_c.py", project.linear_test("test_c", 8, 4))
    project.run("--flop-update-baseline").assert_outcomes(passed=4)
    project.write("test_a.py", project.linear_test("test_keep", 8, 4))  # test_gone is deleted


@pytest.mark.parametrize("narrowing", [
    ["--ignore=test_b.py"],
    ["--ignore-glob=*_b.py"],
    ["conftest:collect_ignore = ['test_b.py']"],
    ["conftest:def pytest_collection_modifyitems(config, items):\n"
     "    drop = [i for i in items if 'test_b' in i.nodeid]\n"
     "    items[:] = [i for i in items if i not in drop]\n"
     "    config.hook.pytest_deselected(items=drop)"],
    ["conftest:def pytest_collection_modifyitems(items):\n"  # a plugin that forgets pytest_deselected
     "    items[:] = [i for i in items if 'test_b' not in i.nodeid]"],
    ["--ignore=test_b.py", "-n", "2"],
], ids=["ignore", "ignore-glob", "collect_ignore", "deselect-hook", "silent-drop", "ignore-xdist"])
def test_narrowed_collection_prunes_only_tests_that_are_gone(project: Project, narrowing: list[str]) -> None:
    three_files(project)
    args = [a for a in narrowing if not a.startswith("conftest:")]
    for source in (a[len("conftest:"):] for a in narrowing if a.startswith("conftest:")):
        project.pytester.makeconftest(source + "\n")
    result = project.run("--flop-strict", *args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # test_gone is stale; test_b is not
    result.stdout.fnmatch_lines(["stale baseline entries*", "  test_a.py::test_gone", "flopbudget: *, 1 stale"])
    result = project.run("--flop-prune-baseline", *args)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["pruned 1 stale entry: test_a.py::test_gone"])
    assert set(project.load()["entries"]) == {"test_a.py::test_keep", "test_b.py::test_b", "test_c.py::test_c"}
    assert project.run("--flop-strict", *args).ret == pytest.ExitCode.OK


def test_a_deleted_file_is_still_stale(project: Project) -> None:
    three_files(project)
    (project.pytester.path / "test_c.py").unlink()
    result = project.run("--flop-prune-baseline", "--ignore=test_b.py")
    result.stdout.fnmatch_lines(["pruned 2 stale entries: test_a.py::test_gone, test_c.py::test_c"])
    assert set(project.load()["entries"]) == {"test_a.py::test_keep", "test_b.py::test_b"}


# --- 4. pytest-repeat -----------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_repeated_ids_map_to_the_tests_own_entry(project: Project, workers: list[str]) -> None:
    project.write("test_r.py", project.linear_test("test_plain", 8, 4),
                  "@pytest.mark.parametrize('n', [1, 2])\n" + project.linear_test("test_param", 8, 4, 1)
                  .replace("(flop_budget)", "(flop_budget, n)").replace("zeros(1,", "zeros(n,"))
    project.run("--flop-update-baseline").assert_outcomes(passed=3)
    before = project.baseline.read_bytes()
    keys = {"test_r.py::test_plain", "test_r.py::test_param[1]", "test_r.py::test_param[2]"}
    assert set(project.load()["entries"]) == keys
    result = project.run("-p", "repeat", "--count", "3", "--flop-update-baseline", "--flop-prune-baseline",
                         "--flop-strict", *workers)
    result.assert_outcomes(passed=9)
    assert project.baseline.read_bytes() == before
    out = result.stdout.str()
    assert "stale" not in out.split("flopbudget: ")[-1].replace("0 stale", "")
    assert "1-3]" not in out.split("= flop budget =")[-1]
    result.stdout.fnmatch_lines(["flopbudget: 3 ok"])
    # a regression shows under the test's own key
    project.write("test_r.py", project.linear_test("test_plain", 8, 5))
    result = project.run("-p", "repeat", "--count", "2", *workers)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["test_r.py::test_plain * REGRESSED"])


# --- 5. xfail -------------------------------------------------------------------------------------

XFAIL = """
@pytest.mark.xfail(reason="known to be over budget", strict={strict})
@pytest.mark.flop_budget(max_params=10)
def test_known_over(flop_budget):
    flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(1, 8))

@pytest.mark.xfail(reason="expected to go over", strict={strict})
@pytest.mark.flop_budget(max_params=1000)
def test_fits(flop_budget):
    flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(1, 8))
"""


def test_a_budget_failure_is_a_failure_for_xfail(project: Project) -> None:
    project.write("test_x.py", XFAIL.format(strict=False))
    result = project.run("-rxX")
    result.assert_outcomes(xfailed=1, xpassed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["test_x.py::test_known_over * over budget (xfail)"])
    project.write("test_x.py", XFAIL.format(strict=True))
    result = project.run("-rxX")
    result.assert_outcomes(xfailed=1, failed=1)
    result.stdout.fnmatch_lines(["[[]XPASS(strict)[]] expected to go over",
                                 "*XFAIL*test_known_over*known to be over budget*"])


# --- 6. -q still says what happened to the baseline ------------------------------------------------

@pytest.mark.parametrize("quiet", ["-q", "-qq"])
def test_quiet_runs_say_what_changed_the_baseline_or_the_exit_status(project: Project, quiet: str) -> None:
    project.write("test_a.py", project.linear_test("test_a", 8, 4))
    result = project.run(quiet, "--flop-update-baseline")
    result.stdout.fnmatch_lines([f"baseline written: {project.baseline} (1 entries)"])
    # the write fails: a test makes a directory where the new baseline file should go
    project.write("test_b.py", "import os\n\n" + project.linear_test("test_b", 8, 4).replace(
        "    flop_budget", "    os.mkdir('other.yaml')\n    flop_budget"))
    result = project.run(quiet, "--flop-update-baseline", "--flop-baseline=other.yaml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["baseline */other.yaml not written: *"])
    # pytest's last line (printed down to -q) says why the run failed when every test passed
    assert quiet == "-qq" or "2 passed, 1 baseline not written in " in result.stdout.lines[-1]
    (project.pytester.path / "test_b.py").unlink()
    project.write("test_a.py", "def test_other():\n    pass\n")
    result = project.run(quiet, "--flop-strict")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*stale*test_a.py::test_a*", "*--flop-prune-baseline*--flop-strict*"])
    assert quiet == "-qq" or "1 passed, 1 stale (--flop-strict) in " in result.stdout.lines[-1]


# --- 7. --sw is a partial run that writes what ran -------------------------------------------------

def test_stepwise_update_writes_what_ran(project: Project) -> None:
    project.write("test_s.py", project.linear_test("test_1", 8, 4),
                  "def test_2(flop_budget):\n    assert False\n\n", project.linear_test("test_3", 8, 4))
    result = project.pytester.runpytest("--sw", "--flop-update-baseline")
    result.assert_outcomes(passed=1, failed=1)
    assert "interrupted" not in result.stdout.str()
    assert set(project.load()["entries"]) == {"test_s.py::test_1"}


def test_a_real_interrupt_writes_nothing(project: Project) -> None:
    project.write("test_s.py", project.linear_test("test_1", 8, 4),
                  "def test_2():\n    raise KeyboardInterrupt\n\n")
    # in a subprocess: an in-process run would pass the KeyboardInterrupt on to this session
    result = project.pytester.runpytest_subprocess("-p", "no:cacheprovider", "--flop-update-baseline")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*not written: the run was interrupted*"])
    assert not project.baseline.exists()


# --- 8. pytest 9's native TOML config ----------------------------------------------------------

needs_toml = pytest.mark.skipif(tuple(map(int, pytest.__version__.split(".")[:2])) < (9, 0),
                                reason="[tool.pytest] is pytest 9's native TOML configuration")


@needs_toml
def test_native_toml_numbers_and_booleans(project: Project) -> None:
    (project.pytester.path / "tox.ini").unlink()  # Project's ini file would win over pyproject.toml
    project.pytester.makefile(".toml", pyproject='[tool.pytest]\nflop_tolerance = 0.25\nflop_strict = true\n'
                                                 'flop_device = "meta"\nflop_junit_properties = false\n'
                                                 'flop_baseline_depth = 1\n')
    project.write("test_a.py", project.linear_test("test_a", 8, 4, 3))
    result = project.run("--flop-update-baseline")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["flopbudget: baseline *, device meta, tolerance 0.25"])
    project.write("test_a.py", project.linear_test("test_a", 8, 5, 3))  # +25%: within 0.25
    project.run().assert_outcomes(passed=1)
    project.pytester.makefile(".toml", pyproject="[tool.pytest]\nflop_tolerance = 0.2\n")
    project.run().assert_outcomes(failed=1)
    project.pytester.makefile(".toml", pyproject="[tool.pytest]\nflop_tolerance = 5\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*flop_tolerance*5*did you mean*5%*0.05*"])


# --- 10. hints that can help ------------------------------------------------------------------------

def test_over_budget_says_to_raise_the_limit_and_counts_a_regression_too(project: Project) -> None:
    project.write("test_o.py", project.linear_test("test_o", 8, 4, 1, "max_params=100"))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    project.write("test_o.py", project.linear_test("test_o", 8, 12, 1, "max_params=100"))  # 108 params
    result = project.run()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*raise max_params in @pytest.mark.flop_budget*",
        "test_o.py::test_o * OVER BUDGET, REGRESSED",
        "flopbudget: 1 over budget, 1 regressed",
    ])
    failure = out.split("= FAILURES =")[1].split("= flop budget =")[0]
    assert "accept with `pytest --flop-update-baseline`" not in failure
    assert "--flop-update-baseline accepts the regression" in failure


# --- 11. a tolerance above 1 without % ---------------------------------------------------------------

@pytest.mark.parametrize(("value", "ok"), [("5", False), ("1.5", False), ("500%", True), ("1", True), ("5%", True)])
def test_tolerance_above_one_needs_a_percent_sign(project: Project, value: str, ok: bool) -> None:
    result = project.run(f"--flop-tolerance={value}")
    if ok:
        assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
        return
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--flop-tolerance: '{value}' is {float(value) * 100:g}%; did you mean "
                                 f"{value}% ({float(value) / 100:g})? Write {float(value) * 100:g}% if you mean it*"])


def test_marker_tolerance_above_one_needs_a_percent_sign(project: Project) -> None:
    project.write("test_t.py", project.linear_test("test_t", 8, 4, 1, "max_params=100, tolerance=5"),
                  project.linear_test("test_u", 8, 4, 1, "max_params=100, tolerance='500%'"))
    result = project.run()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*tolerance=5: *did you mean '5%' (0.05)?*"])


# --- 12. reports that carry the why -----------------------------------------------------------------

NET = """
class Net(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.encoder = torch.nn.Linear(8, hidden)
        self.head = torch.nn.Linear(hidden, 2)

    def forward(self, x):
        return self.head(self.encoder(x))

@pytest.mark.flop_budget(max_params={limit})
def test_net(flop_budget):
    flop_budget.measure(Net({hidden}), torch.zeros(1, 8))
"""


def test_reports_carry_the_exceeded_limits_and_the_grown_modules(project: Project) -> None:
    project.write("test_n.py", NET.format(limit=1000, hidden=4))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    project.write("test_n.py", NET.format(limit=100, hidden=6))  # 8*6+6 + 6*2+2 = 68 params, then 96 with 8
    params = linear_params(8, 6) + linear_params(6, 2)
    project.write("test_n.py", NET.format(limit=params - 1, hidden=6))
    project.pytester.makeini("[pytest]\nflop_junit_properties = true\n")
    project.run("--flop-report=r.json", "--junit-xml=j.xml")
    project.run("--flop-report=r.md")
    row = json.loads((project.pytester.path / "r.json").read_text())["tests"][0]
    assert row["exceeded"] == [{"argument": "max_params", "metric": "params", "limit": params - 1,
                                "measured": params, "used": params / (params - 1)}]
    grown = {g["name"]: g for g in row["grown"]}
    assert set(grown) == {"encoder", "head"}
    assert grown["encoder"]["type"] == "Linear"
    assert grown["encoder"]["old"]["flops"] == linear_flops(1, 8, 4)
    assert grown["encoder"]["new"]["flops"] == linear_flops(1, 8, 6)
    # a wider hidden layer also holds more bytes at the peak (float32 weights and activations)
    assert row["regressed"] == ["flops", "macs", "params", "peak_memory", "activation_memory"]
    text = (project.pytester.path / "r.md").read_text()
    # the reason reads as the failure line does (one sentence for an exceeded limit)
    used = params / (params - 1)
    assert f"max_params: {params} params > limit {params - 1} ({used:.1%} of budget, +{used - 1:.1%})" in text
    assert f"encoder (Linear): flops {linear_flops(1, 8, 4)} -> {linear_flops(1, 8, 6)}" in text
    props = {p.get("name"): p.get("value") for p in ET.parse(project.pytester.path / "j.xml").iter("property")}
    assert props["flop_budget_exceeded"].startswith(f"max_params: {params:,} params")
    assert props["flop_grown"].startswith("encoder (Linear): flops")


# --- 13. a forward that fails -------------------------------------------------------------------------

BAD_FORWARD = """
def test_wrong_width(flop_budget):
    flop_budget.measure(torch.nn.Linear(8, 4), torch.ones(2, 5))

def test_float_ids(flop_budget):
    flop_budget.measure(torch.nn.Embedding(10, 4), torch.ones(2, 3))
"""


def test_a_failing_forward_shows_the_users_frame_in_a_few_lines(project: Project) -> None:
    project.write("test_f.py", BAD_FORWARD)
    result = project.run()
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    failures = out.split("= FAILURES =")[1].split("short test summary")[0]
    first, second = re.split(r"_+ test_float_ids _+", failures)
    assert len(first.strip().splitlines()) <= 12, first
    assert "test_f.py:6: in test_wrong_width" in first
    assert "mat1 and mat2 shapes cannot be multiplied (2x5 and 8x4)" in first
    assert "tensor(" not in failures and "torch/nn/modules" not in failures
    assert "dtype=torch.long" in second and "Long" in second
    long = project.run("--tb=long").stdout.str()
    assert "torch/nn/modules" in long


# --- 14. smaller things ------------------------------------------------------------------------------

def test_the_summary_fits_the_terminal(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    project.write("test_a_rather_long_module_name_for_width.py",
                  project.linear_test("test_long_name_goes_on", 8, 4, 1, "max_params=100"))
    result = project.run()
    lines = result.stdout.str().split("= flop budget =")[1].splitlines()[1:]
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("flopbudget: "))]
    assert len(table) == 3 and all(len(line) <= 60 for line in table), table
    assert "::test_long_name_goes_on  " in table[2]  # shortened from the left: the test's name stays


def test_rows_sort_naturally_and_a_test_that_failed_has_a_row(project: Project) -> None:
    project.write("test_p.py",
                  "@pytest.mark.parametrize('i', [1, 2, 10])\ndef test_p(flop_budget, i):\n"
                  "    flop_budget.measure(torch.nn.Linear(2, i), torch.zeros(1, 2))\n\n"
                  "def test_then_fails(flop_budget):\n"
                  "    flop_budget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2))\n"
                  "    assert 1 == 2\n")
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([
        "test_p.py::test_p[[]1[]] *", "test_p.py::test_p[[]2[]] *", "test_p.py::test_p[[]10[]] *",
        f"test_p.py::test_then_fails * {linear_params(2, 2)} * test failed",
        "flopbudget: 3 new, 1 test failed",
    ])
    project.run("--flop-update-baseline").assert_outcomes(passed=3, failed=1)
    assert "test_p.py::test_then_fails" not in project.load()["entries"]


def test_a_baseline_from_another_torch_version_is_noted(project: Project) -> None:
    project.write("test_a.py", project.linear_test("test_a", 8, 4))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    text = project.baseline.read_text()
    project.baseline.write_text(re.sub(r"^torch: .*$", "torch: 1.0.0", text, flags=re.M))
    from importlib.metadata import version

    assert "torch: 1.0.0" in project.baseline.read_text()
    result = project.run()
    result.stdout.fnmatch_lines([f"*baseline written by torch 1.0.0; this run uses torch {version('torch')}*"])


def test_measuring_runs_warm_torch_up_before_the_first_test(project: Project) -> None:
    project.pytester.makeconftest(
        "import sys\n\n"
        "def pytest_runtest_call(item):\n"
        "    # the engine is imported by the first count: here, the warm-up before any test ran\n"
        "    open(item.name + '.txt', 'w').write(str('pytest_flopbudget.counting.measure' in sys.modules))\n")
    project.write("test_w.py", "def test_plain():\n    pass\n\n"
                               "def test_b(flop_budget):\n"
                               "    flop_budget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2), backward=True)\n")
    result = project.pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert (project.pytester.path / "test_plain.txt").read_text() == "True"
