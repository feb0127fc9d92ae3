"""Models built by a factory on meta count what the same model counts on cpu, and a meta count
leaves the caller's model as it was.

Factories run with real Python arithmetic and only their parameters and buffers kept off memory
(timm's drop-path schedule calls ``.item()``, RegNets compute their widths with tensors and
``unique``). Some models cache tensors derived from their weights in plain attributes during the
forward (timm's attention-bias caches): after a meta count the caller's next forward must still
return real logits.
"""

from __future__ import annotations

import pytest
import torch

import pytest_flopbudget as fb

from zoo_helpers import optional, require

timm, TIMM_REASON = optional("timm")
torchvision, TV_REASON = optional("torchvision")
tf, _ = optional("transformers")

TIMM_FACTORIES = [
    "vit_tiny_patch16_224", "deit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "swinv2_tiny_window8_256",
    "convnext_atto", "convnextv2_atto", "coatnet_nano_rw_224", "maxvit_nano_rw_256", "mobilevit_xxs",
    "efficientformer_l1", "efficientformerv2_s0", "poolformer_s12", "regnetz_b16", "resnetv2_50", "repvgg_a0",
    "nest_tiny", "regnetx_002", "regnety_002",
]


def timm_side(name: str) -> int:
    return timm.get_pretrained_cfg(name).input_size[-1]


@pytest.mark.skipif(timm is None, reason=TIMM_REASON or "timm missing")
@pytest.mark.parametrize("name", TIMM_FACTORIES)
def test_timm_factory_on_meta_equals_cpu(name):
    x = torch.randn(1, 3, timm_side(name), timm_side(name))
    meta = fb.measure(lambda: timm.create_model(name, pretrained=False).eval(), x, device="meta")
    # a ready instance on meta counts what it counts on cpu (test_timm_zoo checks that per model,
    # at smaller sizes): compare with it rather than pay a cpu forward at full size
    ready = fb.measure(timm.create_model(name, pretrained=False).eval(), x, device="meta")
    assert meta.uncounted == {}
    assert (meta.flops, meta.macs, meta.params) == (ready.flops, ready.macs, ready.params)


@pytest.mark.skipif(torchvision is None, reason=TV_REASON or "torchvision missing")
@pytest.mark.parametrize("name", ["regnet_x_400mf", "regnet_y_400mf"])
def test_torchvision_regnet_factory_on_meta(name):
    x = torch.randn(1, 3, 64, 64)
    meta = fb.measure(lambda: torchvision.models.get_model(name, weights=None).eval(), x, device="meta")
    cpu = fb.measure(torchvision.models.get_model(name, weights=None).eval(), x, device="cpu")
    assert (meta.flops, meta.macs, meta.params) == (cpu.flops, cpu.macs, cpu.params)


def test_transformers_convnext_factory_on_meta():
    require("transformers")
    config = tf.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2)
    x = torch.randn(1, 3, 32, 32)
    meta = fb.measure(lambda: tf.ConvNextModel(config).eval(), x, device="meta")
    cpu = fb.measure(tf.ConvNextModel(config).eval(), x, device="cpu")
    assert (meta.flops, meta.macs, meta.params) == (cpu.flops, cpu.macs, cpu.params)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_factory_that_casts_its_model_on_meta(dtype):
    """A factory ending in ``.half()`` / ``.to(torch.bfloat16)``: counted like the float32 model
    (counts do not depend on dtype)."""
    require("transformers")
    config = tf.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, vocab_size=256)
    ids = torch.randint(0, 256, (1, 8))
    cast = fb.measure(lambda: tf.LlamaForCausalLM(config).to(dtype).eval(), {"input_ids": ids}, device="meta")
    plain = fb.measure(tf.LlamaForCausalLM(config).eval(), {"input_ids": ids}, device="cpu")
    assert cast.uncounted == {}
    assert (cast.flops, cast.macs, cast.params) == (plain.flops, plain.macs, plain.params)


CACHING_MODELS = ["levit_128s", "levit_256", "efficientformer_l1", "efficientformerv2_s0",
                  "efficientvit_m0", "tiny_vit_5m_224"]


@pytest.mark.skipif(timm is None, reason=TIMM_REASON or "timm missing")
@pytest.mark.parametrize("name", CACHING_MODELS)
def test_meta_count_leaves_attention_bias_caches_alone(name):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, 3, timm_side(name), timm_side(name))
    with torch.no_grad():
        before = model(x)
    fb.measure(model, x, device="meta")
    with torch.no_grad():
        after = model(x)
    from torch._subclasses.fake_tensor import FakeTensor

    assert not isinstance(after, FakeTensor) and after.device.type == "cpu"
    torch.testing.assert_close(after, before)
