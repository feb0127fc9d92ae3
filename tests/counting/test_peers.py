"""Cross-checks against real tools on a ResNet-50 and a MobileNetV2 (written here in plain torch,
torchvision's layout): the convolution and matrix-product MACs equal ptflops' aten backend and
torch's FlopCounterMode ÷ 2 exactly; every difference from ptflops' pytorch backend is explained
(docs/formulas.md, "Where the numbers differ") and recomputed here from the model's structure.
"""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import pytest_flopbudget as fb

ptflops = pytest.importorskip("ptflops")

PRODUCT_OPS = ("aten.convolution", "aten._convolution", "aten.addmm", "aten.mm", "aten.bmm", "aten.baddbmm")
INPUT = (3, 32, 32)



class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False); self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False); self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False); self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)

class ResNet50(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False); self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True); self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for i in range(blocks):
                layers.append(Bottleneck(cin, width, stride if i == 0 else 1)); cin = width * 4
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1); self.fc = nn.Linear(2048, num_classes)
    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x))
        return self.fc(torch.flatten(x, 1))

def conv_bn(cin, cout, k, stride, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act: layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)

class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = [conv_bn(cin, hidden, 1, 1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, 1, act=False)]
        self.conv = nn.Sequential(*layers)
    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)

class MobileNetV2(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        layers, cin = [conv_bn(3, 32, 3, 2)], 32
        for t, c, n, s in ((1,16,1,1),(6,24,2,2),(6,32,3,2),(6,64,4,2),(6,96,3,1),(6,160,3,2),(6,320,1,1)):
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t)); cin = c
        layers.append(conv_bn(cin, 1280, 1, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))
    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def product_macs(m) -> int:
    return sum(v for k, v in m.op_macs.items() if k in PRODUCT_OPS)


def ptflops_macs(model, backend: str) -> int:
    macs, _ = ptflops.get_model_complexity_info(
        model, INPUT, backend=backend, as_strings=False, print_per_layer_stat=False, ost=io.StringIO()
    )
    return int(macs)


