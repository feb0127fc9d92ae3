"""Real architectures as memory scenarios (forward, steady-state training steps, a bf16 autocast
step), and the CPU allocator's own peak from torch.profiler's allocation events, for the exactness
tests here and bench/memory_exactness.py.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

_TESTS = Path(__file__).resolve().parent.parent
for _folder in ("counting", "architectures"):
    if str(_TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / _folder))

import torch  # noqa: E402

from memory_harness import Run, train_step, warm_up  # noqa: E402

# scenario kinds: what one run is
KINDS = ("forward", "adamw", "sgd_momentum", "adamw_bf16_autocast")
# the three implementations of one AdamW step: the same FLOPs, different memory
OPTIMIZER_KINDS = ("adamw", "adamw_foreach", "adamw_fused")


def _gpt2() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    import transformers as tf

    from arch_configs import gpt2_config

    model = tf.GPT2LMHeadModel(gpt2_config())
    ids = torch.randint(0, 1000, (2, 32))
    return model, {"input_ids": ids, "labels": ids}


def _resnet() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    import transformers as tf

    # ResNet-18's layout (basic blocks [2, 2, 2, 2]) at half its widths (32..256), 64 x 64 images
    config = tf.ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[32, 64, 128, 256],
                             embedding_size=32, num_labels=100)
    model = tf.ResNetForImageClassification(config)
    return model, {"pixel_values": torch.randn(2, 3, 64, 64), "labels": torch.randint(0, 100, (2,))}


def _llama() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    import transformers as tf

    from arch_configs import llama_config

    model = tf.LlamaForCausalLM(llama_config())
    ids = torch.randint(0, 1000, (2, 32))
    return model, {"input_ids": ids, "labels": ids}


ARCHITECTURES: dict[str, Callable[[], tuple[torch.nn.Module, dict[str, torch.Tensor]]]] = {
    "gpt2": _gpt2,
    "llama": _llama,
    "resnet18": _resnet,
}


def scenario(arch: str, kind: str, *, steady: bool = True) -> Callable[[], Run]:
    """A zero-argument build of one run of ``arch``: a no-grad forward, or one training step,
    in steady state (its optimizer stepped once before) unless ``steady`` is False."""
    if kind not in KINDS + OPTIMIZER_KINDS:
        raise ValueError(f"kind must be one of {KINDS + OPTIMIZER_KINDS}, got {kind!r}")

    def build() -> Run:
        model, inputs = ARCHITECTURES[arch]()
        entry = {"inputs": list(inputs.values())}
        if kind == "forward":
            model.eval()
            forward = {k: v for k, v in inputs.items() if k != "labels"}

            def step(tracker: Any) -> None:
                tracker.set_phase("forward")
                with torch.no_grad():
                    model(**forward)

            return Run(step, model=model, entry=entry)
        model.train()
        if kind == "sgd_momentum":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        else:
            # on cpu tensors torch picks the loop; foreach and fused are asked for by name
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=kind == "adamw_foreach",
                                          fused=True if kind == "adamw_fused" else None)

        def loss() -> torch.Tensor:
            if kind == "adamw_bf16_autocast":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return model(**inputs).loss
            return model(**inputs).loss

        if steady:
            warm_up(optimizer, loss)
        return Run(train_step(model, optimizer, loss), model=model, entry=entry, optimizer=optimizer)

    return build


def allocator_peak(build: Callable[[], Run]) -> int:
    """The CPU allocator's peak over one untracked run of the scenario, above what was allocated when
    it began: torch.profiler's allocation events (``profile_memory=True``) replayed in time order.
    Everything is there, kernel scratch included."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    class _Phases:  # the step moves the tracker's phase; nothing tracks here
        def set_phase(self, name: str) -> None:
            pass

    torch.manual_seed(0)
    run = build()
    enabled = gc.isenabled()
    gc.disable()  # as while tracking: storages die by reference count alone
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            run.step(_Phases())
    finally:
        if enabled:
            gc.enable()
    events = []
    pending = list(prof.profiler.kineto_results.experimental_event_tree())
    while pending:
        node = pending.pop()
        pending.extend(node.children)
        if node.tag == _EventType.Allocation:
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
    events.sort(key=lambda event: event[0])
    live = peak = 0
    for _, size in events:
        live += size
        peak = max(peak, live)
    return peak
