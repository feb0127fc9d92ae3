"""Normalisation worked by hand: flops one per element (the seed's BN/LN rule), macs one per
element doubled when the layer has a scale or shift (ptflops' rule); params 2·C when affine."""

from __future__ import annotations

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from counting_helpers import Fn, measure_both
from pytest_flopbudget.counting.formulas import norm
from pytest_flopbudget.counting.registry import default_registry


C = 4
SHAPES = {"1d": (2, C, 5), "2d": (2, C, 3, 5), "3d": (2, C, 2, 3, 3)}


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("cls", ["BatchNorm", "InstanceNorm"])
def test_batch_and_instance_norm_eval(cls, shape, affine):
    module = getattr(nn, f"{cls}{shape}")(C, affine=affine).eval()
    x = torch.randn(*SHAPES[shape])
    m = measure_both(module, x)
    n = x.numel()
    assert m.flops == n
    assert m.macs == (2 * n if affine else n)
    assert m.params == (2 * C if affine else 0)


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train_counts_the_norm_not_the_batch_counter(affine):
    x = torch.randn(*SHAPES["2d"])
    layer = nn.BatchNorm2d(C, affine=affine)
    m = measure_both(layer, x)
    n = x.numel()
    # running statistics are updated inside the kernel; num_batches_tracked += 1 is integer
    # bookkeeping, not a FLOP: train mode counts exactly what eval mode counts
    assert m.ops == {"aten.native_batch_norm": n}
    assert m.macs == (2 * n if affine else n)
    evaluated = measure_both(layer.eval(), x)
    assert (evaluated.flops, evaluated.macs) == (m.flops, m.macs)


def test_instance_norm_train_without_running_stats_counts_the_elements():
    x = torch.randn(*SHAPES["2d"])
    m = measure_both(nn.InstanceNorm2d(C, affine=True), x)  # train mode, no running stats
    assert (m.flops, m.macs) == (x.numel(), 2 * x.numel())


@pytest.mark.parametrize("affine", [True, False])
def test_group_norm(affine):
    x = torch.randn(2, C, 3, 5)
    m = measure_both(nn.GroupNorm(2, C, affine=affine), x)
    n = x.numel()
    assert (m.flops, m.macs, m.params) == (n, 2 * n if affine else n, 2 * C if affine else 0)


@pytest.mark.parametrize("weight,bias", [(True, True), (True, False), (False, False)])
def test_layer_norm(weight, bias):
    x = torch.randn(2, 3, C)
    m = measure_both(nn.LayerNorm(C, elementwise_affine=weight, bias=bias), x)
    n = x.numel()
    assert (m.flops, m.macs) == (n, 2 * n if weight else n)
    assert m.params == (C if weight else 0) + (C if bias else 0)


@pytest.mark.parametrize("affine", [True, False])
def test_rms_norm_module_is_one_unit(affine):
    x = torch.randn(2, 3, C)
    m = measure_both(nn.RMSNorm(C, elementwise_affine=affine), x)
    n = x.numel()
    assert m.ops == {"aten.rms_norm": n}
    assert (m.flops, m.macs, m.params) == (n, 2 * n if affine else n, C if affine else 0)


def test_rms_norm_functional_counts_like_the_module():
    x, w = torch.randn(2, 3, C), torch.randn(C)
    m = measure_both(Fn(lambda x, w: F.rms_norm(x, (C,), w)), (x, w))
    assert (m.flops, m.macs) == (x.numel(), 2 * x.numel())


@pytest.mark.skipif(torch.__version__ < "2.8", reason="aten._fused_rms_norm is in torch 2.8 and later")
def test_fused_rms_norm_kernel_counts_like_the_decomposed_path():
    # On CPU F.rms_norm lowers to pow/mean/add/rsqrt/mul, muted and counted as one unit; on CUDA
    # it dispatches aten._fused_rms_norm. The rule that kernel resolves to must give the same.
    x, w = torch.randn(2, 3, C), torch.randn(C)
    decomposed = measure_both(Fn(lambda x, w: F.rms_norm(x, (C,), w)), (x, w))
    rule = default_registry().resolve(torch.ops.aten._fused_rms_norm.default)
    assert rule is norm.rms_norm
    out = (tuple(x.shape), (2, 3, 1))
    assert rule(tuple(x.shape), [C], tuple(w.shape), 1e-6, out_shape=out) == (decomposed.flops, decomposed.macs)
    assert rule(tuple(x.shape), [C], None, 1e-6, out_shape=out) == (x.numel(), x.numel())


