"""The forward/backward split end to end: the baseline keeps it per entry and per module row, and
a regression says whether a layer's forward or its backward grew (issue 23 item 2)."""

from __future__ import annotations

from plugin_project import Project

ROWS, IN, OUT = 5, 4, 3

TRAINING = """
def test_training(flop_budget):
    model = torch.nn.Sequential(torch.nn.Linear(IN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, OUT))
    flop_budget.measure(model, torch.zeros(ROWS, IN), backward=True)
"""


def training(hidden: int) -> str:
    return (TRAINING.replace("HIDDEN", str(hidden)).replace("ROWS", str(ROWS))
            .replace("IN", str(IN)).replace("OUT", str(OUT)))


def dots(n_outputs: int, length: int) -> int:
    return n_outputs * (2 * length - 1)


def first_layer(hidden: int) -> tuple[int, int]:
    """Linear(IN→hidden)'s forward and backward flops (its input needs no gradient)."""
    return dots(ROWS * hidden, IN) + ROWS * hidden, dots(hidden * IN, ROWS) + ROWS * hidden


def last_layer(hidden: int) -> tuple[int, int]:
    """Linear(hidden→OUT)'s: the backward computes the hidden activations' gradient too."""
    return (dots(ROWS * OUT, hidden) + ROWS * OUT,
            dots(ROWS * hidden, OUT) + dots(OUT * hidden, ROWS) + ROWS * OUT)


def totals(hidden: int) -> tuple[int, int]:
    relu = ROWS * hidden
    first, last = first_layer(hidden), last_layer(hidden)
    return first[0] + relu + last[0], first[1] + relu + last[1]


def test_the_baseline_keeps_the_backward_part_of_each_row(project: Project) -> None:
    project.write("test_training.py", training(8))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    entry = project.load()["entries"]["test_training.py::test_training"]
    forward, backward = totals(8)
    assert (entry["flops"], entry["backward_flops"]) == (forward + backward, backward)
    assert "optimizer_flops" not in entry  # no step ran: the field is left out
    row = entry["modules"]["0"]
    assert (row["flops"], row["backward_flops"]) == (sum(first_layer(8)), first_layer(8)[1])


def test_a_forward_only_baseline_has_no_split_fields(project: Project) -> None:
    project.write("test_linear.py", project.linear_test("test_linear", IN, OUT, rows=ROWS))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    assert "backward" not in project.baseline.read_text()


def test_a_regression_says_which_pass_grew(project: Project) -> None:
    project.write("test_training.py", training(8))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    project.write("test_training.py", training(12))
    result = project.run("-rA")
    result.assert_outcomes(failed=1)
    (old_fwd, old_bwd), (new_fwd, new_bwd) = totals(8), totals(12)
    result.stdout.fnmatch_lines([
        f"flops regressed: {new_fwd + new_bwd:,} vs baseline {old_fwd + old_bwd:,} (*)"
        f" [[]forward +{new_fwd - old_fwd:,}, backward +{new_bwd - old_bwd:,}[]]",
    ])
    (f8, b8), (f12, b12) = first_layer(8), first_layer(12)
    result.stdout.fnmatch_lines([
        f"*grew: 0 (Linear): flops {f8 + b8:,} -> {f12 + b12:,} (*) [[]forward +{f12 - f8:,}, backward +{b12 - b8:,}[]]*",
    ])


def test_a_split_that_exceeds_its_row_is_refused_with_its_line(project: Project) -> None:
    project.write("test_training.py", training(8))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    text = project.baseline.read_text()
    forward, backward = totals(8)
    broken = text.replace(f"backward_flops: {backward}", f"backward_flops: {forward + backward + 1}", 1)
    project.baseline.write_text(broken)
    result = project.run("--flop-update-baseline")
    assert result.ret != 0
    result.stderr.fnmatch_lines([f"*flop_baseline.yaml:7: invalid baseline: *backward_flops + optimizer_flops "
                                 f"({forward + backward + 1:,}) exceed flops ({forward + backward:,})*"])
    assert project.baseline.read_text() == broken  # never overwritten when it could not be read


