"""Counting speed side by side in one process: this project, ptflops' aten backend, thop and the
empty-mode floor, each timed against a plain no-grad forward moments before it (issue 24).

    python bench/speed.py                      # 4 workloads, 9 paired repeats, prints a table
    python bench/speed.py --repeats 7 --workloads resnet50,bert_base_sdpa --json out.json
    python bench/speed.py --meta               # goal 2: count() on meta against measure() on meta
    python bench/speed.py --warmup-cost        # goal 3: a process's first measure() against its second
    python bench/speed.py --all --doc docs/benchmarks.md   # all three, tables written into the doc

CPU time (``time.process_time``), one torch thread: the machine is shared and CPU time does not
count the time other jobs hold the cores. Each repeat runs every variant once, in an order rotated
per repeat, each right after a forward of its own; a variant's ratio is the median over repeats of
count / paired forward (DESIGN.md, "Time": medians of at least 7 paired repeats). Each variant
counts its own copy of the model (thop leaves buffers behind on the model it profiled). The spread
printed beside each median is the interquartile range of those ratios: how noisy the run was.

The floor is what torch's machinery alone costs: a TorchDispatchMode and a TorchFunctionMode that
only call the op, and global module forward pre/post hooks that return at once, i.e. the modes and
hooks this project installs, doing nothing. Ours runs ``measure(model, x)`` as users do, memory
tracking on.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import sys
import time
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DEFAULT_WORKLOADS = ("resnet50", "mobilenet_v2", "bert_base_sdpa", "vit_b16")
META_WORKLOADS = ("gpt2_small", "llama_7b", "resnet50")


def floor_counter() -> Callable[[Any, Any], None]:
    """The empty-mode floor: this project's modes and hooks, doing nothing."""
    import torch
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class EmptyDispatch(TorchDispatchMode):
        @classmethod
        def _should_skip_dynamo(cls) -> bool:  # as the project's mode: no dynamo import
            return False

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            return func(*args, **(kwargs or {}))

    class EmptyFunction(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            return func(*args, **(kwargs or {}))

    def pre(module: Any, inputs: Any) -> None:
        return None

    def post(module: Any, inputs: Any, output: Any) -> None:
        return None

    def count(model: Any, x: Any) -> None:
        handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post, always_call=True)]
        try:
            with torch.no_grad(), EmptyFunction(), EmptyDispatch():
                model(x)
        finally:
            for handle in handles:
                handle.remove()

    return count


