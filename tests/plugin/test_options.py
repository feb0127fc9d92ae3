"""--flop- options and their ini keys: validation at start-up, precedence, the header line."""

from __future__ import annotations

import json

import pytest
import torch
from plugin_project import Project, linear_flops


@pytest.mark.parametrize(("args", "message"), [
    (["--flop-device=gpu"], "*--flop-device: 'gpu' is not a counting device; choose one of cpu, cuda, meta*"),
    (["--flop-tolerance=-0.5"], "*--flop-tolerance: '-0.5' must be a finite fraction >= 0*"),
    (["--flop-tolerance=nan"], "*--flop-tolerance: 'nan' is not a fraction*"),
    (["--flop-tolerance=lots"], "*--flop-tolerance: 'lots' is not a fraction*"),
    (["--flop-report=."], "*--flop-report: '.' is a directory*"),
    (["--flop-baseline="], "*--flop-baseline: an empty path*"),
])
def test_bad_option_values_are_usage_errors(project: Project, args: list[str], message: str) -> None:
    result = project.run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


@pytest.mark.parametrize(("ini", "message"), [
    ("flop_device = tpu", "*ini option flop_device = 'tpu': 'tpu' is not a counting device*"),
    ("flop_tolerance = -1", "*ini option flop_tolerance = '-1': *>= 0*"),
])
def test_bad_ini_values_are_usage_errors(project: Project, ini: str, message: str) -> None:
    project.pytester.makeini(f"[pytest]\n{ini}\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when CUDA is absent")
def test_cuda_without_cuda_is_a_usage_error(project: Project) -> None:
    result = project.run("--flop-device=cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--flop-device=cuda: torch * has no usable CUDA device here*"])


def test_ini_values_apply_and_the_command_line_wins(project: Project) -> None:
    project.pytester.makeini(
        "[pytest]\nflop_device = meta\nflop_tolerance = 0.5\nflop_baseline = budgets/base.yaml\n"
        "flop_report = out/report.json\nflop_update_baseline = true\n"
    )
    project.write("test_a.py", "def test_a(flop_budget):\n"
                               "    m = flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(3, 8))\n"
                               "    open('device.txt', 'w').write(m.device)\n")
    result = project.run()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["flopbudget: baseline budgets/base.yaml (not created yet), device meta, tolerance 0.5"])
    path = project.pytester.path
    assert (path / "device.txt").read_text() == "meta"
    assert (path / "budgets/base.yaml").exists()  # flop_update_baseline and flop_baseline applied
    report = json.loads((path / "out/report.json").read_text())
    assert report["tests"][0]["flops"] == linear_flops(3, 8, 4)
    assert report["tolerance"] == "0.5"
    # command line over ini
    result = project.run("--flop-device=cpu", "--flop-tolerance=5%")
    result.stdout.fnmatch_lines(["flopbudget: baseline budgets/base.yaml (1 entries), device cpu, tolerance 0.05"])
    assert (path / "device.txt").read_text() == "cpu"


def test_ini_tolerance_and_strict_take_effect(project: Project) -> None:
    project.write("test_a.py", project.linear_test("test_a", 8, 4, 3))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    project.write("test_a.py", project.linear_test("test_a", 8, 5, 3))  # +25% flops and params
    project.run().assert_outcomes(failed=1)
    project.pytester.makeini("[pytest]\nflop_tolerance = 0.3\n")
    project.run().assert_outcomes(passed=1)
    project.write("test_a.py", project.linear_test("test_a", 8, 3, 3))  # -25%
    project.run().assert_outcomes(passed=1)
    project.pytester.makeini("[pytest]\nflop_tolerance = 0.1\nflop_strict = true\n")
    result = project.run("-v")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*::test_a FLOPS IMPROVED*", "*flops improved beyond the tolerance (--flop-strict)*"])


def test_the_accept_hint_repeats_the_options_that_decide_what_is_written(project: Project) -> None:
    """A baseline path or device given on the command line is repeated in the command the hints
    print, so running that command as printed updates the file the run compared with."""
    project.write("test_a.py", project.linear_test("test_a", 8, 4))
    options = ("--flop-baseline=budgets/other.yaml", "--flop-device=meta")
    command = "pytest --flop-update-baseline --flop-baseline=budgets/other.yaml --flop-device=meta"
    result = project.run(*options)
    result.stdout.fnmatch_lines([f"accept these changes: {command} (then commit other.yaml)"])
    strict = project.run(*options, "--flop-strict")
    strict.stdout.fnmatch_lines([f"*no baseline entry (--flop-strict); create it with `{command}`*"])
    project.run(*command.split()[1:]).assert_outcomes(passed=1)  # the printed command, as printed
    written = project.pytester.path / "budgets/other.yaml"
    assert "test_a.py::test_a" in written.read_text() and not project.baseline.exists()
    assert "device: meta" in written.read_text()
    # given in the ini file, options apply by themselves and are not repeated
    project.pytester.makeini("[pytest]\nflop_baseline = budgets/other.yaml\n")
    project.write("test_b.py", project.linear_test("test_b", 8, 2))
    project.run().stdout.fnmatch_lines(["accept these changes: pytest --flop-update-baseline (then commit other.yaml)"])


def test_the_commands_hints_print_use_options_the_plugin_registers() -> None:
    """Every message builds its commands from reporting/commands.py: renaming an option there or
    in plugin/options.py without the other would make hints tell people to run a missing flag."""
    from pytest_flopbudget.plugin.options import OPTIONS
    from pytest_flopbudget.reporting import commands

    flags = {option.flag for option in OPTIONS}
    for option in (commands.UPDATE_OPTION, commands.PRUNE_OPTION, commands.STRICT_OPTION):
        assert option in flags, f"{option} is not among the plugin's options {sorted(flags)}"
    assert commands.update_command("--flop-device=meta").split() == ["pytest", commands.UPDATE_OPTION,
                                                                     "--flop-device=meta"]


def test_the_header_is_shown_only_where_the_plugin_is_used(project: Project) -> None:
    """Issue 19.10: like the cacheprovider's line, not in every run of every repository."""
    project.write("test_plain.py", "def test_plain():\n    assert True\n")
    header = "flopbudget: baseline flop_baseline.yaml (*"
    unused = project.run()
    unused.assert_outcomes(passed=1)
    assert "flopbudget:" not in unused.stdout.str()  # nor a count line: nothing was measured
    project.run("-v").stdout.fnmatch_lines([header])
    project.run("--flop-strict").stdout.fnmatch_lines([header])
    project.pytester.makeini("[pytest]\nflop_known_uncounted = mylib.op\n")
    project.run().stdout.fnmatch_lines([header])
    project.pytester.makeini("[pytest]\n")
    project.baseline.write_text("format: 2\nentries: {}\n")
    project.run().stdout.fnmatch_lines(["flopbudget: baseline flop_baseline.yaml (0 entries), device cpu, tolerance 0"])