def test_the_markdown_report_gives_the_same_reason_as_the_failure(project: Project) -> None:
    project.write("test_training.py", training(8))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    project.write("test_training.py", training(12))
    result = project.run("--flop-report=report.md")
    result.assert_outcomes(failed=1)
    (old_fwd, old_bwd), (new_fwd, new_bwd) = totals(8), totals(12)
    reason = (f"flops regressed: {new_fwd + new_bwd:,} vs baseline {old_fwd + old_bwd:,} (+*%)"
              f" [[]forward +{new_fwd - old_fwd:,}, backward +{new_bwd - old_bwd:,}[]]")
    result.stdout.fnmatch_lines([reason.replace(" (+*%)", " (+*%, tolerance 0)")])
    report = (project.pytester.path / "report.md").read_text().splitlines()
    assert any(__import__("fnmatch").fnmatch(line, "*" + reason + "*") for line in report), report


def test_the_sections_columns_line_up_for_every_metric(project: Project) -> None:
    project.write("test_training.py", training(8))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    project.write("test_training.py", training(12))
    lines = project.run("-rA").outlines
    rows = [line for line in lines if line.startswith("  ") and len(line.split()) > 2 and line.split()[0] in
            ("flops", "macs", "params", "peak_memory", "activation_memory") and line.split()[2] == "baseline"]
    assert {line.split()[0] for line in rows} >= {"flops", "peak_memory", "activation_memory"}
    assert len({line.index(" baseline ") for line in rows}) == 1, rows


def test_adding_a_backward_to_a_forward_only_baseline_says_so(project: Project) -> None:
    forward_only = training(8).replace(", backward=True", "")
    project.write("test_training.py", forward_only)
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    project.write("test_training.py", training(8))
    result = project.run()
    result.assert_outcomes(failed=1)
    forward, backward = totals(8)
    result.stdout.fnmatch_lines([
        f"flops regressed: {forward + backward:,} vs baseline {forward:,} (*) [[]this run's backward: {backward:,}; "
        "the baseline records none (it measured the forward only*",
    ])


def test_an_optimizers_own_step_counter_reads_are_not_blamed_on_the_inputs(project: Project) -> None:
    step = ("def test_step(flop_budget):\n"
            "    model = torch.nn.Sequential(torch.nn.Linear(4, WIDTH), torch.nn.ReLU(), torch.nn.Linear(WIDTH, 2))\n"
            "    flop_budget.measure(model, torch.zeros(3, 4), optimizer=lambda ps: torch.optim.AdamW(ps, lr=1e-3))\n")
    project.write("test_step.py", step.replace("WIDTH", "8"))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    entry = project.load()["entries"]["test_step.py::test_step"]
    assert "AdamW.step()" in entry["value_reads"]  # AdamW reads its step counter: recorded, as before
    project.write("test_step.py", step.replace("WIDTH", "16"))
    result = project.run()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "flops regressed" in out and "optimizer step +" in out
    assert "make them deterministic" not in out  # seeding the inputs cannot change AdamW's counter


def test_a_forward_that_reads_input_values_still_gets_the_hint(project: Project) -> None:
    gated = ("class Gated(torch.nn.Module):\n"
             "    def __init__(self):\n"
             "        super().__init__()\n"
             "        self.fc = torch.nn.Linear(4, WIDTH)\n\n"
             "    def forward(self, x):\n"
             "        return self.fc(x) if bool((x > 0).any()) else x\n\n\n"
             "def test_gated(flop_budget):\n"
             "    flop_budget.measure(Gated(), torch.ones(3, 4))\n")
    project.write("test_gated.py", gated.replace("WIDTH", "8"))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    project.write("test_gated.py", gated.replace("WIDTH", "16"))
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the code read tensor values on the host*make them deterministic*"])