def ours_without_memory() -> Callable[[Any, Any], Any]:
    """measure() with the memory tracker unplugged from the counter's dispatch mode (bench only:
    users always get memory), so the difference to "ours" is what tracking per op costs; the
    entry registration and the final replay, a few milliseconds per call, still run."""
    from pytest_flopbudget.counting import session

    def count(model: Any, x: Any) -> Any:
        import pytest_flopbudget as fb

        original = session.CountingSession.__init__

        def unplugged(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            self.counter.memory = None

        session.CountingSession.__init__ = unplugged  # type: ignore[method-assign]
        try:
            return fb.measure(model, x)
        finally:
            session.CountingSession.__init__ = original  # type: ignore[method-assign]

    return count


def variants() -> dict[str, Callable[[Any, Any], Any]]:
    from counters import COUNTERS

    return {
        "ours": COUNTERS["fb-cpu"][0],
        "ours-no-memory": ours_without_memory(),
        "ptflops-aten": COUNTERS["ptflops-aten"][0],
        "thop": COUNTERS["thop"][0],
        "floor": floor_counter(),
    }


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def run_cpu(name: str, repeats: int, warmup: int) -> dict[str, Any]:
    import torch

    from workloads import WORKLOADS

    workload = WORKLOADS[name]
    model = workload.build().eval()
    x = workload.make_input()
    fns = variants()
    # each variant counts a fresh copy of the model in every repeat, copied before the timed pair:
    # peers leave things on the models they count (thop two buffers on every module, total_ops and
    # total_params: 302 buffers instead of 156 on MobileNetV2; ptflops' aten backend a forward hook
    # pair on each top-level child per call, never removed, each holding its counter alive), which would slow the
    # next counter of the same model, or the same counter's next plain forward (its ratio's
    # denominator), and keep ever more objects alive for the garbage collector to walk
    order = list(fns)
    ratios: dict[str, list[float]] = {v: [] for v in fns}
    seconds: dict[str, list[float]] = {v: [] for v in fns}
    forwards: list[float] = []
    for i in range(warmup + repeats):
        rotated = order[i % len(order):] + order[:i % len(order)]
        for variant in rotated:
            counted = copy.deepcopy(model)
            gc.collect()  # the previous variant's garbage is not this one's to collect
            t = time.process_time()
            with torch.no_grad():
                counted(x)
            forward = time.process_time() - t
            t = time.process_time()
            fns[variant](counted, x)
            elapsed = time.process_time() - t
            if i >= warmup:
                ratios[variant].append(elapsed / forward)
                seconds[variant].append(elapsed)
                forwards.append(forward)
    return {
        "workload": name,
        "title": workload.title,
        "repeats": repeats,
        "forward_s": statistics.median(forwards),
        "ratio": {v: statistics.median(r) for v, r in ratios.items()},
        "iqr": {v: _quartiles(r) for v, r in ratios.items()},
        "count_s": {v: statistics.median(s) for v, s in seconds.items()},
    }


def run_meta(name: str, repeats: int, warmup: int) -> dict[str, Any]:
    """count() on meta against measure() on meta, on a model built on meta before both; for the 7B
    decoder also torch's FlopCounterMode under FakeTensorMode (the model built there)."""
    import torch

    import pytest_flopbudget as fb
    from workloads import WORKLOADS

    workload = WORKLOADS[name]
    with torch.device("meta"):
        model = workload.build().eval()
        x = workload.make_input()

    def with_measure() -> None:
        fb.measure(model, x, device="meta")

    def with_count() -> None:
        with fb.count(device="meta"):
            model(x)

    def with_count_no_grad() -> None:
        # the grad mode measure() runs a forward in: what the block itself costs, without autograd's
        # recording on fake tensors (a block leaves the caller's grad mode as it is)
        with torch.no_grad(), fb.count(device="meta"):
            model(x)

    fns: dict[str, Callable[[], None]] = {"measure": with_measure, "count": with_count,
                                          "count-no-grad": with_count_no_grad}
    if workload.meta_only:
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.utils.flop_counter import FlopCounterMode

        with FakeTensorMode(allow_non_fake_inputs=True):
            fake_model = workload.build().eval()
            fake_x = workload.make_input()

        def with_fcm() -> None:
            with FakeTensorMode(allow_non_fake_inputs=True), FlopCounterMode(display=False):
                fake_model(fake_x)

        fns["fcm-fake"] = with_fcm
    order = list(fns)
    seconds: dict[str, list[float]] = {v: [] for v in fns}
    for i in range(warmup + repeats):
        rotated = order[i % len(order):] + order[:i % len(order)]
        for variant in rotated:
            t = time.process_time()
            fns[variant]()
            elapsed = time.process_time() - t
            if i >= warmup:
                seconds[variant].append(elapsed)
    paired = [c / m for c, m in zip(seconds["count"], seconds["measure"])]
    paired_no_grad = [c / m for c, m in zip(seconds["count-no-grad"], seconds["measure"])]
    result = {
        "workload": name,
        "title": workload.title,
        "repeats": repeats,
        "seconds": {v: statistics.median(s) for v, s in seconds.items()},
        "count_over_measure": statistics.median(paired),
        "iqr": _quartiles(paired),
        "count_no_grad_over_measure": statistics.median(paired_no_grad),
        "iqr_no_grad": _quartiles(paired_no_grad),
    }
    if "fcm-fake" in seconds:
        result["measure_over_fcm"] = statistics.median(
            m / f for m, f in zip(seconds["measure"], seconds["fcm-fake"]))
        result["count_over_fcm"] = statistics.median(
            c / f for c, f in zip(seconds["count"], seconds["fcm-fake"]))
    return result


_WARMUP_CHILD = r"""
import json, sys, time
t0 = time.process_time()
import torch
from pytest_flopbudget.counting.measure import measure
t1 = time.process_time()
device = None if sys.argv[1] == "cpu" else sys.argv[1]

def once(**options):
    t = time.process_time()
    measure(torch.nn.Linear(2, 2), torch.zeros(1, 2), device=device, **options)
    return time.process_time() - t

result = {"import": t1 - t0, "first": once(), "second": once()}
result["backward_first"] = once(backward=True)
result["backward_second"] = once(backward=True)
print(json.dumps(result))
"""


def run_warmup(device: str, processes: int) -> dict[str, Any]:
    """A process's first measure() against its second, in fresh interpreters (the plugin's warm-up
    is a first measure() of a 2x2 Linear, forward only): CPU seconds, medians over ``processes``."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    runs = []
    for _ in range(processes):
        done = subprocess.run([sys.executable, "-c", _WARMUP_CHILD, device], capture_output=True, text=True,
                              env=env, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"device": device, "processes": processes,
            "seconds": {k: statistics.median(r[k] for r in runs) for k in runs[0]}}


def render_warmup(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| device | import torch + engine (s) | first measure() (s) | second (s) | first with backward (s) | "
        "second with backward (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        s = row["seconds"]
        lines.append(f"| {row['device']} | {s['import']:.2f} | {s['first']:.3f} | {s['second']:.4f} | "
                     f"{s['backward_first']:.3f} | {s['backward_second']:.4f} |")
    return "\n".join(lines)


def render_cpu(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | forward (s) | ours | ptflops aten | thop | empty-mode floor | ours − floor | "
        "ours, memory off | memory's share |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        r, q = row["ratio"], row["iqr"]
        cells = [f"{r[v]:.2f}x ({q[v][0]:.2f}–{q[v][1]:.2f})" for v in ("ours", "ptflops-aten", "thop", "floor")]
        no_memory = r.get("ours-no-memory")
        extra = (f" | {no_memory:.2f}x | {r['ours'] - no_memory:+.2f}x |" if no_memory is not None else " | – | – |")
        lines.append(f"| {row['title']} | {row['forward_s']:.3f} | " + " | ".join(cells)
                     + f" | {r['ours'] - r['floor']:+.2f}x" + extra)
    return "\n".join(lines)


def render_meta(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workload (built on meta) | measure() on meta (s) | count() on meta (s) | count / measure | "
        "count() under no_grad / measure | FlopCounterMode under FakeTensorMode (s) | measure / FCM | count / FCM |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        s = row["seconds"]
        fcm = f"{s['fcm-fake']:.3f}" if "fcm-fake" in s else "–"
        over = f"{row['measure_over_fcm']:.2f}x" if "measure_over_fcm" in row else "–"
        count_over = f"{row['count_over_fcm']:.2f}x" if "count_over_fcm" in row else "–"
        no_grad = row.get("count_no_grad_over_measure")
        no_grad_cell = (f"{no_grad:.2f}x ({row['iqr_no_grad'][0]:.2f}–{row['iqr_no_grad'][1]:.2f})"
                        if no_grad is not None else "–")
        lines.append(f"| {row['title']} | {s['measure']:.3f} | {s['count']:.3f} | "
                     f"{row['count_over_measure']:.2f}x ({row['iqr'][0]:.2f}–{row['iqr'][1]:.2f}) | {no_grad_cell} | "
                     f"{fcm} | {over} | {count_over} |")
    return "\n".join(lines)


_INTROS = {
    "cpu": ("CPU time of one count over a plain no-grad forward (one torch thread), medians of {n} "
            "paired repeats, interquartile range in brackets; each variant counts a fresh copy of the "
            "model in each repeat (peers leave hooks and buffers on what they count). Ours is "
            "`measure(model, x)` as users run it, memory tracking on. \"memory's share\" is ours minus ours with the memory tracker "
            "unplugged from the dispatch mode (bench only; entry registration and the final replay still run)."),
    "meta": ("Seconds (CPU) of one count of a model built on meta before both, medians of {n} paired "
             "repeats; count / measure is the median of the per-repeat ratios (interquartile range in "
             "brackets). The block runs `model(x)` in the caller's grad mode (autograd on, as written), "
             "measure() a forward-only count under no_grad; the no_grad column runs the block under "
             "`torch.no_grad()`, the same grad mode as measure(). FlopCounterMode counts FLOPs only; "
             "ours counts memory too."),
    "warmup": ("CPU seconds in fresh interpreters, medians of {n} processes each: a process's first "
               "`measure()` of a 2×2 Linear (what the plugin's warm-up runs before the first test, forward "
               "only, on the session's device), its second, then the first and second with `backward=True`. "
               "On cpu the warm-up costs the first column; autograd's own start-up is paid by the first "
               "test that runs a backward (the fourth column), not by processes that never do. On meta "
               "the first measure() is torch's first `FakeTensorMode()` (it imports sympy and the "
               "symbolic-shape machinery), paid once per process that counts on meta."),
}


def write_section(path: str, kind: str, table: str, repeats: int) -> None:
    """Replace the text between ``<!-- speed:KIND:begin -->`` and ``<!-- speed:KIND:end -->``
    in ``path`` (appended under a heading if the markers are missing)."""
    begin, end = f"<!-- speed:{kind}:begin -->", f"<!-- speed:{kind}:end -->"
    body = f"{begin}\n{_INTROS[kind].format(n=repeats)}\n\n{table}\n{end}"
    if not os.path.exists(path):
        open(path, "w").close()
    with open(path) as handle:
        text = handle.read()
    if begin in text and end in text:
        text = text[:text.index(begin)] + body + text[text.index(end) + len(end):]
    else:
        title = {"cpu": "Speed against the peers and the empty-mode floor", "meta": "count() and measure() on meta",
                 "warmup": "The warm-up: a process's first measure()"}[kind]
        text = text.rstrip("\n") + f"\n\n## {title} (bench/speed.py)\n\n{body}\n"
    with open(path, "w") as handle:
        handle.write(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=None, help="comma-separated names (see workloads.py)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--meta", action="store_true", help="goal 2: count() vs measure() on meta")
    parser.add_argument("--json", default=None, help="write the results here too")
    parser.add_argument("--doc", default=None,
                        help="put the table into this markdown file between its speed markers "
                             "(docs/benchmarks.md)")
    parser.add_argument("--warmup-cost", action="store_true",
                        help="goal 3: a process's first measure() against its second (fresh interpreters)")
    parser.add_argument("--all", action="store_true", help="goals 1, 2 and 3 in one run (cpu, --meta, --warmup-cost)")
    parser.add_argument("--processes", type=int, default=5, help="fresh interpreters per device for --warmup-cost")
    args = parser.parse_args()
    if args.repeats < 7:
        print("note: DESIGN.md asks for medians of at least 7 paired repeats", file=sys.stderr)
    import torch

    torch.set_num_threads(1)
    kinds = ["cpu", "meta", "warmup"] if args.all else ["meta"] if args.meta else ["warmup"] if args.warmup_cost else ["cpu"]
    results: dict[str, list[dict[str, Any]]] = {}
    for kind in kinds:
        rows = []
        if kind == "warmup":
            for device in ("cpu", "meta"):
                rows.append(run_warmup(device, args.processes))
                print(f"done warm-up {device}", file=sys.stderr, flush=True)
            table, count = render_warmup(rows), args.processes
        else:
            default = META_WORKLOADS if kind == "meta" else DEFAULT_WORKLOADS
            names = args.workloads.split(",") if args.workloads and not args.all else list(default)
            run = run_meta if kind == "meta" else run_cpu
            for name in names:
                rows.append(run(name, args.repeats, args.warmup))
                print(f"done {name}", file=sys.stderr, flush=True)
            table, count = (render_meta if kind == "meta" else render_cpu)(rows), args.repeats
        results[kind] = rows
        print(table, flush=True)
        if args.doc:
            write_section(args.doc, kind, table, count)
            # kept beside the bench too, so bench/report.py's re-render of docs/benchmarks.md keeps it
            write_section(os.path.join(os.path.dirname(os.path.abspath(__file__)), "SPEED.md"), kind, table, count)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
