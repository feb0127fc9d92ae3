"""Nothing silent (issue 19.1): ops with no formula, and counts that are estimates, reach the user in
the row, the test's message, every report, junit and the baseline entry; --flop-strict fails an
uncounted op that ini ``flop_known_uncounted`` does not accept."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from plugin_project import Project, linear_flops

# a custom op with no formula (as torchvision::nms or a user's fused kernel); defined once per process
# (in-process pytester runs import the test file again)
CUSTOM_OP = """
if not hasattr(torch.ops.silentlib, "twice"):
    @torch.library.custom_op("silentlib::twice", mutates_args=())
    def _twice(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    _twice.register_fake(lambda x: torch.empty_like(x))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x):
        return {forward}

"""
WITH_OP = CUSTOM_OP.replace("{forward}", "torch.ops.silentlib.twice(self.fc(x))")
WITHOUT_OP = CUSTOM_OP.replace("{forward}", "self.fc(x) * 1.0")
TEST = "def test_custom(flop_budget):\n    flop_budget.measure(Net(), torch.zeros(2, 4))\n"
OP = "silentlib.twice"
FLOPS = linear_flops(2, 4, 4)  # the custom op adds nothing: it has no formula


def test_uncounted_op_is_shown_in_the_row_the_message_every_report_and_the_baseline(project: Project) -> None:
    project.write("test_custom.py", WITH_OP, TEST)
    project.pytester.makeini("[pytest]\nflop_junit_properties = true\n")
    result = project.run("-rA", "--flop-report=report.json", "--junit-xml=junit.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*- flop budget -*",  # -rA: the passing test's own section
        f"*uncounted (no formula, counted as 0 FLOPs): {OP} x1*",
        "*test_custom.py::test_custom*new (1 uncounted)",
        f"test_custom.py::test_custom: uncounted (no formula, counted as 0 FLOPs): {OP} x1",
    ])
    row = json.loads((project.pytester.path / "report.json").read_text())["tests"][0]
    assert row["flops"] == FLOPS and row["uncounted"] == {OP: 1}
    props = {p.get("name"): p.get("value") for p in ET.parse(project.pytester.path / "junit.xml").iter("property")}
    assert props["uncounted"] == f"{OP} x1" and props["flops"] == str(FLOPS)

    project.run("--flop-update-baseline", "--flop-report=summary.md").assert_outcomes(passed=1)
    entry = project.load()["entries"]["test_custom.py::test_custom"]
    assert entry["uncounted"] == {OP: 1} and entry["flops"] == FLOPS
    markdown = (project.pytester.path / "summary.md").read_text()
    assert "new (1 uncounted)" in markdown and f"uncounted (no formula, counted as 0 FLOPs): {OP} x1" in markdown


def test_strict_fails_an_uncounted_op_unless_the_ini_accepts_it(project: Project) -> None:
    project.write("test_custom.py", WITH_OP, TEST)
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    project.run().assert_outcomes(passed=1)  # shown, not failing, without --flop-strict

    strict = project.run("--flop-strict")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines([
        f"*uncounted (no formula, counted as 0 FLOPs): {OP} x1",  # its own line on pytest 9, indented on 8.0
        "*register_formula*flop_known_uncounted*--flop-strict fails*",
        "*test_custom.py::test_custom*UNCOUNTED",
        "flopbudget: *1 uncounted",
        "*UNCOUNTED OPS*test_custom.py::test_custom - uncounted*",  # pytest 8.0 prints the markup tuple
    ])

    project.pytester.makeini(f"[pytest]\nflop_known_uncounted =\n    {OP}\n")
    accepted = project.run("--flop-strict")
    accepted.assert_outcomes(passed=1)
    accepted.stdout.fnmatch_lines([f"*{OP} x1 (accepted: flop_known_uncounted)"])


def test_a_new_uncounted_op_against_the_baseline_is_called_out(project: Project) -> None:
    project.write("test_custom.py", WITHOUT_OP, TEST)
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    before = project.load()["entries"]["test_custom.py::test_custom"]
    assert "uncounted" not in before  # recorded: none (format 2 leaves the empty field out)
    project.write("test_custom.py", WITH_OP, TEST)
    result = project.run()
    result.assert_outcomes(passed=1)
    # the op replaced a counted multiply: flops went down, and the reason is named
    result.stdout.fnmatch_lines([f"*uncounted (no formula, counted as 0 FLOPs): {OP} x1 (new since the baseline)"])


def test_a_format_1_baseline_loads_judges_nothing_it_did_not_record_and_is_rewritten_as_format_2(
        project: Project) -> None:
    project.write("test_custom.py", WITH_OP, TEST)
    project.baseline.write_text(
        "format: 1\nentries:\n  test_custom.py::test_custom:\n"
        f"    flops: {FLOPS}\n    macs: {2 * 4 * 4 + 2 * 4}\n    params: {4 * 4 + 4}\n    device: cpu\n"  # bias: a MAC per output
    )
    result = project.run()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_custom.py::test_custom*ok (1 uncounted)"])
    assert "new since the baseline" not in result.stdout.str()  # format 1 never recorded uncounted ops
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    data = project.load()
    assert data["format"] == 2 and data["entries"]["test_custom.py::test_custom"]["uncounted"] == {OP: 1}


def test_an_estimated_count_is_shown_and_never_fails_under_strict(project: Project) -> None:
    project.write("test_custom.py", WITH_OP, (
        "from pytest_flopbudget.counting.formulas import estimated\n\n"
        "@estimated('upper bound: every element doubled')\n"
        "def twice_formula(x, *, out_shape):\n"
        "    return x[0] * x[1], 0\n\n"
        "def test_custom(flop_budget):\n"
        "    flop_budget.measure(Net(), torch.zeros(2, 4), formulas={torch.ops.silentlib.twice.default: twice_formula})\n"
    ))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    entry = project.load()["entries"]["test_custom.py::test_custom"]
    assert entry["flops"] == FLOPS + 2 * 4 and entry["estimated"] == {OP: "upper bound: every element doubled"}
    strict = project.run("--flop-strict")
    strict.assert_outcomes(passed=1)
    strict.stdout.fnmatch_lines(["*test_custom.py::test_custom*ok (1 estimated)",
                                 f"*estimated: {OP}: upper bound: every element doubled"])
