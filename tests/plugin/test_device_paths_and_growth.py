"""The plugin on real repositories' models: counts that depend on values across devices, and a
regression that names the layer that grew in a deep model with repeated blocks (issue 10)."""

from __future__ import annotations

import pytest
from plugin_project import Project, linear_flops, linear_params

# a model whose forward reads a value on the host (as transformers does with an all-ones mask):
# on cpu it looks and skips the gate; on meta it cannot look and runs it
VALUE_DEPENDENT = """
class Gated(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        try:
            skip = bool((x > 0).all())
        except Exception:  # meta: values are unknown, take the general path
            skip = False
        if not skip:
            x = self.gate(x)
        return self.head(x)


def test_gated(flop_budget):
    flop_budget.measure(Gated(), torch.ones(1, 4))
"""


def test_value_dependent_count_from_another_device_is_explained_not_called_a_regression(project: Project) -> None:
    project.write("test_gated.py", VALUE_DEPENDENT)
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    entry = project.load()["entries"]["test_gated.py::test_gated"]
    assert entry["device"] == "cpu"
    assert entry["value_reads"] == {"": {"aten._local_scalar_dense": 1}}
    cpu_flops = 4 + linear_flops(1, 4, 2)  # the comparison, then the head alone
    assert entry["flops"] == cpu_flops

    result = project.run("--flop-device=meta")
    result.assert_outcomes(passed=1)
    meta_flops = 4 + linear_flops(1, 4, 4) + linear_flops(1, 4, 2)
    result.stdout.fnmatch_lines([
        "*test_gated.py::test_gated*device mismatch*",
        "*1 device mismatch*",
        f"*measured on meta, the baseline on cpu, and the forward read tensor values on the host "
        f"(on cpu: aten._local_scalar_dense in the model's own forward)*flops {meta_flops:,} vs {cpu_flops:,}*",
        "*measure on the baseline's device (--flop-device=cpu)*",
    ])
    assert "REGRESSED" not in result.stdout.str()

    strict = project.run("--flop-device=meta", "--flop-strict")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*--flop-strict fails this*", "*DEVICE MISMATCH*"])


def test_a_meta_failure_names_the_pytest_option_that_fixes_it(project: Project) -> None:
    """The engine says device='cpu'; in a test, the device is chosen with --flop-device."""
    project.write("test_values.py", (
        "class Gate(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x.nonzero()\n\n"
        "def test_values(flop_budget):\n"
        "    flop_budget.measure(Gate(), torch.ones(1, 4))\n"
    ))
    result = project.run("--flop-device=meta")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*MeasurementError: Gate cannot run on meta*device='cpu'*",
                                 "*choose the device with --flop-device=cpu*"])
    project.run("--flop-device=cpu").assert_outcomes(passed=1)


def test_value_independent_model_counts_the_same_on_another_device(project: Project) -> None:
    project.write("test_plain.py", project.linear_test("test_plain", 8, 4))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    result = project.run("--flop-device=meta", "--flop-strict")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_plain.py::test_plain*ok*"])


def test_a_value_dependent_growth_on_the_same_device_is_a_regression(project: Project) -> None:
    project.write("test_gated.py", VALUE_DEPENDENT)
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    project.write("test_gated.py", VALUE_DEPENDENT.replace("torch.ones(1, 4)", "-torch.ones(1, 4)"))
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["  grown: gate (Linear)", "*FLOPS REGRESSED*"])


DECODER = """
class FeedForward(torch.nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.lin1 = torch.nn.Linear(dim, hidden)
        self.lin2 = torch.nn.Linear(hidden, dim)

    def forward(self, x):
        return self.lin2(torch.relu(self.lin1(x)))


class Layer(torch.nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, hidden)

    def forward(self, x):
        return x + self.ffn(self.norm(x))


class Decoder(torch.nn.Module):
    def __init__(self, layers, hidden, wide=()):
        super().__init__()
        self.layer = torch.nn.ModuleList(Layer(8, hidden + (4 if i in wide else 0)) for i in range(layers))
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        for layer in self.layer:
            x = layer(x)
        return self.head(x)


def test_decoder(flop_budget):
    flop_budget.measure(Decoder(LAYERS, HIDDEN, WIDE), torch.zeros(1, 8))
"""


