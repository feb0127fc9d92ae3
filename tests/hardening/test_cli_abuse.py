"""The command line against broken user code and oversized models (what tests/test_cli.py does not
already cover: a module with a syntax error, a 7B factory on cpu refused before any allocation)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from pytest_flopbudget import cli

MODULE = """
import torch
from torch import nn

BUILT_ON = []

def big():
    # a 7B-parameter model: one embedding of 7e9 weights (28 GB in float32)
    model = nn.Embedding(7_000_000_000 // 4096, 4096)
    BUILT_ON.append(model.weight.device.type)
    return model

def raises():
    raise RuntimeError("factory failed")
"""


@pytest.fixture
def usercode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "usermodels.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "typo.py").write_text("def net(:\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("usermodels", "typo"):
        sys.modules.pop(name, None)


def error_lines(capfd: pytest.CaptureFixture[str]) -> list[str]:
    err = capfd.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if not line.startswith("flopbudget: count")]


def test_a_module_with_a_syntax_error_is_one_line(usercode: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["typo:net", "-s", "1,8"]) == 2
    lines = error_lines(capfd)
    assert len(lines) == 1, lines
    assert lines == ["flopbudget: error: importing 'typo' failed: invalid syntax (typo.py, line 1)"]


def test_a_raising_factory_is_one_line(usercode: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["usermodels:raises", "-s", "1,8"]) == 2
    lines = error_lines(capfd)
    assert len(lines) == 1 and "RuntimeError: factory failed" in lines[0], lines


def test_7b_on_cpu_is_refused_before_allocating(usercode: Path, capfd: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_available_memory", lambda: 16 * 2**30)  # a 16 GiB machine
    assert cli.main(["usermodels:big", "-s", "1,8", "--dtype", "long", "--device", "cpu"]) == 2
    lines = error_lines(capfd)
    needed = (7_000_000_000 // 4096) * 4096 * 4
    assert len(lines) == 1 and f"needs about {needed / 2**30:.1f} GiB" in lines[0] and "--device meta" in lines[0]
    models = sys.modules["usermodels"]
    assert models.BUILT_ON == ["meta"]  # sized from the parameter count on meta; never built on cpu
    # and on meta it is simply counted (an embedding lookup is free)
    assert cli.main(["usermodels:big", "-s", "1,8", "--dtype", "long", "--device", "meta", "--json"]) == 0
    assert '"params": 6999998464' in capfd.readouterr().out
