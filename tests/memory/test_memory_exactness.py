"""Memory of real architectures: the same bytes on cpu and meta, and the CPU allocator's own peak
(torch.profiler's allocation events) matched.

Heavy (real training steps on cpu, profiler replays): this folder runs in the pinned suite only.
"""

from __future__ import annotations

import pytest
import torch

from memory_scenarios import KINDS, allocator_peak, scenario  # first: it puts the harness on the path
from memory_harness import run_memory  # noqa: I001

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arch", ["gpt2", "resnet18"])
def test_meta_equals_cpu_to_the_byte(arch, kind):
    build = scenario(arch, kind)
    cpu, _ = run_memory(build, "cpu")
    meta, _ = run_memory(build, "meta")
    assert cpu == meta  # peak, entry, phase, categories, per-module bytes, retained
    assert sum(cpu.categories.values()) == cpu.peak
    if kind == "forward":
        assert cpu.phase == "forward" and cpu.categories["activations"] == 0
    else:
        assert cpu.phase in ("backward", "optimizer") and cpu.categories["optimizer_state"] > 0


def test_llama_training_step_meta_equals_cpu():
    build = scenario("llama", "adamw")
    assert run_memory(build, "cpu")[0] == run_memory(build, "meta")[0]


@pytest.mark.parametrize(("arch", "kind"), [("gpt2", "forward"), ("gpt2", "adamw"), ("llama", "sgd_momentum")])
def test_transformers_match_the_cpu_allocator(arch, kind):
    build = scenario(arch, kind)
    memory, _ = run_memory(build, "cpu")
    # the allocator also holds a few bytes the tensors do not (a scalar's padding, a handful of
    # host-side buffers): a few hundred bytes at most
    assert abs(allocator_peak(build) - memory.activation_peak) <= 256


def _largest_conv_weight(build) -> int:
    torch.manual_seed(0)
    model = build().model
    return max(m.weight.numel() * m.weight.element_size() for m in model.modules()
               if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize("kind", ["forward", "sgd_momentum"])
def test_convolution_nets_differ_from_the_allocator_only_by_kernel_scratch(kind):
    build = scenario("resnet18", kind)
    memory, _ = run_memory(build, "cpu")
    scratch = allocator_peak(build) - memory.activation_peak
    # oneDNN reorders a convolution's weight into its blocked layout inside the kernel (a copy of
    # the weight, freed before the kernel returns): never more than the largest weight, plus a
    # little, and never below the tensors the tracker sees
    assert 0 <= scratch <= _largest_conv_weight(build) + 64 * 1024