def decoder(layers: int, hidden: int, wide: tuple[int, ...] = ()) -> str:
    return DECODER.replace("LAYERS", str(layers)).replace("HIDDEN", str(hidden)).replace("WIDE", repr(wide))


def test_a_regression_names_the_deepest_layer_with_repeated_layers_grouped(project: Project) -> None:
    project.write("test_decoder.py", decoder(6, 16))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    project.write("test_decoder.py", decoder(6, 20))
    result = project.run()
    result.assert_outcomes(failed=1)
    # every layer's FFN widened alike: the six layers grouped, the deepest modules named, largest
    # first; the FeedForward itself is named too, last, for its functional relu (4 more elements)
    before, after = linear_flops(1, 8, 16), linear_flops(1, 8, 20)
    result.stdout.fnmatch_lines([
        "  grown: layer.[0-5].ffn.lin1 (Linear) x6, layer.[0-5].ffn.lin2 (Linear) x6, layer.[0-5].ffn (FeedForward) x6",
    ])
    out = result.stdout.str()
    assert f"grew: layer.[0-5].ffn.lin1 (Linear) x6, each: flops {before:,} -> {after:,}" in out
    assert "layer (ModuleList)" not in out and "(Layer)" not in out  # only the sums of what grew


def test_one_changed_layer_is_named_alone(project: Project) -> None:
    project.write("test_decoder.py", decoder(6, 16))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    project.write("test_decoder.py", decoder(6, 16, wide=(3,)))
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["  grown: layer.3.ffn.lin1 (Linear), layer.3.ffn.lin2 (Linear), layer.3.ffn (FeedForward)"])


def test_a_deep_baseline_reaches_the_leaves_and_stays_small(project: Project) -> None:
    project.write("test_decoder.py", decoder(32, 16))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    text = project.baseline.read_text()
    modules = project.load()["entries"]["test_decoder.py::test_decoder"]["modules"]
    # 32 identical layers are written once: the ModuleList, the range and its 4 leaves, the head
    assert set(modules) == {"layer", "layer.[0-31]", "layer.[0-31].norm", "layer.[0-31].ffn",
                            "layer.[0-31].ffn.lin1", "layer.[0-31].ffn.lin2", "head"}
    # bytes at the peak are kept apart, non-zero holders only: the few layers whose output is live then
    held = project.load()["entries"]["test_decoder.py::test_decoder"].get("memory_modules", {})
    assert len(held) <= 6, held
    assert len(text.splitlines()) < 25 + 1 + len(held)
    layer = linear_flops(1, 8, 16) + 16 + linear_flops(1, 16, 8) + 8 + 8  # lin1, relu, lin2, norm, residual
    assert modules["layer"]["flops"] == 32 * layer  # the container sums its layers
    assert modules["layer.[0-31].ffn.lin1"]["params"] == linear_params(8, 16)
    # and it is read back as 32 real layers: an unchanged run is clean
    project.run("--flop-strict").assert_outcomes(passed=1)


@pytest.mark.parametrize("depth, expected", [("1", {"layer", "head"}), ("2", {"layer", "layer.[0-1]", "head"})])
def test_the_baseline_depth_is_an_ini_key(project: Project, depth: str, expected: set[str]) -> None:
    project.pytester.makeini(f"[pytest]\nflop_baseline_depth = {depth}\n")
    project.write("test_decoder.py", decoder(2, 16))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    assert set(project.load()["entries"]["test_decoder.py::test_decoder"]["modules"]) == expected


def test_a_bad_baseline_depth_is_a_usage_error(project: Project) -> None:
    project.pytester.makeini("[pytest]\nflop_baseline_depth = deep\n")
    project.write("test_plain.py", project.linear_test("test_plain", 8, 4))
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*flop_baseline_depth = 'deep'*whole number of module levels*"])


def test_a_hostile_range_in_the_baseline_is_refused_with_its_line(project: Project) -> None:
    project.write("test_plain.py", project.linear_test("test_plain", 8, 4))
    project.baseline.write_text(
        "format: 1\nentries:\n  test_plain.py::test_plain:\n    flops: 1\n    macs: 1\n    params: 1\n"
        "    modules:\n      'layers.[0-99999999]': {type: Linear, flops: 1, macs: 1, params: 1}\n"
    )
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*flop_baseline.yaml:8: invalid baseline*more than 1,000,000 modules*"])
