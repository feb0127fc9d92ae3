"""Fused loss kernels count what their written-out forms count (formulas/loss.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pytest_flopbudget as fb
from counting_helpers import Fn


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