class HandWrittenRMSNorm(nn.Module):
    """transformers' LlamaRMSNorm, copied: no F.rms_norm, so it is counted op by op."""

    def __init__(self, hidden, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


def test_hand_written_rms_norm_is_counted_op_by_op():
    b, t = 2, 3
    x = torch.randn(b, t, C)
    m = measure_both(HandWrittenRMSNorm(C), x)
    n, rows = x.numel(), b * t
    # pow n, mean n, + eps per row, rsqrt per row, x * r n, weight * n
    assert m.ops == {"aten.pow": n, "aten.mean": n, "aten.add": rows, "aten.rsqrt": rows, "aten.mul": 2 * n}
    assert m.flops == m.macs == 4 * n + 2 * rows


# -- shape level: the formula called with plain shapes --
# The aten kernels' positional arguments with tensors as tuples: flops one per element (the
# seed's BN/LN rule), macs the same doubled when a scale or shift is given (ptflops).

X = (2, 3, 4, 4)  # 96 elements, C = 3
N_X = 2 * 3 * 4 * 4
STATS = ((3,), (3,))  # running mean and var: buffers, no work of their own


@pytest.mark.parametrize("affine", [True, False])
def test_shape_native_batch_norm(affine):
    w, b = ((3,), (3,)) if affine else (None, None)
    got = norm.batch_norm(X, w, b, *STATS, True, 0.1, 1e-5, out_shape=(X, (3,), (3,)))
    assert got == (N_X, 2 * N_X if affine else N_X)


def test_shape_batch_norm_eval_kernel():
    got = norm.RULES["_native_batch_norm_legit_no_training"](X, (3,), (3,), *STATS, 0.1, 1e-5,
                                                            out_shape=(X, (0,), (0,)))
    assert got == (N_X, 2 * N_X)


@pytest.mark.parametrize("weight, bias, macs_per_element", [((6,), (6,), 2), ((6,), None, 2), (None, None, 1)])
def test_shape_native_layer_norm(weight, bias, macs_per_element):
    # docs/formulas.md: nn.LayerNorm(6) on (2, 5, 6): 60 elements, flops 60, macs 120
    n = 2 * 5 * 6
    got = norm.layer_norm((2, 5, 6), [6], weight, bias, 1e-5, out_shape=((2, 5, 6), (2, 5, 1), (2, 5, 1)))
    assert got == (n, macs_per_element * n)


@pytest.mark.parametrize("affine", [True, False])
def test_shape_native_group_norm(affine):
    # GroupNorm(2, 4) on (2, 4, 3, 3): native_group_norm(x, w, b, N, C, HxW, group, eps)
    n = 2 * 4 * 3 * 3
    w, b = ((4,), (4,)) if affine else (None, None)
    got = norm.group_norm((2, 4, 3, 3), w, b, 2, 4, 9, 2, 1e-5, out_shape=((2, 4, 3, 3), (2, 2), (2, 2)))
    assert got == (n, 2 * n if affine else n)


@pytest.mark.parametrize("weight, macs_per_element", [((6,), 2), (None, 1)])
def test_shape_rms_norm_kernel_and_function(weight, macs_per_element):
    # RMSNorm has a scale only: doubled with it, not without
    n = 2 * 5 * 6
    fused = norm.RULES["_fused_rms_norm"]((2, 5, 6), [6], weight, 1e-6, out_shape=((2, 5, 6), (2, 5, 1)))
    assert fused == (n, macs_per_element * n)
    # F.rms_norm(input, normalized_shape, weight=None, eps=None), bound to its signature
    _, function = norm.FUNCTION_RULES["torch.nn.functional.rms_norm"]
    assert function((2, 5, 6), [6], weight, None, out_shape=(2, 5, 6)) == (n, macs_per_element * n)


def test_shape_weight_norm_interface():
    # w = g·v/‖v‖ over every dim but 0: the norm 2 per element of v, g/‖v‖ one per element of g,
    # the scaling one per element of v
    n_v, n_g = 6 * 4 * 3, 6
    got = norm.weight_norm((6, 4, 3), (6, 1, 1), 0, out_shape=((6, 4, 3), (6, 1, 1)))
    assert got == (2 * n_v + n_g + n_v, 2 * n_v + n_g + n_v)


@pytest.mark.parametrize("mask, gradients", [([True, True, True], 3), ([True, False, False], 1),
                                              ([False, True, True], 2)])
def test_shape_batch_norm_backward_counts_each_gradient_asked_for(mask, gradients):
    got = norm.batch_norm_backward(X, X, (3,), *STATS, (3,), (3,), True, 1e-5, mask, out_shape=(X, (3,), (3,)))
    assert got == (gradients * N_X, gradients * N_X)


@pytest.mark.parametrize("mask, gradients", [([True, True, True], 3), ([True, False, False], 1)])
def test_shape_layer_and_group_norm_backward(mask, gradients):
    n = 2 * 5 * 6
    layer = norm.layer_norm_backward((2, 5, 6), (2, 5, 6), [6], (2, 5, 1), (2, 5, 1), (6,), (6,), mask,
                                     out_shape=((2, 5, 6), (6,), (6,)))
    assert layer == (gradients * n, gradients * n)
    # native_group_norm_backward(grad_out, input, mean, rstd, weight, N, C, HxW, group, output_mask)
    n_g = 2 * 4 * 3 * 3
    group = norm.RULES["native_group_norm_backward"]((2, 4, 3, 3), (2, 4, 3, 3), (2, 2), (2, 2), (4,), 2, 4, 9, 2,
                                                     mask, out_shape=((2, 4, 3, 3), (4,), (4,)))
    assert group == (gradients * n_g, gradients * n_g)


def test_shape_fused_rms_norm_backward():
    # _fused_rms_norm_backward(grad_out, input, normalized_shape, rstd, weight, output_mask[2])
    n = 2 * 5 * 6
    got = norm.RULES["_fused_rms_norm_backward"]((2, 5, 6), (2, 5, 6), [6], (2, 5, 1), (6,), [True, True],
                                                 out_shape=((2, 5, 6), (6,)))
    assert got == (2 * n, 2 * n)