def bias_outputs(model, x) -> int:
    """Output elements of every conv/linear with a bias: the adds FlopCounterMode leaves out."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if getattr(module, "bias", None) is not None:
            total += output.numel()

    handles = [mod.register_forward_hook(hook) for mod in model.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def ptflops_pytorch_excess(model, x) -> int:
    """ptflops' pytorch backend minus our macs, from the structure: nn.ReLU and the max/adaptive
    pools are counted twice (their module hook, and the patched F.relu / F.max_pool2d /
    F.adaptive_avg_pool2d their forward calls; nn.ReLU6 calls F.hardtanh, unpatched, so once);
    residual adds (`out += identity`, `x + y`) are not counted at all."""
    excess = 0

    def twice(module, inputs, output):
        nonlocal excess
        excess += output.numel() if isinstance(module, nn.ReLU) else inputs[0].numel()

    def residual(module, inputs, output):
        nonlocal excess
        if isinstance(module, Bottleneck) or (isinstance(module, InvertedResidual) and module.use_res):
            excess -= output.numel()

    handles = []
    for mod in model.modules():
        if isinstance(mod, (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
            handles.append(mod.register_forward_hook(twice))
        if isinstance(mod, (Bottleneck, InvertedResidual)):
            handles.append(mod.register_forward_hook(residual))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return excess


@pytest.fixture(scope="module", params=[ResNet50, MobileNetV2], ids=["resnet50", "mobilenet_v2"])
def counted(request):
    torch.manual_seed(0)
    model = request.param().eval()
    x = torch.randn(1, *INPUT)
    return model, x, fb.measure(model, x)


def test_nothing_uncounted_and_meta_agrees(counted):
    model, x, m = counted
    assert m.uncounted == {}
    meta = fb.measure(model, x, device="meta")
    assert (meta.flops, meta.macs, meta.params) == (m.flops, m.macs, m.params)


def test_products_equal_ptflops_aten_backend(counted):
    model, x, m = counted
    assert product_macs(m) == ptflops_macs(model, "aten")


def test_products_equal_flop_counter_mode_halved_plus_bias(counted):
    model, x, m = counted
    with FlopCounterMode(display=False) as fcm, torch.no_grad():
        model(x)
    total = fcm.get_total_flops()
    assert total % 2 == 0
    # torch counts 2 per multiply-accumulate of the product alone, no bias
    assert product_macs(m) == total // 2 + bias_outputs(model, x)


def test_difference_from_ptflops_pytorch_backend_is_explained(counted):
    model, x, m = counted
    macs, params = ptflops.get_model_complexity_info(
        model, INPUT, backend="pytorch", as_strings=False, print_per_layer_stat=False, ost=io.StringIO()
    )
    assert macs - m.macs == ptflops_pytorch_excess(model, x)
    assert m.params == params == sum(p.numel() for p in model.parameters())


def numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


LAYERS = {
    # name: (module, input shape with batch 1, ptflops' pytorch backend minus our macs)
    "linear-3d-bias": (nn.Linear(6, 5), (1, 3, 6), 0),  # bias once per output element in both
    "conv-transpose": (nn.ConvTranspose2d(4, 6, 3, stride=2), (1, 4, 5, 5), 0),  # input-sized in both
    "batch-norm": (nn.BatchNorm2d(3).eval(), (1, 3, 4, 4), 0),  # doubled (affine) in both
    "group-norm": (nn.GroupNorm(3, 6), (1, 6, 4, 4), 0),
    "instance-norm": (nn.InstanceNorm2d(3, affine=True), (1, 3, 4, 4), 0),
    # ptflops looks for `.affine`; LayerNorm's flag is `elementwise_affine`, so it never doubles
    "layer-norm": (nn.LayerNorm(6), (1, 3, 6), -numel((1, 3, 6))),
    # module hook plus the patched F.relu / F.gelu / F.max_pool2d their forward calls: twice
    "relu": (nn.ReLU(), (1, 3, 6), numel((1, 3, 6))),
    "gelu": (nn.GELU(), (1, 3, 6), numel((1, 3, 6))),
    "max-pool": (nn.MaxPool2d(2), (1, 3, 4, 4), numel((1, 3, 4, 4))),
    "elu": (nn.ELU(), (1, 3, 6), numel((1, 3, 6))),
    "prelu": (nn.PReLU(), (1, 3, 6), numel((1, 3, 6))),
    "avg-pool": (nn.AvgPool2d(2), (1, 3, 4, 4), numel((1, 3, 4, 4))),
    "adaptive-avg-pool": (nn.AdaptiveAvgPool2d(2), (1, 3, 4, 4), numel((1, 3, 4, 4))),
    "relu6": (nn.ReLU6(), (1, 3, 6), 0),  # calls F.hardtanh, which ptflops does not patch
    "leaky-relu": (nn.LeakyReLU(), (1, 3, 6), 0),  # F.leaky_relu, not patched
    "silu": (nn.SiLU(), (1, 3, 6), 0),  # no module hook; the patched F.silu counts it once
    "mish": (nn.Mish(), (1, 3, 6), -numel((1, 3, 6))),  # unknown to ptflops: 0
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_single_layers_against_ptflops_pytorch(name):
    module, shape, excess = LAYERS[name]
    x = torch.randn(shape)
    m = fb.measure(module, x)
    # batch 1: ptflops divides its module-hook counts by the batch size (it reports per sample)
    # but adds its functional counts undivided, so only batch 1 compares like for like
    macs, _ = ptflops.get_model_complexity_info(
        module, shape[1:], as_strings=False, print_per_layer_stat=False, ost=io.StringIO(),
        input_constructor=lambda _: x,
    )
    assert macs - m.macs == excess


def test_fvcore_counts_products_without_bias(counted):
    fvcore = pytest.importorskip("fvcore.nn")
    model, x, m = counted
    analysis = fvcore.FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    by_op = analysis.by_operator()
    # fvcore's "flop" is one multiply-accumulate; its linear leaves the bias out
    assert by_op["conv"] + by_op["linear"] == product_macs(m) - bias_outputs(model, x)
    # it counts batch norm like our macs (doubled: affine), and ReLU, max pool and adds not at all
    assert by_op["batch_norm"] == m.op_macs["aten.native_batch_norm"]
