"""diffusers' UNet2DConditionModel, AutoencoderKL and DiT from small configs (random weights).

Per model: nothing uncounted, cpu == meta for one ready instance, params = the unique parameters.
"""

from __future__ import annotations

import torch

from zoo_helpers import assert_counts_everywhere, require

diffusers = require("diffusers")


def seeded(shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def test_unet_2d_condition():
    torch.manual_seed(0)
    model = diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=16,
    ).eval()
    inputs = {"sample": seeded((1, 4, 16, 16)), "timestep": torch.tensor([10]),
              "encoder_hidden_states": seeded((1, 7, 32))}
    assert_counts_everywhere(model, inputs)


def test_autoencoder_kl():
    torch.manual_seed(0)
    model = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(16, 32), latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    ).eval()
    # sample_posterior=False: the decoder runs on the posterior's mode, no random draw
    assert_counts_everywhere(model, {"sample": seeded((1, 3, 32, 32)), "sample_posterior": False})


def test_dit():
    torch.manual_seed(0)
    model = diffusers.DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2,
        sample_size=8, patch_size=2, num_embeds_ada_norm=10,
    ).eval()
    inputs = {"hidden_states": seeded((1, 4, 8, 8)), "timestep": torch.tensor([3]),
              "class_labels": torch.tensor([1])}
    assert_counts_everywhere(model, inputs)
