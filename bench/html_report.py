"""How big and how fast the HTML report is at scale (the numbers in docs/plugin.md; never asserted).

    python bench/html_report.py                 # 500 tests, and a 7B decoder at depth 6; 7 repeats
    python bench/html_report.py --tests 2000 --repeats 9

Two pages, each written as the plugin writes it (every test with a baseline entry, modules to the
baseline's default depth 6):
  * a suite of N measured tests: the example project's ResNet, ViT, MobileNet and GPT trees (counted
    on meta) repeated with varied numbers, one test in 25 regressed (its section opens at load);
  * one LLaMA-7B-shaped decoder (32 layers; counted on meta, no weights), its baseline one MLP
    narrower, so that its chart is opened and drawn at load.
Printed per page: file size (and the JSON report's size for the same suite, as a ratio), rendering
in Python, and in headless Chromium (Debian's chromium + chromedriver + selenium): the page's own
build time (script start to table and open charts built), load to ready, opening a closed test,
and switching the metric; medians of the repeats, wall time on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))

DEPTH = 6  # the baseline's default depth: what the plugin's entries (and so its pages) hold

OPEN_LAST = """
const done = arguments[arguments.length - 1];
const closed = [...document.querySelectorAll('#tests > details')].filter(d => !d.open);
const details = closed[closed.length - 1];
const start = performance.now();
details.querySelector('summary').click();
const wait = () => details.getAttribute('data-rendered') === '1'
    ? done([performance.now() - start, details.querySelectorAll('.block').length]) : setTimeout(wait, 0);
wait();
"""
SWITCH = """
const start = performance.now();
document.querySelector('#metric input[value=params]').click();
const params = performance.now() - start;
document.querySelector('#metric input[value=flops]').click();
return [params, document.querySelectorAll('.block').length];
"""
READY = """
const root = document.documentElement;
return root.getAttribute('data-ready') === '1'
    ? [Number(root.getAttribute('data-ready-ms')), Number(root.getAttribute('data-build-ms'))] : null;
