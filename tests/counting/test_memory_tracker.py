"""The memory tracker against closed forms worked by hand, on cpu and meta alike.

Each scenario runs through tests/counting/memory_harness.py (a dispatch mode feeding the tracker,
as the counting session does); every expected byte count is computed here from shapes and dtypes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from memory_harness import Run, both, run_memory, train_step, warm_up
from pytest_flopbudget.counting.measurement import MEMORY_CATEGORIES
from pytest_flopbudget.counting.memory import MemoryTracker

DEVICES = ("cpu", "meta")
F32 = 4


def param_bytes(module: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()
               if p.requires_grad or not trainable_only)


def forward_only(model: nn.Module, *inputs: torch.Tensor):
    def step(tracker: MemoryTracker):
        tracker.set_phase("forward")
        with torch.no_grad():
            return model(*inputs)

    return step


# --- what exists at entry --------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_param_bytes_by_dtype(device):
    def build():
        model = nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 6, dtype=torch.bfloat16),
                              nn.Embedding(7, 3, dtype=torch.float16))
        return Run(lambda tracker: None, model=model)

    memory, _ = run_memory(build, device)
    assert memory.param_bytes == {"float32": (10 * 20 + 20) * 4, "bfloat16": (20 * 6 + 6) * 2,
                                  "float16": 7 * 3 * 2}
    assert memory.at_entry == memory.peak == sum(memory.param_bytes.values())
    assert memory.categories["parameters"] == memory.peak
    assert memory.retained == 0 and memory.modules == {"": 0}


class Tied(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))


@pytest.mark.parametrize("device", DEVICES)
def test_tied_weights_count_once(device):
    def build():
        model = Tied()
        ids = torch.zeros(2, 5, dtype=torch.long)
        # registered twice, once under each owner: one storage
        both_owners = [model.embed.weight, model.head.weight]
        return Run(forward_only(model, ids), model=model, entry={"parameters": both_owners, "inputs": [ids]})

    memory, _ = run_memory(build, device)
    assert memory.param_bytes == {"float32": 50 * 16 * F32}
    assert memory.at_entry == 50 * 16 * F32 + 2 * 5 * 8
    # embedding output and logits live together at the peak
    assert memory.activation_peak == 2 * 5 * 16 * F32 + 2 * 5 * 50 * F32


@pytest.mark.parametrize("device", DEVICES)
def test_entry_tensors_never_touched_still_count(device):
    def build():
        unused = torch.zeros(1000)
        used = torch.ones(10)
        return Run(lambda tracker: used * 2, entry={"inputs": [unused, used]})

    memory, result = run_memory(build, device)
    assert memory.at_entry == (1000 + 10) * F32
    assert memory.peak == memory.at_entry + 10 * F32
    assert memory.retained == 10 * F32 and result.shape == (10,)


@pytest.mark.parametrize("device", DEVICES)
def test_unregistered_argument_existed_before_the_run(device):
    def build():
        outside = torch.ones(25)
        return Run(lambda tracker: (outside + 1).sum())

    memory, _ = run_memory(build, device)
    assert memory.at_entry == 25 * F32
    assert memory.categories["inputs"] == 25 * F32  # read by the run, given to it
    # outside + 1, then its sum while it is still an argument
    assert memory.peak == 25 * F32 + 25 * F32 + F32
    assert memory.retained == F32


# --- what the run allocates ------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_views_in_place_and_out_add_nothing(device):
    def build():
        x = torch.randn(8, 6)
        buf = torch.empty(8, 6)

        def step(tracker):
            y = x.view(6, 8).t()
            y.add_(1)
            x[0].mul_(2)
            torch.add(x, 1, out=buf)
            x.transpose(0, 1).unsqueeze(0).squeeze(0).relu_()
            x.as_strided((4,), (2,)).zero_()
            return y

        return Run(step, entry={"inputs": [x, buf]})

    memory, _ = run_memory(build, device)
    assert memory.at_entry == 2 * 8 * 6 * F32
    assert memory.peak == memory.at_entry
    assert memory.retained == 0 and memory.activation_peak == 0


@pytest.mark.parametrize("device", DEVICES)
def test_resized_out_tensor_counts_its_new_size(device):
    def build():
        x = torch.randn(5, 7)
        buf = torch.empty(0)

        def step(tracker):
            torch.mul(x, 3, out=buf)  # resized from 0 to 5 x 7 elements

        return Run(step, entry={"inputs": [x, buf]})

    memory, _ = run_memory(build, device)
    assert memory.at_entry == 5 * 7 * F32
    assert memory.peak == 2 * 5 * 7 * F32
    assert memory.retained == 5 * 7 * F32  # buf, grown during the run


@pytest.mark.parametrize("device", DEVICES)
def test_constants_made_in_the_run_are_allocations(device):
    def build():
        def step(tracker):
            return torch.tensor([1.0, 2.0, 3.0]) * 2

        return Run(step)

    memory, _ = run_memory(build, device)
    assert memory.at_entry == 0
    assert memory.peak == 2 * 3 * F32  # the constant and the product
    assert memory.retained == 3 * F32


def test_peak_of_a_no_grad_linear_chain_is_its_largest_adjacent_pair():
    widths = [8, 64, 512, 32, 16]
    batch = 4
    outputs = [batch * w * F32 for w in widths]  # outputs[0] is the input, at entry

    def build():
        layers = [nn.Linear(a, b) for a, b in zip(widths, widths[1:])]
        model = nn.Sequential(*layers)
        x = torch.randn(batch, widths[0])
        return Run(forward_only(model, x), model=model, entry={"inputs": [x]})

    cpu, meta = both(build)
    assert cpu == meta
    pair = max(outputs[i] + outputs[i + 1] for i in range(1, len(outputs) - 1))
    weights = sum(a * b + b for a, b in zip(widths, widths[1:])) * F32
    assert cpu.at_entry == weights + outputs[0]
    assert cpu.peak == weights + outputs[0] + pair
    assert cpu.phase == "forward"
    assert cpu.categories["temporaries"] == pair and cpu.categories["activations"] == 0
    # the largest pair is 64 (made by layer "0") and 512 (by layer "1") wide
    assert cpu.modules == {"": pair, "0": outputs[1], "1": outputs[2]}
    assert cpu.retained == outputs[-1]


@pytest.mark.parametrize("device", DEVICES)
def test_tensors_saved_for_backward_are_activations_the_rest_temporaries(device):
    batch, hidden = 5, 32

    def build():
        model = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 4))
        x = torch.randn(batch, 8)

        def step(tracker):
            tracker.set_phase("forward")
            return model(x).sum()  # the loss keeps the graph, and what it saved, alive

        return Run(step, model=model, entry={"inputs": [x]})

    memory, _ = run_memory(build, device)
    h = batch * hidden * F32  # the first layer's output, and relu's (saved for backward)
    # the peak is inside relu: its input (a temporary, freed when relu returns) and its output
    assert memory.peak - memory.at_entry == 2 * h
    assert memory.categories["activations"] == h and memory.categories["temporaries"] == h
    assert memory.modules == {"": 2 * h, "0": h, "1": h}
    assert memory.retained == h + F32  # relu's output, held by the graph, and the loss


# --- training: gradients and optimizer state -------------------------------------------------


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(12, 40), nn.GELU(), nn.Linear(40, 40), nn.Tanh(), nn.Linear(40, 3))


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_are_the_trainable_parameter_bytes(device):
    def build():
        model = mlp()
        model[0].requires_grad_(False)
        x = torch.randn(6, 12)

        def step(tracker):
            tracker.set_phase("forward")
            loss = model(x).square().mean()
            tracker.set_phase("backward")
            loss.backward()

        return Run(step, model=model, entry={"inputs": [x]})

    memory, _ = run_memory(build, device)
    model = mlp()
    model[0].requires_grad_(False)
    trainable = param_bytes(model, trainable_only=True)
    assert memory.retained == trainable  # .grad outlives the step, activations do not
    assert 0 < memory.categories["gradients"] <= trainable
    assert memory.categories["activations"] > 0  # the peak is in backward, saved tensors still held
    assert memory.phase == "backward"


def _optimizer_run(make_optimizer, *, steady: bool):
    def build():
        model = mlp()
        x = torch.randn(6, 12)
        optimizer = make_optimizer(model.parameters())

        def loss():
            return model(x).square().mean()

        if steady:
            warm_up(optimizer, loss)

        def step(tracker):
            train_step(model, optimizer, loss)(tracker)
            optimizer.zero_grad(set_to_none=True)  # what outlives the step is the optimizer's state

        return Run(step, model=model, entry={"inputs": [x]}, optimizer=optimizer)

    return build


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_adamw_state_is_two_copies_of_the_weights_plus_step_counters(device, impl):
    make = lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=impl == "foreach")  # noqa: E731
    first, _ = run_memory(_optimizer_run(make, steady=False), device)
    steady, _ = run_memory(_optimizer_run(make, steady=True), device)
    weights = param_bytes(mlp())
    tensors = len(list(mlp().parameters()))
    state = 2 * weights + tensors * F32  # exp_avg, exp_avg_sq, and a float32 step per tensor
    assert first.retained == state
    assert first.at_entry == weights + 6 * 12 * F32
    assert steady.at_entry == weights + 6 * 12 * F32 + state
    assert steady.retained == 0
    assert steady.categories["optimizer_state"] == state
    # both steps hold the same tensors at their peaks, except the state the first one creates
    assert first.peak <= steady.peak


@pytest.mark.parametrize("device", DEVICES)
def test_sgd_momentum_state_is_one_copy_of_the_weights(device):
    make = lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)  # noqa: E731
    first, _ = run_memory(_optimizer_run(make, steady=False), device)
    steady, _ = run_memory(_optimizer_run(make, steady=True), device)
    weights = param_bytes(mlp())
    assert first.retained == weights
    assert steady.at_entry - first.at_entry == weights
    assert steady.categories["optimizer_state"] == weights


def test_categories_add_up_to_the_peak_and_modules_to_what_the_run_allocated():
    memory, _ = run_memory(_optimizer_run(lambda ps: torch.optim.AdamW(ps, lr=1e-3), steady=True), "cpu")
    assert set(memory.categories) == set(MEMORY_CATEGORIES)
    assert sum(memory.categories.values()) == memory.peak
    allocated = memory.peak - (memory.categories["parameters"] + memory.categories["inputs"]
                               + memory.categories["optimizer_state"])
    assert memory.modules[""] == allocated
    for name, held in memory.modules.items():
        if name:
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            assert held <= memory.modules[parent]


# --- decoding: the KV cache ------------------------------------------------------------------


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.q = nn.Linear(dim, heads * self.head_dim, bias=False, dtype=dtype)
        self.k = nn.Linear(dim, kv_heads * self.head_dim, bias=False, dtype=dtype)
        self.v = nn.Linear(dim, kv_heads * self.head_dim, bias=False, dtype=dtype)
        self.o = nn.Linear(heads * self.head_dim, dim, bias=False, dtype=dtype)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim, dtype=dtype), nn.SiLU(),
                                 nn.Linear(4 * dim, dim, dtype=dtype))

    def forward(self, x, past):
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        group = self.heads // self.kv_heads
        attended = F.scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1),
                                                  is_causal=past is None)
        x = x + self.o(attended.transpose(1, 2).reshape(b, t, -1))
        return x + self.mlp(x), (k, v)


class TinyDecoder(nn.Module):
    def __init__(self, vocab=64, dim=32, heads=4, kv_heads=2, layers=3, dtype=torch.float32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, dtype=dtype)
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, kv_heads, dtype) for _ in range(layers))
        self.head = nn.Linear(dim, vocab, bias=False, dtype=dtype)

    def forward(self, ids, cache=None):
        x = self.embed(ids)
        new_cache = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, cache[i] if cache is not None else None)
            new_cache.append(kv)
        return self.head(x[:, -1:]), new_cache


def greedy(model: TinyDecoder, prompt: torch.Tensor, steps: int):
    """Prefill, then ``steps`` decode steps, each feeding the argmax back; returns the cache."""
    logits, cache = model(prompt)
    for _ in range(steps):
        logits, cache = model(logits.argmax(-1), cache)
    return cache


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kv_cache_after_prefill_and_decode_steps(device, dtype):
    batch, prompt_len, steps, layers, kv_heads, head_dim = 2, 5, 4, 3, 2, 8

    def build():
        model = TinyDecoder(layers=layers, kv_heads=kv_heads, dim=4 * head_dim, heads=4, dtype=dtype)
        prompt = torch.zeros(batch, prompt_len, dtype=torch.long)

        def step(tracker):
            tracker.set_phase("block")
            with torch.no_grad():
                return greedy(model, prompt, steps)

        return Run(step, model=model, entry={"inputs": [prompt]})

    memory, cache = run_memory(build, device)
    itemsize = torch.empty(0, dtype=dtype).element_size()
    length = prompt_len + steps
    assert cache[0][0].shape == (batch, kv_heads, length, head_dim)
    assert memory.retained == 2 * layers * batch * kv_heads * length * head_dim * itemsize
    assert memory.phase == "block"


def test_kv_cache_peak_is_the_same_on_cpu_and_meta():
    def build():
        model = TinyDecoder()
        prompt = torch.zeros(3, 6, dtype=torch.long)
        return Run(forward_only(lambda: greedy(model, prompt, 5)), model=model, entry={"inputs": [prompt]})

    cpu, meta = both(build)
    assert cpu == meta


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")
def test_sparse_tensors_do_not_break_tracking():
    # a sparse tensor has no storage of its own: what it holds is not counted, dense results are
    def build():
        indices, values = torch.tensor([[0, 1, 2], [1, 0, 2]]), torch.tensor([3.0, 4.0, 5.0])

        def step(tracker):
            sparse = torch.sparse_coo_tensor(indices, values, (3, 3))
            return (sparse @ torch.ones(3, 2)).sum(), sparse.to_dense()

        return Run(step, entry={"inputs": [indices, values]})

    memory, (total, dense) = run_memory(build, "cpu")
    assert memory.at_entry == 2 * 3 * 8 + 3 * F32
    assert memory.retained == total.numel() * F32 + dense.numel() * F32


# --- the interface -----------------------------------------------------------------------------


def test_bad_phase_and_category_are_refused_with_the_choices():
    tracker = MemoryTracker(lambda: ())
    with pytest.raises(ValueError, match="unknown memory phase 'eval'.*forward, backward, optimizer, block"):
        tracker.set_phase("eval")
    with pytest.raises(ValueError, match="unknown entry category 'weights'.*parameters, buffers"):
        tracker.register_entry([torch.zeros(1)], "weights")


def test_entering_holds_the_garbage_collector_and_gives_it_back():
    import gc

    assert gc.isenabled()
    with MemoryTracker(lambda: ()):
        assert not gc.isenabled()
    assert gc.isenabled()


@pytest.mark.parametrize("device", [None, "meta"])
def test_gradients_at_the_peak_are_gradients_even_when_freed_before_the_end(device):
    """The categories at the peak name a gradient while it lives: autograd.grad's results (which
    measure(backward=True) returns to nobody) and .grad tensors a zero_grad() frees before a count()
    block ends read as temporaries otherwise."""
    import pytest_flopbudget as fb

    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64))
    x = torch.randn(32, 64)
    weights = (64 * 256 + 256 + 256 * 64 + 64) * 4  # float32 bytes
    measured = fb.measure(model, x, backward=True, device=device).memory
    # the peak is at the end of the backward, every weight's gradient computed and still held
    assert measured.phase == "backward"
    assert measured.categories["gradients"] == measured.categories["parameters"] == weights
    assert measured.retained == 0  # returned to nobody: named, then freed
    if device == "meta":
        return
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    blocks = []
    for zero in (False, True):
        with fb.count() as counted:
            model(x).sum().backward()
            optimizer.step()
            if zero:
                optimizer.zero_grad(set_to_none=True)
        blocks.append(counted.memory)
        optimizer.zero_grad(set_to_none=True)
    kept, zeroed = blocks
    assert kept.peak == zeroed.peak and kept.categories == zeroed.categories
    assert zeroed.categories["gradients"] == weights
