"""Repeated blocks written once (``layers.[0-31].mlp``) and read back as real module names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_flopbudget.counting.names import module_order
from pytest_flopbudget.reporting.repeats import RangeError, compress, expand, expand_all, group_names


def test_identical_layers_collapse_and_a_changed_one_splits_the_range():
    modules = {f"layers.{i}": ("Block", 10) for i in range(8)}
    modules.update({f"layers.{i}.mlp": ("MLP", 6) for i in range(8)})
    modules["layers.3.mlp"] = ("MLP", 7)
    assert compress(modules) == {
        "layers.[0-2]": ("Block", 10), "layers.[0-2].mlp": ("MLP", 6),
        "layers.3": ("Block", 10), "layers.3.mlp": ("MLP", 7),
        "layers.[4-7]": ("Block", 10), "layers.[4-7].mlp": ("MLP", 6),
    }


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
