"""Where measure()'s time goes above the empty-mode floor, part by part, side by side in one run.

    python bench/speed_parts.py                        # MobileNetV2, 11 paired repeats
    python bench/speed_parts.py --workloads resnet50,mobilenet_v2 --repeats 9

Each variant is timed (CPU time, one torch thread) right after a plain no-grad forward of its own,
and its ratio to that forward is the median over repeats, as in bench/speed.py. The variants add
one layer of measure() at a time, so consecutive rows say what each layer costs:

- ``floor``: torch's modes and module hooks, doing nothing (bench/speed.py's floor);
- ``tracker``: the module tracker alone (global forward hooks that keep the module stack);
- ``session, memory off``: the counting session (tracker, both counting modes, formulas) around the
  forward, the memory tracker unplugged;
- ``session``: the same with the memory tracker fed every call (what users get);
- ``session + rows``: also the memory replay and the Measurement with its per-module rows;
- ``measure()``: the whole call, which also reads the module tree and keeps the caller's buffers
  and attributes as they were (the guarantees of "counting never changes what user code does");
- ``read``, ``keep attributes``, ``keep buffers``: those three alone, without a forward.

The rows between ``session + rows`` and ``measure()`` are per-call work that depends on the model's
size (modules, buffers), not on its op count: on a model of many small ops and a short forward
(MobileNetV2: 214 modules, 156 buffers, a 20-30 ms forward) it weighs more than on a large one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def variants(model: Any, x: Any) -> dict[str, Callable[[], Any]]:
    import torch

    import pytest_flopbudget as fb
    from pytest_flopbudget.counting.model_state import ModelState
    from pytest_flopbudget.counting.module_tracker import ModuleTracker
    from pytest_flopbudget.counting.registry import default_registry
    from pytest_flopbudget.counting.session import CountingSession
    from speed import floor_counter

    floor = floor_counter()
    registry = default_registry().scoped(None)
    state = ModelState.read(model)

    def tracker() -> None:
        with ModuleTracker(state.names(), track_backward=False), torch.no_grad():
            model(x)

    def session(memory: bool = True) -> CountingSession:
        counting = CountingSession(registry, ModuleTracker(state.names(), track_backward=False), grad=False)
        if not memory:
            counting.counter.memory = None
        with counting:
            model(x)
        return counting

    def session_and_rows() -> None:
        counting = session()
        memory = counting.finish_memory(parameters=list(state.params.values()), buffers=list(state.buffers.values()))
        counting.measurement(state, None, False, memory)

    def keep_attributes() -> None:
        with state.attributes_kept():
            pass

    def keep_buffers() -> None:
        with state.buffers_kept():
            pass

    return {
        "floor": lambda: floor(model, x),
        "tracker": tracker,
        "session, memory off": lambda: session(memory=False),
        "session": session,
        "session + rows": session_and_rows,
        "measure()": lambda: fb.measure(model, x),
        "read": lambda: ModelState.read(model),
        "keep attributes": keep_attributes,
        "keep buffers": keep_buffers,
    }


def run(name: str, repeats: int) -> dict[str, Any]:
    import torch

    from workloads import WORKLOADS

    torch.set_num_threads(1)
    workload = WORKLOADS[name]
    model = workload.build().eval()
    x = workload.make_input()
    fns = variants(model, x)
    for fn in fns.values():  # warm every path once
        fn()
    order = list(fns)
    ratios: dict[str, list[float]] = {v: [] for v in fns}
    forwards: list[float] = []
    for i in range(repeats):
        rotated = order[i % len(order):] + order[:i % len(order)]
        for variant in rotated:
            t = time.process_time()
            with torch.no_grad():
                model(x)
            forward = time.process_time() - t
            t = time.process_time()
            fns[variant]()
            ratios[variant].append((time.process_time() - t) / forward)
            forwards.append(forward)
    return {"title": workload.title, "forward_s": statistics.median(forwards),
            "ratio": {v: statistics.median(r) for v, r in ratios.items()}}


def render(result: dict[str, Any]) -> str:
    lines = [f"{result['title']}: forward {result['forward_s'] * 1e3:.1f} ms (no_grad, median)",
             "", "| variant | × forward | step from the row above |", "|---|---:|---:|"]
    previous = None
    for variant, ratio in result["ratio"].items():
        standalone = variant in ("read", "keep attributes", "keep buffers")
        step = "" if previous is None or standalone else f"{ratio - previous:+.2f}x"
        lines.append(f"| {variant} | {ratio:.2f}x | {step} |")
        if not standalone:
            previous = ratio
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="mobilenet_v2", help="comma-separated names (see workloads.py)")
    parser.add_argument("--repeats", type=int, default=11)
    options = parser.parse_args()
    for name in options.workloads.split(","):
        print(render(run(name, options.repeats)))
        print()


if __name__ == "__main__":
    main()
