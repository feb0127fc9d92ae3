"""Quantized models count as their float twins as converted (BatchNorm folded, ReLU fused): the
same MACs exactly; quantize and dequantize add one FLOP per element and no MAC."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import pytest_flopbudget as fb
from pytest_flopbudget.counting.formulas import quantized

tq = pytest.importorskip("torch.ao.quantization", reason="eager torch.ao quantization is gone from this torch")
if not hasattr(tq, "quantize_dynamic") or not hasattr(tq, "prepare"):
    pytest.skip("eager torch.ao quantization (quantize_dynamic, prepare/convert) is gone from this torch",
                allow_module_level=True)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def test_dynamically_quantized_mlp_counts_as_its_float_twin() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    int8 = tq.quantize_dynamic(mlp, {nn.Linear}, dtype=torch.qint8)
    x = torch.randn(4, 16)
    float_twin, measured = fb.measure(mlp, x), fb.measure(int8, x)
    # by hand: 4x32 outputs of 16 terms + bias, ReLU 128, 4x8 outputs of 32 terms + bias
    assert measured.macs == float_twin.macs == 128 * 16 + 128 + 128 + 32 * 32 + 32
    assert measured.flops == float_twin.flops == 128 * 31 + 128 + 128 + 32 * 63 + 32
    assert measured.ops["quantized.linear_dynamic"] == 128 * 31 + 128 + 32 * 63 + 32
    assert measured.uncounted == {}
    # torch has fake kernels for the dynamic linear: the same count on meta (packed weights unpacked for real)
    on_meta = fb.measure(int8, x, device="meta")
    assert (on_meta.flops, on_meta.macs) == (measured.flops, measured.macs)


class _ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8 * 6 * 6, 10)
        self.dequant = tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        x = self.relu(self.bn(self.conv(x)))
        return self.dequant(self.fc(x.flatten(1)))


def _static_int8() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    net = _ConvNet().eval()
    net.qconfig = tq.get_default_qconfig("x86")
    fused = tq.fuse_modules(net, [["conv", "bn", "relu"]])  # the float twin as converted
    prepared = tq.prepare(fused)
    prepared(torch.randn(2, 3, 8, 8))
    return fused, tq.convert(prepared)


def test_statically_quantized_conv_net_counts_as_its_float_twin() -> None:
    float_twin, int8 = _static_int8()
    x = torch.randn(2, 3, 8, 8)
    expected, measured = fb.measure(float_twin, x), fb.measure(int8, x)
    assert measured.macs == expected.macs
    # by hand: conv (BN folded, bias) 2x8x6x6 outputs of 27 terms + bias, fused ReLU, linear 2x10 of 288 + bias
    conv_outputs = 2 * 8 * 6 * 6
    assert measured.macs == conv_outputs * 27 + conv_outputs + conv_outputs + 20 * 288 + 20
    quantize, dequantize = 2 * 3 * 8 * 8, 2 * 10
    assert measured.flops == expected.flops + quantize + dequantize
    assert measured.ops["aten.quantize_per_tensor"] == quantize
    assert measured.ops["aten.dequantize"] == dequantize
    assert measured.ops["quantized.conv2d_relu"] == conv_outputs * 53 + conv_outputs + conv_outputs
    assert measured.uncounted == {}
    assert measured.modules["conv"].macs == expected.modules["conv"].macs


def test_eager_quantized_model_on_meta_is_a_clear_error() -> None:
    _, int8 = _static_int8()
    with pytest.raises(fb.MeasurementError, match="device='cpu'"):
        fb.measure(int8, torch.randn(2, 3, 8, 8), device="meta")


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_pt2e_quantize_dequantize_count_one_per_element(device: str) -> None:
    decomposed = pytest.importorskip("torch.ao.quantization.fx._decomposed")
    assert decomposed is not None
    ops = torch.ops.quantized_decomposed
    with fb.count(device=device) as counted:
        x = torch.randn(4, 6)
        q = ops.quantize_per_tensor(x, 0.1, 3, -128, 127, torch.int8)
        ops.dequantize_per_tensor(q, 0.1, 3, -128, 127, torch.int8)
    assert (counted.flops, counted.macs) == (2 * 24, 0)
    assert counted.ops == {"quantized_decomposed.dequantize_per_tensor": 24,
                           "quantized_decomposed.quantize_per_tensor": 24}


def test_formulas_by_hand() -> None:
    packed = {"weight": (8, 3, 3, 3), "bias": (8,), "groups": 1, "transposed": False}
    assert quantized.convolution((1, 3, 5, 5), packed, out_shape=(1, 8, 3, 3)) == (72 * 53 + 72, 72 * 27 + 72)
    assert quantized.convolution_activation((1, 3, 5, 5), packed, out_shape=(1, 8, 3, 3)) == (
        72 * 53 + 2 * 72, 72 * 27 + 2 * 72)
    linear = {"weight": (4, 6), "bias": None}
    assert quantized.linear((2, 6), linear, 0.1, 0, out_shape=(2, 4)) == (8 * 11, 8 * 6)
    assert quantized.linear_activation((2, 6), linear, out_shape=(2, 4)) == (8 * 11 + 8, 8 * 6 + 8)
    assert quantized.elementwise_relu((2, 4), (2, 4), 0.1, 0, out_shape=(2, 4)) == (16, 16)
    assert quantized.quantize((3, 5), out_shape=(3, 5)) == (15, 0)
    assert quantized.embedding_bag((10, 16), (12,), (4,), out_shape=(4, 8)) == (96, 96)
    with pytest.raises(TypeError, match="packed weights"):
        quantized.linear((2, 6), (4, 6), out_shape=(2, 4))
