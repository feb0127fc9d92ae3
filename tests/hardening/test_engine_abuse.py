"""The engine under long suites, foreign modes and misbehaving models.

(tests/counting/test_measure.py already checks: nothing left after one success or failure, the
original exception with a note, measure() inside FlopCounterMode and on a compiled module, integer
inputs on meta. These extend them.)"""

from __future__ import annotations

import gc
import os

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_mod
from torch.utils._python_dispatch import TorchDispatchMode

import pytest_flopbudget as fb


def linear_flops(rows: int, cin: int, cout: int) -> int:
    return rows * ((2 * cin - 1) * cout + cout)


def global_state() -> tuple[int, ...]:
    return (
        len(module_mod._global_forward_hooks),
        len(module_mod._global_forward_pre_hooks),
        len(module_mod._global_backward_hooks),
        len(module_mod._global_backward_pre_hooks),
        torch._C._len_torch_dispatch_stack(),
        torch._C._len_torch_function_stack(),
    )


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
def test_2000_measurements_leave_nothing_behind_and_do_not_grow() -> None:
    model = Net()
    x = torch.randn(2, 16)
    expected = linear_flops(2, 16, 32) + 2 * 32 + linear_flops(2, 32, 4)
    attributes = {name: set(vars(m)) for name, m in model.named_modules()}
    before = global_state()

    def run(count: int) -> None:
        for i in range(count):
            m = fb.measure(model, x, device=("cpu", "meta")[i % 2], backward=i % 3 == 0)
            if i % 3:
                assert m.flops == expected

    run(300)  # warm-up: torch's caches (fake tensor dispatch cache, autograd) fill here
    gc.collect()
    start = rss_mib()
    run(2000)
    gc.collect()
    grown = rss_mib() - start
    assert grown < 20, f"RSS grew {grown:.1f} MiB over 2000 measurements"
    assert global_state() == before
    assert {name: set(vars(m)) for name, m in model.named_modules()} == attributes
    assert all(p.grad is None for p in model.parameters())


