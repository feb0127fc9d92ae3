"""A first end-to-end count worked by hand (the seed's convolution and fully connected rules)."""

import torch
from torch import nn

import pytest_flopbudget as fb


def test_conv_then_linear_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    m = fb.measure(model, torch.randn(1, 3, 4, 4))
    conv_outputs, conv_k = 8 * 4 * 4, 3 * 3 * 3
    fc_outputs, fc_k = 10, 8 * 4 * 4
    assert m.flops == conv_outputs * (2 * conv_k - 1) + conv_outputs + fc_outputs * (2 * fc_k - 1) + fc_outputs
    assert m.macs == conv_outputs * conv_k + conv_outputs + fc_outputs * fc_k + fc_outputs
    assert m.params == 8 * 27 + 8 + 10 * 128 + 10
