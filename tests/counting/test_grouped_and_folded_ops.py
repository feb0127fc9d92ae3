"""Grouped GEMMs (mixture-of-experts), hand-written convolutions (F.unfold / F.fold) and weight
normalisation, each worked by hand and against the same work done with plain ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pytest_flopbudget as fb
from pytest_flopbudget.counting.formulas.matmul import grouped_mm

from counting_helpers import Fn, measure_both

needs_grouped_mm = pytest.mark.skipif(not hasattr(torch, "_grouped_mm"), reason="this torch has no _grouped_mm")


def products(n, k):
    return n * (2 * k - 1), n * k


# --- shapes only ------------------------------------------------------------------------------

def test_grouped_mm_rows_split_among_experts():
    # 10 rows of K=16 split among 3 experts of (16, 8): every row is one row of one product
    assert grouped_mm((10, 16), (3, 16, 8), (3,)) == products(10 * 8, 16)


def test_grouped_mm_weight_gradient_splits_k():
    # (M=8, K=12) × (12, N=8) split into 3 groups along K: 3 outputs of 8×8, each a sum over its
    # K_g; multiplies 8·8·12 = 768, adds 8·8·(12 − 3) = 576
    assert grouped_mm((8, 12), (12, 8), (3,)) == (768 + 576, 768)


def test_grouped_mm_3d_left_and_batched():
    assert grouped_mm((3, 8, 16), (16, 12), (3,)) == products(8 * 12, 16)
    assert grouped_mm((3, 8, 16), (3, 16, 8), None) == products(3 * 8 * 8, 16)


def test_grouped_mm_bias_adds_one_per_output():
    flops, macs = products(10 * 8, 16)
    assert grouped_mm((10, 16), (3, 16, 8), (3,), (3, 8)) == (flops + 80, macs + 80)


# --- end to end: the same products done group by group ----------------------------------------

def per_group_reference(a, b, offs, split_k):
    """The grouped product as a loop of plain matrix products over the offsets' actual values."""
    start, parts = 0, []
    for g, end in enumerate(offs.tolist()):
        if split_k:
            parts.append(a[:, start:end] @ b[start:end])
        else:
            parts.append(a[start:end] @ b[g])
        start = end
    return torch.stack(parts) if split_k else torch.cat(parts)


@needs_grouped_mm
@pytest.mark.parametrize("offsets", [[4, 7, 10], [1, 2, 10], [0, 10, 10]])
def test_grouped_mm_equals_its_loop_whatever_the_routing(offsets):
    """The count does not depend on how the rows are routed: it is the sum of the loop's
    products for any split, on cpu and on meta (float32, which the fake kernel refuses)."""
    a, b = torch.randn(10, 16), torch.randn(3, 16, 8)
    offs = torch.tensor(offsets, dtype=torch.int32)
    grouped = measure_both(Fn(lambda a, b: torch._grouped_mm(a, b, offs=offs)), (a, b))
    loop = fb.measure(Fn(lambda a, b: per_group_reference(a, b, offs, split_k=False)), (a, b), device="cpu")
    assert (grouped.flops, grouped.macs) == (loop.flops, loop.macs) == products(80, 16)
    assert set(grouped.ops) == {"aten._grouped_mm"}


@needs_grouped_mm
def test_grouped_mm_split_k_equals_its_loop():
    a, b = torch.randn(8, 12), torch.randn(12, 8)
    offs = torch.tensor([4, 8, 12], dtype=torch.int32)
    grouped = measure_both(Fn(lambda a, b: torch._grouped_mm(a, b, offs=offs)), (a, b))
    loop = fb.measure(Fn(lambda a, b: per_group_reference(a, b, offs, split_k=True)), (a, b), device="cpu")
    assert (grouped.flops, grouped.macs) == (loop.flops, loop.macs) == (768 + 576, 768)


@needs_grouped_mm
def test_grouped_mm_output_on_meta_has_the_real_shape_and_dtype():
    a, b = torch.randn(10, 16), torch.randn(3, 16, 8)
    offs = torch.tensor([4, 7, 10], dtype=torch.int32)
    seen = {}

    def run(a, b):
        out = torch._grouped_mm(a, b, offs=offs)
        seen[out.device.type] = (tuple(out.shape), out.dtype)
        return out

    measure_both(Fn(run), (a, b))
    assert seen == {"cpu": ((10, 8), torch.float32)}  # the fake tensor reports cpu too


@needs_grouped_mm
def test_histc_is_bookkeeping():
    m = measure_both(Fn(lambda ids: torch.histc(ids, bins=4, min=0, max=3)), torch.tensor([0.0, 3.0, 1.0, 1.0]))
    assert (m.flops, m.macs) == (0, 0) and m.ops == {"aten.histc": 0}


# --- F.unfold / F.fold ------------------------------------------------------------------------

def test_unfold_is_a_copy_and_its_product_counts_like_the_convolution():
    x, w = torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3)

    def by_hand(x, w):
        cols = F.unfold(x, 3, padding=1)  # (1, 27, 64)
        return (w.view(4, 27) @ cols).view(1, 4, 8, 8)

    unfolded = measure_both(Fn(by_hand), (x, w))
    assert unfolded.ops["aten.im2col"] == 0
    conv = measure_both(Fn(lambda x, w: F.conv2d(x, w, padding=1)), (x, w))
    assert unfolded.macs == conv.macs == 4 * 64 * 27  # outputs × (Cin·Kh·Kw)
    assert unfolded.flops == conv.flops == 4 * 64 * (2 * 27 - 1)


def test_fold_adds_every_column_element_once():
    cols = torch.randn(2, 3 * 3 * 3, 64)
    m = measure_both(nn.Fold((8, 8), 3, padding=1), cols)
    assert (m.flops, m.macs) == (2 * 27 * 64, 2 * 27 * 64)


class FoldedWeights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cols = nn.Parameter(torch.randn(2, 27, 64))

    def forward(self, x):
        return F.fold(self.cols, (8, 8), 3, padding=1) * x


def test_fold_backward_is_an_unfold():
    """The gradient of a fold gathers each column element back: an im2col, a copy."""
    x = torch.randn(2, 3, 8, 8)
    forward = measure_both(FoldedWeights(), x)
    both = measure_both(FoldedWeights(), x, backward=True)
    assert both.ops["aten.im2col"] == 0 and forward.ops["aten.col2im"] == 2 * 27 * 64


# --- weight normalisation ---------------------------------------------------------------------

@pytest.mark.parametrize("dim", [0, 1, 2])
def test_weight_norm_fused_and_decomposed_count_alike(dim):
    """dim 0 and the last dim run the fused _weight_norm_interface; dim 1 of a 3-D weight runs
    norm, div and mul one by one. Both: 2 per element of v (norm), one per element of g (g/‖v‖),
    one per element of v (scaling)."""
    torch.manual_seed(0)
    conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 6, 3), dim=dim)
    x = torch.randn(1, 4, 10)
    m = measure_both(conv, x)
    v_numel = 6 * 4 * 3
    g_numel = (6, 4, 3)[dim]
    weight_work = 3 * v_numel + g_numel
    conv_work = 6 * 8 * (2 * 12 - 1) + 6 * 8  # 8 outputs per channel, K = 4·3, bias
    assert m.flops == weight_work + conv_work
    fused = "aten._weight_norm_interface" in m.ops
    assert fused == (dim != 1)
