"""A broad timm set (pretrained=False): one or two models of each family, at small input sizes
(``img_size=64`` where the model is built for one size).

Per model: nothing uncounted, the same counts on cpu and meta for one ready instance, params equal
to the unique parameters. timm imports torchvision, so next to a torch whose torchvision does not
import, these skip with the reason.
"""

from __future__ import annotations

import pytest
import torch

from zoo_helpers import assert_counts_everywhere, optional

timm, REASON = optional("timm")

BUILT_FOR_ONE_SIZE = (  # built with img_size=64
    "regnetz_b16 vit_tiny_patch16_224 deit_tiny_patch16_224 eva02_tiny_patch14_224 beit_base_patch16_224 "
    "swin_tiny_patch4_window7_224 swinv2_tiny_window8_256 maxvit_nano_rw_256 coatnet_nano_rw_224 levit_128s "
    "mobilevit_xxs efficientformerv2_s0 mixer_s16_224 resmlp_12_224 gmlp_ti16_224 cait_xxs24_224 "
    "xcit_nano_12_p16_224 repvgg_a0 tnt_s_patch16_224 volo_d1_224 efficientvit_m0 pit_ti_224 coat_lite_tiny"
).split()
ANY_SIZE = (  # run at 64×64 as built
    "resnet18 resnet50d resnetv2_50 efficientnet_b0 efficientnetv2_rw_t regnetx_002 regnety_002 convnext_atto "
    "convnextv2_atto poolformer_s12 poolformerv2_s12 nfnet_f0 eca_nfnet_l0 ghostnet_100 ghostnetv2_100 "
    "mobilenetv3_small_050 mobilenetv3_large_100 mobilenetv4_conv_small mobilenetv4_hybrid_medium fastvit_t8 "
    "hrnet_w18_small dla34 dpn48b tiny_vit_5m_224 crossvit_tiny_240"
).split()
NATIVE_SIZE = {"efficientformer_l1": 224, "inception_v3": 160}  # fixed token grid; ≥75 px


def cases() -> list[tuple[str, dict, int]]:
    return ([(name, {"img_size": 64}, 64) for name in BUILT_FOR_ONE_SIZE]
            + [(name, {}, 64) for name in ANY_SIZE]
            + [(name, {}, side) for name, side in NATIVE_SIZE.items()])


@pytest.mark.skipif(timm is None, reason=REASON or "timm missing")
@pytest.mark.parametrize("name,kwargs,side", cases(), ids=[c[0] for c in cases()])
def test_timm_model(name, kwargs, side):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs).eval()
    assert_counts_everywhere(model, torch.randn(1, 3, side, side))