class CountingMode(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("device", [None, "meta"])
def test_measure_inside_a_foreign_dispatch_mode(device) -> None:
    model, x = Net(), torch.randn(2, 16)
    alone = fb.measure(model, x, device=device, backward=True)
    before = global_state()
    with CountingMode() as outer:
        nested = fb.measure(model, x, device=device, backward=True)
        assert global_state()[4] == before[4] + 1  # only the outer mode is left on the stack
    assert nested.to_dict() == alone.to_dict()
    assert outer.calls > 0  # the outer mode still saw the work
    assert global_state() == before


def test_measure_called_from_torch_compiled_code() -> None:
    model, x = Net(), torch.randn(2, 16)
    alone = fb.measure(model, x)

    @torch.compile(backend="eager")
    def step(inp):
        counted = fb.measure(model, inp)  # dynamo runs what it cannot trace eagerly (a graph break)
        return inp * 2, counted

    doubled, counted = step(x)
    assert torch.equal(doubled, x * 2)
    assert counted.to_dict() == alone.to_dict()
    assert global_state()[4:] == (0, 0)


# -- models that misbehave ---------------------------------------------------------------------

class DictOut(nn.Module):
    """Outputs of every kind: the backward runs from each floating tensor that requires grad."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 2)
        self.c = nn.Linear(4, 5)

    def forward(self, x):
        hidden = self.c(x)
        return {
            "a": self.a(x),
            "nested": [self.b(x), (hidden.argmax(-1), "text", None, 7)],  # argmax: integer, no grad
            "detached": hidden.detach() * 2,  # floating but requires no grad
            "input": x,
        }


def test_backward_on_dict_output_sums_every_floating_tensor_that_requires_grad() -> None:
    rows, x = 5, torch.randn(5, 4)
    forward = fb.measure(DictOut(), x)
    both = fb.measure(DictOut(), x, backward=True)
    # backward of a and b (c's output reaches the outputs only through argmax and detach): per
    # Linear(cin, cout), grad weight = mm (cout x rows) @ (rows x cin), grad bias = a sum over rows;
    # the input needs no gradient
    def linear_backward(cin: int, cout: int) -> int:
        return cout * cin * (2 * rows - 1) + rows * cout

    assert both.flops - forward.flops == linear_backward(4, 3) + linear_backward(4, 2)
    assert both.modules["c"].flops == forward.modules["c"].flops  # no backward through c


def test_backward_with_nothing_to_differentiate_is_a_clear_error() -> None:
    class Text(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            self.fc(x)
            return {"label": "cat", "ids": torch.tensor([1, 2])}

    assert fb.measure(Text(), torch.randn(1, 2)).flops == linear_flops(1, 2, 2)
    with pytest.raises(fb.MeasurementError, match="no output of Text requires grad"):
        fb.measure(Text(), torch.randn(1, 2), backward=True)


def test_token_ids_stay_integers_on_meta_in_every_container() -> None:
    seen = []

    class Lm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.head = nn.Linear(8, 50)

        def forward(self, ids, extra=None, *, mask):
            for t in (ids, extra[0], mask):
                seen.append(t.dtype)
            return self.head(self.embed(ids) * mask.unsqueeze(-1))

    inputs = lambda: {"ids": torch.randint(0, 50, (2, 7)), "extra": [torch.zeros(2, dtype=torch.int32)],  # noqa: E731
                      "mask": torch.ones(2, 7, dtype=torch.bool)}
    m = fb.measure(Lm, inputs, device="meta", backward=True)
    assert seen == [torch.int64, torch.int32, torch.bool]
    assert m.modules["head"].flops >= linear_flops(14, 8, 50)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_counted_on_cpu_and_mixed_devices() -> None:
    model = Net().cuda()
    x = torch.randn(2, 16, device="cuda")
    on_cpu = fb.measure(model, x, device="cpu")
    assert on_cpu.to_dict() | {"device": "x"} == fb.measure(model, x).to_dict() | {"device": "x"}
    assert all(p.device.type == "cuda" for p in model.parameters())  # the caller's model is not moved
    model.fc2.to("cpu")  # parameters on two devices
    assert fb.measure(model, x.cpu(), device="cpu").flops == on_cpu.flops
    assert fb.measure(model, x.cpu(), device="meta").flops == on_cpu.flops


# -- through the plugin: a forward that raises records nothing ---------------------------------

def test_forward_raising_half_way_records_nothing(user_project: pytest.Pytester) -> None:
    user_project.makepyfile(test_boom="""
        import pytest, torch
        from torch import nn

        class HalfWay(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)

            def forward(self, x):
                self.fc(x)
                raise ValueError("exploded in layer 2")

        @pytest.mark.flop_budget(max_params=1000)
        def test_raises(flop_budget):
            flop_budget.measure(nn.Linear(4, 4), torch.zeros(1, 4), label="ok")
            flop_budget.measure(HalfWay(), torch.zeros(1, 4), label="boom")

        @pytest.mark.flop_budget(max_params=1000)
        def test_caught(flop_budget):
            with pytest.raises(ValueError):
                flop_budget.measure(HalfWay(), torch.zeros(1, 4))
            assert flop_budget.measurements == []  # nothing partial was recorded

        def test_unmarked_raises(flop_budget):
            flop_budget.measure(HalfWay(), torch.zeros(1, 4), backward=True)
    """)
    result = user_project.runpytest("-p", "no:cacheprovider", "--flop-update-baseline", "-v")
    result.assert_outcomes(failed=3)
    text = result.stdout.str()
    assert text.count("ValueError: exploded in layer 2") >= 2  # the original exception is what shows
    assert "raised by the model's forward while measuring HalfWay" in text
    result.stdout.fnmatch_lines(["*test_caught NOT MEASURED*"])
    from pytest_flopbudget.reporting.baseline import load

    assert load(user_project.path / "flop_baseline.yaml").entries == {}  # no partial entry, not even "ok"
