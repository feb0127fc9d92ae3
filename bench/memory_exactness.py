"""How exact the memory tracker is: meta vs cpu vs the CPU allocator, on real architectures.

    python bench/memory_exactness.py            # the table in docs/memory.md

For each architecture and run (a no-grad forward; steady-state training steps with AdamW, SGD
with momentum, AdamW under bf16 autocast), the tracker's peak on real cpu tensors and on fake ones
(FakeTensorMode), and the CPU allocator's own peak over the same run (torch.profiler with
``profile_memory=True``, its allocation events replayed in time order) compared with the
tracker's peak above entry. Then the three AdamW implementations (loop, foreach, fused) on one
model: the same FLOPs, different memory. The scenarios are tests/memory/memory_scenarios.py, the
ones the exactness tests run.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "memory"))

import torch  # noqa: E402

from memory_scenarios import ARCHITECTURES, KINDS, OPTIMIZER_KINDS, allocator_peak, scenario  # noqa: E402
from memory_harness import run_memory  # noqa: E402


def row(arch: str, kind: str) -> list[str]:
    build = scenario(arch, kind)
    cpu, _ = run_memory(build, "cpu")
    meta, _ = run_memory(build, "meta")
    allocator = allocator_peak(build)
    above = cpu.activation_peak
    diff = allocator - above
    return [arch, kind, f"{cpu.peak:,}", f"{meta.peak:,}", "yes" if cpu == meta else "NO", cpu.phase,
            f"{above:,}", f"{allocator:,}", f"{diff:+,}", f"{100 * diff / allocator:+.2f}%" if allocator else "-"]


def optimizer_row(kind: str) -> list[str]:
    build = scenario("gpt2", kind)
    cpu, _ = run_memory(build, "cpu")
    meta, _ = run_memory(build, "meta")
    weights = cpu.param_bytes.get("float32", 0)
    temporaries = cpu.categories["temporaries"]
    return [kind, f"{cpu.peak:,}", "yes" if cpu == meta else "NO", cpu.phase, f"{temporaries:,}",
            f"{temporaries / weights:.2f}x", f"{allocator_peak(build) - cpu.activation_peak:+,}"]


def first_step_rows() -> list[list[str]]:
    rows = []
    for kind in ("adamw", "sgd_momentum"):
        for steady in (False, True):
            memory, _ = run_memory(scenario("gpt2", kind, steady=steady), "meta")
            rows.append([kind, "steady state (one step before)" if steady else "first step", f"{memory.peak:,}",
                         f"{memory.at_entry:,}", f"{memory.activation_peak:,}", memory.phase,
                         f"{memory.categories['optimizer_state']:,}", f"{memory.retained:,}"])
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for arch in ARCHITECTURES:
        for kind in KINDS:
            rows.append(row(arch, kind))
            print(f"done: {arch} {kind}", file=sys.stderr, flush=True)
    print(f"torch {torch.__version__}; bytes. 'above entry' is the tracker's peak minus what was live when the "
          "run began; 'allocator' the CPU allocator's peak over the same run, from its allocation events.\n")
    print(table(["model", "run", "peak (cpu)", "peak (meta)", "meta == cpu (all fields)", "phase at peak",
                 "above entry", "allocator", "allocator - tracker", "of allocator"], rows))
    print("\nAdamW on GPT-2 (2 layers, 256 wide), steady state: temporaries live at the peak, against the "
          "weights' bytes.\n")
    print(table(["implementation", "peak", "meta == cpu", "phase at peak", "temporaries at peak",
                 "of the weights", "allocator - tracker"], [optimizer_row(kind) for kind in OPTIMIZER_KINDS]))
    print("\nThe first training step of GPT-2 (2 layers, 256 wide) against a later one.\n")
    print(table(["optimizer", "step", "peak", "at entry", "above entry", "phase at peak", "optimizer state at peak",
                 "retained"], first_step_rows()))


if __name__ == "__main__":
    main()
