"""What real model repositories run into: integer bookkeeping is not FLOPs, forwards that read
values on the host are recorded, containers sum their layers, factories build on meta with real
Python arithmetic, and a count leaves nothing on the caller's modules (issue 10)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pytest_flopbudget as fb
from pytest_flopbudget.counting.registry import _unregister_formula


def linear_flops(rows: int, cin: int, cout: int, bias: bool = True) -> int:
    """The seed's fully connected layer: (2·Cin − 1)·Cout per row, + Cout for a bias."""
    return rows * ((2 * cin - 1) * cout + (cout if bias else 0))


# -- floating-point work only -------------------------------------------------------------------


class MaskLogic(nn.Module):
    """Mask and index bookkeeping around one float comparison pair."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        keep = (a > 0) & (b > 0)  # two float comparisons (counted), one bool AND (not)
        keep = keep | ~keep.clone()  # bool NOT and OR: bookkeeping
        positions = torch.arange(a.shape[-1]) * 2 + 1  # integer index math
        return keep.sum() + positions.sum() + keep.long().cumsum(-1).max()


def test_integer_and_boolean_ops_cost_nothing_float_comparisons_count():
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    m = fb.measure(MaskLogic(), (a, b))
    n = a.numel()
    assert m.ops == {"aten.gt": 2 * n}
    assert (m.flops, m.macs) == (2 * n, 2 * n)
    assert m.uncounted == {}


def test_integer_matmul_is_compute_and_counts():
    class Int8Matmul(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch._int_mm(a, b)

    m_rows, k, n = 32, 64, 24
    a = torch.randint(-8, 8, (m_rows, k), dtype=torch.int8)
    b = torch.randint(-8, 8, (k, n), dtype=torch.int8)
    measured = fb.measure(Int8Matmul(), (a, b))
    assert measured.flops == m_rows * n * (2 * k - 1)
    assert measured.macs == m_rows * n * k


def test_integer_add_in_a_float_model_is_free_and_float_add_is_not():
    class Step(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.steps += 1
            return x + 1.0

    x = torch.randn(3, 5)
    assert fb.measure(Step(), x).flops == x.numel()


def test_user_formula_counts_integer_calls_too():
    # whoever registers a formula decides what it counts: it applies whatever the dtype
    class IntAdd(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

    fb.register_formula(torch.ops.aten.add.Tensor, lambda *s, **kw: (7, 3))
    try:
        m = fb.measure(IntAdd(), torch.arange(6))
    finally:
        _unregister_formula(torch.ops.aten.add.Tensor)
    assert (m.flops, m.macs) == (7, 3)


# -- value-dependent paths ----------------------------------------------------------------------


class Gate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x > 0).all()):  # the host decides the path from values
            return x
        return self.proj(x)


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gate(x))


def test_host_reads_are_recorded_with_the_module_that_read():
    x = -torch.ones(3, 4)
    m = fb.measure(Gated(), x)
    assert m.value_dependent
    assert m.value_reads == {"gate": {"aten._local_scalar_dense": 1}}
    assert "gate (Gate)" in m.value_reads_text() and "value-dependent" in m.table()
    # the other path, taken for other values, is another count: the record says why
    positive = fb.measure(Gated(), torch.ones(3, 4))
    assert positive.flops == m.flops - linear_flops(3, 4, 4)


@pytest.mark.parametrize(
    "read",
    [
        lambda x: x.sum().item(),
        lambda x: int(x.max()),
        lambda x: x.tolist(),
        lambda x: x.numpy(),
        lambda x: torch.nonzero(x > 0),
        lambda x: torch.equal(x, x),
        lambda x: x[x > 0],  # masked indexing: the output's shape is data
    ],
    ids=["item", "int", "tolist", "numpy", "nonzero", "equal", "boolean-mask"],
)
def test_every_kind_of_host_read_is_noticed(read):
    class Reads(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            read(x)
            return x * 2

    m = fb.measure(Reads(), torch.randn(2, 3))
    assert m.value_dependent, m.value_reads


def test_value_independent_forward_records_nothing_and_counts_alike_everywhere():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x = torch.randn(2, 3, 8, 8)
    cpu = fb.measure(model, x)
    meta = fb.measure(model, x, device="meta")
    assert not cpu.value_dependent and not meta.value_dependent
    assert (cpu.flops, cpu.macs, cpu.ops) == (meta.flops, meta.macs, meta.ops)


def test_value_reads_survive_the_json_round_trip():
    m = fb.measure(Gated(), -torch.ones(3, 4))
    assert fb.Measurement.from_dict(m.to_dict()) == m


def test_transformers_mask_shortcut_is_value_dependent_on_cpu_not_on_meta():
    transformers = pytest.importorskip("transformers")
    config = transformers.DistilBertConfig(n_layers=1, dim=32, hidden_dim=64, n_heads=2, vocab_size=50)
    model = transformers.DistilBertModel(config).eval()
    inputs = {"input_ids": torch.randint(0, 50, (1, 8)), "attention_mask": torch.ones(1, 8, dtype=torch.long)}
    cpu = fb.measure(model, inputs)
    meta = fb.measure(model, inputs, device="meta")
    # cpu looks at the all-ones mask and drops it; meta cannot look, and applies it
    assert cpu.value_dependent and not meta.value_dependent
    # the masked path adds the mask to every attention score: heads x 8 x 8 per layer
    assert meta.flops - cpu.flops == 2 * 8 * 8
    # mask logic itself (bool and/or, all()) is bookkeeping and costs nothing on either
    assert not any(op.startswith(("aten.bitwise", "aten.all", "aten.logical")) for op in {**cpu.ops, **meta.ops})


# -- containers ---------------------------------------------------------------------------------


class Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(6, 6) for _ in range(3))
        self.heads = nn.ModuleDict({"a": nn.Linear(6, 2), "b": nn.Linear(6, 1)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.heads["a"](x).sum() + self.heads["b"](x).sum()


def test_containers_that_are_never_called_sum_their_children():
    m = fb.measure(Stack(), torch.randn(2, 6))
    layers = m.modules["layers"]
    assert layers.type == "ModuleList"
    assert layers.flops == 3 * linear_flops(2, 6, 6) == sum(m.modules[f"layers.{i}"].flops for i in range(3))
    assert layers.macs == sum(m.modules[f"layers.{i}"].macs for i in range(3))
    heads = m.modules["heads"]
    assert heads.flops == linear_flops(2, 6, 2) + linear_flops(2, 6, 1)
    assert "0.0%" not in [line.split()[-1] for line in m.table().splitlines() if line.strip().startswith("layers")]


# -- factories on meta --------------------------------------------------------------------------


class ScheduledBlocks(nn.Module):
    """Builds itself the way timm does: a drop-path schedule read with .item(), widths made
    unique with torch.unique, on real CPU tensors inside the constructor."""

    def __init__(self) -> None:
        super().__init__()
        self.rates = [r.item() for r in torch.linspace(0, 0.1, 3, device="cpu")]
        widths = torch.unique(torch.tensor([8, 8, 16, 16]))
        self.blocks = nn.Sequential(*(nn.Linear(8, 8) for _ in self.rates))
        self.head = nn.Linear(8, int(widths[-1]))
        nn.init.trunc_normal_(self.head.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


def test_factories_that_compute_with_tensors_build_on_meta():
    x = lambda: torch.randn(2, 8)  # noqa: E731
    meta = fb.measure(ScheduledBlocks, x, device="meta")
    cpu = fb.measure(ScheduledBlocks, x, device="cpu")
    expected = 3 * linear_flops(2, 8, 8) + linear_flops(2, 8, 16)
    assert meta.flops == cpu.flops == expected
    assert meta.params == cpu.params == 3 * (8 * 8 + 8) + 8 * 16 + 16


def test_factory_weights_take_no_memory_on_meta():
    seen = {}

    def build():
        model = ScheduledBlocks()
        seen["devices"] = {p.device.type for p in model.parameters()}
        return model

    fb.measure(build, lambda: torch.randn(2, 8), device="meta")
    assert seen["devices"] == {"meta"}


@pytest.mark.parametrize("cast", ["half", "bfloat16"])
def test_factories_that_cast_their_model_count_on_meta(cast):
    dtype = torch.float16 if cast == "half" else torch.bfloat16

    def build():
        model = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 4))
        return model.half() if cast == "half" else model.to(torch.bfloat16)

    meta = fb.measure(build, lambda: torch.randn(2, 8, dtype=dtype), device="meta")
    assert meta.flops == linear_flops(2, 8, 8) + 2 * 8 + linear_flops(2, 8, 4)


def test_the_registration_hook_is_gone_after_a_meta_build():
    fb.measure(ScheduledBlocks, lambda: torch.randn(2, 8), device="meta")
    assert nn.Linear(2, 2).weight.device.type == "cpu"


def test_a_raising_factory_on_meta_leaves_no_hook_behind():
    def broken():
        nn.Linear(2, 2)
        raise ValueError("factory bug")

    with pytest.raises(ValueError, match="factory bug"):
        fb.measure(broken, torch.randn(1, 2), device="meta")
    assert nn.Linear(2, 2).weight.device.type == "cpu"


# -- nothing a count does survives it -----------------------------------------------------------


class CachesPerDevice(nn.Module):
    """Caches a derived tensor per device in a plain dict, and sets attributes in its forward,
    as timm's LeViT and EfficientFormer do with their attention biases."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.randn(4))
        self.cache: dict[str, torch.Tensor] = {}
        self.history: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = str(x.device)
        if key not in self.cache:
            self.cache[key] = self.bias * 2
        self.history.append(x.shape[0])
        self.last_input_shape = tuple(x.shape)
        return x + self.cache[key]


@pytest.mark.parametrize("device", ["meta", "cpu", None])
def test_state_a_forward_writes_on_modules_does_not_survive_the_count(device):
    model = nn.Sequential(CachesPerDevice())
    x = torch.randn(3, 4)
    fb.measure(model, x, device=device)
    inner = model[0]
    assert inner.cache == {} and inner.history == [] and not hasattr(inner, "last_input_shape")
    out = model(x)  # the caller's next forward is a real one
    assert type(out) is torch.Tensor and out.device.type == "cpu"
    assert torch.allclose(out, x + inner.bias * 2)


def test_state_is_restored_when_the_forward_raises():
    class Fails(CachesPerDevice):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            super().forward(x)
            raise RuntimeError("late failure")

    model = Fails()
    with pytest.raises(RuntimeError, match="late failure"):
        fb.measure(model, torch.randn(3, 4), device="meta")
    assert model.cache == {} and model.history == []
