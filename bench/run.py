"""Benchmarks: this project against ptflops, fvcore, thop, calflops and torch's FlopCounterMode.

    pip install -e ".[bench]"
    python bench/run.py            # full run (about 10 minutes on 2 cores), writes docs/benchmarks.md
    python bench/run.py --quick    # smoke run: 3 workloads, 2 repeats
    python bench/run.py --dry-run  # print the plan, run nothing

Every (workload, counter) pair runs in its own subprocess (bench/worker.py, JSON on stdout), with
one torch thread, a warm-up and several timed repeats; forwards and counts are interleaved inside
each worker and ratios are taken pairwise, then the median. The plugin sections (start-up cost,
per-test overhead) come from bench/plugin_overhead.py. Raw results go to bench/results.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from report import write_report  # noqa: E402

REAL_COUNTERS = [
    "forward",
    "fb-cpu",
    "fb-meta",
    "ptflops-pytorch",
    "ptflops-aten",
    "fvcore",
    "thop",
    "calflops",
    "torch-fcm",
]
META_COUNTERS = [
    "fb-meta",
    "torch-fcm-fake",
    "torch-fcm-meta",
    "ptflops-pytorch",
    "ptflops-aten",
    "fvcore",
    "thop",
    "calflops",
]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        PYTHONWARNINGS="ignore",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def run_worker(workload: str, counter: str, repeats: int, warmup: int, timeout: float) -> dict:
    cmd = [
        sys.executable,
        str(HERE / "worker.py"),
        "--workload", workload,
        "--counter", counter,
        "--repeats", str(repeats),
        "--warmup", str(warmup),
    ]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=worker_env(), cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"workload": workload, "counter": counter, "ok": False, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"workload": workload, "counter": counter, "ok": False, "error": f"worker crashed (rc {proc.returncode}): {tail}"}
    data = json.loads(lines[-1])
    data["subprocess_wall_s"] = round(time.perf_counter() - started, 2)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 workloads, 2 repeats, fewer plugin runs")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per worker (default 3, quick 2)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--workloads", default=None, help="comma-separated subset of workloads")
    parser.add_argument("--counters", default=None, help="comma-separated subset of counters")
    parser.add_argument("--skip-plugin", action="store_true", help="leave out the pytest plugin sections")
    parser.add_argument("--plugin-only", action="store_true", help="rerun the plugin sections only, keeping the counter results in --json")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--json", default=str(HERE / "results.json"))
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per worker")
    parser.add_argument("--jobs", type=int, default=2, help="workers run side by side (default 2)")
    args = parser.parse_args(argv)

    from workloads import WORKLOADS

    repeats = args.repeats or (2 if args.quick else 3)
    names = args.workloads.split(",") if args.workloads else [n for n, w in WORKLOADS.items() if w.quick or not args.quick]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; known: {', '.join(WORKLOADS)}")
    wanted = set(args.counters.split(",")) if args.counters else None

    plan = []
    for name in names:
        counters = META_COUNTERS if WORKLOADS[name].meta_only else REAL_COUNTERS
        for counter in counters:
            if wanted is None or counter in wanted or counter == "forward":
                plan.append((name, counter, max(3, repeats) if WORKLOADS[name].meta_only else repeats))

    print(f"plan: {len(plan)} workers, {repeats} repeats after {args.warmup} warm-up", flush=True)
    if args.dry_run:
        for name, counter, reps in plan:
            print(f"  {name:16s} {counter:16s} x{reps}")
        print("  plugin: start-up (loaded vs -p no:flopbudget), 100-test session overhead" if not args.skip_plugin else "")
        return 0

    started = time.perf_counter()
    if args.plugin_only:
        plan = []
    results: list[dict] = [{} for _ in plan]
    done = 0
    # Timings are CPU time inside each worker, so two workers side by side do not skew the ratios;
    # they only halve the wall time of the run (imports and model builds dominate it).
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {
            pool.submit(run_worker, name, counter, reps, args.warmup, args.timeout): i
            for i, (name, counter, reps) in enumerate(plan)
        }
        for future in as_completed(futures):
            i = futures[future]
            data = future.result()
            results[i] = data
            done += 1
            name, counter, _ = plan[i]
            status = "ok" if data.get("ok") else f"FAILED: {data.get('error')}"
            print(f"[{done}/{len(plan)}] {name} {counter}: {status} ({data.get('subprocess_wall_s', '?')} s)", flush=True)

    plugin = None
    if not args.skip_plugin:
        import plugin_overhead

        plugin = plugin_overhead.run_all(quick=args.quick, log=lambda s: print(s, flush=True))

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "repeats": repeats,
        "jobs": args.jobs,
        "warmup": args.warmup,
        "quick": args.quick,
        "versions": _versions(),
        "command": "python bench/run.py" + (" --quick" if args.quick else ""),
        "total_s": round(time.perf_counter() - started, 1),
    }
    if args.plugin_only:
        results = json.loads(Path(args.json).read_text())["results"]
    Path(args.json).write_text(json.dumps({"meta": meta, "results": results, "plugin": plugin}, indent=1))
    write_report(Path(args.out), meta, results, plugin)
    print(f"wrote {args.out} and {args.json} in {meta['total_s']} s")
    return 0


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("torch", "transformers", "ptflops", "fvcore", "thop", "calflops", "pytest", "pytest-flopbudget"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


if __name__ == "__main__":
    sys.exit(main())
