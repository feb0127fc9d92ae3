"""The marker's ``device`` (issue 19.4): one test counted on cpu while the run counts on meta, its
baseline entry recording where; the fixture takes no per-call device and says how to choose one."""

from __future__ import annotations

from plugin_project import Project, linear_flops

# reads a value on the host: cpu can look (and skips the gate), meta cannot
READS_VALUES = """
class Gated(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        if not bool((x > 0).all()):
            x = self.gate(x)
        return self.head(x)


@pytest.mark.flop_budget(device="cpu")
def test_on_cpu(flop_budget, flop_device):
    assert flop_budget.device == "cpu" and flop_device.type == "cpu"
    flop_budget.measure(Gated(), torch.ones(1, 4))


def test_on_run_device(flop_budget, flop_device):
    assert flop_budget.device == "meta" and flop_device.type == "meta"
    flop_budget.measure(torch.nn.Linear(8, 4), torch.zeros(1, 8))
"""


def test_the_marker_device_overrides_flop_device_and_is_recorded(project: Project) -> None:
    project.write("test_devices.py", READS_VALUES)
    project.run("--flop-device=meta", "--flop-update-baseline").assert_outcomes(passed=2)
    entries = project.load()["entries"]
    on_cpu = entries["test_devices.py::test_on_cpu"]
    assert on_cpu["device"] == "cpu" and on_cpu["flops"] == 4 + linear_flops(1, 4, 2)  # comparison, head only
    assert entries["test_devices.py::test_on_run_device"]["device"] == "meta"
    project.run("--flop-device=meta", "--flop-strict").assert_outcomes(passed=2)


def test_a_bad_marker_device_is_an_error_for_that_test(project: Project) -> None:
    project.write("test_bad.py", "@pytest.mark.flop_budget(device='tpu')\ndef test_bad(flop_budget):\n    pass\n")
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*invalid @pytest.mark.flop_budget: device='tpu': 'tpu' is not a counting device; "
                                 "choose one of cpu, cuda, meta*"])


def test_a_device_per_call_says_how_to_choose_the_tests_device(project: Project) -> None:
    project.write("test_call.py", "def test_call(flop_budget):\n"
                                  "    flop_budget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2), device='cpu')\n")
    result = project.run("--flop-device=meta")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*device='cpu': the fixture counts on the test's device (meta); choose it for this "
                                 "test with @pytest.mark.flop_budget(device='cpu') or for the run with --flop-device=cpu*"])
