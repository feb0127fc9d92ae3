"""The result model's shared pieces: one number format, one column layout, module-name orders,
and failures recognised by torch's exception types. All torch-free except the error checks."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import pytest
import torch
from torch import nn

import pytest_flopbudget as fb
from pytest_flopbudget.counting.errors import MeasurementError, mixes_devices, needs_values
from pytest_flopbudget.counting.names import ancestors, module_depth, module_order, natural_key
from pytest_flopbudget.counting.text import decimal, format_count, giga, human_count, layout, percent


@pytest.mark.parametrize(("value", "expected"), [
    (25_557_032, "25.557M"),  # three decimals at most
    (26_000_000, "26M"),  # trailing zeros dropped
    (147_648, "147.648k"),
    (193_000, "193k"),
    (384, "384"),
    (8_500_000_000, "8.5G"),
    (1_234_567_890_123, "1.235T"),
    (Fraction(3, 2), "1.5"),
    (0.004, "0.004"),  # below 0.01: three significant digits
])
def test_one_number_format(value, expected):
    assert human_count(value) == expected


def test_budget_units_use_the_same_number_format():
    assert format_count(8_500_000_000, "flops") == "8.5 GFLOPs"
    assert format_count(900_000_000, "macs") == "0.9 GMACs"
    assert format_count(26_000_000, "params") == human_count(26_000_000) == "26M"
    assert decimal(2.0) == "2" and decimal(1e-5) == "1e-05"


def test_the_engine_table_and_the_plugin_summary_print_a_count_alike():
    """The same parameter count reads the same in the per-module table and in a budget message."""
    measured = fb.measure(nn.Linear(4096, 6239), torch.zeros(1, 4096), device="meta")
    assert measured.params == 4096 * 6239 + 6239 == 25_561_183
    text = "25.561M"
    assert human_count(measured.params) == text
    assert f"{text} params" in measured.table()
    from pytest_flopbudget.reporting.verdict import BudgetCheck

    check = BudgetCheck("max_params", "params", Fraction(20_000_000), measured.params)
    assert f"({text})" in check.describe()


def test_one_percent_format_for_changes_and_budget_use():
    """Changes are signed, the budget column is not; one decimal, three significant digits past a
    million percent (a limit of 1e-9 GFLOPs met by 8 flops), and a placeholder for no value."""
    assert percent((1_250 - 1_000) / 1_000) == "+25.0%" and percent((800 - 1_000) / 1_000) == "-20.0%"
    assert percent(1_250 / 1_000, signed=False) == "125.0%"
    assert percent(8 / 1e-9 - 1) == "+8e+11%" and percent(8 / 1e-9, signed=False) == "8e+11%"
    assert percent(float("inf")) == "+inf%" and percent(None) == "n/a" and percent(None, missing="-") == "-"


def test_layout_aligns_names_left_and_numbers_right_with_a_rule():
    lines = layout([("name", "n"), ("a", "1"), ("long name", "1000")], left={0})
    assert lines == [
        "name          n",
        "---------------",
        "a             1",
        "long name  1000",
    ]
    # a left-aligned last column wider than its header: the rule spans the widest row
    assert layout([("n", "verdict"), ("1", "regressed")], left={1}) == ["n  verdict", "------------", "1  regressed"]


def test_small_counts_keep_three_significant_digits_in_tables_and_messages():
    flops = 11_756_544  # 0.0118 G: the table column and the budget message agree
    assert giga(flops / 1e9) == "0.0118" and format_count(flops, "flops") == "0.0118 GFLOPs"
    assert giga(53_265_920 / 1e9) == "0.0533" and giga(9_413_000 / 1e9) == "0.00941"
    assert giga(3_632_100_000 / 1e9) == "3.632" and giga(0) == "0" and giga(None) == "-"
    # never scientific (issue 19.8: '3.3e-05' beside '0.000296' in one table)
    assert giga(33_000 / 1e9) == "0.0000330" and giga(296_000 / 1e9) == "0.000296" and giga(64 / 1e9) == "0.0000000640"


def test_a_module_too_small_for_the_tables_precision_reads_below_it_not_zero():
    class BodyAndHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(3, 256, 3, padding=1)
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            return self.head(self.body(x).mean((2, 3))[:, :32])

    m = fb.measure(BodyAndHead(), torch.randn(1, 3, 64, 64))
    head = 10 * (2 * 32 - 1) + 10  # the seed's FC rule with bias: 640 FLOPs, 5e-7 of the 0.0577 G body
    assert m.modules["head"].flops == head
    row = next(line for line in m.table().splitlines() if line.strip().startswith("head"))
    # the column shows four significant digits of the largest count, five decimals here
    assert row.split()[2:4] == ["<0.00001", "<0.00001"]
    assert next(line for line in m.table().splitlines() if line.strip().startswith("body")).split()[2] == (
        f"{m.modules['body'].flops / 1e9:.5f}")


def test_module_names():
    assert [module_depth(n) for n in ("", "a", "a.b.0")] == [0, 1, 3]
    assert ancestors("a.b") == ["", "a", "a.b"] and ancestors("") == [""]
    names = ["layers.10", "layers.2", "layers.[3-9]", "head", "layers.2.mlp", "layers"]
    assert sorted(names, key=module_order) == ["head", "layers", "layers.2", "layers.2.mlp", "layers.[3-9]",
                                               "layers.10"]
    ids = ["t.py::test[10]", "t.py::test[2]", "t.py::test[1]"]
    assert sorted(ids, key=natural_key) == ["t.py::test[1]", "t.py::test[2]", "t.py::test[10]"]


def test_result_types_import_without_torch():
    """The plugin's start-up imports the result model, its text and the report: none imports torch."""
    code = ("import sys\n"
            "import pytest_flopbudget, pytest_flopbudget.counting.measurement, pytest_flopbudget.counting.text\n"
            "import pytest_flopbudget.plugin.manager, pytest_flopbudget.reporting.report, pytest_flopbudget.cli\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_failure_for_want_of_values_is_recognised_by_its_torch_type():
    from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException

    func = torch.ops.aten._local_scalar_dense.default
    assert needs_values(DataDependentOutputException(func))
    assert needs_values(DynamicOutputShapeException(torch.ops.aten.nonzero.default))
    wrapped = ValueError("the model's own wrapper")
    wrapped.__cause__ = DataDependentOutputException(func)
    assert needs_values(wrapped)  # through the chain a model's code re-raised it with
    assert not needs_values(RuntimeError("shape mismatch"))
    assert not needs_values(ValueError("a message that mentions .item() cannot be called on meta tensors"))
    assert not mixes_devices(RuntimeError("shape mismatch"))


def test_the_engine_names_its_own_argument_and_the_device_that_works():
    class DataDependent(nn.Module):
        def forward(self, x):
            return x.nonzero()

    with pytest.raises(MeasurementError) as caught:
        fb.measure(DataDependent(), torch.randn(4), device="meta")
    assert "device='cpu'" in str(caught.value)
    assert "--flop-device" not in str(caught.value) and "--device" not in str(caught.value)
    assert caught.value.use_device == "cpu"


@pytest.mark.parametrize("message", [
    "Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; "
    "but got torch.FloatTensor instead (while checking arguments for embedding)",
    "tensors used as indices must be long, int, byte or bool tensors",
])
def test_float_token_ids_are_recognised_in_each_of_torchs_wordings(message):
    from pytest_flopbudget.counting.errors import wants_integer_inputs

    assert wants_integer_inputs(RuntimeError(message))
    assert not wants_integer_inputs(RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"))


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_float_token_ids_given_to_an_embedding_get_the_hint_on_every_device(device):
    from pytest_flopbudget.counting.errors import wants_integer_inputs

    with pytest.raises(Exception) as caught:
        fb.measure(nn.Embedding(10, 4), torch.zeros(2, 3), device=device)
    assert wants_integer_inputs(caught.value)
