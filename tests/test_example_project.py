"""example_project: its committed baseline is what its models measure today, its markers apply at
function, class and module level, and it is its own pytest rootdir, apart from this suite."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import tomllib
from fractions import Fraction
from pathlib import Path

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
    "tests/test_language.py::test_gpt_training_step": {"flops": 185 * G, "params": 14.2e6},
    "tests/test_language.py::test_gpt_full_training_step": {"flops": 185 * G, "params": 14.2e6},
    "tests/test_language.py::test_gpt_generate": {"flops": 4.4 * G, "params": 14.2e6},
    "tests/test_language.py::test_llama_7b_forward": {"macs": 860 * G, "params": 6.75e9},
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


def test_example_project_is_its_own_rootdir_and_not_part_of_this_suite():
    ini = configparser.ConfigParser()
    ini.read(EXAMPLE / "pytest.ini")
    assert ini["pytest"]["flop_device"] == "meta"  # the 7B decoder costs no memory
    assert ini["pytest"]["flop_baseline"] == "flop_baseline.yaml"
    assert "flop_tolerance" in ini["pytest"]
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # `pytest` at the repository root collects tests/ only: the example is run on its own
    assert root["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]


def test_marker_levels_are_all_exercised():
    vision = (EXAMPLE / "tests" / "test_vision.py").read_text()
    language = (EXAMPLE / "tests" / "test_language.py").read_text()
    assert re.search(r"^@pytest\.mark\.flop_budget\(.*\)\nclass TestViT", vision, re.M)  # class level
    assert re.search(r"^pytestmark = pytest\.mark\.flop_budget\(", language, re.M)  # module level
    assert re.search(r"^@pytest\.mark\.flop_budget\(.*\)\ndef test_resnet\(", vision, re.M)  # function level
    assert "backward=True" in language  # a training-step budget
