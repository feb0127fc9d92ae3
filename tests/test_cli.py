"""The `flopbudget` command: JSON and tables that agree with fb.measure, and one-line usage errors.

The console script itself runs in test_readme.py, on the README's own command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import pytest_flopbudget as fb
from pytest_flopbudget import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def models(monkeypatch):
    """example_project.models, importable however pytest was started (`pytest` or `python -m pytest`)."""
    monkeypatch.syspath_prepend(str(ROOT))
    import example_project.models

    return example_project.models


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ""}
    env.pop("FLOPBUDGET_DEMO_REGRESSION", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def table_rows(text: str) -> dict[str, list[str]]:
    """Rows of the module table by their (stripped) label: type, GFLOPs, GMACs, params, share."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("module"))
    rows = {}
    for line in lines[start + 2 :]:
        if line.startswith("total:"):
            break
        label, *cells = line.split()
        rows[label] = cells
    return rows


def test_python_dash_m_json_equals_measure_to_dict(models):
    result = run(
        sys.executable, "-m", "pytest_flopbudget", "example_project.models:gpt",
        "--input-shape", "2,32", "--dtype", "long", "--backward", "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)

    model = models.gpt()
    expected = fb.measure(model, torch.zeros(2, 32, dtype=torch.long), device="meta", backward=True)
    assert data == expected.to_dict()
    assert data["backward"] is True and data["device"] == "meta"
    unique = {id(p): p.numel() for p in model.parameters()}  # the tied head counted once
    assert data["params"] == sum(unique.values()) == 14_186_496


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A throwaway model module in the current directory, as a user's own would be."""
    (tmp_path / "zoo.py").write_text(
        textwrap.dedent(
            """
            import time
            import torch
            from torch import nn

            def tiny():
                return nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))

            INSTANCE = nn.Linear(8, 2)
            WIDTH = 8

            def not_a_model():
                return [1, 2]

            def broken():
                raise ValueError("config missing 'depth'")

            class Masked(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.embed = nn.Embedding(100, 16)
                    self.out = nn.Linear(16, 3)

                def forward(self, ids, mask):
                    return self.out(self.embed(ids) * mask.unsqueeze(-1))

            class Detector(nn.Module):
                # takes one list of images of any size, as torchvision's detectors do
                def __init__(self):
                    super().__init__()
                    self.head = nn.Linear(4, 2)

                def forward(self, images):
                    return [self.head(image) for image in images]

            class Gate(nn.Module):
                def forward(self, x):
                    return x.nonzero()

            class Slow(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(4, 4)

                def forward(self, x):
                    time.sleep(0.3)
                    return self.fc(x)
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("zoo", None)


def errors(capfd) -> list[str]:
    """stderr lines other than the progress notice."""
    err = capfd.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if not line.startswith("flopbudget: count")]


def test_tiny_model_counts_by_hand(zoo, capsys):
    assert cli.main(["zoo:tiny", "-s", "5,8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # 5 rows: Linear(8,4) = 20 dot products of 8 + bias, ReLU 20, Linear(4,2) = 10 dot products of 4 + bias
    assert data["flops"] == 20 * 15 + 20 + 20 + 10 * 7 + 10
    assert data["macs"] == 20 * 8 + 20 + 20 + 10 * 4 + 10
    assert data["params"] == 8 * 4 + 4 + 4 * 2 + 2


def test_module_instance_and_per_input_dtypes(zoo, capsys):
    assert cli.main(["zoo:INSTANCE", "-s", "3,8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["macs"] == 3 * 2 * 8 + 3 * 2
    # token ids (long) and a float mask: one --dtype per --input-shape
    assert cli.main(["zoo:Masked", "-s", "2,10", "-s", "2,10", "--dtype", "long", "--dtype", "float32", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["modules"]["out"]["macs"] == 20 * 3 * 16 + 20 * 3


def test_as_list_passes_the_inputs_as_one_list_argument(zoo, capsys):
    assert cli.main(["zoo:Detector", "-s", "3,4", "-s", "5,4", "--as-list", "--json"]) == 0
    # one Linear(4, 2) over 3 + 5 rows: 16 dot products of 4 terms and a bias each
    assert json.loads(capsys.readouterr().out)["flops"] == (3 + 5) * 2 * (2 * 4 - 1 + 1)


def test_sort_by_flops_orders_rows(zoo, capsys):
    assert cli.main(["zoo:tiny", "-s", "5,8", "--sort", "flops"]) == 0
    rows = table_rows(capsys.readouterr().out)
    gflops = [float(cells[1]) for cells in rows.values()]
    assert gflops == sorted(gflops, reverse=True) and list(rows)[0] == "(total)"


def test_progress_is_shown_for_a_slow_count(zoo, capfd, monkeypatch):
    monkeypatch.setattr(cli, "PROGRESS_AFTER_S", 0.05)
    assert cli.main(["zoo:Slow", "-s", "1,4", "--device", "cpu"]) == 0
    err = capfd.readouterr().err
    assert "flopbudget: counting zoo:Slow on cpu ..." in err and "counted in" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["zoo:tiny", "-s", "1,0"], "invalid shape '1,0': dimensions must be positive, got 0"),
        (["zoo:tiny", "-s", "1,-8"], "dimensions must be positive, got -8"),
        (["zoo:tiny", "-s", "1,eight"], "'eight' is not an integer"),
        (["zoo:tiny", "-s", "1,,8"], "invalid shape '1,,8'"),
        (["zoo:tiny", "-s", "5,8", "--depth", "-1"], "invalid depth -1"),
        (["zoo:tiny", "-s", "5,8", "--dtype", "complex"], "invalid choice: 'complex'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(zoo, capfd, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    lines = errors(capfd)
    assert len(lines) == 1 and lines[0].startswith("flopbudget: error: ") and message in lines[0], lines


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["zoo", "-s", "5,8"], "'zoo' is not MODULE:CALLABLE"),
        (["zoo:tiny"], "give the input shape with --input-shape"),
        (["nowhere.models:net", "-s", "5,8"], "cannot import 'nowhere.models': no module named 'nowhere'"),
        (["zoo:tiyn", "-s", "5,8"], "'zoo' has no attribute 'tiyn' (did you mean 'tiny'?)"),
        (["zoo:WIDTH", "-s", "5,8"], "zoo:WIDTH is not callable (got int 8)"),
        (["zoo:not_a_model", "-s", "5,8"], "zoo:not_a_model() returned list, not an nn.Module"),
        (["zoo:broken", "-s", "5,8"], "calling zoo:broken() raised ValueError: config missing 'depth'"),
        (["zoo:tiny", "-s", "5,7"], "the model's forward failed on inputs 5x7 float32: RuntimeError"),
        (["zoo:tiny", "-s", "5,7", "--device", "cpu"], "the model's forward failed on inputs 5x7 float32: RuntimeError"),
        (["zoo:Masked", "-s", "2,3", "-s", "2,3", "-s", "1", "--dtype", "long", "--dtype", "bool"],
         "2 --dtype values for 3 --input-shape values"),
        (["zoo:Masked", "-s", "2,3", "-s", "2,3"], "the model wants integer inputs such as token ids: give --dtype long"),
    ],
)
def test_model_errors_are_one_line_exit_2(zoo, capfd, argv, message):
    assert cli.main(argv) == 2
    lines = errors(capfd)
    assert len(lines) == 1 and lines[0].startswith("flopbudget: error: ") and message in lines[0], lines


def test_a_meta_failure_names_the_cli_option_that_fixes_it(zoo, capfd):
    """The engine says device='cpu'; the CLI adds its own option for it."""
    assert cli.main(["zoo:Gate", "-s", "4"]) == 2  # meta by default; nonzero needs values
    lines = errors(capfd)
    assert len(lines) == 1 and "device='cpu'" in lines[0] and lines[0].endswith("(--device cpu)"), lines
    assert "--flop-device" not in lines[0]
    assert cli.main(["zoo:Gate", "-s", "4", "--device", "cpu"]) == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_one_line(zoo, capfd):
    assert cli.main(["zoo:tiny", "-s", "5,8", "--device", "cuda"]) == 2
    lines = errors(capfd)
    assert len(lines) == 1 and "no usable CUDA device" in lines[0]


def test_debug_shows_the_traceback(zoo, capfd):
    assert cli.main(["zoo:broken", "-s", "5,8", "--debug"]) == 2
    err = capfd.readouterr().err
    assert "Traceback" in err and "ValueError: config missing 'depth'" in err


def test_help_and_usage_errors_do_not_import_torch():
    code = (
        "import sys\n"
        "from pytest_flopbudget import cli\n"
        "for argv in (['--help'], ['x:y', '-s', '0']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules)\n"
    )
    result = run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_cpu_memory_estimate_warns_and_refuses(models, capfd, monkeypatch):
    gpt = models.gpt

    assert cli.estimate_weight_bytes(gpt) == 14_186_496 * 4
    assert cli.estimate_weight_bytes(gpt, torch.bfloat16) == 14_186_496 * 2
    monkeypatch.setattr(cli, "_available_memory", lambda: 80 * 2**20)  # 80 MiB: GPT's 54 MiB is over half
    cli._check_cpu_memory("m:gpt", gpt, None)
    assert "warning: m:gpt needs about 0.1 GiB" in capfd.readouterr().err
    monkeypatch.setattr(cli, "_available_memory", lambda: 40 * 2**20)
    with pytest.raises(cli.CliError, match="count it with --device meta"):
        cli._check_cpu_memory("m:gpt", gpt, None)
