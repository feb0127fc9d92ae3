"""docs/benchmarks.md from the workers' JSON (bench/run.py calls ``write_report``).

Re-render without re-running: ``python bench/report.py`` (reads bench/results.json).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from reasons import COUNTER_NOTES, family_breakdown, reason_for  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

UNITS = {
    "fb-cpu": "flops (seed) + macs (ptflops rules)",
    "fb-meta": "flops (seed) + macs (ptflops rules)",
    "forward": "—",
    "ptflops-pytorch": "MACs",
    "ptflops-aten": "MACs",
    "fvcore": "\"flops\" = MACs",
    "thop": "MACs",
    "calflops": "FLOPs + MACs",
    "torch-fcm": "FLOPs (2/MAC)",
    "torch-fcm-fake": "FLOPs (2/MAC)",
    "torch-fcm-meta": "FLOPs (2/MAC)",
}


def _med(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def _g(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e9:.4f} G"


def _m(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e6:.3f} M"


def _pct(ours: int | None, peer: int | None) -> str:
    if not ours or not peer:
        return "—"
    return f"{100.0 * ours / peer:.2f}%"


def _ms(s: float | None) -> str:
    return "—" if s is None else f"{1000 * s:.1f}"


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def _reported(r: dict) -> str:
    parts = []
    if r.get("flops") is not None:
        parts.append(f"{_g(r['flops'])}FLOPs")
    if r.get("macs") is not None:
        parts.append(f"{_g(r['macs'])}MACs")
    return ", ".join(parts) or "—"


def _by(results: list[dict]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for r in results:
        out.setdefault(r["workload"], {})[r["counter"]] = r
    return out


def _ours_key(rows: dict[str, dict]) -> str:
    return "fb-cpu" if rows.get("fb-cpu", {}).get("ok") else "fb-meta"


def summary_numbers(results: list[dict], plugin: dict | None) -> dict[str, Any]:
    by = _by(results)
    out: dict[str, Any] = {}
    for name in ("resnet50", "bert_base_sdpa", "bert_base_eager", "vit_b16", "gpt2_small", "mobilenet_v2", "llama_small"):
        rows = by.get(name, {})
        for counter in ("fb-cpu", "fb-meta", "torch-fcm"):
            r = rows.get(counter)
            if r and r.get("ok"):
                out[f"{name}/{counter}/x_forward"] = r.get("ratio_to_forward")
                out[f"{name}/{counter}/x_forward_grad"] = r.get("ratio_to_forward_grad")
    rows = by.get("llama_7b", {})
    for counter in ("fb-meta", "torch-fcm-fake", "torch-fcm-meta"):
        r = rows.get(counter)
        if r and r.get("ok"):
            out[f"7b/{counter}/s"] = _med(r.get("count_s"))
            out[f"7b/{counter}/rss"] = r.get("peak_rss_mb")
            out[f"7b/{counter}/rss_import"] = r.get("rss_after_import_mb")
            out[f"7b/{counter}/first_s"] = r.get("first_s")
    if plugin:
        times = plugin.get("startup", {}).get("times_s", {})
        if times.get("loaded") and times.get("disabled"):
            # the median of per-round differences: both variants of a round ran moments apart, so
            # slow drifts of a shared machine cancel (a difference of two medians does not)
            paired = [a - b for a, b in zip(times["loaded"], times["disabled"])]
            out["startup_ms"] = 1000 * statistics.median(paired)
        out["plugin_import_ms"] = plugin.get("plugin_import_ms")
        se = plugin.get("session", {}).get("median_s", {})
        n = plugin.get("n_tests", 100)
        if "unmeasured" in se:
            for k in ("measured-cpu", "measured-meta"):
                if k in se:
                    out[f"per_test_ms/{k}"] = 1000 * (se[k] - se["unmeasured"]) / n
    return out


def _targets(s: dict[str, Any], plugin: dict | None) -> list[str]:
    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("met" if ok else "**missed**")

    lines = ["| target | floor | reached | verdict |", "|---|---|---|---|"]
    for name, label in (("resnet50", "ResNet-50"), ("bert_base_sdpa", "BERT-base (sdpa)"), ("bert_base_eager", "BERT-base (eager)")):
        v = s.get(f"{name}/fb-cpu/x_forward")
        vg = s.get(f"{name}/fb-cpu/x_forward_grad")
        fcm = s.get(f"{name}/torch-fcm/x_forward")
        if v is None:
            continue
        reached = f"{_x(v)} a no_grad forward ({_x(vg)} a forward with autograd on; FlopCounterMode {_x(fcm)})"
        lines.append(f"| counting on CPU, {label} | ≤ 1.10× a plain forward | {reached} | {verdict(None if v is None else v <= 1.10)} |")
    t, rss = s.get("7b/fb-meta/s"), s.get("7b/fb-meta/rss")
    fcm_t = s.get("7b/torch-fcm-fake/s")
    lines.append(f"| 7B decoder on meta, time | < 3 s | {t:.2f} s (build + count) |" + f" {verdict(t < 3)} |" if t is not None else "| 7B decoder on meta, time | < 3 s | failed | **missed** |")
    if rss is not None:
        first = s.get("7b/fb-meta/first_s")
        if first is not None:
            lines.append(f"| 7B decoder on meta, cold (first measure in a fresh process) | < 3 s | {first:.2f} s | {verdict(first < 3)} |")
        lines.append(f"| 7B decoder on meta, peak RSS | < 1 GB | {rss:.0f} MB (of which {s.get('7b/fb-meta/rss_import', 0):.0f} MB is importing torch + transformers) | {verdict(rss < 1024)} |")
    if t is not None and fcm_t is not None:
        lines.append(f"| 7B on meta vs FlopCounterMode (same model under FakeTensorMode) | no slower | {t:.2f} s vs {fcm_t:.2f} s ({t / fcm_t:.2f}×) | {verdict(t <= fcm_t * 1.05)} |")
    fcm_plain = s.get("7b/torch-fcm-meta/s")
    if t is not None and fcm_plain is not None:
        lines.append(
            f"| 7B on meta vs FlopCounterMode on plain meta tensors (`torch.device('meta')`; it does not fail "
            f"on `.item()` with transformers 5 and no attention mask) | no slower | {t:.2f} s vs {fcm_plain:.2f} s "
            f"({t / fcm_plain:.2f}×) | {verdict(t <= fcm_plain * 1.05)} |"
        )
    if plugin is None:
        lines.append("| plugin start-up, no measuring test | ≤ 30 ms | not run (--skip-plugin) | — |")
    else:
        st = s.get("startup_ms")
        imp = s.get("plugin_import_ms")
        lines.append(
            f"| plugin start-up, no measuring test | ≤ 30 ms | {st:+.0f} ms CPU, median of paired session differences; "
            f"plugin import alone {imp:.0f} ms | {verdict(None if imp is None else max(st, imp) <= 30)} |"
            if st is not None and imp is not None else "| plugin start-up | ≤ 30 ms | not measured | — |"
        )
        if plugin.get("available"):
            se = plugin.get("session", {}).get("median_s", {})
            pm = s.get("per_test_ms/measured-meta")
            if all(k in se for k in ("unmeasured", "measured-meta", "unmeasured-25", "measured-meta-25")):
                n = plugin.get("n_tests", 100)
                marginal = 1000 * ((se["measured-meta"] - se["unmeasured"]) - (se["measured-meta-25"] - se["unmeasured-25"])) / (n - 25)
                lines.append(f"| plugin overhead per additional measured test, meta (one-time costs removed) | ≤ 20 ms | {marginal:.1f} ms | {verdict(marginal <= 20)} |")
            pc = s.get("per_test_ms/measured-cpu")
            lines.append(f"| plugin overhead per measured test, meta | ≤ 20 ms | {pm:.1f} ms (cpu: {pc:.1f} ms) | {verdict(pm <= 20)} |")
        else:
            lines.append(f"| plugin overhead per measured test, meta | ≤ 20 ms | plugin not available ({plugin.get('unavailable_reason')}) | — |")
    return lines


def _workload_section(name: str, rows: dict[str, dict]) -> list[str]:
    w = WORKLOADS.get(name)
    title = w.title if w else name
    ours = rows.get(_ours_key(rows), {})
    our_res = ours.get("result") or {}
    our_macs, our_flops = our_res.get("macs"), our_res.get("flops")
    our_t = _med(ours.get("count_s"))
    fwd = rows.get("forward", {})
    lines = [f"### {title}", ""]
    if fwd.get("ok"):
        lines.append(
            f"Plain forward: {_ms(_med(fwd.get('forward_s')))} ms under `no_grad` "
            f"({_ms(_med(fwd.get('forward_grad_s')))} ms with autograd on), peak RSS {fwd.get('peak_rss_mb')} MB "
            f"(build + forward, no counter)."
        )
        lines.append("")
    meta_only = bool(w and w.meta_only)
    time_head = "build + count (ms)" if meta_only else "count (ms)"
    head = f"| counter | reported | params | our macs / its MACs | our flops / its FLOPs | {time_head} |"
    sep = "|---|---|---|---|---|---|"
    if not meta_only:
        head += " × forward (no_grad) | × forward (grad) |"
        sep += "---|---|"
    head += " its time / ours | peak RSS (MB) | status |"
    sep += "---|---|---|"
    lines += [head, sep]
    diffs = []
    for counter, r in rows.items():
        if counter == "forward":
            continue
        res = r.get("result") or {}
        t = _med(r.get("count_s"))
        macs_rel = _pct(our_macs, res.get("macs")) if counter not in ("fb-cpu", "fb-meta") or res.get("macs") != our_macs else "100.00%"
        flops_rel = _pct(our_flops, res.get("flops")) if res.get("flops") is not None else "—"
        status = "ok" if r.get("ok") else f"failed: `{_clean(r.get('error'))}`"
        cells = [
            f"`{counter}`",
            _reported(res) if r.get("ok") else "—",
            _m(res.get("params")) if r.get("ok") else "—",
            macs_rel if r.get("ok") else "—",
            flops_rel if r.get("ok") else "—",
            _ms(t),
        ]
        if not meta_only:
            cells += [_x(r.get("ratio_to_forward")), _x(r.get("ratio_to_forward_grad"))]
        cells += [
            _x(t / our_t) if t and our_t and counter not in ("fb-cpu",) else ("1.00×" if counter == "fb-cpu" else "—"),
            f"{r.get('peak_rss_mb', '—')}",
            status,
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if r.get("ok") and counter not in ("fb-cpu", "fb-meta"):
            for kind in ("macs", "flops"):
                theirs = res.get(kind)
                mine = our_macs if kind == "macs" else our_flops
                if theirs and mine and abs(mine / theirs - 1) > 0.01:
                    diffs.append((counter, kind, mine, theirs))
            if res.get("params") and our_res.get("params") and res["params"] != our_res["params"]:
                diffs.append((counter, "params", our_res["params"], res["params"]))
        if r.get("ok") and counter == "fb-meta" and our_macs is not None and res.get("macs") != our_macs:
            diffs.append((counter, "macs", our_macs, res.get("macs")))
    lines.append("")
    if our_res.get("op_macs"):
        lines.append("Our count by op family (macs): " + family_breakdown(our_res["op_macs"], our_macs) + ".")
        if our_res.get("uncounted"):
            lines.append("Ops with no formula (uncounted): " + ", ".join(f"`{k}`×{v}" for k, v in our_res["uncounted"].items()) + ".")
        lines.append("")
    if diffs:
        lines.append("Differences above 1%, and why:")
        lines.append("")
        for counter, kind, mine, theirs in diffs:
            delta = 100.0 * (mine - theirs) / theirs
            text = reason_for(name, counter, kind, mine, theirs, rows)
            lines.append(f"- `{counter}` {kind}: ours {mine:,} vs {theirs:,} ({delta:+.2f}%). {text}")
        lines.append("")
    else:
        lines.append("No count differs from ours by more than 1%.")
        lines.append("")
    return lines


def _clean(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("`", "'")[:200]


def write_report(path: Path, meta: dict, results: list[dict], plugin: dict | None) -> None:
    by = _by(results)
    s = summary_numbers(results, plugin)
    v = meta.get("versions", {})
    lines = [
        "# Benchmarks: pytest-flopbudget against ptflops, fvcore, thop, calflops and FlopCounterMode",
        "",
        f"Generated by `{meta.get('command', 'python bench/run.py')}` on {meta.get('date')} "
        f"({meta.get('total_s')} s). Do not edit by hand: see bench/README.md.",
        "",
        f"Machine: {meta.get('platform')}, {meta.get('cpus')} CPUs shared with other jobs (timings are noisy; "
        "every ratio is taken side by side in one process and the median kept). Python "
        f"{meta.get('python')}; torch {v.get('torch')}, transformers {v.get('transformers')}, ptflops "
        f"{v.get('ptflops')}, fvcore {v.get('fvcore')}, thop {v.get('thop')}, calflops {v.get('calflops')}, "
        f"pytest {v.get('pytest')}. One torch thread in every worker. Each (workload, counter) pair runs in its "
        f"own subprocess: {meta.get('warmup')} warm-up then {meta.get('repeats')} timed repeats (the 7B model: at "
        "least 3), each repeat a plain forward under `no_grad`, a forward with autograd on, then one count; "
        "the ratios are paired per repeat, medians reported. Peak RSS is the worker's `ru_maxrss` "
        "(imports, model, forwards and counts together).",
        "",
        "## Targets",
        "",
        *_targets(s, plugin),
        "",
        "## The counters and their units",
        "",
        "| counter | what it is | unit |",
        "|---|---|---|",
    ]
    from counters import COUNTERS

    descriptions = {k: d for k, (_, d) in COUNTERS.items()}
    descriptions["torch-fcm-fake"] = "FlopCounterMode, model built under torch's FakeTensorMode (7B only)"
    descriptions["torch-fcm-meta"] = "FlopCounterMode, model built with `torch.device('meta')` (7B only)"
    for k, d in descriptions.items():
        lines.append(f"| `{k}` | {d} | {UNITS.get(k, '')} |")
    lines += [
        "",
        "Our `macs` are compared with each peer's MACs (fvcore's \"flops\" are MACs), our `flops` with "
        "FlopCounterMode's and calflops' FLOPs. In the 7B section, peers other than `torch-fcm-fake` build the "
        "model on plain meta tensors (`with torch.device('meta')`), the way their users would.",
        "",
        "What each peer counts, in short (the per-workload reasons below refer to these):",
        "",
    ]
    for k, note in COUNTER_NOTES.items():
        lines.append(f"- `{k}`: {note}")
    lines += ["", "## Counts and timings side by side", ""]
    for name in WORKLOADS:
        if name in by:
            lines += _workload_section(name, by[name])
    failures = [r for r in results if not r.get("ok")]
    lines += ["## What failed", ""]
    if failures:
        lines += ["| workload | counter | first error line |", "|---|---|---|"]
        for r in failures:
            lines.append(f"| {r['workload']} | `{r['counter']}` | `{_clean(r.get('error'))}` |")
    else:
        lines.append("Nothing failed.")
    lines += ["", *_plugin_section(plugin), ""]
    speed = HERE / "SPEED.md"  # written by bench/speed.py --doc: its tables survive a re-render
    if speed.exists():
        lines += [speed.read_text().strip(), ""]
    profile = HERE / "PROFILE.md"
    if profile.exists():
        lines += [profile.read_text().strip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")


def _plugin_section(plugin: dict | None) -> list[str]:
    lines = ["## The pytest plugin's cost", ""]
    if plugin is None:
        return lines + ["Not run (`--skip-plugin`)."]
    st = plugin.get("startup", {})
    med = st.get("median_s", {})
    times = st.get("times_s", {})
    lines += [
        "Start-up, a project with one trivial test and no model (hyperfine-style: fresh `python -m pytest` "
        f"subprocesses, the two variants alternated, {len(times.get('loaded', []))} rounds after a warm-up; "
        "CPU time of the pytest process, user + sys, so that other jobs on the machine do not inflate it):",
        "",
        "| variant | median CPU (ms) | min (ms) | max (ms) | median wall (ms) |",
        "|---|---|---|---|---|",
    ]
    walls = st.get("median_wall_s", {})
    for k, label in (("loaded", "plugin loaded"), ("disabled", "`-p no:flopbudget`")):
        if times.get(k):
            lines.append(f"| {label} | {_ms(med[k])} | {_ms(min(times[k]))} | {_ms(max(times[k]))} | {_ms(walls.get(k))} |")
    if "loaded" in med and "disabled" in med:
        lines.append("")
        lines.append(
            f"Difference of medians: {1000 * (med['loaded'] - med['disabled']):+.0f} ms. Importing "
            f"`pytest_flopbudget.plugin` alone (fresh interpreter, pytest already imported, median): "
            f"{plugin.get('plugin_import_ms') or float('nan'):.1f} ms. Loading the plugin imports torch: "
            f"{plugin.get('imports_torch')}."
        )
    lines.append("")
    if not plugin.get("available"):
        lines.append(f"Per-test overhead: plugin not available ({plugin.get('unavailable_reason')}).")
        return lines
    se = plugin.get("session", {})
    med = se.get("median_s", {})
    n = plugin.get("n_tests", 100)
    lines += [
        f"Per measured test: {n} tests, each building a small conv/BN/linear model (1×3×32×32 input), "
        "run as plain forwards, or measured through the `flop_budget` fixture with a budget marker; "
        f"sessions alternated, {len(se.get('times_s', {}).get('unmeasured', []))} rounds, medians of the pytest "
        "process's CPU time (wall time alongside):",
        "",
        "| session | median CPU (s) | median wall (s) | overhead per test vs unmeasured (ms, CPU) |",
        "|---|---|---|---|",
    ]
    base = med.get("unmeasured")
    for k in ("unmeasured", "unmeasured-no-plugin", "measured-cpu", "measured-meta"):
        if k in med:
            over = "—" if k == "unmeasured" or base is None else f"{1000 * (med[k] - base) / n:+.1f}"
            lines.append(f"| {k} | {med[k]:.2f} | {se.get('median_wall_s', {}).get(k, float('nan')):.2f} | {over} |")
    if "unmeasured-25" in med and "measured-meta-25" in med and "measured-meta" in med and base is not None:
        over_100 = med["measured-meta"] - base
        over_25 = med["measured-meta-25"] - med["unmeasured-25"]
        marginal = 1000 * (over_100 - over_25) / (n - 25)
        fixed = over_25 - 25 * marginal / 1000
        lines += [
            f"| unmeasured-25 | {med['unmeasured-25']:.2f} | {se.get('median_wall_s', {}).get('unmeasured-25', float('nan')):.2f} | — |",
            f"| measured-meta-25 | {med['measured-meta-25']:.2f} | {se.get('median_wall_s', {}).get('measured-meta-25', float('nan')):.2f} | {1000 * over_25 / 25:+.1f} (per test of 25) |",
            "",
            f"Split of the meta overhead (two session sizes, 25 and {n} tests): **{marginal:.1f} ms per additional "
            f"measured test** and a one-time {fixed:.2f} s per session: in torch 2.13 the first "
            "TorchDispatchMode used in a process imports `torch._dynamo` (about 1 s of CPU; FlopCounterMode pays "
            "it too), and the first `FakeTensorMode()` sets up its symbolic-shape machinery; later measures reuse both.",
        ]
    if se.get("failures"):
        lines.append("")
        lines.append("Session failures: " + "; ".join(f"{k}: `{_clean(v)}`" for k, v in se["failures"].items()))
    return lines


if __name__ == "__main__":
    data = json.loads((HERE / "results.json").read_text())
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "docs" / "benchmarks.md"
    write_report(out, data["meta"], data["results"], data.get("plugin"))
    print(f"wrote {out}")
