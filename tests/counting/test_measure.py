"""measure()'s contract: functional ops count like modules, nothing twice, nothing left behind,
params counted once, the caller's objects untouched, clear errors. Expected values are the seed's
formulas worked in each test."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pytest_flopbudget as fb
from pytest_flopbudget.counting.model_state import ModelState
from counting_helpers import engine_state


def linear_flops(rows: int, cin: int, cout: int, bias: bool = True) -> int:
    """The seed's fully connected rule, (2·Cin − 1)·Cout per row, +1 per output for a bias."""
    return rows * cout * (2 * cin - 1) + (rows * cout if bias else 0)


def linear_macs(rows: int, cin: int, cout: int, bias: bool = True) -> int:
    return rows * cout * cin + (rows * cout if bias else 0)


class Functional(nn.Module):
    """The same affine map written five ways."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.weight = nn.Parameter(torch.randn(6, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "F.linear":
            return F.linear(x, self.weight)
        if self.how == "matmul":
            return torch.matmul(x, self.weight.t())
        if self.how == "@":
            return x @ self.weight.T
        if self.how == "einsum":
            return torch.einsum("bsi,oi->bso", x, self.weight)
        return x.matmul(self.weight.t())


@pytest.mark.parametrize("how", ["F.linear", "matmul", "@", "einsum", "method"])
@pytest.mark.parametrize("device", [None, "meta"])
def test_functional_forms_count_like_the_module(how, device):
    x = torch.randn(2, 3, 5)
    module = fb.measure(nn.Linear(5, 6, bias=False), x, device=device)
    functional = fb.measure(Functional(how), x, device=device)
    assert module.flops == functional.flops == linear_flops(6, 5, 6, bias=False)
    assert module.macs == functional.macs == linear_macs(6, 5, 6, bias=False)
    assert functional.uncounted == {}


def test_linear_bias_policy_does_not_depend_on_strides():
    """addmm on contiguous input, mm + add on a transposed view: one count."""
    layer = nn.Linear(5, 6)
    contiguous = fb.measure(layer, torch.randn(2, 3, 5))
    strided = fb.measure(layer, torch.randn(3, 2, 5).transpose(0, 1))
    assert contiguous.flops == strided.flops == linear_flops(6, 5, 6)
    assert contiguous.macs == strided.macs == linear_macs(6, 5, 6)


def test_nested_modules_counted_once_and_attributed_to_every_level():
    inner = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    model = nn.Sequential(inner, nn.Linear(8, 2))
    m = fb.measure(model, torch.randn(3, 4))
    first, relu, second = linear_flops(3, 4, 8), 3 * 8, linear_flops(3, 8, 2)
    assert m.flops == first + relu + second
    assert m.modules[""].flops == m.flops
    assert m.modules["0"].flops == first + relu
    assert m.modules["0.0"].flops == first
    assert m.modules["0.1"].flops == relu
    assert m.modules["1"].flops == second
    assert m.modules["0"].type == "Sequential" and m.modules["0.0"].type == "Linear"


def test_module_called_twice_counts_flops_twice_and_params_once():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 4)

        def forward(self, x):
            return self.layer(self.layer(x))

    m = fb.measure(Twice(), torch.randn(2, 4))
    assert m.flops == 2 * linear_flops(2, 4, 4)
    assert m.params == 4 * 4 + 4
    assert m.modules["layer"].flops == 2 * linear_flops(2, 4, 4)


def test_tied_and_shared_weights_counted_once():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.embed.weight
            self.shared = nn.Linear(4, 4)
            self.branch = nn.ModuleDict({"a": self.shared})  # one module under two parents

        def forward(self, tokens):
            return self.head(self.branch["a"](self.shared(self.embed(tokens))))

    model = Tied()
    m = fb.measure(model, torch.tensor([[1, 2, 3]]))
    assert m.params == 10 * 4 + (4 * 4 + 4)
    assert m.flops == 2 * linear_flops(3, 4, 4) + linear_flops(3, 4, 10, bias=False)
    assert m.modules["head"].params == 40 and m.modules["embed"].params == 40


def test_a_shared_subtree_credits_its_parameters_under_each_parent_once_above_both():
    block = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 2)))  # 20 + 10 parameters
    model = nn.ModuleDict({"left": nn.Sequential(block), "right": nn.Sequential(nn.Identity(), block)})
    model.right.add_module("gap", None)  # a None child is skipped, as torch's own walk skips it
    state = ModelState.read(model)
    assert [name for name, _ in state.modules] == [
        name for name, _ in model.named_modules()]  # each module once, under its first name
    per_module = state.params_per_module
    assert per_module["left"] == per_module["right"] == per_module["right.1.1"] + 20 == 30
    assert per_module[""] == 30  # once above both
    assert list(state.params) == [name for name, _ in model.named_parameters()]


def test_a_module_that_contains_itself_is_a_clear_recursion_error():
    model = nn.Sequential(nn.Linear(2, 2))
    model.add_module("again", model)
    with pytest.raises(RecursionError, match="does a module contain itself"):
        ModelState.read(model)


def test_buffers_are_not_params_and_frozen_params_are_not_trainable():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Linear(2, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    m = fb.measure(model, torch.randn(1, 3, 2, 2))
    assert m.params == (3 * 4 + 4) + 2 * 4 + (2 * 2 + 2)  # BN: gamma and beta only
    assert m.trainable_params == 2 * 4 + (2 * 2 + 2)


def test_measuring_twice_gives_the_same_numbers():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    x = torch.randn(1, 3, 9, 9)
    first, second = fb.measure(model, x), fb.measure(model, x)
    assert first.to_dict() == second.to_dict()
    # and the numbers are the right ones: a 3x3 conv, 3 -> 8 channels, 9x9 -> 7x7 outputs
    outputs = 8 * 7 * 7
    conv_flops = (2 * 3 * 3 * 3 - 1) * outputs + outputs  # the seed's rule, +1 per output for the bias
    conv_macs = 3 * 3 * 3 * outputs + outputs
    # ReLU: one per output element; adaptive pooling: one per input element (the conv's outputs)
    assert (first.flops, first.macs) == (conv_flops + outputs + outputs, conv_macs + outputs + outputs)
    assert first.params == 3 * 3 * 3 * 8 + 8



def test_nothing_left_behind_after_success_or_failure():
    before = engine_state()

    class Boom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(2, 2)

        def forward(self, x):
            self.layer(x)
            raise ValueError("half-way")

    fb.measure(nn.Linear(2, 2), torch.randn(1, 2), backward=True)
    with pytest.raises(ValueError, match="half-way"):
        fb.measure(Boom(), torch.randn(1, 2))
    with pytest.raises(ValueError, match="half-way"):
        fb.measure(Boom(), torch.randn(1, 2), device="meta")
    assert engine_state() == before


def test_forward_error_is_the_original_exception_with_a_note():
    class Bad(nn.Module):
        def forward(self, x):
            raise KeyError("missing")

    with pytest.raises(KeyError) as info:
        fb.measure(Bad(), torch.randn(1))
    notes = getattr(info.value, "__notes__", [])
    assert any("Bad" in note for note in notes)


def test_caller_objects_are_untouched():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    model.train()
    model[0].weight.requires_grad_(False)
    state = copy.deepcopy(model.state_dict())
    x = torch.randn(8, 4)
    x_before = x.clone()
    for device in (None, "cpu", "meta"):
        fb.measure(model, x, device=device, backward=True)
    assert model.training and model[1].training
    assert all(t.device.type == "cpu" for t in model.state_dict().values())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key  # running stats, num_batches_tracked too
    assert not model[0].weight.requires_grad and model[0].bias.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x, x_before)


def test_inplace_ops_on_inputs_do_not_reach_the_caller():
    class Inplace(nn.Module):
        def forward(self, x):
            return x.relu_()

    x = torch.randn(3, 3)
    before = x.clone()
    m = fb.measure(Inplace(), x)
    assert torch.equal(x, before)
    assert m.flops == 9  # relu_: one per element, like relu


def test_factories_are_built_on_the_target_device():
    seen = {}

    def build():
        layer = nn.Linear(4, 4)
        seen["device"] = layer.weight.device
        seen["fake"] = type(layer.weight.data).__name__
        return layer

    m = fb.measure(build, lambda: torch.randn(2, 4), device="meta")
    assert seen["device"] == torch.device("meta")  # no real memory behind the weights
    assert m.flops == linear_flops(2, 4, 4) and m.device == "meta"
    fb.measure(build, lambda: torch.randn(2, 4), device="cpu")
    assert seen["device"] == torch.device("cpu")


def test_integer_inputs_stay_integers_on_meta():
    class Lookup(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(100, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, tokens):
            assert tokens.dtype == torch.long
            return self.head(self.embed(tokens))

    m = fb.measure(Lookup(), torch.randint(0, 100, (2, 5)), device="meta")
    assert m.flops == linear_flops(10, 8, 3)


def test_inputs_as_tuple_dict_and_factory():
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 2)

        def forward(self, x, *, scale=None):
            y = self.a(x)
            return y * scale if scale is not None else y

    x = torch.randn(4, 3)
    base = linear_flops(4, 3, 2)
    assert fb.measure(Two(), (x,)).flops == base
    assert fb.measure(Two(), [x]).flops == base
    assert fb.measure(Two(), {"x": x, "scale": torch.ones(1)}).flops == base + 8
    assert fb.measure(Two(), lambda: (torch.randn(4, 3),)).flops == base


@pytest.mark.parametrize(
    "model, inputs, message",
    [
        (42, torch.randn(1), "nn.Module or a zero-argument callable"),
        (lambda: "not a module", torch.randn(1), "returned str, not an nn.Module"),
        (nn.Linear(2, 2), 3.5, "inputs must be a Tensor"),
        (nn.Linear(2, 2), {1: torch.randn(2)}, "argument names"),
    ],
)
def test_bad_model_or_inputs_is_a_clear_error(model, inputs, message):
    with pytest.raises(fb.MeasurementError, match=message):
        fb.measure(model, inputs)


@pytest.mark.parametrize("op", ["nonzero", "item"])
def test_data_dependent_model_on_meta_says_to_use_cpu(op):
    class DataDependent(nn.Module):
        def forward(self, x):
            if op == "nonzero":
                return x.nonzero()
            return x * x.sum().item()

    assert fb.measure(DataDependent(), torch.randn(4)).uncounted == {}
    with pytest.raises(fb.MeasurementError, match=r"counted on 'cpu' \(device='cpu'\)"):
        fb.measure(DataDependent(), torch.randn(4), device="meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(fb.MeasurementError, match="no usable CUDA"):
        fb.measure(nn.Linear(2, 2), torch.randn(1, 2), device="cuda")


def test_unknown_device_is_a_clear_error():
    with pytest.raises(fb.MeasurementError, match="not a device torch knows"):
        fb.measure(nn.Linear(2, 2), torch.randn(1, 2), device="tpu9")


def test_table_names_modules_types_and_shares():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    m = fb.measure(model, torch.randn(3, 4))
    text = str(m)
    assert "(total)" in text and "Sequential" in text and "Linear" in text and "ReLU" in text
    assert "100.0%" in text
    share = 100 * linear_flops(3, 4, 8) / m.flops
    assert f"{share:.1f}%" in text
    assert m.modules[""].type == "Sequential"


def test_measurement_round_trips_through_a_dict():
    m = fb.measure(nn.Sequential(nn.Linear(4, 8), nn.GELU()), torch.randn(3, 4))
    again = fb.Measurement.from_dict(m.to_dict())
    assert again == m
    assert again.gflops == m.flops / 1e9 and again.gmacs == m.macs / 1e9


def test_weights_on_meta_need_a_meta_count():
    with torch.device("meta"):
        half = nn.Linear(4, 4)
    mixed = nn.Sequential(nn.Linear(4, 4), half)
    x = torch.randn(3, 4)
    for device in (None, "cpu"):
        with pytest.raises(fb.MeasurementError, match=r"parameter '1.weight'.*device='meta'"):
            fb.measure(mixed, x, device=device)
    assert fb.measure(mixed, x, device="meta").flops == 2 * linear_flops(3, 4, 4)


def test_measure_inside_torch_flop_counter_mode():
    from torch.utils.flop_counter import FlopCounterMode

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 4)
    alone = fb.measure(model, x)
    with FlopCounterMode(display=False) as outer:
        nested = fb.measure(model, x)
    assert nested.to_dict() == alone.to_dict()
    assert outer.get_total_flops() == 2 * (3 * 8 * 4 + 3 * 2 * 8)  # torch's own 2·MACs of the mms


def test_measure_a_compiled_module():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 4)
    compiled = torch.compile(model)
    m = fb.measure(compiled, x)
    assert m.flops == linear_flops(3, 4, 8) + 3 * 8 + linear_flops(3, 8, 2)
    assert set(m.modules) == {"", "0", "1", "2"}  # named like the model it wraps


def test_a_forward_that_replaces_or_updates_buffers_leaves_them_as_they_were():
    class Cache(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))
            self.register_buffer("last", torch.zeros(3))

        def forward(self, x):
            self.steps += 1  # updated in place
            self.last = x.detach().sum(0)  # replaced by a new tensor
            return x * 2

    model = Cache()
    steps, last = model.steps, model.last
    for device in (None, "cpu", "meta"):
        fb.measure(model, torch.ones(4, 3), device=device)
    assert model.steps is steps and int(model.steps) == 0
    assert model.last is last and torch.equal(model.last, torch.zeros(3))


def test_a_compiled_function_inside_the_model_is_counted():
    @torch.compile
    def block(x, w):
        return torch.relu(x @ w)

    class UsesCompiled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 4))

        def forward(self, x):
            return block(x, self.w)

    model, x = UsesCompiled(), torch.randn(3, 4)
    model(x)  # compiled once, outside any count
    for device in (None, "meta"):
        m = fb.measure(model, x, device=device)
        assert m.ops == {"aten.mm": 3 * 4 * (2 * 4 - 1), "aten.relu": 12}


def test_a_finished_count_is_freed_at_once_not_left_to_the_garbage_collector():
    """The counter and its modes, and the memory tracker and its bound callback, pointed at each
    other: every measure() left a few hundred objects (its per-module costs among them) for the
    collector's next pass. Only torch's own reference cycles may remain."""
    import gc

    model, x = nn.Sequential(nn.Linear(4, 4), nn.ReLU()), torch.ones(2, 4)
    fb.measure(model, x)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        fb.measure(model, x, backward=True)
        with fb.count():
            model(x)
        gc.collect()
        ours = [type(o).__name__ for o in gc.garbage if type(o).__module__.startswith("pytest_flopbudget")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert ours == []
