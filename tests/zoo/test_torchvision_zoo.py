"""Every torchvision classification model, and its detection, segmentation, video and optical-flow
models, built with random weights (weights=None).

Classification, per model: nothing uncounted; cpu == meta on one ready instance at a small input;
params equal to the unique parameters; and MACs at the weights' own resolution within a band of
the ``_ops`` GFLOPS torchvision publishes with its weights (``get_model_weights(name)``, no
download). ``_ops`` counts the multiply-accumulates of convolutions and linear layers without
biases; the engine's MACs also hold norms, activations, pooling, residual adds, SE scaling and
biases, so the ratio is at least 1 and, for these networks, at most 1.10 (docs/formulas.md, "The
model zoo", lists every model above 1.05 and why).
"""

from __future__ import annotations

import pytest
import torch

import pytest_flopbudget as fb

from zoo_helpers import assert_counts_everywhere, empty_weights, materialise, optional, require, unique_params

torchvision, REASON = optional("torchvision")
MACS_TO_OPS_BAND = (1.0, 1.10)


def classification_names() -> list[str]:
    if torchvision is None:
        return []
    return sorted(torchvision.models.list_models(module=torchvision.models))


def small_side(name: str) -> int:
    if name == "maxvit_t":
        return 224  # its 7×7 partitions of a /32 feature map need 224 px
    return 96 if name == "inception_v3" else 64  # inception needs 75 px at least


def build_kwargs(name: str, side: int) -> dict:
    """torchvision's ViTs are built for one image size: build them for the size counted.
    GoogLeNet's published weights (and their num_params) have no auxiliary classifiers."""
    if name.startswith("vit_"):
        return {"image_size": side}
    return {"aux_logits": False} if name == "googlenet" else {}


def build(name: str, side: int) -> torch.nn.Module:
    with empty_weights():
        return torchvision.models.get_model(name, weights=None, **build_kwargs(name, side)).eval()


NAMES = classification_names()
skip_without = pytest.mark.skipif(torchvision is None, reason=REASON or "torchvision missing")


@skip_without
@pytest.mark.parametrize("name", NAMES or ["torchvision-missing"])
def test_classification_model(name):
    # MACs at the resolution the weights were evaluated at, counted on meta (no memory)
    weights = list(torchvision.models.get_model_weights(name))[0]
    side = weights.transforms().crop_size[0]
    full = build(name, side)
    published = fb.measure(full, torch.randn(1, 3, side, side), device="meta")
    assert published.uncounted == {}
    assert published.params == unique_params(full) == weights.meta["num_params"]
    ratio = published.macs / (weights.meta["_ops"] * 1e9)
    assert MACS_TO_OPS_BAND[0] <= ratio <= MACS_TO_OPS_BAND[1], ratio
    # cpu == meta on one ready instance, small input
    side = small_side(name) if not name.startswith("vit_") else (56 if name == "vit_h_14" else 64)
    model = materialise(build(name, side))
    assert_counts_everywhere(model, torch.randn(1, 3, side, side))


def test_every_classification_model_is_covered():
    """The list is torchvision's own, not ours: a release that adds a model adds a test."""
    require("torchvision")
    assert len(NAMES) >= 80 and {"resnet50", "vit_b_16", "swin_v2_t", "maxvit_t", "regnet_y_128gf"} <= set(NAMES)


# --- models whose shapes depend on values -----------------------------------------------------

DETECTION = ["fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn", "ssdlite320_mobilenet_v3_large",
             "maskrcnn_resnet50_fpn"]


@skip_without
@pytest.mark.parametrize("name", DETECTION)
def test_detection_counts_on_cpu_and_refuses_meta(name):
    """Detection heads keep the boxes that pass a score threshold (nonzero) and suppress overlaps
    (torchvision::nms): the work depends on the values, so they count on cpu and a meta count
    says why it cannot run. NMS and RoI align are torchvision ops with formulas of their own: NMS's
    every-pair IoU is an upper bound, recorded in ``estimated``; see docs/formulas.md."""
    torch.manual_seed(0)
    kwargs = {"weights_backbone": None, "num_classes": 5}
    if name.startswith(("fasterrcnn", "maskrcnn", "keypointrcnn", "retinanet", "fcos")):
        kwargs.update(min_size=128, max_size=128)
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    images = [torch.rand(3, 128, 128)]
    cpu = fb.measure(model, (images,), device="cpu")
    assert cpu.macs > 0 and cpu.params == unique_params(model)
    assert cpu.uncounted == {}, cpu.uncounted
    # nms runs only when some box passes the score threshold (random weights: not in every model)
    assert set(cpu.estimated) == {op for op in ("torchvision.nms",) if op in cpu.ops}
    assert cpu.value_dependent and "aten.nonzero" in str(cpu.value_reads)  # the score threshold
    with pytest.raises(fb.MeasurementError, match="cannot run on meta"):
        fb.measure(model, (images,), device="meta")


SEGMENTATION = ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"]
VIDEO = ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t"]
FIXED_CLIPS = {"s3d", "mvit_v2_s"}


@skip_without
@pytest.mark.parametrize("name", SEGMENTATION)
def test_segmentation_model(name):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=5).eval()
    assert_counts_everywhere(model, torch.randn(1, 3, 64, 64))


@skip_without
@pytest.mark.parametrize("name", VIDEO)
def test_video_model(name):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    if name in FIXED_CLIPS:
        # heads built for 16×224² clips (a pooling kernel or position embeddings): meta only, since
        # a cpu count at that size costs tens of GFLOPs of real compute
        m = fb.measure(model, torch.randn(1, 3, 16, 224, 224), device="meta")
        assert m.uncounted == {} and m.params == unique_params(model)
        return
    assert_counts_everywhere(model, torch.randn(1, 3, 8, 64, 64))


@skip_without
def test_optical_flow_raft_small():
    torch.manual_seed(0)
    model = torchvision.models.get_model("raft_small", weights=None).eval()
    frames = (torch.randn(1, 3, 128, 128), torch.randn(1, 3, 128, 128))  # 128 px at least
    assert_counts_everywhere(model, frames)
