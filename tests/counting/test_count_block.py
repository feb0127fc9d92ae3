"""count(): any code in a with-block, with measure()'s numbers where both apply; names of the
models that ran; params of the modules that ran; devices; nesting; exceptions; scoped formulas."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch import nn

import pytest_flopbudget as fb
from counting_helpers import engine_state


def linear_flops(rows: int, cin: int, cout: int, bias: bool = True) -> int:
    return rows * cout * (2 * cin - 1) + (rows * cout if bias else 0)


def linear_macs(rows: int, cin: int, cout: int, bias: bool = True) -> int:
    return rows * cout * cin + (rows * cout if bias else 0)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))



def test_a_forward_in_a_block_equals_measure():
    model, x = mlp(), torch.randn(5, 4)
    with fb.count() as counted:
        model(x)
    measured = fb.measure(model, x)
    expected = linear_flops(5, 4, 8) + 5 * 8 + linear_flops(5, 8, 3)
    assert counted.flops == measured.flops == expected
    assert counted.macs == measured.macs == linear_macs(5, 4, 8) + 5 * 8 + linear_macs(5, 8, 3)
    assert counted.params == measured.params == 4 * 8 + 8 + 8 * 3 + 3
    assert counted.ops == measured.ops and counted.uncounted == {}
    assert isinstance(counted.measurement, fb.Measurement)
    assert counted.to_dict()["flops"] == expected
    assert "Sequential" in counted.table()


def test_two_models_and_code_between_them_are_named_and_summed():
    encoder, decoder = mlp(), nn.Linear(3, 2)
    other_encoder = mlp()
    x = torch.randn(5, 4)
    with fb.count() as counted:
        h = encoder(x)
        h = h * 2.0  # tensor code between models: in the total only
        decoder(h)
        other_encoder(x)  # a second Sequential: named Sequential#2
    one_mlp = linear_flops(5, 4, 8) + 5 * 8 + linear_flops(5, 8, 3)
    assert counted.modules["Sequential"].flops == one_mlp
    assert counted.modules["Sequential.0"].flops == linear_flops(5, 4, 8)
    assert counted.modules["Linear"].flops == linear_flops(5, 3, 2)
    assert counted.modules["Sequential#2"].flops == one_mlp
    assert counted.flops == 2 * one_mlp + linear_flops(5, 3, 2) + 5 * 3
    assert counted.modules[""].type == "count"


def test_params_are_those_of_the_modules_that_ran():
    model = nn.ModuleDict({"used": nn.Linear(4, 3), "unused": nn.Linear(100, 100)})
    tied = nn.Linear(3, 3, bias=False)
    with fb.count() as counted:
        y = model["used"](torch.randn(2, 4))
        tied(tied(y))  # the same weights twice: once in params
    assert counted.params == 4 * 3 + 3 + 9
    model["used"].weight.requires_grad_(False)
    with fb.count() as frozen:
        model["used"](torch.randn(2, 4))
    assert (frozen.params, frozen.trainable_params) == (15, 3)


def test_nested_blocks_and_a_measure_inside_a_block():
    model, x = mlp(), torch.randn(5, 4)
    one = fb.measure(model, x).flops
    with fb.count() as outer:
        model(x)
        with fb.count() as inner:
            model(x)
        measured = fb.measure(model, x)
    assert inner.flops == one and measured.flops == one
    assert outer.flops == 3 * one  # the outer block saw its own forward, the inner's and measure's


def test_a_block_entered_twice_measures_each_time_freshly():
    model, x = mlp(), torch.randn(5, 4)
    block = fb.count()
    with block as first:
        model(x)
    with block as second:
        model(x)
        model(x)
    assert second.flops == 2 * first.flops


def test_an_exception_leaves_nothing_behind_and_records_nothing():
    before = engine_state()
    model = mlp().to("meta")
    with pytest.raises(ValueError, match="inside"):
        with fb.count(device="meta", formulas={"aten::relu": lambda x, *, out_shape: (0, 0)}) as counted:
            model(torch.randn(5, 4))
            raise ValueError("inside")
    assert engine_state() == before
    with pytest.raises(fb.MeasurementError, match="block raised ValueError"):
        counted.flops
    with fb.count() as ok:
        mlp()(torch.randn(5, 4))
    assert ok.ops["aten.relu"] == 40  # the scoped formula did not leak


def test_numbers_before_the_block_ends_are_an_error():
    with fb.count() as counted:
        with pytest.raises(fb.MeasurementError, match="not finished"):
            counted.flops


def test_meta_block_counts_a_model_built_on_meta_without_memory():
    with torch.device("meta"):
        model = mlp()
    x = torch.randn(5, 4)
    with fb.count(device="meta") as counted:
        y = model(torch.randn(5, 4))  # created inside: a fake tensor, on cpu as measure()'s on meta
        assert isinstance(y, FakeTensor) and y.device.type == "cpu"
    assert counted.flops == fb.measure(mlp(), x).flops
    assert all(p.device.type == "meta" for p in model.parameters())  # the caller's model as it was
    assert counted.device == "meta"


def test_meta_block_says_what_to_do_when_values_are_read():
    with torch.device("meta"):
        model = mlp()
    with pytest.raises(fb.MeasurementError, match="reads tensor values"):
        with fb.count(device="meta"):
            y = model(torch.randn(5, 4))
            if y.sum().item() > 0:
                pass


def test_meta_block_counts_a_real_model_without_touching_it():
    model = mlp()  # real cpu weights, built before the block
    weights = [p.detach().clone() for p in model.parameters()]
    with fb.count(device="meta") as counted:
        model(torch.randn(5, 4))
    assert counted.flops == fb.measure(mlp(), torch.randn(5, 4)).flops
    assert all(type(p) is torch.nn.Parameter and torch.equal(p, w) for p, w in zip(model.parameters(), weights))


def test_meta_block_says_what_to_do_when_a_real_tensor_meets_a_meta_one():
    model = mlp()
    with pytest.raises(fb.MeasurementError, match="real tensor met a meta one"):
        with fb.count(device="meta"):
            model(torch.randn(5, 4)) + torch.zeros(5, 3, device="meta")  # meta asked for explicitly


def test_cpu_block_makes_cpu_the_default_device():
    with fb.count(device="cpu") as counted:
        t = torch.ones(3)
        t + t
    assert t.device.type == "cpu" and counted.flops == 3 and counted.device == "cpu"


def test_scoped_formulas_in_a_block():
    with fb.count(formulas={torch.ops.aten.relu: lambda x, *, out_shape: (7, 1)}) as counted:
        torch.relu(torch.randn(10))
    assert (counted.flops, counted.macs) == (7, 1)


def test_bad_formulas_argument_is_a_clear_error():
    with pytest.raises(TypeError, match="formulas= must be a dict"):
        fb.count(formulas=[("aten::relu", print)])
