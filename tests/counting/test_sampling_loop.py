"""A diffusion-style sampling loop in one count() block: N calls of a UNet-like model plus the
scheduler's arithmetic equal N times the model's own count plus the scheduler's elementwise work."""

from __future__ import annotations

import math

import torch
from torch import nn

import pytest_flopbudget as fb


class TinyUNet(nn.Module):
    """Down, up and a skip connection, conditioned on the timestep like a diffusers UNet."""

    def __init__(self, channels: int = 4, width: int = 8) -> None:
        super().__init__()
        self.width = width
        self.time = nn.Linear(width, width)
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)
        self.down = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        freqs = torch.arange(self.width // 2, dtype=torch.float32)
        angles = t.float()[None] * freqs
        emb = self.time(torch.cat([angles.sin(), angles.cos()])[None])
        h = self.act(self.conv_in(x)) + emb[..., None, None]
        skip = h
        h = self.up(self.act(self.down(h))) + skip
        return self.conv_out(h)


def ddim_like_step(model_output: torch.Tensor, sample: torch.Tensor, alpha: float) -> torch.Tensor:
    """x0 = (x - sqrt(1 - a)·eps) / sqrt(a), then x = sqrt(a_prev)·x0 + sqrt(1 - a_prev)·eps:
    per element 2 (scale, subtract) + 1 (divide) + 3 (two scalings, one add) = 6."""
    x0 = (sample - math.sqrt(1 - alpha) * model_output) / math.sqrt(alpha)
    previous = min(alpha + 0.05, 0.999)
    return math.sqrt(previous) * x0 + math.sqrt(1 - previous) * model_output


def test_sampling_loop_is_n_unets_plus_scheduler_work():
    torch.manual_seed(0)
    unet = TinyUNet().eval()
    latents = torch.randn(1, 4, 16, 16)
    steps = 5
    timesteps = torch.linspace(999, 0, steps).long()  # made before the loop
    alphas = [0.1 + 0.15 * i for i in range(steps)]
    with torch.no_grad(), fb.count() as counted:
        sample = latents
        for t, alpha in zip(timesteps, alphas):
            eps = unet(sample, t)
            sample = ddim_like_step(eps, sample, alpha)
    one_unet = fb.measure(unet, (latents, timesteps[0]))
    scheduler = steps * 6 * latents.numel()
    assert counted.uncounted == {}
    assert counted.flops == steps * one_unet.flops + scheduler
    assert counted.macs == steps * one_unet.macs + scheduler
    assert counted.modules["TinyUNet"].flops == steps * one_unet.flops
    # the UNet's first convolution by hand (the seed's rule): (2·3·3·4 - 1 + 1 bias)·16·16·8 per call
    assert counted.modules["TinyUNet.conv_in"].flops == steps * (2 * 3 * 3 * 4) * 16 * 16 * 8
    assert counted.params == one_unet.params
