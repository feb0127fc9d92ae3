"""Fused loss kernels count what their written-out forms count (formulas/loss.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pytest_flopbudget as fb
from counting_helpers import Fn
from pytest_flopbudget.counting.formulas import loss


def counted(fn, *args, device=None):
    m = fb.measure(Fn(fn), args, device=device)
    assert m.uncounted == {}
    return m.flops, m.macs


B, C = 4, 5
x, t = torch.randn(B, C), torch.randn(B, C)
p, q = torch.rand(B, C) * 0.8 + 0.1, torch.rand(B, C)
labels = torch.randint(0, C, (B,))
signs = torch.randint(0, 2, (B, C)).float() * 2 - 1
BETA = 0.5

PAIRS = {
    "mse": (lambda: (F.mse_loss, (x, t)), lambda: (lambda a, b: (a - b).pow(2).mean(), (x, t))),
    "bce": (
        lambda: (F.binary_cross_entropy, (p, q)),
        # the leading minus is folded into the accumulation, as the kernel does
        lambda: (lambda a, b: (b * a.log() + (1 - b) * (1 - a).log()).mean(), (p, q)),
    ),
    "bce_logits": (
        lambda: (F.binary_cross_entropy_with_logits, (x, q)),
        lambda: (lambda a, b: (a.clamp(min=0) - a * b + torch.log1p(torch.exp(-a.abs()))).mean(), (x, q)),
    ),
    "soft_margin": (
        lambda: (F.soft_margin_loss, (x, signs)),
        lambda: (lambda a, y: torch.log1p(torch.exp(-y * a)).mean(), (x, signs)),
    ),
    "smooth_l1": (
        lambda: (lambda a, b: F.smooth_l1_loss(a, b, beta=BETA), (x, t)),
        lambda: (
            lambda a, b: (lambda d: torch.where(d < BETA, d.pow(2) * (0.5 / BETA), d - 0.5 * BETA))(
                (a - b).abs()
            ).mean(),
            (x, t),
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("device", [None, "meta"])
def test_fused_loss_counts_like_its_written_out_form(name, device):
    fused, written = (make() for make in PAIRS[name])
    assert counted(*fused[:1], *fused[1], device=device) == counted(*written[:1], *written[1], device=device)


def test_mse_by_hand_with_and_without_reduction():
    n = B * C
    assert counted(F.mse_loss, x, t) == (3 * n, 3 * n)  # subtract, square, accumulate
    assert counted(lambda a, b: F.mse_loss(a, b, reduction="none"), x, t) == (2 * n, 2 * n)


def test_nll_by_hand():
    logp = x.log_softmax(1)
    assert counted(F.nll_loss, logp, labels) == (B, B)  # one (negating) accumulation per target
    assert counted(lambda a, y: F.nll_loss(a, y, weight=torch.ones(C)), logp, labels) == (2 * B, 2 * B)
    assert counted(lambda a, y: F.nll_loss(a, y, reduction="none"), logp, labels) == (B, B)


def test_cross_entropy_is_log_softmax_plus_nll():
    flops, _ = counted(F.cross_entropy, x, labels)
    assert flops == B * C + B  # one per logit, then one accumulation per target


class Regression(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(C, C)

    def forward(self, a, b):
        return F.mse_loss(self.layer(a), b)


def test_loss_backward_is_counted():
    m = fb.measure(Regression(), (x, t), backward=True)
    assert m.uncounted == {}
    assert m.ops["aten.mse_loss_backward"] == 2 * B * C


# -- shape level: the formula called with plain shapes --
# Each fused loss counts the steps of its textbook form per element (formulas/loss.py's table),
# plus one per element for the mean or sum (none with reduction 0). aten's reduction enum:
# 0 none, 1 mean, 2 sum.

XL = (4, 5)
N_L = 4 * 5


@pytest.mark.parametrize(
    "name, steps",
    [("mse_loss", 2), ("l1_loss", 2), ("smooth_l1_loss", 7), ("huber_loss", 7), ("soft_margin_loss", 4),
     ("binary_cross_entropy", 7), ("binary_cross_entropy_with_logits", 8)],
)
@pytest.mark.parametrize("reduction, reduce_steps", [(1, 1), (2, 1), (0, 0)], ids=["mean", "sum", "none"])
def test_shape_elementwise_losses(name, steps, reduction, reduce_steps):
    # mse (x − t)²: a subtract and a square; smooth L1 d = |x − t|, d < β ? ½d²/β : d − ½β: 7 ...
    per_element = steps + reduce_steps
    got = loss.RULES[name](XL, XL, reduction=reduction, out_shape=XL if reduction == 0 else ())
    assert got == (N_L * per_element, N_L * per_element)


def test_shape_reduction_given_positionally():
    # mse_loss(self, target, reduction): the counter passes aten's arguments positionally
    assert loss.RULES["mse_loss"](XL, XL, 0, out_shape=XL) == (2 * N_L, 2 * N_L)
    assert loss.RULES["smooth_l1_loss"](XL, XL, 1, 0.5, out_shape=()) == (8 * N_L, 8 * N_L)


@pytest.mark.parametrize("weight, steps", [(None, 7), (XL, 8)], ids=["plain", "weighted"])
def test_shape_binary_cross_entropy_weight(weight, steps):
    # −(t·log x + (1 − t)·log(1 − x)): 7 per element, + 1 for the weight, + 1 for the mean
    assert loss.binary_cross_entropy(XL, XL, weight, 1, out_shape=()) == (N_L * (steps + 1), N_L * (steps + 1))


@pytest.mark.parametrize(
    "weight, pos_weight, steps",
    [(None, None, 8), (XL, None, 9), (None, (5,), 10), (XL, (5,), 11)],
    ids=["plain", "weight", "pos_weight", "both"],
)
def test_shape_bce_with_logits_weights(weight, pos_weight, steps):
    # max(x, 0) − x·t + log(1 + exp(−|x|)): 8, + 1 weight, + 2 pos_weight, + 1 mean
    got = loss.bce_with_logits(XL, XL, weight, pos_weight, 1, out_shape=())
    assert got == (N_L * (steps + 1), N_L * (steps + 1))


@pytest.mark.parametrize(
    "weight, reduction, per_target",
    [(None, 1, 1), ((10,), 1, 2), (None, 0, 1), ((10,), 0, 2)],
    ids=["mean", "mean-weighted", "none", "none-weighted"],
)
def test_shape_nll_loss(weight, reduction, per_target):
    # nll_loss_forward(self, target, weight, reduction, ignore_index) on (4, 10) log-probabilities:
    # the mean's accumulation (the minus folded in) or, with no reduction, a negation per target;
    # a class weight multiplies each picked term once more
    got = loss.nll_loss((4, 10), (4,), weight, reduction, -100, out_shape=((4,) if reduction == 0 else (), ()))
    assert got == (4 * per_target, 4 * per_target)


def test_shape_nll_loss2d_counts_per_target_pixel():
    targets = 2 * 3 * 3
    got = loss.RULES["nll_loss2d_forward"]((2, 10, 3, 3), (2, 3, 3), None, 1, -100, out_shape=((), ()))
    assert got == (targets, targets)


@pytest.mark.parametrize(
    "name, args, n",
    [("mse_loss_backward", ((), XL, XL, 1), 2 * N_L), ("binary_cross_entropy_backward", ((), XL, XL, None, 1), 3 * N_L),
     ("smooth_l1_loss_backward", ((), XL, XL, 1, 1.0), 3 * N_L), ("soft_margin_loss_backward", ((), XL, XL, 1), 3 * N_L),
     ("nll_loss_backward", ((), (4, 10), (4,), None, 1, -100, ()), 4)],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_shape_loss_backward(name, args, n):
    # one derivative per element: 2 for mse (2·(x − t)), 3 for the others, 1 per target for nll
    assert loss.RULES[name](*args, out_shape=args[1]) == (n, n)
