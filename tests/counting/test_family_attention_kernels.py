"""The CUDA attention kernels (flash, memory-efficient) when a graph calls them directly: laid out
(batch, length, heads, dim), they count what the SDPA kernel CPU runs counts for the same attention,
forward and backward, so cpu == cuda holds for graphs that name them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pytest_flopbudget as fb
from pytest_flopbudget.counting.formulas import attention
from pytest_flopbudget.counting.registry import default_registry

B, H, L, S, E, EV = 2, 4, 5, 7, 8, 6


def by_hand(masked=False, dropout=False):
    """SDPA's count worked out: 280 scores, QKᵀ (E terms), scale, softmax, [mask], [dropout], A·V."""
    scores = B * H * L * S
    outputs = B * H * L * EV
    elementwise = scores * (2 + int(masked) + 2 * int(dropout))
    return (scores * (2 * E - 1) + elementwise + outputs * (2 * S - 1), scores * E + elementwise + outputs * S)


def backward_by_hand(dropout=False):
    """dV = Aᵀ·dO, dA = dO·Vᵀ, dQ = dS·K, dK = dSᵀ·Q, softmax backward and scaling (+ dropout's)."""
    scores = B * H * L * S

    def products(n, k):
        return n * (2 * k - 1), n * k

    parts = [products(B * H * S * EV, L), products(scores, EV), products(B * H * L * E, S),
             products(B * H * S * E, L)]
    elementwise = scores * (2 + int(dropout))
    return sum(p[0] for p in parts) + elementwise, sum(p[1] for p in parts) + elementwise


def rule(name):
    return default_registry().resolve(getattr(torch.ops.aten, name).default)


# the kernels' layout: (batch, length, heads, dim)
Q, K, V = (B, L, H, E), (B, S, H, E), (B, S, H, EV)


def test_flash_forward_counts_sdpa_in_its_layout():
    args = (None, None, L, S, 0.0, False, False)
    assert rule("_flash_attention_forward")(Q, K, V, *args, out_shape=None) == by_hand()
    assert rule("_flash_attention_forward")(Q, K, V, None, None, L, S, 0.1, False, False, out_shape=None) == by_hand(
        dropout=True)
    assert rule("_flash_attention_forward")(Q, K, V, *args, alibi_slopes=(H,), out_shape=None) == by_hand(masked=True)


def test_efficient_forward_counts_a_bias_as_a_mask():
    assert rule("_efficient_attention_forward")(Q, K, V, None, None, None, L, S, 0.0, 0, out_shape=None) == by_hand()
    assert rule("_efficient_attention_forward")(Q, K, V, (B, H, L, S), None, None, L, S, 0.0, 1,
                                                out_shape=None) == by_hand(masked=True)
    assert rule("_efficient_attention_forward")(Q, K, V, None, None, None, L, S, 0.5, 0,
                                                out_shape=None) == by_hand(dropout=True)


def test_backward_kernels_count_the_four_gradient_products():
    flash = rule("_flash_attention_backward")
    efficient = rule("_efficient_attention_backward")
    lse = (B, H, L)
    assert flash((B, L, H, EV), Q, K, V, (B, L, H, EV), lse, (3,), (3,), L, S, 0.0, False, (2,), (0,),
                 out_shape=None) == backward_by_hand()
    assert flash((B, L, H, EV), Q, K, V, (B, L, H, EV), lse, (3,), (3,), L, S, 0.2, False, (2,), (0,),
                 out_shape=None) == backward_by_hand(dropout=True)
    assert efficient((B, L, H, EV), Q, K, V, None, (B, L, H, EV), None, None, L, S, lse, 0.0, (), (), 0, False,
                     out_shape=None) == backward_by_hand()
    sdpa_layout = (B, H, L, E), (B, H, S, E), (B, H, S, EV)
    for name in ("_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention_backward",
                 "_scaled_dot_product_cudnn_attention_backward"):
        assert rule(name)((B, H, L, EV), *sdpa_layout, (B, H, L, EV), lse, out_shape=None) == backward_by_hand()


def test_the_cuda_kernels_count_what_cpu_sdpa_counts_forward_and_backward():
    """cpu == cuda: CPU's SDPA measured, and the CPU flash kernel's backward formula, against the
    CUDA kernels' formulas for the same attention in their layout."""
    q, k, v = torch.randn(B, H, L, E), torch.randn(B, H, S, E), torch.randn(B, H, S, EV)
    with fb.count() as forward:
        F.scaled_dot_product_attention(q, k, v)
    forward_kernel = rule("_flash_attention_forward")(Q, K, V, None, None, L, S, 0.0, False, False, out_shape=None)
    assert (forward.flops, forward.macs) == forward_kernel == by_hand()
    backward_kernel = rule("_flash_attention_backward")((B, L, H, EV), Q, K, V, (B, L, H, EV), (B, H, L), (3,), (3,),
                                                        L, S, 0.0, False, (2,), (0,), out_shape=None)
    cpu_backward = rule("_scaled_dot_product_flash_attention_for_cpu_backward")(
        (B, H, L, EV), (B, H, L, E), (B, H, S, E), (B, H, S, EV), (B, H, L, EV), (B, H, L), 0.0, False, out_shape=None)
    assert backward_kernel == cpu_backward == backward_by_hand()
    assert rule("_flash_attention_forward").__wrapped__ is attention.flash_attention_forward


def test_the_kernels_read_dropout_p_by_its_name():
    """dropout_p by keyword or by position counts alike; the arguments beside it (is_causal, the
    debug mask, a scale) are not taken for it; a call that fits no schema is an error, never a
    count from misplaced arguments."""
    flash = rule("_flash_attention_forward")
    assert flash(Q, K, V, None, None, L, S, dropout_p=0.1, is_causal=False, return_debug_mask=False,
                 out_shape=None) == by_hand(dropout=True)
    assert flash(Q, K, V, None, None, L, S, 0.0, True, True, scale=0.5, out_shape=None) == by_hand()
    efficient = rule("_efficient_attention_backward")
    lse = (B, H, L)
    assert efficient((B, L, H, EV), Q, K, V, None, (B, L, H, EV), None, None, L, S, lse, dropout_p=0.3,
                     philox_seed=(), philox_offset=(), custom_mask_type=0, bias_requires_grad=False,
                     out_shape=None) == backward_by_hand(dropout=True)
    with pytest.raises(TypeError, match="fit no signature"):
        flash(Q, K, V, 0.1, out_shape=None)
