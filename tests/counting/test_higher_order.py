"""Higher-order ops: flex_attention has a formula (worked by hand here); cond, while_loop and
invoke_subgraph are counted through their bodies; any other HOP is reported, never raised."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pytest_flopbudget as fb
from counting_helpers import Fn

flex = pytest.importorskip("torch.nn.attention.flex_attention")

B, H, L, S, E = 1, 2, 8, 8, 4


def dots(n, k):
    return n * (2 * k - 1)


def attention_by_hand(*, masked: bool, score_mod_per_score: int = 0) -> int:
    """Scores (L·S dot products of E per head), scaling and softmax one per score, a mask one per
    score, the score function per score, A·V (L·E dot products of S per head)."""
    scores = B * H * L * S
    return (dots(scores, E) + scores * (2 + int(masked) + score_mod_per_score)
            + dots(B * H * L * E, S))


def qkv():
    torch.manual_seed(0)
    return tuple(torch.randn(B, H, L, E) for _ in range(3))


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_flex_attention_plain_equals_sdpa(device):
    got = fb.measure(Fn(lambda q, k, v: flex.flex_attention(q, k, v)), qkv(), device=device)
    sdpa = fb.measure(Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v)), qkv(), device=device)
    # flex_attention builds its default (full) block mask from index tensors: not attention work
    assert got.flops == got.ops["higher_order.flex_attention"] == sdpa.flops
    assert sdpa.flops == attention_by_hand(masked=False)
    assert got.uncounted == {}


def test_flex_attention_with_block_mask_and_score_mod():
    mask = flex.create_block_mask(causal, None, None, L, S, device="cpu")
    q, k, v = qkv()
    with fb.count() as masked:
        flex.flex_attention(q, k, v, block_mask=mask)
    with fb.count() as modded:
        flex.flex_attention(q, k, v, score_mod=lambda score, b, h, qi, ki: score * 2.0, block_mask=mask)
    assert masked.flops == masked.ops["higher_order.flex_attention"] == attention_by_hand(masked=True)
    assert modded.flops == attention_by_hand(masked=True, score_mod_per_score=1)
    assert masked.uncounted == modded.uncounted == {}
    # an explicit mask tensor in SDPA is the same work as the block mask
    sdpa_masked = fb.measure(Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)),
                             (q, k, v, torch.ones(L, S, dtype=torch.bool).tril()))
    assert masked.flops == sdpa_masked.flops


def test_cond_counts_the_branch_taken():
    x = torch.randn(10)
    with fb.count() as taken_true:
        torch.cond(torch.tensor(True), lambda t: t * 2.0 + 1.0, lambda t: t - 1.0, (x,))
    with fb.count() as taken_false:
        torch.cond(torch.tensor(False), lambda t: t * 2.0 + 1.0, lambda t: t - 1.0, (x,))
    assert (taken_true.flops, taken_false.flops) == (20, 10)
    assert taken_true.uncounted == taken_false.uncounted == {}


def test_while_loop_counts_every_iteration():
    from torch._higher_order_ops.while_loop import while_loop

    x = torch.randn(6)
    with fb.count() as counted:
        while_loop(lambda i, t: i < 3, lambda i, t: (i + 1, t * 2.0), (torch.tensor(0), x))
    # 3 iterations of t * 2 on 6 floats; the counter i and its test i < 3 are integer
    # bookkeeping, which costs nothing (README, "Floating-point work only")
    assert counted.flops == counted.ops["aten.mul"] == 3 * 6
    assert counted.uncounted == {}


def test_while_loop_on_inputs_that_require_grad_counts_every_iteration():
    """From torch 2.13 such a loop runs as while_loop_stack_output (it keeps every iteration's
    carries for the backward): the same body, counted the same. (torch 2.6 has no backward for
    while_loop: its forward is the plain loop.)"""
    from torch._higher_order_ops.while_loop import while_loop

    x = torch.randn(6, requires_grad=True)
    with fb.count() as counted:
        _, out = while_loop(lambda i, t: i < 3, lambda i, t: (i + 1, t * 2.0), (torch.tensor(0), x))
    assert counted.flops == counted.ops["aten.mul"] == 3 * 6
    assert counted.uncounted == {}
    assert torch.equal(out, x * 8) and out.requires_grad


class Branches(nn.Module):
    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda t: t * 2.0 + 1.0, lambda t: t - 1.0, (x,))


class Doubling(nn.Module):
    def forward(self, x):
        from torch._higher_order_ops.while_loop import while_loop

        start = torch.zeros((), dtype=torch.long, device=x.device)
        return while_loop(lambda i, t: i < 3, lambda i, t: (i + 1, t * 2.0), (start, x))[1]


def test_cond_and_while_loop_on_meta_are_reported_as_uncounted():
    """On meta the predicate has no value: the branch or the number of iterations is unknown."""
    x = torch.ones(10)
    branches = fb.measure(Branches(), x, device="meta")
    assert branches.flops == 10 + 1  # x.sum() (10 additions, as torch counts a sum) and > 0
    assert branches.uncounted == {"higher_order.cond": 1}
    doubling = fb.measure(Doubling(), x, device="meta")
    assert (doubling.flops, doubling.uncounted) == (0, {"higher_order.while_loop": 1})
    # on cpu: the true branch (2 ops on 10 floats) and 3 doublings of 10 floats
    assert fb.measure(Branches(), x).flops == 11 + 2 * 10
    assert fb.measure(Doubling(), x).flops == 3 * 10


def test_the_first_higher_order_op_of_a_process_counts_only_its_own_work():
    """torch 2.6's eager cond, while_loop and flex_attention compile the op, and the first compile
    imports dynamo, which runs tensor ops of its own while it is imported: none may be counted."""
    code = (
        "import sys, torch, pytest_flopbudget as fb\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "x = torch.ones(10)\n"
        "with fb.count() as c:\n"
        "    torch.cond(x.sum() > 0, lambda t: t * 2.0 + 1.0, lambda t: t - 1.0, (x,))\n"
        "print(c.flops, dict(c.uncounted))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == f"{11 + 2 * 10} {{}}"


def test_flex_attention_first_imported_inside_a_count_runs_and_counts():
    """Code that imports flex attention inside a counted block (a lazy import in a model's
    forward) runs as outside a count, counts as when imported before, and leaves torch's switch
    and the import machinery as they were."""
    code = (
        "import sys, torch, pytest_flopbudget as fb\n"
        f"assert {flex.__name__!r} not in sys.modules\n"
        "finders = list(sys.meta_path)\n"
        f"q = torch.randn({B}, {H}, {L}, {E})\n"
        "with fb.count() as c:\n"
        "    from torch.nn.attention.flex_attention import flex_attention\n"
        "    flex_attention(q, q, q)\n"
        f"module = sys.modules[{flex.__name__!r}]\n"
        "print(c.flops, dict(c.uncounted), getattr(module, '_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG', False),"
        " sys.meta_path == finders)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == f"{attention_by_hand(masked=False)} {{}} False True"


def test_invoke_subgraph_is_counted_through_its_body():
    from torch._higher_order_ops.invoke_subgraph import invoke_subgraph

    x = torch.randn(4, 5)
    layer = nn.Linear(5, 3)
    # torch 2.6 takes the operands as one tuple, later releases one by one
    kinds = [p.kind for p in inspect.signature(invoke_subgraph.__call__).parameters.values()]
    operands = (x,) if inspect.Parameter.VAR_POSITIONAL in kinds else ((x,),)
    with fb.count() as counted:
        invoke_subgraph(lambda t: layer(t), None, *operands)
    assert counted.flops == 4 * 3 * (2 * 5 - 1) + 4 * 3


def test_an_unknown_higher_order_op_is_reported_not_raised():
    from torch._ops import HigherOrderOperator
    from torch._C import DispatchKey

    class Twice(HigherOrderOperator):
        def __init__(self):
            super().__init__("flopbudget_test_twice")

        def __call__(self, fn, x):
            return super().__call__(fn, x)

    twice = Twice()

    @twice.py_impl(DispatchKey.CompositeExplicitAutograd)
    def _dense(fn, x):
        return fn(fn(x))

    twice.fallthrough(DispatchKey.AutogradCPU)
    x = torch.randn(3)
    with fb.count() as counted:
        y = twice(lambda t: t + 1.0, x)
    assert torch.allclose(y, x + 2.0)
    assert counted.uncounted == {"higher_order.flopbudget_test_twice": 1}


def test_flex_attention_backward_formula_by_hand():
    """torch 2.13 runs flex_attention's backward on CUDA only, so the formula is checked on shapes."""
    from pytest_flopbudget.counting.formulas import attention

    scores = B * H * L * S
    backward = (dots(B * H * S * E, L)  # dV = Aᵀ·dO
                + dots(scores, E)  # dA = dO·Vᵀ
                + dots(B * H * L * E, S)  # dQ = dS·K
                + dots(B * H * S * E, L)  # dK = dSᵀ·Q
                + 2 * scores)  # softmax backward and the scaling
    shape = (B, H, L, E)
    assert attention.flex_attention_backward(shape, shape, shape)[0] == backward
