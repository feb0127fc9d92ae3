"""Repeated blocks written once (``layers.[0-31].mlp``) and read back as real module names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_flopbudget.counting.names import module_order
from pytest_flopbudget.reporting.repeats import RangeError, compress, expand, expand_all, group_names


def test_identical_layers_collapse_and_a_changed_one_splits_only_its_own_range():
    modules = {f"layers.{i}": ("Block", 10) for i in range(8)}
    modules.update({f"layers.{i}.mlp": ("MLP", 6) for i in range(8)})
    modules.update({f"layers.{i}.norm": ("Norm", 2) for i in range(8)})
    modules["layers.3.mlp"] = ("MLP", 7)
    assert compress(modules) == {
        "layers.[0-7]": ("Block", 10), "layers.[0-7].norm": ("Norm", 2),  # unchanged lines keep their keys
        "layers.[0-2].mlp": ("MLP", 6), "layers.3.mlp": ("MLP", 7), "layers.[4-7].mlp": ("MLP", 6),
    }


def test_several_integer_parts_group_into_nested_ranges():
    modules = {f"layers.{i}.experts.{e}.w1": ("Linear", 4) for i in range(4) for e in range(8)}
    assert compress(modules) == {"layers.[0-3].experts.[0-7].w1": ("Linear", 4)}
    modules["layers.2.experts.5.w1"] = ("Linear", 5)
    assert expand_all(compress(modules)) == modules
    assert len(compress(modules)) == 5  # [0-4] and [6-7] for the other experts; 5 split in three


def test_nested_ranges_expand_to_every_combination():
    assert expand("stages.[0-1].blocks.[2-3].fc") == [
        "stages.0.blocks.2.fc", "stages.0.blocks.3.fc", "stages.1.blocks.2.fc", "stages.1.blocks.3.fc",
    ]


@pytest.mark.parametrize("bad", ["a.[3-1].b", "a.[0-x]", "a[0-1]", "a.[0-99999999]"])
def test_malformed_or_huge_ranges_are_refused(bad):
    with pytest.raises(RangeError):
        expand(bad)


def test_a_module_given_twice_is_refused():
    with pytest.raises(RangeError, match="given twice"):
        expand_all({"a.[0-2]": 1, "a.1": 2})


names = st.lists(
    st.tuples(st.sampled_from(["enc", "dec", "head"]), st.integers(0, 5), st.sampled_from(["", ".fc", ".norm"])),
    max_size=30,
).map(lambda parts: {f"{a}.{i}{leaf}": (i * 7) % 3 for a, i, leaf in parts})


@given(names)
def test_compress_then_expand_gives_back_the_same_modules(modules):
    assert expand_all(compress(modules)) == modules


def test_group_names_joins_consecutive_layers_with_the_same_change():
    grown = ["t.layer.0.ffn", "t.layer.1.ffn", "t.layer.2.ffn", "t.layer.4.ffn", "t.head"]
    groups = group_names(grown, key=lambda name: "same")
    assert groups == [
        ("t.layer.[0-2].ffn", ["t.layer.0.ffn", "t.layer.1.ffn", "t.layer.2.ffn"]),
        ("t.layer.4.ffn", ["t.layer.4.ffn"]),
        ("t.head", ["t.head"]),
    ]
    # a different change is not grouped with the others
    different = group_names(grown[:3], key=lambda name: name.endswith("1.ffn"))
    assert [label for label, _ in different] == ["t.layer.0.ffn", "t.layer.1.ffn", "t.layer.2.ffn"]


def test_natural_order_puts_layer_2_before_layer_10():
    assert sorted(["l.10", "l.2", "l.[3-9]", "head"], key=module_order) == ["head", "l.2", "l.[3-9]", "l.10"]


STAGES = """
class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
        self.norm = torch.nn.LayerNorm(8)

    def forward(self, x):
        return self.norm(self.fc(x))


class Stage(torch.nn.Module):
    def __init__(self, bias):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8, bias=bias)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(4))

    def forward(self, x):
        x = self.proj(x)
        for block in self.blocks:
            x = block(x)
        return x


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stages = torch.nn.ModuleList(Stage(bias=(i == {widened})) for i in range(4))

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


def test_net(flop_budget):
    flop_budget.measure(Net(), torch.zeros(1, 8))
"""


def test_the_baseline_diff_is_proportional_to_the_change(project) -> None:
    """Issue 19.9: widening one layer of one stage re-emitted every unchanged stage."""
    import difflib

    project.write("test_net.py", STAGES.replace("{widened}", "-1"))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    before = project.baseline.read_text().splitlines()
    assert any(line.strip().startswith("stages.[0-3].blocks.[0-3].fc:") for line in before)
    project.write("test_net.py", STAGES.replace("{widened}", "2"))  # stage 2's proj gains a bias
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    after = project.baseline.read_text().splitlines()
    diff = [line for line in difflib.ndiff(before, after) if line[:2] in ("- ", "+ ")]
    # the bias's 8 bytes move the memory peak: the entry's own memory lines change, one line each
    memory = [line for line in diff if line[2:].strip().startswith(("peak_memory:", "memory_at_peak:"))]
    assert len(memory) == 2 * 2, diff
    diff = [line for line in diff if line not in memory]
    removed = [line for line in diff if line.startswith("- ")]
    added = [line for line in diff if line.startswith("+ ")]
    # the entry's flops, macs, params; "stages"; the range of the stages and of their proj
    assert len(removed) == 3 + 1 + 2, diff
    # the same, with stages.[0-3] and its proj split in three: [0-1], 2, 3
    assert len(added) == 3 + 1 + 2 * 3, diff
    assert not any("blocks" in line for line in diff)  # the unchanged blocks keep their lines


GROWTH = """
class Block(torch.nn.Module):
    def __init__(self, extra):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8, bias=extra)
        self.extra = extra

    def forward(self, x):
        x = self.fc(x)
        return x * 2 if self.extra else x


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = Block({extra})
        self.b = torch.nn.Sequential({new_layer})

    def forward(self, x):
        return self.b(self.a(x))


def test_net(flop_budget):
    flop_budget.measure(Net(), torch.zeros(1, 8))
"""


def test_growth_says_new_work_and_own_against_inclusive(project) -> None:
    """Issue 19.8: '0 -> 131,072 (+inf%)' reads as nothing; a block's row includes its children."""
    project.write("test_net.py", GROWTH.replace("{extra}", "False").replace("{new_layer}", ""))
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    project.write("test_net.py", GROWTH.replace("{extra}", "True").replace("{new_layer}", "torch.nn.Linear(8, 8)"))
    result = project.run()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    linear = 8 * (2 * 8 - 1) + 8  # the seed's FC formula with bias, one row
    assert f"grew: b.0 (Linear): flops {linear:,} (new work; none in the baseline)" in out
    assert "inf%" not in out
    # a grew by its child's bias (8) and its own multiply (8): its row is inclusive, and says its own part
    before = 8 * (2 * 8 - 1)
    assert (f"grew: a (Block): flops {before:,} -> {before + 16:,} (+{1600 / before:.1f}%), including its children; "
            "its own ops +8") in out
    assert f"grew: a.fc (Linear): flops {before:,} -> {before + 8:,}" in out
