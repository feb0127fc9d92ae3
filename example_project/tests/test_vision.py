"""Budgets of the vision models: a marker on each test, and one on a class."""

import pytest
import torch

from example_project.models import mobilenet, resnet, vit


def images(size: int, batch: int = 1):
    # a factory, so the plugin builds the tensor on the counting device (meta: no memory)
    return lambda: torch.randn(batch, 3, size, size)


@pytest.mark.flop_budget(max_gflops=3.7, max_params="11.7M")
def test_resnet(flop_budget):
    flop_budget.measure(resnet, images(224))


@pytest.mark.flop_budget(max_gmacs=0.33, max_params="3.6M")
def test_mobilenet(flop_budget):
    # budgets name their unit: this one is in GMACs, the number MobileNet papers quote (0.3 G)
    measured = flop_budget.measure(mobilenet, images(224))
    depthwise = [name for name, cost in measured.modules.items() if name.endswith("block.3")]
    assert depthwise, "the measurement carries a per-module breakdown a test can inspect"


# A class-level marker applies to every test in the class: no ViT variant may exceed it.
@pytest.mark.flop_budget(max_gflops=9.5, max_params="5.8M")
class TestViT:
    # attention grows with the square of the token count: (size/16)^2 patches
    @pytest.mark.parametrize("size", [224, 384])
    def test_inference(self, flop_budget, size):
        flop_budget.measure(lambda: vit(size), images(size))
