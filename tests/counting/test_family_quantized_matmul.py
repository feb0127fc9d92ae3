"""Weight-only quantized, scaled (fp8) and 2:4-sparse products, and the fused linear kernels:
each counts as its float twin, M·N outputs of K terms: (2K − 1) flops and K macs per output."""

from __future__ import annotations

import torch

import pytest_flopbudget as fb
from pytest_flopbudget.counting.formulas import matmul
from pytest_flopbudget.counting.registry import default_registry

M, K, N = 3, 64, 5


def products(n, k, added=False):
    extra = n if added else 0
    return n * (2 * k - 1) + extra, n * k + extra


def rule(name):
    """The registry's formula for ``aten.<name>``; the family's own table where this torch lacks the
    op (``_dyn_quant_matmul_4bit`` and ``_scaled_mm_v2`` are newer than torch 2.6)."""
    packet = getattr(torch.ops.aten, name, None)
    if packet is None:
        return matmul.RULES[name]
    return default_registry().resolve(packet.default)


def test_weight_only_products_count_the_activation_s_k_terms():
    # int4: the weight packed as (N/8, K/(16·2), 32, 4); int8: (N, K); the dynamic 4-bit: a flat buffer
    assert rule("_weight_int4pack_mm")((M, K), (N // 8 or 1, 2, 32, 4), 32, (2, N, 2), out_shape=(M, N)) == products(
        M * N, K)
    assert rule("_weight_int4pack_mm_for_cpu")((M, K), (N, K // 2), 32, (2, N, 2), out_shape=(M, N)) == products(M * N, K)
    assert rule("_weight_int8pack_mm")((M, K), (N, K), (N,), out_shape=(M, N)) == products(M * N, K)
    assert rule("_dyn_quant_matmul_4bit")((M, K), (999,), 32, K, N, out_shape=(M, N)) == products(M * N, K)


def test_scaled_products_count_as_mm_and_grouped_mm():
    assert rule("_scaled_mm_v2")((M, K), (K, N), [(1,)], [0], [0], [(1,)], [0], [0], None, None,
                                 out_shape=(M, N)) == products(M * N, K)
    assert rule("_scaled_mm_v2")((M, K), (K, N), [(1,)], [0], [0], [(1,)], [0], [0], (N,), None,
                                 out_shape=(M, N)) == products(M * N, K, added=True)
    # the MoE forward: 12 routed rows through 4 experts of (K, N)
    assert rule("_scaled_grouped_mm")((12, K), (4, K, N), (12,), (4, N), (4,), out_shape=(12, N)) == products(12 * N, K)


def test_semi_structured_sparse_products_count_the_kept_half():
    half = K // 2
    assert rule("_sparse_semi_structured_mm")((M, half), (M, 4), (K, N), out_shape=(M, N)) == products(M * N, half)
    assert rule("_sparse_semi_structured_linear")((7, K), (N, half), (N, 4), bias=(N,),
                                                  out_shape=(7, N)) == products(7 * N, half, added=True)
    assert rule("_cslt_sparse_mm")((M * half + 40,), (K, N), out_shape=(M, N)) == products(M * N, half)


def test_fused_linear_kernels_count_their_unfused_ops():
    flops, macs = products(M * N, K, added=True)
    assert rule("_addmm_activation")((N,), (M, K), (K, N), use_gelu=True, out_shape=(M, N)) == (flops + M * N,
                                                                                                 macs + M * N)
    # linear_backward on a (2, 3, K) input: grad_input 6·K outputs of N terms, grad_weight N·K of 6
    # terms, grad_bias 6·N adds
    grad_input, grad_weight = products(6 * K, N), products(N * K, 6)
    expected = (grad_input[0] + grad_weight[0] + 6 * N, grad_input[1] + grad_weight[1] + 6 * N)
    assert rule("linear_backward")((2, 3, K), (2, 3, N), (N, K), [True, True, True], out_shape=None) == expected
    assert rule("linear_backward")((2, 3, K), (2, 3, N), (N, K), [True, False, False], out_shape=None) == grad_input


def test_int8_weight_only_linear_counts_its_float_twin_end_to_end():
    x = torch.randn(M, K)
    weight = torch.randint(-128, 127, (N, K), dtype=torch.int8)
    scales = torch.rand(N)
    with fb.count() as quantized:
        torch.ops.aten._weight_int8pack_mm(x, weight, scales)
    with fb.count() as float_twin:
        torch.nn.functional.linear(x, weight.float())
    assert quantized.uncounted == {}
    assert (quantized.flops, quantized.macs) == (float_twin.flops, float_twin.macs) == products(M * N, K)
