"""Plain unit tests of the plugin's pure parts: marker parsing, options, baseline, verdicts."""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import pytest

from pytest_flopbudget.counting.measurement import ModuleCost
from pytest_flopbudget.reporting.baseline import Baseline, BaselineError, Entry, dump, entry_key, load, nodeid_of, save
from pytest_flopbudget.plugin.marker import MarkerError, parse_budget, parse_quantity, parse_tolerance
from pytest_flopbudget.plugin.options import device_type, path_type, tolerance_type
from pytest_flopbudget.reporting.verdict import IMPROVED, NEW, OK, REGRESSED, Measured, ModuleChange, TestVerdict, judge, judge_entry


# -- marker ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("argument", "value", "unit", "expected"), [
    ("max_params", "26M", 1, 26_000_000),
    ("max_params", "900k", 1, 900_000),
    ("max_params", "7B", 1, 7_000_000_000),
    ("max_params", 7.0e9, 1, 7_000_000_000),
    ("max_params", 36, 1, 36),
    ("max_gflops", 8.5, 10**9, 8_500_000_000),
    ("max_gflops", "4.1G", 10**9, 4_100_000_000),
    ("max_gflops", "900M", 10**9, 900_000_000),
    ("max_gflops", "8.5", 10**9, 8_500_000_000),  # a bare string is in the argument's unit
    ("max_gflops", 192e-9, 10**9, 192),
    ("max_gmacs", " 1.5 T ", 10**9, 1_500_000_000_000),
])
def test_quantities_are_exact(argument: str, value: object, unit: int, expected: int) -> None:
    assert parse_quantity(argument, value, unit) == Fraction(expected)


@pytest.mark.parametrize(("value", "reason"), [
    (True, "bool"), (-1, "negative"), (0, "zero"), ("0k", "zero"), (float("nan"), "NaN"),
    ("lots", "not a number"), ("__import__('os')", "not a number"), ("2**40", "not a number"),
    ([1], "list"), (float("inf"), "infinite"), ("-3M", "negative"),
])
def test_bad_quantities(value: object, reason: str) -> None:
    with pytest.raises(MarkerError) as info:
        parse_quantity("max_params", value, 1)
    assert reason in str(info.value)
    assert info.value.argument == "max_params"


def test_unknown_keyword_suggests_the_close_one() -> None:
    with pytest.raises(MarkerError, match="did you mean 'max_gflops'"):
        parse_budget((), {"max_glops": 1})


def test_positional_and_empty_markers_are_rejected() -> None:
    with pytest.raises(MarkerError, match="keyword arguments only"):
        parse_budget((8.5,), {})
    with pytest.raises(MarkerError, match="no limit given"):
        parse_budget((), {"tolerance": 0.1})
    with pytest.raises(MarkerError, match="no limit given"):
        parse_budget((), {})


def test_budget_keeps_limits_and_tolerance() -> None:
    budget = parse_budget((), {"max_gflops": 2, "max_params": "1k", "tolerance": "5%"})
    assert [(l.metric, l.value) for l in budget.limits] == [("flops", 2 * 10**9), ("params", 1000)]
    assert budget.tolerance == Fraction(1, 20)
    assert parse_tolerance(0) == 0 and parse_tolerance(0.1) == Fraction(1, 10)
    with pytest.raises(MarkerError):
        parse_tolerance(-0.1)


# -- options --------------------------------------------------------------------------------------

