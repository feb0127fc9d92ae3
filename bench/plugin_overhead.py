"""What the pytest plugin costs a test session, timed like hyperfine: repeated subprocesses,
alternated between the variants compared, medians reported.

- start-up: a project with one trivial test (no model, no measuring), the plugin loaded vs
  ``-p no:flopbudget``; also whether loading the plugin imports torch.
- per measured test: 100 small tests that build a small conv/linear model each, run three ways:
  forwards only (unmeasured), ``flop_budget.measure`` with ``--flop-device=cpu`` and with
  ``--flop-device=meta``; the per-test overhead is the session-time difference over 100.

Run alone: ``python bench/plugin_overhead.py [--quick]`` prints JSON.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

N_TESTS = 100
PER_FILE = 25

_MODEL = '''
import pytest
import torch
from torch import nn


def build(i):
    width = 8 + (i % 8) * 4
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10),
    ).eval()


def inputs():
    return torch.randn(1, 3, 32, 32)
'''

_UNMEASURED = '''
from models import build, inputs
import torch
import pytest


@pytest.mark.parametrize("i", range({start}, {stop}))
def test_forward(i):
    model = build(i)
    with torch.no_grad():
        model(inputs())
'''

_MEASURED = '''
from models import build, inputs
import pytest


@pytest.mark.flop_budget(max_gflops=1)
@pytest.mark.parametrize("i", range({start}, {stop}))
def test_measured(i, flop_budget):
    flop_budget.measure(build(i), inputs())
'''


_PYCACHE = os.path.join(tempfile.gettempdir(), "flopbudget-bench-pycache")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # bytecode caching on, as on a user's machine (a session that compiles every module from
    # source measures the compiler, not the plugin); the cache lives outside the repository
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    return env


def _make_project(root: Path) -> None:
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (root / "trivial").mkdir()
    (root / "trivial" / "test_trivial.py").write_text("def test_nothing():\n    assert True\n")
    for kind, template in (("unmeasured", _UNMEASURED), ("measured", _MEASURED)):
        d = root / kind
        d.mkdir()
        (d / "models.py").write_text(_MODEL)
        (d / "conftest.py").write_text("import sys, os\nsys.path.insert(0, os.path.dirname(__file__))\n")
        for start in range(0, N_TESTS, PER_FILE):
            text = template.format(start=start, stop=start + PER_FILE)
            (d / f"test_{kind}_{start // PER_FILE}.py").write_text(textwrap.dedent(text))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pytest(root: Path, *args: str) -> tuple[float, float, int, str]:
    """(CPU seconds, wall seconds, return code, output) of one pytest session in a fresh process.

    CPU time (user + sys of the child, from RUSAGE_CHILDREN) is the primary number: other jobs on
    the machine inflate wall time, not the CPU time the session itself needs."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *args]
    cpu, wall = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=_env())
    return _children_cpu() - cpu, time.perf_counter() - wall, proc.returncode, proc.stdout + proc.stderr


def _interleaved(root: Path, variants: dict[str, list[str]], rounds: int, warmup: int = 1) -> dict[str, Any]:
    times: dict[str, list[float]] = {name: [] for name in variants}
    walls: dict[str, list[float]] = {name: [] for name in variants}
    failures: dict[str, str] = {}
    for r in range(warmup + rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            cpu, wall, rc, output = _pytest(root, *variants[name])
            if rc != 0 and name not in failures:
                failures[name] = _summary_line(output)
            if r >= warmup:
                times[name].append(cpu)
                walls[name].append(wall)
    return {
        "median_s": {n: statistics.median(t) for n, t in times.items()},
        "times_s": times,
        "median_wall_s": {n: statistics.median(t) for n, t in walls.items()},
        "clock": "CPU time of the pytest process (user + sys)",
        "failures": failures,
    }


def _summary_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "Error" in line or "error" in line.lower().split(":")[0]:
            return line[:300]
    return lines[-1][:300] if lines else "(no output)"


def plugin_available(root: Path) -> tuple[bool, str]:
    """A one-test probe: the fixture and marker exist and a measurement passes its budget."""
    _cpu, _wall, rc, output = _pytest(root, "measured/test_measured_0.py", "-k", "test_measured and 0]")
    if rc == 0:
        return True, ""
    return False, _summary_line(output)


def imports_torch() -> bool | str:
    code = "import sys, pytest_flopbudget.plugin; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    if proc.returncode != 0:
        return "import failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    return proc.stdout.strip() == "True"


def plugin_import_ms(rounds: int = 7) -> float | None:
    """Import time of the plugin module alone (in a fresh interpreter that already has pytest)."""
    code = (
        "import time, pytest; t = time.perf_counter(); import pytest_flopbudget.plugin; "
        "print((time.perf_counter() - t) * 1000)"
    )
    values = []
    for _ in range(rounds):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
        if proc.returncode != 0:
            return None
        values.append(float(proc.stdout.strip()))
    return statistics.median(values)


def run_all(quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    result: dict[str, Any] = {"n_tests": N_TESTS}
    with tempfile.TemporaryDirectory(prefix="flopbudget-bench-") as tmp:
        root = Path(tmp)
        _make_project(root)
        result["imports_torch"] = imports_torch()
        result["plugin_import_ms"] = plugin_import_ms(3 if quick else 9)
        log("plugin: start-up (trivial test, plugin loaded vs -p no:flopbudget)")
        result["startup"] = _interleaved(
            root,
            {"loaded": ["trivial"], "disabled": ["trivial", "-p", "no:flopbudget"]},
            rounds=5 if quick else 21,
        )
        ok, why = plugin_available(root)
        result["available"] = ok
        if not ok:
            result["unavailable_reason"] = why
            log(f"plugin: not available for the measured session ({why})")
            return result
        log("plugin: 100-test sessions (unmeasured / measured on cpu / measured on meta)")
        result["session"] = _interleaved(
            root,
            {
                "unmeasured": ["unmeasured"],
                "measured-cpu": ["measured", "--flop-device=cpu"],
                "measured-meta": ["measured", "--flop-device=meta"],
                "unmeasured-no-plugin": ["unmeasured", "-p", "no:flopbudget"],
                # a quarter of the tests: the slope between the two sizes is the marginal cost per
                # test, free of one-time costs (torch's first FakeTensorMode() builds its ShapeEnv
                # machinery and imports sympy: about a second of CPU, once per process)
                "unmeasured-25": ["unmeasured/test_unmeasured_0.py"],
                "measured-meta-25": ["measured/test_measured_0.py", "--flop-device=meta"],
            },
            rounds=1 if quick else 4,
        )
    return result


if __name__ == "__main__":
    print(json.dumps(run_all(quick="--quick" in sys.argv, log=lambda s: print(s, file=sys.stderr)), indent=1))