"""


def measured_trees() -> list[Any]:
    import torch

    import pytest_flopbudget as fb
    from example_project import models

    image = lambda: torch.zeros(1, 3, 224, 224)  # noqa: E731
    tokens = lambda: torch.zeros(1, 128, dtype=torch.long)  # noqa: E731
    return [fb.measure(build, inputs, device="meta") for build, inputs in
            ((models.resnet, image), (models.vit, image), (models.mobilenet, image), (models.gpt, tokens))]


def scaled(rows: tuple, factor: float) -> tuple:
    from pytest_flopbudget.reporting.html_model import ModuleView

    return tuple(ModuleView(m.name, m.type, int(m.flops * factor), int(m.macs * factor), m.params, m.memory)
                 for m in rows)


def suite_view(count: int) -> Any:
    from pytest_flopbudget.counting.text import giga, human_count
    from pytest_flopbudget.reporting.html_model import (
        ReportView, TestView, TreeView, budget_text, bytes_text, tree_of_measurement,
    )

    trees = []
    for measurement in measured_trees():
        rows = tuple(m for m in tree_of_measurement(measurement) if m.name.count(".") < DEPTH)
        trees.append(rows)
    tests = []
    for i in range(count):
        base = trees[i % len(trees)]
        regressed = i % 25 == 0
        now = scaled(base, 1.0 + (i % 7) / 100 + (0.5 if regressed else 0))
        root = now[0]
        key = f"tests/test_suite_{i // 50}.py::test_model[{i}]"
        verdict = "regressed" if regressed else "ok"
        cells = (key, giga(root.flops / 1e9), giga(root.macs / 1e9), human_count(root.params), bytes_text(None),
                 budget_text(0.8), "+50.0% flops" if regressed else "=", verdict.upper() if regressed else verdict)
        tests.append(TestView(key, cells, (verdict,), failing=regressed, open=regressed, flops=root.flops,
                              macs=root.macs, params=root.params, budget_used=0.8,
                              tree=TreeView(now, scaled(base, 1.0 + (i % 7) / 100), DEPTH)))
    return ReportView("pytest-flopbudget", tuple(tests), ("device meta",), f"flopbudget: {count} tests")


def decoder_view() -> Any:
    import torch

    import pytest_flopbudget as fb
    from example_project import models
    from pytest_flopbudget.reporting.html_model import ModuleView, TreeView, view_of_measurement

    measurement = fb.measure(models.llama_7b, lambda: torch.zeros(1, 128, dtype=torch.long), device="meta")
    view = view_of_measurement("llama_7b", measurement)
    rows = tuple(m for m in view.tests[0].tree.modules if m.name.count(".") < DEPTH)
    # the baseline: layer 0's MLP a quarter cheaper (and its ancestors by as much), so its chart shows growth
    mlp = next(m for m in rows if m.name == "layers.0.mlp")
    less = {"flops": mlp.flops - mlp.flops * 3 // 4, "macs": mlp.macs - mlp.macs * 3 // 4}

    def before(m: Any) -> Any:
        if m.name.startswith("layers.0.mlp"):
            return ModuleView(m.name, m.type, m.flops * 3 // 4, m.macs * 3 // 4, m.params, m.memory)
        if m.name in ("", "layers", "layers.0"):
            return ModuleView(m.name, m.type, m.flops - less["flops"], m.macs - less["macs"], m.params, m.memory)
        return m

    base = tuple(before(m) for m in rows)
    test = view.tests[0]
    from dataclasses import replace

    return replace(view, tests=(replace(test, tree=TreeView(rows, base, DEPTH), verdicts=("regressed",)),)), len(rows)


def start_browser() -> Any:
    from make_screenshot import start_browser as start

    return start(1280, 900)


def measure_page(driver: Any, path: Path, repeats: int) -> dict[str, float]:
    results: dict[str, list[float]] = {"load": [], "build": [], "open": [], "switch": []}
    blocks = 0
    for _ in range(repeats):
        driver.get("about:blank")
        driver.get(path.as_uri())
        ready = None
        while ready is None:
            ready = driver.execute_script(READY)
        loaded, build = ready
        results["load"].append(loaded)  # from the navigation's start to the page built, in the page's clock
        results["build"].append(build)
        if driver.execute_script("return [...document.querySelectorAll('#tests > details')].some(d => !d.open)"):
            opened, _ = driver.execute_async_script(OPEN_LAST)
            results["open"].append(opened)
        switched, blocks = driver.execute_script(SWITCH)
        results["switch"].append(switched)
    medians = {name: statistics.median(values) for name, values in results.items() if values}
    medians["blocks"] = blocks
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    options = parser.parse_args()
    from pytest_flopbudget.reporting import html

    decoder, decoder_modules = decoder_view()
    pages = {f"{options.tests}-test suite": suite_view(options.tests), f"7B decoder ({decoder_modules} modules)": decoder}
    driver = start_browser()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, view in pages.items():
                renders = []
                for _ in range(options.repeats):
                    start = time.perf_counter()
                    page = html.render(view)
                    renders.append((time.perf_counter() - start) * 1000)
                path = Path(tmp) / f"report{len(name)}.html"
                path.write_text(page, encoding="utf-8")
                size = path.stat().st_size
                plain = len(json.dumps(view.to_dict()).encode())
                timings = measure_page(driver, path, options.repeats)
                print(f"{name}: {size / 1e6:.2f} MB page ({size / plain:.2f}x the view's plain JSON, "
                      f"{plain / 1e6:.2f} MB); Python render {statistics.median(renders):.0f} ms")
                print(f"  chromium: load to ready {timings['load']:.0f} ms, page script {timings['build']:.0f} ms"
                      + (f", open a closed test {timings['open']:.0f} ms" if "open" in timings else "")
                      + f", switch metric {timings['switch']:.0f} ms ({timings['blocks']} blocks drawn)")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
