"""What memory tracking adds to a count, side by side with torch's own tools on the same work.

    python bench/memory_overhead.py [--repeats 7] [--quick]

For each workload, paired repeats (the variants alternate inside each repeat, so the machine's
load is shared): the count as it runs today, the same count with the MemoryTracker fed from the
counter's dispatch mode, torch's MemTracker (torch.distributed._tools) on the same work, and, for
the 7B decoder, torch's FlopCounterMode under FakeTensorMode (FLOPs only). Times are process CPU
time with one torch thread; the table shows medians and the median of the per-repeat ratios.

Until the engine wires the tracker in, "with memory" subclasses the counter's dispatch mode and
calls ``MemoryTracker.record`` after each call: one Python frame more than the wired-in version,
so the overhead shown is an upper bound.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "architectures"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

import pytest_flopbudget as fb  # noqa: E402
from pytest_flopbudget.counting import counter as counter_module  # noqa: E402
from pytest_flopbudget.counting.memory import MemoryTracker  # noqa: E402

torch.set_num_threads(1)
PEAKS: list[int] = []


class _CounterWithMemory(counter_module._AtenCounter):
    """The counter's dispatch mode, feeding a MemoryTracker after every call."""

    def __init__(self, counter: Any) -> None:
        super().__init__(counter)
        self.memory = MemoryTracker(lambda: counter.modules.active)
        self._depth = 0

    def __enter__(self) -> Any:
        self._depth += 1
        if self._depth == 1:
            self.memory.__enter__()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.memory.__exit__(*exc)
                PEAKS.append(self.memory.finish().peak)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = super().__torch_dispatch__(func, types, args, kwargs)
        self.memory.record(func, args, kwargs, out)
        return out


class with_memory:
    """Counts made inside this context track memory too."""

    def __enter__(self) -> None:
        self._saved = counter_module._AtenCounter
        counter_module._AtenCounter = _CounterWithMemory

    def __exit__(self, *exc: Any) -> None:
        counter_module._AtenCounter = self._saved


# --- workloads: each a zero-argument count, and the same work for torch's tools -----------------


def llama_7b_forward() -> Callable[[], Any]:
    from example_project.models import llama_7b

    tokens = torch.zeros(1, 128, dtype=torch.long)
    return lambda: fb.measure(llama_7b, tokens, device="meta")


def llama_7b_plain(fake: Any) -> Callable[[], Any]:
    """The 7B forward on fake tensors, for torch's tools to wrap."""
    from example_project.models import llama_7b

    with fake:
        model = llama_7b()
        tokens = torch.zeros(1, 128, dtype=torch.long)

    def run() -> None:  # called inside ``fake``
        with torch.no_grad():
            model(tokens)

    return run


def gpt2_training_step() -> Callable[[], Any]:
    """A steady-state AdamW step of GPT-2 counted on fake tensors: the model and optimizer built
    under FakeTensorMode (as measure() does on meta), one step taken before, count() inside it."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    fake = FakeTensorMode(allow_non_fake_inputs=True)
    step = gpt2_plain(fake)
    with fake:
        step()

    def run() -> Any:
        with fake, fb.count() as counted:
            step()
        return counted

    return run


def gpt2_plain(fake: Any) -> Callable[[], Any]:
    import transformers as tf

    from arch_configs import gpt2_config

    with fake:
        model = tf.GPT2LMHeadModel(gpt2_config())
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        ids = torch.zeros(4, 128, dtype=torch.long)

    def run() -> None:  # called inside ``fake``
        model(ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run


def gpt2_cpu_forward() -> Callable[[], Any]:
    import transformers as tf

    from arch_configs import gpt2_config

    model = tf.GPT2LMHeadModel(gpt2_config()).eval()
    ids = torch.zeros(4, 128, dtype=torch.long)
    return lambda: fb.measure(model, ids, device="cpu")


def mem_tracker_run(plain: Callable[[Any], Callable[[], Any]]) -> Callable[[], int]:
    """torch's MemTracker entered inside the fake mode (entered outside it, it drops every op)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    fake = FakeTensorMode(allow_non_fake_inputs=True)
    run = plain(fake)
    if plain is gpt2_plain:
        with fake:
            run()  # steady state, as for the count

    def tracked() -> int:
        with fake:
            tracker = MemTracker()  # one iteration per instance
            with tracker:
                run()
            peak = tracker.get_tracker_snapshot("peak")
        return sum(snapshot["Total"] for snapshot in peak.values())

    return tracked