def test_option_validators(tmp_path: Path) -> None:
    assert device_type("META") == "meta" and device_type("cuda:1") == "cuda:1"
    assert tolerance_type("5%") == Fraction(1, 20) and tolerance_type("0.25") == Fraction(1, 4)
    for bad in ("gpu", "cuda:x"):
        with pytest.raises(argparse.ArgumentTypeError):
            device_type(bad)
    for bad in ("-0.1", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            tolerance_type(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        path_type(str(tmp_path))


# -- baseline -------------------------------------------------------------------------------------

def entry(flops: int, macs: int = 1, params: int = 1, **modules: tuple[int, int, int]) -> Entry:
    return Entry(flops, macs, params, {name: ModuleCost("Linear", *counts) for name, counts in modules.items()})


def test_keys_append_labels() -> None:
    assert entry_key("t.py::test_a[x]", None) == "t.py::test_a[x]"
    assert entry_key("t.py::test_a", "enc") == "t.py::test_a#enc"
    assert nodeid_of("t.py::test_a#enc") == "t.py::test_a"


def test_round_trip_and_stable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    entries = {"b::t": entry(5, fc=(5, 1, 1)), "a::t": entry(3)}
    assert save(Baseline(path, {}), entries)
    first = path.read_bytes()
    loaded = load(path)
    assert dict(loaded.entries) == entries
    assert dump(dict(reversed(list(entries.items()))), "x") == dump(entries, "x")
    assert not save(loaded, dict(loaded.entries))  # unchanged: not rewritten
    assert path.read_bytes() == first
    assert first.index(b"a::t") < first.index(b"b::t")


def test_merge_upserts_and_keeps_the_rest(tmp_path: Path) -> None:
    base = Baseline(tmp_path / "b.yaml", {"a": entry(1), "b": entry(2), "c": entry(3)})
    merged = base.merged({"b": entry(20), "d": entry(4)}, remove=["c"])
    assert merged == {"a": entry(1), "b": entry(20), "d": entry(4)}


@pytest.mark.parametrize(("text", "line", "message"), [
    ("format: 1\nentries:\n  t:\n    flops: 1\n    macs: 1\n    params: -1\n", 6, "non-negative integer"),
    ("format: 1\nentries:\n  t:\n    flops: 1.5\n    macs: 1\n    params: 1\n", 4, "non-negative integer"),
    ("format: 1\nentries:\n  t:\n    flops: true\n    macs: 1\n    params: 1\n", 4, "non-negative integer"),
    ("format: 1\nentries:\n  t:\n    flops: 1\n    macs: 1\n", 4, "missing params"),
    ("format: 3\nentries: {}\n", 1, "format must be 2 (or the older 1)"),
    ("format: 1\nentries:\n  t: {flops: 1, macs: 1, params: 1}\n  t: {flops: 2, macs: 1, params: 1}\n", 4, "duplicate key"),
    ("format: 1\nentries: [1, 2]\n", 2, "mapping"),
    ("format: 1\nentries:\n  t: {flops: 1, macs: 1, params: 1, extra: 2}\n", 3, "unknown field"),
    ("format: 1\nentries:\n  t:\n    flops: 1\n   macs: [\n", 5, "not valid YAML"),
    ("format: 1\nentries:\n  t:\n    flops: 1\n    macs: 1\n    params: 1\n    modules:\n      fc: {type: Linear, flops: x, macs: 1, params: 1}\n", 8, "flops must be"),
    ("- 1\n", 1, "expected a mapping"),
])
def test_bad_baselines_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "flop_baseline.yaml"
    path.write_text(text)
    with pytest.raises(BaselineError) as info:
        load(path)
    assert f"{path}:{line}:" in str(info.value)
    assert message in str(info.value)


def test_hostile_yaml_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "b.yaml"
    path.write_text(f"format: 1\nentries: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(BaselineError, match=r"b.yaml:2:"):
        load(path)
    assert not marker.exists()


# -- verdicts -------------------------------------------------------------------------------------

def test_regression_rule_with_tolerance() -> None:
    base = entry(100, 50, 10)
    assert judge_entry("k", None, entry(110, 50, 10), base, Fraction(1, 10), strict=False, update=False).status == OK
    over = judge_entry("k", None, entry(111, 50, 10), base, Fraction(1, 10), strict=False, update=False)
    assert over.status == REGRESSED and over.failing and over.regressed_metrics == ("flops",)
    assert not judge_entry("k", None, entry(111, 50, 10), base, Fraction(0), strict=False, update=True).failing
    assert judge_entry("k", None, entry(99, 50, 10), base, Fraction(0), strict=False, update=False).status == IMPROVED
    new = judge_entry("k", None, entry(1), None, Fraction(0), strict=True, update=False)
    assert new.status == NEW and new.failing
    # strict: an improvement within the tolerance passes, beyond it fails
    assert not judge_entry("k", None, entry(95, 50, 10), base, Fraction(1, 10), strict=True, update=False).failing
    assert judge_entry("k", None, entry(89, 50, 10), base, Fraction(1, 10), strict=True, update=False).failing


def test_grown_modules_largest_first() -> None:
    base = entry(100, 50, 10, a=(10, 5, 1), b=(10, 5, 1), c=(10, 5, 1))
    new = entry(190, 50, 10, a=(20, 5, 1), b=(90, 5, 1), c=(10, 5, 1), d=(1, 1, 1))
    verdict = judge_entry("k", None, new, base, Fraction(0), strict=False, update=False)
    assert [g.name for g in verdict.grown] == ["b", "a", "d"]


def test_a_new_layer_is_named_once_whole_not_each_of_its_parts() -> None:
    def rows(layers: int) -> dict[str, ModuleCost]:
        # each layer: a Linear (60 flops) and its own residual add (40 flops); the encoder adds nothing
        modules = {"enc": ModuleCost("Encoder", 100 * layers, 50 * layers, 3 * layers)}
        for i in range(layers):
            modules[f"enc.{i}"] = ModuleCost("Layer", 100, 50, 3)
            modules[f"enc.{i}.fc"] = ModuleCost("Linear", 60, 30, 3)
        return modules

    base = Entry(200, 100, 6, modules=rows(2))
    new = Entry(300, 150, 9, modules=rows(3))
    verdict = judge_entry("k", None, new, base, Fraction(0), strict=False, update=False)
    assert [(g.name, g.type) for g in verdict.grown] == [("enc.2", "Layer")]
    assert verdict.grown[0].describe().startswith("enc.2 (Layer): flops 100 (new work; none in the baseline)")


def test_budget_applies_to_the_sum_and_survives_transport() -> None:
    budget = parse_budget((), {"max_params": 30})
    measured = [Measured("a", entry(1, 1, 15)), Measured("b", entry(1, 1, 16))]
    verdict = judge("t.py::test", budget, measured, {}, tolerance=Fraction(0), strict=False, update=False)
    assert verdict.failing and verdict.over_budget[0].measured == 31
    assert "31 params" in verdict.long_repr()
    assert TestVerdict.from_dict(verdict.to_dict()) == verdict
    just = judge("t.py::test", parse_budget((), {"max_params": 31}), measured, {}, tolerance=Fraction(0),
                 strict=False, update=False)
    assert not just.failing and just.budget_used == 1.0


def test_a_grown_row_puts_its_phase_split_next_to_its_whole_change_and_its_own_ops_after():
    # a block whose flops went 100 -> 180: forward 40 -> 70, backward 60 -> 110; its own ops +20
    change = ModuleChange("attn", "Block", {"flops": 100, "macs": 50, "params": 4, "backward_flops": 60},
                          {"flops": 180, "macs": 50, "params": 4, "backward_flops": 110}, own={"flops": 20})
    assert change.describe() == ("attn (Block): flops 100 -> 180 (+80.0%) [forward +30, backward +50], "
                                 "including its children; its own ops +20")
