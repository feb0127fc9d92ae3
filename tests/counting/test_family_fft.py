"""FFTs worked by hand: a complex 1-D transform of N points costs 5·N·log2(N) flops, a real one
half, each rounded up; a multi-dimensional transform is one 1-D transform along each dimension for
every position of the others; normalisation is one multiply per output element. MACs: half the
flops of each transform, rounded up."""

from __future__ import annotations

from math import ceil, log2

import torch
from torch import nn

import pytest_flopbudget as fb
from counting_helpers import measure_both
from pytest_flopbudget.counting.formulas import fft


def test_one_transform_is_five_n_log_n_and_a_real_one_half():
    assert fft.transform_cost(16, real=False) == (5 * 16 * 4, 5 * 16 * 4 // 2)  # 320, 160
    assert fft.transform_cost(16, real=True) == (160, 80)
    # 12 points: 5·12·log2(12) = 215.1... -> 216; the real one 107.5... -> 108, macs 54
    assert fft.transform_cost(12, real=False) == (216, 108)
    assert fft.transform_cost(12, real=True) == (108, 54)
    assert fft.transform_cost(1, real=False) == (0, 0)


def test_r2c_c2r_and_c2c_shapes():
    # rfft of (3, 16): three real transforms of 16 points, no normalisation
    assert fft.fft_r2c((3, 16), [1], 0, True, out_shape=(3, 9)) == (3 * 160, 3 * 80)
    # rfft2 of (4, 8): real along the last dim (4 transforms of 8 = 60 each), then complex along
    # dim 0 on the (4, 5) onesided output (5 transforms of 4 = 40 each, macs 20)
    assert fft.fft_r2c((4, 8), [0, 1], 0, True, out_shape=(4, 5)) == (4 * 60 + 5 * 40, 4 * 30 + 5 * 20)
    # irfft to 16 points with the default "backward" normalisation: 3 real transforms + 48 scalings
    assert fft.fft_c2r((3, 9), [1], 2, 16, out_shape=(3, 16)) == (3 * 160 + 48, 3 * 80 + 48)
    # ifft of (2, 8) complex: 2 complex transforms of 8 (120 each) + 16 scalings
    assert fft.fft_c2c((2, 8), [1], 2, False, out_shape=(2, 8)) == (2 * 120 + 16, 2 * 60 + 16)


class SpectralMixer(nn.Module):
    """FNet's token mixing: the real part of a 2-D FFT over (tokens, features), here as rfft + irfft."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft(torch.fft.rfft(x, dim=-1), n=x.shape[-1], dim=-1)


def test_rfft_and_irfft_in_a_module_end_to_end():
    x = torch.randn(2, 5, 12)
    m = measure_both(SpectralMixer(), x)
    per_transform = ceil(2.5 * 12 * log2(12))  # 108 flops, 54 macs
    transforms = 2 * 5
    rfft = (transforms * per_transform, transforms * ceil(per_transform / 2))
    irfft = (rfft[0] + 2 * 5 * 12, rfft[1] + 2 * 5 * 12)  # + the 1/n scaling of its output
    assert m.ops == {"aten._fft_r2c": rfft[0], "aten._fft_c2r": irfft[0]}
    assert (m.flops, m.macs) == (rfft[0] + irfft[0], rfft[1] + irfft[1])


def test_fft2_of_a_complex_tensor_counts_each_dimension():
    x = torch.randn(3, 8, 4, dtype=torch.complex64)
    with fb.count() as m:
        torch.fft.fft2(x)
    along_last = 3 * 8 * (5 * 4 * 2)  # 24 transforms of 4 points
    along_rows = 3 * 4 * (5 * 8 * 3)  # 12 transforms of 8 points
    assert m.ops == {"aten._fft_c2c": along_last + along_rows}
