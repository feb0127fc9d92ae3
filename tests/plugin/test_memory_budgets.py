"""Memory budgets end to end (issue 18): ``max_memory`` and ``max_activation_memory`` in byte
units against peaks worked by hand, the bare-number refusal, and a memory-only regression."""

from __future__ import annotations

import pytest
from plugin_project import Project

ROWS, IN, OUT = 5, 8, 4
FLOAT32 = 4


def linear_peak(itemsize: int = FLOAT32) -> tuple[int, int]:
    """Linear(IN, OUT) on a (ROWS, IN) input: the weights and the input are live at entry, the
    forward adds its (ROWS, OUT) output (addmm writes it directly); (peak, activation peak)."""
    entry = (IN * OUT + OUT + ROWS * IN) * itemsize
    return entry + ROWS * OUT * itemsize, ROWS * OUT * itemsize


def linear_test(marker: str, dtype: str = "float32", name: str = "test_mem") -> str:
    return (f"@pytest.mark.flop_budget({marker})\n"
            f"def {name}(flop_budget):\n"
            f"    model = torch.nn.Linear({IN}, {OUT}).to(torch.{dtype})\n"
            f"    flop_budget.measure(model, torch.zeros({ROWS}, {IN}, dtype=torch.{dtype}))\n\n")


@pytest.mark.parametrize("argument, index", [("max_memory", 0), ("max_activation_memory", 1)])
def test_a_limit_of_exactly_the_peak_passes_and_one_byte_less_fails(project: Project, argument: str, index: int) -> None:
    peak = linear_peak()[index]
    project.write("test_mem.py",
                  linear_test(f"{argument}='{peak}B'", name="test_exact"),
                  linear_test(f"{argument}='{peak - 1}B'", name="test_under"))
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    measured = "peak_memory" if index == 0 else "activation_memory"
    # the weights (36 floats), the (5, 8) input and the (5, 4) output, each float32
    result.stdout.fnmatch_lines([
        f"over budget: {argument}: {measured} {peak} B ({peak} bytes) > limit {peak - 1} B*",
        f"  live at the peak: inputs {ROWS * IN * 4} B, parameters {(IN * OUT + OUT) * 4} B, "
        f"temporaries {ROWS * OUT * 4} B",
    ])
    result.stdout.fnmatch_lines(["* test_mem.py::test_under - over budget*"])
    assert "test_mem.py::test_exact - " not in result.stdout.str()


def test_binary_and_decimal_units_are_not_confused(project: Project) -> None:
    peak = linear_peak()[0]  # 384 bytes: 0.375 KiB, 0.384 kB
    project.write("test_mem.py",
                  linear_test("max_memory='0.375KiB'", name="test_kib"),
                  linear_test("max_memory='0.383kB'", name="test_kb"))
    assert peak == 384
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["* test_mem.py::test_kb - over budget*"])


def test_a_bare_number_is_refused_with_both_readings_shown(project: Project) -> None:
    project.write("test_mem.py", linear_test("max_memory=1000"))
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*max_memory=1000: a memory limit needs its unit*'1000GiB' (or '1000B' if you meant bytes)*"])


def test_the_limit_applies_to_the_largest_peak_of_a_tests_measurements(project: Project) -> None:
    small, large = linear_peak()[0], linear_peak(8)[0]  # the same layer in float32, then float64
    body = (f"    flop_budget.measure(torch.nn.Linear({IN}, {OUT}), torch.zeros({ROWS}, {IN}), label='f32')\n"
            f"    flop_budget.measure(torch.nn.Linear({IN}, {OUT}).double(), torch.zeros({ROWS}, {IN}, "
            "dtype=torch.float64), label='f64')\n\n")
    project.write("test_mem.py",
                  f"@pytest.mark.flop_budget(max_memory='{large}B')\ndef test_fits(flop_budget):\n" + body,
                  f"@pytest.mark.flop_budget(max_memory='{large - 1}B')\ndef test_over(flop_budget):\n" + body)
    assert small < large - 1 < small + large  # the sum of the peaks would fail both; the larger one, one
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["* test_mem.py::test_over - over budget*"])


def test_a_memory_only_growth_regresses_and_names_what_holds_more(project: Project) -> None:
    """float64 doubles every byte and changes no count: the regression is the memory's alone."""
    model = ("class Net(torch.nn.Module):\n"
             "    def __init__(self):\n"
             "        super().__init__()\n"
             f"        self.fc = torch.nn.Linear({IN}, {OUT})\n\n"
             "    def forward(self, x):\n"
             "        return self.fc(x)\n\n\n"
             "def test_net(flop_budget):\n"
             "    flop_budget.measure(Net().to(DTYPE), torch.zeros(ROWS, IN, dtype=DTYPE))\n")
    model = model.replace("ROWS", str(ROWS)).replace("IN", str(IN))
    project.write("test_net.py", model.replace("DTYPE", "torch.float32"))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    entry = project.load()["entries"]["test_net.py::test_net"]
    assert (entry["peak_memory"], entry["activation_memory"]) == linear_peak()
    project.write("test_net.py", model.replace("DTYPE", "torch.float64"))
    result = project.run()
    result.assert_outcomes(failed=1)
    peak32, peak64 = linear_peak()[0], linear_peak(8)[0]
    result.stdout.fnmatch_lines([f"peak_memory regressed: {peak64} B vs baseline {peak32} B (+100.0%*"])
    out = result.stdout.str()
    assert "flops regressed" not in out
    assert f"grew: fc (Linear): memory at the peak {ROWS * OUT * 4} B -> {ROWS * OUT * 8} B (+100.0%)" in out
