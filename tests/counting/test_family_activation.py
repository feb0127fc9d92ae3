"""Every torch.nn activation and softmax worked by hand: one operation per output element (the
seed's ReLU/GELU rule), in both numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
import torch.nn.functional as F
import torch.nn.modules.activation as activations

from counting_helpers import Fn, measure_both
from pytest_flopbudget.counting.formulas import activation


# MultiheadAttention lives in the same module but is attention, counted (and tested) elsewhere
NAMES = [n for n in activations.__all__ if n != "MultiheadAttention"]
REQUIRED_ARGS = {"Threshold": (0.1, 0.0), "Softmax": (1,), "Softmin": (1,), "LogSoftmax": (1,)}


def test_every_activation_is_listed():
    assert {"ReLU", "GELU", "GLU", "SiLU", "Mish", "Hardswish", "PReLU", "Softplus", "Softsign",
            "Tanhshrink", "Softmin", "Softmax", "LogSoftmax"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_activation_counts_one_per_output_element(name):
    module = getattr(activations, name)(*REQUIRED_ARGS.get(name, ()))
    b, c, h, w = 2, 4, 3, 6
    m = measure_both(module, torch.randn(b, c, h, w))
    # GLU halves its last dimension (a·σ(b)): its output is half the input
    out_elements = b * c * h * (w // 2 if name == "GLU" else w)
    assert m.flops == m.macs == out_elements
    assert m.params == (1 if name == "PReLU" else 0)


@pytest.mark.parametrize("name", ["ReLU", "ReLU6", "Hardtanh", "SiLU", "Mish", "Hardswish", "Hardsigmoid",
                                  "ELU", "CELU", "SELU", "LeakyReLU", "RReLU"])
def test_in_place_activation_counts_like_the_functional_one(name):
    x = torch.randn(2, 3, 5)
    m = measure_both(getattr(nn, name)(inplace=True), x)
    assert m.flops == m.macs == x.numel()


def test_prelu_with_one_slope_per_channel():
    x = torch.randn(2, 3, 5)
    m = measure_both(nn.PReLU(3), x)
    assert (m.flops, m.params) == (x.numel(), 3)


@pytest.mark.parametrize(
    "fn",
    [lambda x: F.softmax(x, -1), lambda x: F.log_softmax(x, 1), lambda x: x.softmax(0),
     lambda x: torch.ops.aten._safe_softmax(x, -1), lambda x: F.softmin(x, -1),
     lambda x: F.silu(x), lambda x: F.gelu(x, approximate="tanh"), lambda x: torch.sigmoid(x)],
    ids=["softmax", "log_softmax", "tensor.softmax", "_safe_softmax", "softmin", "silu", "gelu-tanh", "sigmoid"],
)
def test_functional_forms(fn):
    x = torch.randn(2, 3, 5)
    m = measure_both(Fn(fn), x)
    assert m.flops == m.macs == x.numel()


def test_hand_written_activation_is_counted_op_by_op():
    x = torch.randn(2, 3, 5)
    m = measure_both(Fn(lambda x: x * torch.sigmoid(x)), x)  # SiLU written out: sigmoid + mul
    assert m.ops == {"aten.sigmoid": x.numel(), "aten.mul": x.numel()}


def test_activation_backward_counts_one_per_gradient_element():
    x = torch.randn(2, 3)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.GELU())
    m = measure_both(model, x, backward=True)
    assert m.ops["aten.gelu"] == m.ops["aten.gelu_backward"] == 2 * 4


# -- shape level: the formula called with plain shapes --
# The seed's ReLU/GELU rule, Cout·Hout·Wout: one per output element in both numbers, whatever the
# op's other arguments.

XS = (2, 4, 3, 6)
N_XS = 2 * 4 * 3 * 6


@pytest.mark.parametrize(
    "name, args, kwargs",
    [("relu", (XS,), {}), ("gelu", (XS,), {"approximate": "tanh"}), ("silu", (XS,), {}), ("sigmoid", (XS,), {}),
     ("tanh", (XS,), {}), ("hardswish", (XS,), {}), ("hardtanh", (XS, -1.0, 1.0), {}), ("leaky_relu", (XS, 0.2), {}),
     ("elu", (XS, 1.0, 1.0, 1.0), {}), ("mish", (XS,), {}), ("softplus", (XS, 1.0, 20.0), {}),
     ("_prelu_kernel", (XS, (4,)), {}), ("_softmax", (XS, -1, False), {}), ("_log_softmax", (XS, 1, False), {}),
     ("_safe_softmax", (XS, -1), {})],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_shape_activation_counts_one_per_output_element(name, args, kwargs):
    assert activation.RULES[name](*args, out_shape=XS, **kwargs) == (N_XS, N_XS)


def test_shape_glu_counts_its_output_half_its_input():
    # docs/formulas.md: nn.GLU() on (2, 4, 3, 6): output (2, 4, 3, 3), 72
    n_out = 2 * 4 * 3 * 3
    assert activation.RULES["glu"](XS, -1, out_shape=(2, 4, 3, 3)) == (n_out, n_out)


def test_shape_several_outputs_count_the_first():
    # log_sigmoid_forward returns (output, buffer): the buffer is no extra work
    got = activation.RULES["log_sigmoid_forward"](XS, out_shape=(XS, (0,)))
    assert got == (N_XS, N_XS)


@pytest.mark.parametrize(
    "name, args",
    [("threshold_backward", ((2, 3), (2, 3), 0)), ("gelu_backward", ((2, 3), (2, 3))),
     ("_softmax_backward_data", ((2, 3), (2, 3), -1, 6))],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_shape_activation_backward_counts_one_per_gradient_element(name, args):
    assert activation.RULES[name](*args, out_shape=(2, 3)) == (2 * 3, 2 * 3)


@pytest.mark.parametrize(
    "path, args",
    [("torch.nn.functional.softsign", (XS,)), ("torch.nn.functional.tanhshrink", (XS,)),
     ("torch.nn.functional.softmin", (XS, -1, 3, None))],
)
def test_shape_composite_activations_are_one_unit(path, args):
    # Softsign is x / (1 + |x|) op by op (3 per element), counted as one activation
    _, formula = activation.FUNCTION_RULES[path]
    assert formula(*args, out_shape=XS) == (N_XS, N_XS)
