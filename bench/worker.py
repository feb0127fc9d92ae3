"""One counter on one workload, in a process of its own; prints one JSON object on its last line.

    python bench/worker.py --workload resnet50 --counter fb-cpu --repeats 5 --warmup 1

Real-model workloads: the model is built once, then each iteration times a plain forward
(``torch.no_grad()``, eval mode), a forward with autograd on, and one count, interleaved, so
each count/forward ratio is paired with a forward timed moments earlier in the same process.
Meta workloads (``meta_only``): each iteration builds the model on meta and counts it, timed
together, since the model only exists there. Peak RSS is the process's ``ru_maxrss``.

Times are the process's CPU time (``time.process_time``) with one torch thread: the machine is
shared, and CPU time does not count the time other jobs hold the cores, so ratios stay comparable
under load. Wall-clock times are kept too (``*_wall_s``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import time
import traceback
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_T0 = time.perf_counter()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}"[:300]


def _emit(payload: dict) -> None:
    payload["peak_rss_mb"] = round(_rss_mb(), 1)
    payload["worker_wall_s"] = round(time.perf_counter() - _T0, 2)
    sys.__stdout__.write("\n" + json.dumps(payload) + "\n")
    sys.__stdout__.flush()


def run_real(workload: Any, counter: str, repeats: int, warmup: int) -> dict:
    import torch

    from counters import COUNTERS

    out: dict[str, Any] = {}
    t = time.perf_counter()
    model = workload.build().eval()
    x = workload.make_input()
    out["build_s"] = round(time.perf_counter() - t, 3)
    fn = COUNTERS[counter][0] if counter != "forward" else None
    fwd, fwd_grad, cnt, cnt_wall, fwd_wall = [], [], [], [], []
    result = None
    for i in range(warmup + repeats):
        w, t = time.perf_counter(), time.process_time()
        with torch.no_grad():
            model(x)
        f, fw = time.process_time() - t, time.perf_counter() - w
        t = time.process_time()
        model(x)
        fg = time.process_time() - t
        if i == 0:
            out["rss_after_forward_mb"] = round(_rss_mb(), 1)
        c = cw = None
        if fn is not None:
            w, t = time.perf_counter(), time.process_time()
            result = fn(model, x)
            c, cw = time.process_time() - t, time.perf_counter() - w
        if i >= warmup:
            fwd.append(f)
            fwd_wall.append(fw)
            fwd_grad.append(fg)
            if c is not None:
                cnt.append(c)
                cnt_wall.append(cw)
    out["forward_s"] = fwd
    out["forward_wall_s"] = fwd_wall
    out["forward_grad_s"] = fwd_grad
    out["count_s"] = cnt
    out["count_wall_s"] = cnt_wall
    if cnt:
        out["ratio_to_forward"] = statistics.median(c / f for c, f in zip(cnt, fwd))
        out["ratio_to_forward_grad"] = statistics.median(c / f for c, f in zip(cnt, fwd_grad))
    out["result"] = result
    return out


def _meta_builder(counter: str, workload: Any):
    """How each counter gets the 7B model on meta: ours through factories (FakeTensorMode inside
    measure); torch-fcm-fake under a FakeTensorMode of its own; every other tool on plain meta
    tensors (``with torch.device('meta')``), as its users would do."""
    import torch

    from counters import COUNTERS, fcm_counter, ours_factory

    if counter == "fb-meta":
        return ours_factory(workload.build, workload.make_input)
    if counter == "torch-fcm-fake":

        def count() -> dict:
            from torch._subclasses.fake_tensor import FakeTensorMode

            with FakeTensorMode(allow_non_fake_inputs=True):
                model = workload.build().eval()
                x = workload.make_input()
                return fcm_counter(model, x)

        return count
    name = "torch-fcm" if counter == "torch-fcm-meta" else counter
    fn = COUNTERS[name][0]

    def count() -> dict:
        with torch.device("meta"):
            model = workload.build().eval()
            x = workload.make_input()
        return fn(model, x)

    return count


def run_meta(workload: Any, counter: str, repeats: int, warmup: int) -> dict:
    count = _meta_builder(counter, workload)
    times, walls = [], []
    result = None
    first = None
    for i in range(warmup + repeats):
        w, t = time.perf_counter(), time.process_time()
        result = count()
        elapsed, wall = time.process_time() - t, time.perf_counter() - w
        if i == 0:
            first = elapsed  # cold: first FakeTensorMode() in a process costs ~1 s of torch imports
        if i >= warmup:
            times.append(elapsed)
            walls.append(wall)
    return {"count_s": times, "count_wall_s": walls, "first_s": first, "result": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--counter", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    payload: dict[str, Any] = {"workload": args.workload, "counter": args.counter, "ok": False}
    # peers print freely; keep stdout for the JSON line
    with contextlib.redirect_stdout(sys.stderr):
        try:
            import torch

            torch.set_num_threads(args.threads)
            from workloads import WORKLOADS

            workload = WORKLOADS[args.workload]
            payload["import_s"] = round(time.perf_counter() - _T0, 3)
            payload["rss_after_import_mb"] = round(_rss_mb(), 1)
            if workload.meta_only:
                payload.update(run_meta(workload, args.counter, args.repeats, args.warmup))
            else:
                payload.update(run_real(workload, args.counter, args.repeats, args.warmup))
            payload["ok"] = True
        except BaseException as error:  # noqa: BLE001 - a failure is a result here
            payload["error"] = _first_line(error)
            payload["traceback_tail"] = traceback.format_exc().splitlines()[-6:]
    _emit(payload)


if __name__ == "__main__":
    main()
