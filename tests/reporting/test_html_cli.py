"""`flopbudget MODULE:CALLABLE ... --html PATH`: the same picture for one model, every depth of its
tree, its section open; a bad path is a one-line usage error."""

from __future__ import annotations

import sys
import textwrap

import pytest
from html_views import page_json

from pytest_flopbudget import cli

TINY = """
from torch import nn


def tiny():
    return nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))
"""


@pytest.fixture
def tiny_module(tmp_path, monkeypatch):
    (tmp_path / "tiny_html_model.py").write_text(textwrap.dedent(TINY))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("tiny_html_model", None)


def test_html_writes_the_models_whole_tree(tiny_module, capsys):
    path = tiny_module / "pictures" / "tiny.html"
    assert cli.main(["tiny_html_model:tiny", "-s", "5,8", "--depth", "1", "--html", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().endswith(f"flopbudget: wrote {path}")
    data = page_json(path.read_text(encoding="utf-8"))
    (test,) = data["tests"]
    assert (test["key"], test["open"], test["verdicts"]) == ("tiny_html_model:tiny", True, [])
    assert data["about"] == ["inputs: 5x8 float32", "device meta, forward"]
    # every depth, whatever --depth the table used; 5 rows: Linear(8,4) 20 dot products of 8 + bias,
    # ReLU 20, Linear(4,2) 10 dot products of 4 + bias; no baseline
    tree = test["tree"]
    assert (tree["baseline"], tree["baseline_depth"]) == (None, None)
    assert [row[:5] for row in tree["modules"]] == [
        ["", "Sequential", 20 * 16 + 20 + 10 * 8, 20 * 9 + 20 + 10 * 5, 46],
        ["0", "Linear", 20 * 16, 20 * 9, 36],
        ["1", "ReLU", 20, 20, 0],
        ["2", "Sequential", 10 * 8, 10 * 5, 10],
        ["2.0", "Linear", 10 * 8, 10 * 5, 10],
    ]
    # memory, where the engine tracks it: the root holds the whole peak, each module what its code held
    import torch

    import pytest_flopbudget as fb
    from tiny_html_model import tiny

    memory = fb.measure(tiny, lambda: torch.randn(5, 8), device="meta").memory
    expected = [None] * 5 if memory is None else [memory.peak] + [memory.modules.get(n, 0) for n in ("0", "1", "2", "2.0")]
    assert [row[5] for row in tree["modules"]] == expected


def test_html_to_a_directory_is_a_usage_error(tiny_module, capfd):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["tiny_html_model:tiny", "-s", "5,8", "--html", str(tiny_module)])
    assert exit_info.value.code == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a directory; give a file path such as model.html" in err[0]


def test_html_of_a_backward_run_carries_each_modules_backward_flops(tiny_module):
    path = tiny_module / "tiny.html"
    assert cli.main(["tiny_html_model:tiny", "-s", "5,8", "--backward", "--html", str(path)]) == 0
    data = page_json(path.read_text(encoding="utf-8"))
    (test,) = data["tests"]
    assert data["about"][-1] == "device meta, forward+backward"

    def dots(n_outputs: int, length: int) -> int:
        return n_outputs * (2 * length - 1)

    # batch 5; the input needs no gradient, so the first Linear computes none for its input
    last = dots(5 * 4, 2) + dots(2 * 4, 5) + 5 * 2  # grad of its input, grad W, grad b
    relu = 5 * 4
    first = dots(4 * 8, 5) + 5 * 4  # grad W, grad b
    backward = {row[0]: row[6] for row in test["tree"]["modules"]}
    assert backward == {"": first + relu + last, "0": first, "1": relu, "2": last, "2.0": last}


def test_html_of_an_optimizer_step_says_so_as_the_table_does(tiny_module, capsys):
    path = tiny_module / "step.html"
    assert cli.main(["tiny_html_model:tiny", "-s", "5,8", "--optimizer", "sgd", "--html", str(path)]) == 0
    assert "on meta, forward+backward+optimizer step" in capsys.readouterr().out
    assert page_json(path.read_text(encoding="utf-8"))["about"][-1] == "device meta, forward+backward+optimizer step"