def flop_counter_run(plain: Callable[[Any], Callable[[], Any]]) -> Callable[[], Any]:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    fake = FakeTensorMode(allow_non_fake_inputs=True)
    run = plain(fake)

    def counted() -> None:
        with fake, FlopCounterMode(display=False):
            run()

    return counted


def _cpu_seconds(fn: Callable[[], Any]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def bench(name: str, variants: dict[str, Callable[[], Any]], repeats: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {v: [] for v in variants}
    for name_, fn in variants.items():  # warm-up: imports, first-call costs
        _measure_variant(name_, fn)
    for _ in range(repeats):
        for variant, fn in variants.items():
            times[variant].append(_measure_variant(variant, fn))
    base = times["count"]
    row = {"workload": name, **{v: statistics.median(t) for v, t in times.items()}}
    for variant in variants:
        if variant != "count":
            row[f"{variant}/count"] = statistics.median(t / b for t, b in zip(times[variant], base))
    return row


def _measure_variant(variant: str, fn: Callable[[], Any]) -> float:
    if variant == "count + memory":
        with with_memory():
            return _cpu_seconds(fn)
    return _cpu_seconds(fn)


def check_same_work() -> None:
    """The GPT-2 step's count sees the work (FLOPs), with and without memory, and the peaks agree."""
    run = gpt2_training_step()
    plain = run()
    with with_memory():
        tracked = run()
    assert plain.flops == tracked.flops > 0, (plain.flops, tracked.flops)
    print(f"GPT-2 step: {plain.flops} FLOPs with and without memory; peak {PEAKS[-1]} B "
          f"(MemTracker: {mem_tracker_run(gpt2_plain)()} B)", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="the GPT-2 workloads only, 3 repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    check_same_work()
    workloads: list[tuple[str, dict[str, Callable[[], Any]]]] = []
    if not args.quick:
        workloads.append(("7B decoder forward, meta (1x128 tokens)", {
            "count": llama_7b_forward(), "count + memory": llama_7b_forward(),
            "MemTracker": mem_tracker_run(llama_7b_plain), "FlopCounterMode": flop_counter_run(llama_7b_plain)}))
    workloads.append(("GPT-2 (2 layers, 256 wide) AdamW step, meta (4x128 tokens)", {
        "count": gpt2_training_step(), "count + memory": gpt2_training_step(),
        "MemTracker": mem_tracker_run(gpt2_plain)}))
    workloads.append(("GPT-2 (2 layers, 256 wide) forward, cpu (4x128 tokens)", {
        "count": gpt2_cpu_forward(), "count + memory": gpt2_cpu_forward()}))
    rows = []
    for name, variants in workloads:
        rows.append(bench(name, variants, repeats))
        print(f"done: {name}", file=sys.stderr, flush=True)
    print(render(rows, repeats))


def render(rows: list[dict[str, Any]], repeats: int) -> str:
    columns = ["count", "count + memory", "MemTracker", "FlopCounterMode"]
    lines = [f"Median CPU seconds of {repeats} paired repeats, one torch thread; ratios are medians of "
             "per-repeat ratios to the count without memory.", "",
             "| workload | " + " | ".join(columns) + " | memory/count | MemTracker/count | FlopCounterMode/count |",
             "|---" * (len(columns) + 4) + "|"]
    for row in rows:
        cells = [f"{row[c]:.3f}" if c in row else "-" for c in columns]
        ratios = [f"{row[k]:.2f}x" if k in row else "-"
                  for k in ("count + memory/count", "MemTracker/count", "FlopCounterMode/count")]
        lines.append(f"| {row['workload']} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
