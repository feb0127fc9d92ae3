"""example_project: its committed baseline is what its models measure today, its markers apply at
function, class and module level, and it is its own pytest rootdir, apart from this suite."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from fractions import Fraction
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example_project"

# The limits each example test is under, written out again here: the run's budget use must match
# them, which shows that the function, class and module markers (closest wins) are the ones applied.
G = 10**9
RESNET = {"flops": 3.7 * G, "params": 11.7e6}
MOBILENET = {"macs": 0.33 * G, "params": 3.6e6}
VIT_CLASS = {"flops": 9.5 * G, "params": 5.8e6}
LANGUAGE_MODULE = {"flops": 38.5 * G, "params": 14.2e6}
EXPECTED_LIMITS = {
    "tests/test_vision.py::test_resnet": RESNET,
    "tests/test_vision.py::test_mobilenet": MOBILENET,
    "tests/test_vision.py::TestViT::test_inference[224]": VIT_CLASS,
    "tests/test_vision.py::TestViT::test_inference[384]": VIT_CLASS,
    "tests/test_language.py::test_gpt_forward[128]": LANGUAGE_MODULE,
    "tests/test_language.py::test_gpt_forward[512]": LANGUAGE_MODULE,
    "tests/test_language.py::test_gpt_forward[1024]": LANGUAGE_MODULE,
    "tests/test_language.py::test_gpt_training_step": {"flops": 185 * G, "params": 14.2e6,
                                                        "activation_memory": 460 * 2**20},
    "tests/test_language.py::test_gpt_adamw_step_fits": {"flops": 185 * G, "peak_memory": 640 * 2**20},
    "tests/test_language.py::test_gpt_full_training_step": {"flops": 185 * G, "params": 14.2e6},
    "tests/test_language.py::test_gpt_generate": {"flops": 4.4 * G, "params": 14.2e6},
    "tests/test_language.py::test_llama_7b_forward": {"macs": 860 * G, "params": 6.75e9, "peak_memory": 26 * 2**30},
}


def clean_env() -> dict[str, str]:
    """The environment of a user's shell: no pytest internals of this run, the venv's scripts first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FLOPBUDGET_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def test_remeasuring_reproduces_the_committed_baseline_byte_for_byte(tmp_path):
    fresh, report = tmp_path / "flop_baseline.yaml", tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "example_project", "-p", "no:cacheprovider", "--flop-update-baseline",
         f"--flop-baseline={fresh}", f"--flop-report={report}"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]

    committed = (EXAMPLE / "flop_baseline.yaml").read_bytes()
    written = fresh.read_bytes()
    import torch

    committed_torch = re.search(rb"^torch: (.*)$", committed, re.M)
    assert committed_torch is not None
    if committed_torch.group(1).decode() != torch.__version__:
        # another build of the same torch (a CUDA wheel, say) writes its own version in the header
        written = re.sub(rb"^torch: .*$", committed_torch.group(0), written, flags=re.M)
    assert written == committed, (
        "example_project/flop_baseline.yaml is out of date: run "
        "`pytest example_project --flop-update-baseline` and commit it"
    )

    tests = {t["nodeid"]: t for t in json.loads(report.read_text())["tests"]}
    assert set(tests) == set(EXPECTED_LIMITS)
    for nodeid, limits in EXPECTED_LIMITS.items():
        measured = tests[nodeid]
        used = max(Fraction(measured[metric]) / Fraction(limit) for metric, limit in limits.items())
        assert used <= 1, f"{nodeid}: the example's budgets must hold"
        assert abs(measured["budget_used"] - float(used)) < 1e-9, nodeid
    # the attention share grows with the square of the sequence: 8x the tokens, more than 8x the flops
    assert tests["tests/test_language.py::test_gpt_forward[1024]"]["flops"] > 8 * tests[
        "tests/test_language.py::test_gpt_forward[128]"]["flops"]


