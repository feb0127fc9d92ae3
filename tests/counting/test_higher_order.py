"""Higher-order ops: flex_attention has a formula (worked by hand here); cond, while_loop and
invoke_subgraph are counted through their bodies; any other HOP is reported, never raised."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pytest_flopbudget as fb
from counting_helpers import Fn

flex = pytest.importorskip("torch.nn.attention.flex_attention")

# torch 2.6 (the floor) refuses a higher-order op under a dispatch mode that has no py_impl for it
# ("There was no rule registered for HOP ..."): the op never reaches the counter. 2.13 and 2.15
# hand it to __torch_dispatch__, where it is counted; 2.7-2.12 are untested.
pytestmark = pytest.mark.skipif(
    tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 13),
    reason="higher-order ops reach a dispatch mode only in the torch releases tested from 2.13 on",
)

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
    assert got.ops["higher_order.flex_attention"] == sdpa.flops == attention_by_hand(masked=False)
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
    # 3 iterations of (i + 1, t * 2): 1 + 6 each; 4 evaluations of i < 3: 1 each (integer work
    # is counted as the engine counts it today, so take it from the ops table)
    float_work = counted.ops.get("aten.mul", 0)
    assert float_work == 3 * 6
    assert counted.uncounted == {}


def test_invoke_subgraph_is_counted_through_its_body():
    from torch._higher_order_ops.invoke_subgraph import invoke_subgraph

    x = torch.randn(4, 5)
    layer = nn.Linear(5, 3)
    with fb.count() as counted:
        invoke_subgraph(lambda t: layer(t), None, x)
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
