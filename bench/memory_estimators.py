"""The memory tracker beside the estimators people use to ask "will it fit?", on the same models.

    python bench/memory_estimators.py

For each model: the tracker's peak (on meta, through the test harness's dispatch mode: a no-grad
forward, a steady-state fp32 AdamW training step, the same step under bf16 autocast), then
accelerate's estimate (its ``estimate-memory`` command's arithmetic through the Python API, on a
model built locally, since the command itself fetches from a model hub: ``calculate_maximum_sizes``
and ``estimate_training_usage``) and DeepSpeed's ZeRO estimator functions for one GPU (when
deepspeed imports; they assume fp16 mixed precision). Estimators know parameters, gradients and
optimizer state; none of them knows activations.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "memory"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from memory_scenarios import ARCHITECTURES  # noqa: E402  (puts the harness on the path)
from memory_harness import Run, run_memory, train_step, warm_up  # noqa: E402

MiB = 1024 * 1024


def gpt2_small() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    import transformers as tf

    model = tf.GPT2LMHeadModel(tf.GPT2Config(attn_implementation="sdpa"))  # 124M parameters
    ids = torch.randint(0, 50257, (4, 512))
    return model, {"input_ids": ids, "labels": ids}


MODELS: dict[str, Callable[[], tuple[torch.nn.Module, dict[str, torch.Tensor]]]] = {
    "GPT-2 small (124M), 4x512 tokens": gpt2_small,
    "GPT-2, 2 layers 256 wide, 2x32 tokens": ARCHITECTURES["gpt2"],
    "LLaMA-style, 2 layers 256 wide, 2x32 tokens": ARCHITECTURES["llama"],
    "ResNet-18 layout, half width, 2x3x64x64": ARCHITECTURES["resnet18"],
}


def tracked(make: Callable[[], tuple[torch.nn.Module, dict[str, torch.Tensor]]], kind: str) -> int:
    def build() -> Run:
        model, inputs = make()
        if kind == "forward":
            forward = {k: v for k, v in inputs.items() if k != "labels"}

            def step(tracker: Any) -> None:
                tracker.set_phase("forward")
                with torch.no_grad():
                    model(**forward)

            return Run(step, model=model.eval(), entry={"inputs": list(inputs.values())})
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def loss() -> torch.Tensor:
            if kind == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return model(**inputs).loss
            return model(**inputs).loss

        warm_up(optimizer, loss)
        return Run(train_step(model, optimizer, loss), model=model, entry={"inputs": list(inputs.values())},
                   optimizer=optimizer)

    return run_memory(build, "meta")[0].peak


def accelerate_estimates(model: torch.nn.Module) -> tuple[Any, Any]:
    """accelerate's 'Total Size' and 'Training using Adam' for float32 and bfloat16."""
    try:
        from accelerate.commands.estimate import estimate_training_usage
        from accelerate.utils import calculate_maximum_sizes
    except ImportError:
        return "not installed", "not installed"
    total, _ = calculate_maximum_sizes(model)
    return (max(estimate_training_usage(total, "float32").values()),
            max(estimate_training_usage(total, "bfloat16").values()))


def deepspeed_estimates(model: torch.nn.Module) -> tuple[Any, Any]:
    """DeepSpeed's GPU bytes for ZeRO-2 and ZeRO-3 on one GPU, no offload."""
    try:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
    except Exception as error:  # not installed, or a dependency missing
        return f"unavailable ({type(error).__name__})", "-"
    total = sum(p.numel() for p in model.parameters())
    largest = max(p.numel() for p in model.parameters())
    zero2 = estimate_zero2_model_states_mem_needs(total, 1, 1, cpu_offload=False)[1]
    zero3 = estimate_zero3_model_states_mem_needs(total, largest, 1, 1, cpu_offload=False,
                                                  cpu_offload_params=False, zero_init=False)[1]
    return zero2, zero3


def mib(value: Any) -> str:
    return f"{value / MiB:.1f}" if isinstance(value, (int, float)) else str(value)


def main() -> None:
    rows = []
    for name, make in MODELS.items():
        torch.manual_seed(0)
        model, _ = make()
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        acc32, acc16 = accelerate_estimates(model)
        ds2, ds3 = deepspeed_estimates(model)
        del model
        forward, step, step_bf16 = (tracked(make, kind) for kind in ("forward", "fp32", "bf16"))
        ratio = f"{step / acc32:.2f}x" if isinstance(acc32, int) else "-"
        rows.append([name, mib(params), mib(forward), mib(step), mib(step_bf16), mib(acc32), ratio, mib(acc16),
                     mib(ds2), mib(ds3)])
        print(f"done: {name}", file=sys.stderr, flush=True)
    header = ["model", "weights", "tracker: forward", "tracker: AdamW step", "tracker: bf16 autocast step",
              "accelerate fp32 Adam", "tracker step / accelerate", "accelerate bf16 Adam",
              "DeepSpeed ZeRO-2 (1 GPU)", "DeepSpeed ZeRO-3 (1 GPU)"]
    print("MiB of peak memory; the tracker's steps are steady state (optimizer state exists at entry).\n")
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