# A plugin for the collect-only run below: the rootdir and ini values pytest resolved, and for
# every collected test the levels (module, class, function) whose node carries its own
# flop_budget marker, and the marker pytest resolves for it.
MARKER_DUMP = """
import json, os

import pytest


def pytest_collection_finish(session):
    found = {}
    for item in session.items:
        levels = [type(node).__name__ for node in item.listchain()
                  if any(mark.name == "flop_budget" for mark in node.own_markers)]
        closest = item.get_closest_marker("flop_budget")
        found[item.nodeid] = {"levels": levels, "closest": closest.kwargs if closest else None}
    config = session.config
    ini = {name: config.getini(name) for name in ("flop_device", "flop_baseline", "flop_tolerance")}
    with open(os.environ["MARKER_DUMP_PATH"], "w") as f:
        json.dump({"rootdir": str(config.rootpath), "ini": ini, "tests": found}, f)
"""

# each marker's arguments as written in the example's tests
RESNET_MARK = {"max_gflops": 3.7, "max_params": "11.7M"}
VIT_MARK = {"max_gflops": 9.5, "max_params": "5.8M"}
LANGUAGE_MARK = {"max_gflops": 38.5, "max_params": "14.2M"}
TRAINING_MARK = {"max_gflops": 185, "max_params": "14.2M", "max_activation_memory": "460MiB"}


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """`pytest example_project --collect-only` from the repository root, as a user runs it."""
    tmp_path = tmp_path_factory.mktemp("collect")
    (tmp_path / "marker_dump.py").write_text(MARKER_DUMP)
    dump = tmp_path / "markers.json"
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH", "")) if p)
    env["MARKER_DUMP_PATH"] = str(dump)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "example_project", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-p", "marker_dump"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return json.loads(dump.read_text())


def test_example_project_is_its_own_rootdir_and_not_part_of_this_suite(collected):
    # pytest, run on example_project from the repository root, takes example_project/pytest.ini
    assert Path(collected["rootdir"]) == EXAMPLE
    ini = collected["ini"]
    assert ini["flop_device"] == "meta"  # the 7B decoder costs no memory
    assert ini["flop_baseline"] == "flop_baseline.yaml"
    assert float(ini["flop_tolerance"]) == 0.01  # set in the example, not left to the default
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # `pytest` at the repository root collects tests/ only: the example is run on its own
    assert root["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]


def test_marker_levels_are_all_exercised(collected):
    """pytest itself reports where each example test's budget comes from: a function marker
    (test_resnet), a class marker (TestViT), the module's pytestmark (test_gpt_forward), and a
    function marker overriding the module's (the training step), the closest winning."""
    found = collected["tests"]
    assert set(found) == set(EXPECTED_LIMITS)
    # function level
    assert found["tests/test_vision.py::test_resnet"] == {"levels": ["Function"], "closest": RESNET_MARK}
    # class level: the marker sits on the class, and both parametrized tests get it
    for size in (224, 384):
        assert found[f"tests/test_vision.py::TestViT::test_inference[{size}]"] == {
            "levels": ["Class"], "closest": VIT_MARK}
    # module level: pytestmark, inherited by the tests without a marker of their own
    for length in (128, 512, 1024):
        assert found[f"tests/test_language.py::test_gpt_forward[{length}]"] == {
            "levels": ["Module"], "closest": LANGUAGE_MARK}
    # both levels, the function's marker wins
    assert found["tests/test_language.py::test_gpt_training_step"] == {
        "levels": ["Module", "Function"], "closest": TRAINING_MARK}


def test_training_step_budget_counts_the_backward_pass():
    """test_gpt_training_step measures with backward=True: the count its run reports is the
    model's forward and backward at its input size, not the forward alone."""
    import torch
    import yaml

    import pytest_flopbudget as fb

    sys.path.insert(0, str(ROOT))
    try:
        from example_project.models import gpt
    finally:
        sys.path.remove(str(ROOT))
    baseline = yaml.safe_load((EXAMPLE / "flop_baseline.yaml").read_text())
    entry = next(v for k, v in baseline["entries"].items() if k.endswith("test_gpt_training_step"))
    tokens = lambda: torch.zeros(8, 256, dtype=torch.long)  # noqa: E731 - the example's input
    forward = fb.measure(gpt, tokens, device="meta")
    training = fb.measure(gpt, tokens, device="meta", backward=True)
    assert entry["flops"] == training.flops
    # the backward pass costs about twice the forward
    assert 2.5 * forward.flops < training.flops < 3.5 * forward.flops
