"""backward=True counts the real backward kernels; register_formula counts users' own ops."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pytest_flopbudget as fb
from pytest_flopbudget.counting.registry import _unregister_formula


def dots(n_outputs: int, length: int) -> int:
    """The seed's dot product: K multiplies and K − 1 adds."""
    return n_outputs * (2 * length - 1)


def test_mlp_backward_by_hand():
    """Linear(4→8) → ReLU → Linear(8→3) on a batch of 5 whose input needs no gradient."""
    b = 5
    m = fb.measure(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), torch.randn(b, 4), backward=True)
    forward = (dots(b * 8, 4) + b * 8) + b * 8 + (dots(b * 3, 8) + b * 3)
    backward = (
        dots(b * 8, 3)  # grad of the hidden activations: dY(5x3) @ W2(3x8)
        + dots(3 * 8, b)  # grad W2: dYᵀ(3x5) @ H(5x8)
        + b * 3  # grad b2: sum over the batch, one per element
        + b * 8  # relu backward, one per element
        + dots(8 * 4, b)  # grad W1: dHᵀ(8x5) @ X(5x4)
        + b * 8  # grad b1
    )  # no grad for the input: the first layer's input gradient is never computed
    assert m.flops == forward + backward
    assert m.backward is True
    assert m.ops["aten.mm"] == dots(b * 8, 3) + dots(3 * 8, b) + dots(8 * 4, b)


def test_conv_backward_honours_the_output_mask():
    """First-layer conv: weight and bias gradients only."""
    n, cin, cout, k, size = 2, 3, 4, 3, 8
    out_hw = size - k + 1
    n_out = n * cout * out_hw * out_hw
    kk = cin * k * k
    m = fb.measure(nn.Conv2d(cin, cout, k), torch.randn(n, cin, size, size), backward=True)
    forward = n_out * (2 * kk - 1) + n_out
    multiplies = n_out * kk
    grad_weight = 2 * multiplies - cout * kk  # each weight sums its products
    grad_bias = n_out
    assert m.ops["aten.convolution"] == forward
    assert m.ops["aten.convolution_backward"] == grad_weight + grad_bias


def test_conv_backward_with_input_gradient():
    n, cin, cout, k, size = 1, 2, 2, 3, 5
    x = torch.randn(n, cin, size, size, requires_grad=True)
    n_out = n * cout * 3 * 3
    kk = cin * k * k
    m = fb.measure(nn.Conv2d(cin, cout, k, bias=False), x, backward=True)
    # only the weight is a target of the gradient: the input gradient is not asked for
    assert m.ops["aten.convolution_backward"] == 2 * n_out * kk - cout * kk


def test_backward_attributes_to_modules():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    fwd = fb.measure(model, torch.randn(5, 4))
    both = fb.measure(model, torch.randn(5, 4), backward=True)
    assert both.modules["2"].flops > fwd.modules["2"].flops
    assert both.modules["0"].flops > fwd.modules["0"].flops
    assert sum(both.modules[name].flops for name in ("0", "1", "2")) == both.flops


def test_backward_on_meta_equals_cpu():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 5))
    x = torch.randn(2, 3, 8, 8)
    cpu = fb.measure(model, x, backward=True)
    meta = fb.measure(model, x, backward=True, device="meta")
    assert (cpu.flops, cpu.macs) == (meta.flops, meta.macs)


def test_backward_of_dict_output_sums_every_float_tensor():
    class DictOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 2)
            self.b = nn.Linear(3, 2)

        def forward(self, x):
            return {"a": self.a(x), "b": self.b(x), "n": 7}

    m = fb.measure(DictOut(), torch.randn(4, 3), backward=True)
    # each head: grad W (2x4 @ 4x3 → 6 dots of 4) and grad b (sum of 8): both heads get a gradient
    assert m.ops["aten.mm"] == 2 * dots(6, 4)
    assert m.ops["aten.sum"] == 2 * 8


def test_backward_without_trainable_path_is_a_clear_error():
    layer = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(fb.MeasurementError, match="requires grad"):
        fb.measure(layer, torch.randn(1, 2), backward=True)


@pytest.fixture
def scaled_op():
    """A torch.library custom op with a fake kernel, so it runs on meta too."""
    name = "flopbudget_test::scaled_square"

    @torch.library.custom_op(name, mutates_args=())
    def scaled_square(x: torch.Tensor, factor: float) -> torch.Tensor:
        return x * x * factor

    @scaled_square.register_fake
    def _(x, factor):
        return torch.empty_like(x)

    yield scaled_square
    _unregister_formula(scaled_square)


def test_custom_op_is_uncounted_until_registered(scaled_op):
    class UsesOp(nn.Module):
        def forward(self, x):
            return scaled_op(x, 3.0)

    x = torch.randn(4, 5)
    before = fb.measure(UsesOp(), x)
    assert before.uncounted == {"flopbudget_test.scaled_square": 1}
    assert before.flops == 0

    def two_per_element(x_shape, factor, *, out_shape):
        n = x_shape[0] * x_shape[1]
        return (2 * n, n)

    fb.register_formula(scaled_op, two_per_element)
    for device in (None, "meta"):
        after = fb.measure(UsesOp(), x, device=device)
        assert after.uncounted == {}
        assert (after.flops, after.macs) == (2 * 20, 20)
        assert after.ops == {"flopbudget_test.scaled_square": 40}


def test_register_formula_by_name_overrides_a_builtin():
    try:
        fb.register_formula("aten::relu", lambda x, *, out_shape: (0, 0))
        assert fb.measure(nn.ReLU(), torch.randn(10)).flops == 0
    finally:
        _unregister_formula("aten::relu")
    assert fb.measure(nn.ReLU(), torch.randn(10)).flops == 10


def test_register_formula_rejects_a_non_callable():
    with pytest.raises(TypeError, match="must be callable"):
        fb.register_formula("aten::relu", 3)
