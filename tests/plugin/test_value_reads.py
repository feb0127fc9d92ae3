"""Counts that depend on values (issues 19.2, 19.3): a cross-device difference passes as a device
difference only where the code that read values explains it; a regression of code that read values
says where it read and what makes the count stable."""

from __future__ import annotations

from plugin_project import Project, linear_flops

TRAINING_STEP = """
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        h = self.fc(x)
        {extra}
        return self.head(h)


def test_step(flop_budget, flop_device):
    with flop_device:
        model = Net()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.ones(4, 8)
    with flop_budget.count():
        model(x).sum().backward()
        optimizer.step()  # AdamW reads its step counter with .item() on cpu
"""


def test_a_regression_outside_the_code_that_read_values_fails_across_devices(project: Project) -> None:
    project.write("test_train.py", TRAINING_STEP.replace("{extra}", "pass"))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    entry = project.load()["entries"]["test_train.py::test_step"]
    assert entry["device"] == "cpu" and "AdamW.step()" in entry["value_reads"]  # named where it read, not the model

    # the same params, more work in the model's forward (an elementwise op on 4x8): not explained by AdamW's reads
    project.write("test_train.py", TRAINING_STEP.replace("{extra}", "h = h * 2"))
    result = project.run("--flop-device=meta")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*flops regressed:*", "*FLOPS REGRESSED*"])
    assert "device mismatch" not in result.stdout.str()
    # AdamW reads its own step counter, not the inputs: no hint to seed them
    assert "seeded generator" not in result.stdout.str()


BRANCHES = """
class Branchy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.small = torch.nn.Linear(4, 4)
        self.big = torch.nn.Linear(4, 64)

    def forward(self, x):
        if x.sum() > 0:
            return self.small(x)
        return self.big(x)


def test_branchy(flop_budget):
    flop_budget.measure(Branchy(), {inputs})
"""


def test_a_regression_from_input_values_says_where_values_were_read_and_how_to_stabilise(project: Project) -> None:
    project.write("test_branchy.py", BRANCHES.replace("{inputs}", "torch.ones(1, 4)"))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    sum_flops = 4 + 1  # x.sum(): one per input element; "> 0": one
    assert project.load()["entries"]["test_branchy.py::test_branchy"]["flops"] == sum_flops + linear_flops(1, 4, 4)
    project.write("test_branchy.py", BRANCHES.replace("{inputs}", "-torch.ones(1, 4)"))
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"flops regressed: {sum_flops + linear_flops(1, 4, 64):,} vs baseline {sum_flops + linear_flops(1, 4, 4):,}*",
        "  the code read tensor values on the host: aten._local_scalar_dense in the model's own forward (on cpu); "
        "its path, and so this count, can change with the input values: make them deterministic*"
        "torch.Generator().manual_seed(0)*",
    ])


READ_IN_A_SUBMODULE = """
class Decider(torch.nn.Module):
    def forward(self, x):
        try:
            return bool((x > 0).all())
        except Exception:  # meta: values are unknown
            return False


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.decide = Decider()
        self.body = torch.nn.Linear(4, {width})

    def forward(self, x):
        self.decide(x)
        return self.body(x)


def test_model(flop_budget):
    flop_budget.measure(Model(), torch.ones(1, 4))
"""


def test_reads_in_one_module_do_not_excuse_growth_in_another(project: Project) -> None:
    project.write("test_model.py", READ_IN_A_SUBMODULE.replace("{width}", "4"))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    assert list(project.load()["entries"]["test_model.py::test_model"]["value_reads"]) == ["decide"]
    project.write("test_model.py", READ_IN_A_SUBMODULE.replace("{width}", "4").replace(
        "return self.body(x)", "return self.body(x) * 2"))  # work in the model's own forward, not in decide
    result = project.run("--flop-device=meta")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*flops regressed*", "*decide (Decider)*"])
    assert "device mismatch" not in result.stdout.str()


NONZERO = """
class Proposals(torch.nn.Module):
    def forward(self, x):
        return x.nonzero()


class Detector(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Linear(4, 4)
        self.rpn = Proposals()

    def forward(self, x):
        return self.rpn(self.backbone(x))


def test_detector(flop_budget):
    flop_budget.measure(Detector(), torch.ones(1, 4))
"""


def test_cannot_run_on_meta_names_the_submodule_the_cpu_run_read_values_in(project: Project) -> None:
    """Issue 19.8: 'Detector cannot run on meta' alone does not say which part needs values."""
    project.write("test_det.py", NONZERO)
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    result = project.run("--flop-device=meta")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Detector cannot run on meta*",
                                 "*the baseline's run read values there: aten.nonzero* in rpn (Proposals) (on cpu)*",
                                 "*flop_budget(device='cpu')*"])


def test_a_meta_block_failure_points_at_the_users_line_that_read_values(project: Project) -> None:
    """Issue 19.8: the failure pointed at the `with` line, not at the line that needs values."""
    project.write("test_block.py", (
        "def test_block(flop_budget, flop_device):\n"
        "    with flop_device:\n"
        "        model = torch.nn.Linear(4, 4)\n"
        "        x = torch.ones(1, 4)\n"
        "    with flop_budget.count():\n"
        "        y = model(x)\n"
        "        picked = y.nonzero()\n"
    ))
    result = project.run("--flop-device=meta")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_block.py:10*", "*picked = y.nonzero()*",
                                 "*count(device='meta')*the code reads tensor values*"])


LIST_MODEL = """
from typing import List


class Detector(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, images: List[torch.Tensor]):
        return [self.fc(image) for image in images]


def test_unpacked(flop_budget):
    flop_budget.measure(Detector(), [torch.ones(1, 4)])


def test_wrapped(flop_budget):
    flop_budget.measure(Detector(), ([torch.ones(1, 4), torch.ones(1, 4)],))
"""


def test_one_list_argument_is_explained(project: Project) -> None:
    """Issue 19.8: measure(detector, [img]) unpacked the list as positional arguments."""
    project.write("test_list.py", LIST_MODEL)
    result = project.run("--flop-update-baseline")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*FlopBudgetUsageError: a list of inputs is unpacked as positional arguments*"
                                 "Detector.forward(images) takes, wrap it in a tuple: measure(model, ([[]img[]],))*"])
    assert project.load()["entries"]["test_list.py::test_wrapped"]["flops"] == 2 * linear_flops(1, 4, 4)
