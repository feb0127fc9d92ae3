"""Gradient computations under counting: ``torch.autograd.grad``, gradients of gradients, torch.func
transforms. Counting must not change whether code runs or what it computes (each case once raised
"A leaf node was passed to _will_engine_execute_node" inside count()), and must count what it ran,
attributing backward work to the modules whose forward made the autograd nodes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pytest_flopbudget as fb

DEVICES = ("cpu", "meta")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _plain(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(net(x).sum(), x))


def _wgan_gradient_penalty(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    (g,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
    penalty = ((g.norm(2, dim=1) - 1) ** 2).mean()
    penalty.backward()
    return [g.detach()] + [p.grad for p in net.parameters()]


def _maml_inner_loop(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    params = dict(net.named_parameters())
    inner = net(x).pow(2).mean()
    grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
    fast = {name: p - 0.1 * g for (name, p), g in zip(params.items(), grads)}
    torch.func.functional_call(net, fast, (x,)).pow(2).mean().backward()
    return [p.grad for p in net.parameters()]


def _jacrev(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return [torch.func.jacrev(net)(x.detach())]


def _hessian(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return [torch.func.hessian(lambda v: net(v).sum())(x.detach())]


def _functional_jacobian(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return [torch.autograd.functional.jacobian(net, x.detach())]


def _cases() -> list:
    return sorted(CASES)


CASES = {
    "autograd.grad": _plain,
    "wgan-gp": _wgan_gradient_penalty,
    "maml": _maml_inner_loop,
    "func.jacrev": _jacrev,
    "func.hessian": _hessian,
    "functional.jacobian": _functional_jacobian,
}


def _run(case: str, device: str, counted: bool) -> tuple[list[torch.Tensor], fb.Measurement | None]:
    with torch.device(device):
        net = _net()
    torch.manual_seed(1)
    x = torch.randn(3, 4, device=device, requires_grad=True)
    if not counted:
        return CASES[case](net, x), None
    with fb.count(device=device) as block:
        results = CASES[case](net, x)
    return results, block.measurement


@pytest.mark.parametrize("case", _cases())
def test_gradients_run_and_compute_the_same_under_counting(case: str) -> None:
    expected, _ = _run(case, "cpu", counted=False)
    got, measured = _run(case, "cpu", counted=True)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert (g is None and e is None) or torch.equal(g, e)
    assert measured is not None and measured.flops > 0
    assert measured.uncounted == {}


@pytest.mark.parametrize("case", _cases())
def test_gradients_count_the_same_on_meta(case: str) -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    try:  # without counting: some torch releases cannot run a transform on fake tensors at all
        with FakeTensorMode(allow_non_fake_inputs=True), torch.device("meta"):  # as count(device="meta")
            _run(case, "meta", counted=False)
    except RuntimeError as error:
        pytest.skip(f"torch {torch.__version__} cannot run {case} on meta even without counting: {error}")
    expected, on_cpu = _run(case, "cpu", counted=True)
    got, on_meta = _run(case, "meta", counted=True)
    assert [None if g is None else tuple(g.shape) for g in got] == [None if e is None else tuple(e.shape) for e in expected]
    assert on_cpu is not None and on_meta is not None
    assert (on_meta.flops, on_meta.macs) == (on_cpu.flops, on_cpu.macs)
    assert {k: v.flops for k, v in on_meta.modules.items()} == {k: v.flops for k, v in on_cpu.modules.items()}


def _mm(n_outputs: int, k: int) -> tuple[int, int]:
    return n_outputs * (2 * k - 1), n_outputs * k


@pytest.mark.parametrize("device", DEVICES)
def test_double_backward_counts_by_hand(device: str) -> None:
    """y = sum(tanh(x W^T + b)) for x 5x3, W 2x3; g = dy/dx with create_graph; then (g*g).sum().backward().

    Worked from the chain rule, each step as the op autograd runs:
      forward      addmm 5x3 @ 3x2 + b          10 outputs, K=3: 10*5 + 10 flops, 10*3 + 10 macs  -> Linear
                   tanh                          10                                                 -> Tanh
                   sum                           10 (one per input element)                        -> outside
      dy/dx        tanh_backward  g*(1-t^2)      10                                                 -> Tanh
                   mm 5x2 @ 2x3 (grad of input)  15 outputs, K=2                                    -> Linear
      penalty      g*g, sum                      15 + 15                                            -> outside
      backward     d(g*g): mul, mul, add         3 * 15                                             -> outside
                   of the mm above (MmBackward): mm 2x5 @ 5x3 (K=5, 6 outputs), mm 5x3 @ 3x2 (K=3, 10)  -> Linear
                   of tanh_backward: mul by -2, mul, mul   3 * 10                                   -> Tanh
                   tanh_backward again (through the first backward's t)  10                         -> Tanh
                   addmm's backward: mm 5x2 @ 2x3 (K=2, 15), mm 2x5 @ 5x3 (K=5, 6),
                   bias sum over the batch 10, and the two gradients of W added: 6             -> Linear
    The gradients-of-gradients nodes belong to the module whose backward made them.
    """
    with torch.device(device):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
    with fb.count(device=device) as counted:
        x = torch.randn(5, 3, requires_grad=True)
        (g,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
        (g * g).sum().backward()

    linear_parts = [(10 * 5 + 10, 10 * 3 + 10), _mm(15, 2), _mm(6, 5), _mm(10, 3), _mm(15, 2), _mm(6, 5),
                    (10, 10), (6, 6)]
    tanh_parts = [(10, 10)] * 2 + [(30, 30)] + [(10, 10)]
    outside = [(10, 10), (15, 15), (15, 15), (45, 45)]
    linear = sum(f for f, _ in linear_parts), sum(m for _, m in linear_parts)
    tanh = sum(f for f, _ in tanh_parts), sum(m for _, m in tanh_parts)
    rest = sum(f for f, _ in outside), sum(m for _, m in outside)
    assert (counted.modules["Sequential.0"].flops, counted.modules["Sequential.0"].macs) == linear
    assert (counted.modules["Sequential.1"].flops, counted.modules["Sequential.1"].macs) == tanh
    assert counted.modules["Sequential"].flops == linear[0] + tanh[0]
    assert (counted.flops, counted.macs) == (linear[0] + tanh[0] + rest[0], linear[1] + tanh[1] + rest[1])
    assert counted.backward


def test_backward_called_inside_a_forward_goes_to_that_module() -> None:
    """Work whose autograd nodes were made outside every module (here: a loss computed by tensor
    code) goes to the module whose forward was running when autograd.grad was called."""

    class Energy(nn.Module):
        def forward(self, x: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                (g,) = torch.autograd.grad(outside, x, create_graph=True)
            return g

    energy = Energy()
    with fb.count() as counted:
        x = torch.randn(4, 6, requires_grad=True)
        outside = (x * x).sum()  # mul 24 and sum 24, outside every module
        energy(x, outside)
    # the backward of x*x: the expand is free; grad * x and x * grad (24 each) and their sum (24)
    assert counted.modules["Energy"].flops == 3 * 24
    assert counted.flops == 2 * 24 + 3 * 24


def test_no_hooks_are_left_on_tensors() -> None:
    net = _net()
    x = torch.randn(2, 4, requires_grad=True)
    with fb.count():
        out = net(x)
    assert out.grad_fn is not None and not out._backward_hooks
    assert not x._backward_hooks


class _PINN(nn.Module):
    """A physics-informed network: its forward returns u and du/dxy (autograd.grad inside forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xy = xy.requires_grad_(True)
        u = self.net(xy)
        (du,) = torch.autograd.grad(u.sum(), xy, create_graph=True)
        return u, du


@pytest.mark.parametrize("device", DEVICES)
def test_measure_a_forward_that_differentiates(device: str) -> None:
    """Worked by hand for a batch of B points:
    Linear(2,16): addmm, 16B outputs, K=2 -> 16B*3 + 16B flops, 16B*2 + 16B macs; Tanh 16B;
    Linear(16,1): B outputs, K=16 -> 31B + B flops, 16B + B macs; u.sum(): B;
    du/dxy: layer 2's input gradient mm [B,1]@[1,16] (16B outputs, K=1: 16B, 16B), tanh_backward 16B,
    layer 1's input gradient mm [B,16]@[16,2] (2B outputs, K=16: 62B flops, 32B macs)."""
    b = 8
    flops = 64 * b + 16 * b + 32 * b + b + 16 * b + 16 * b + 62 * b
    macs = 48 * b + 16 * b + 17 * b + b + 16 * b + 16 * b + 32 * b
    pinn = _PINN()
    measured = fb.measure(pinn, torch.rand(b, 2), device=device)
    assert (measured.flops, measured.macs) == (flops, macs)
    # counted once: the failed no-grad attempt adds nothing
    assert measured.modules["net"].flops == flops - b
    assert measured.modules["net.1"].flops == 16 * b + 16 * b


def test_measure_of_an_ordinary_forward_stays_without_autograd() -> None:
    seen = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.is_grad_enabled())
            return x * 2

    assert fb.measure(Probe(), torch.randn(3)).flops == 3
    assert seen == [False]


def test_a_forward_failing_for_another_reason_runs_once() -> None:
    calls = []

    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x)
            raise RuntimeError("something else went wrong")

    with pytest.raises(RuntimeError, match="something else"):
        fb.measure(Broken(), torch.randn(3))
    assert len(calls) == 1
