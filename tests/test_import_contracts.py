"""The package's structure, as .ci/run checks it: the import-linter contracts of pyproject.toml's
[tool.importlinter] (layers, no torch in the formulas, no pytest in the engine, no cycles between
siblings) and .ci/check_import_cycles.py (no cycle between any modules). A fraction of a second."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import pytest_flopbudget

pytest.importorskip("importlinter", reason="import-linter is not installed (requirements-dev.txt pins it)")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _this_checkout() -> None:
    # both tools analyse the importable pytest_flopbudget: it must be this checkout's
    if not Path(pytest_flopbudget.__file__).resolve().is_relative_to(ROOT):
        pytest.skip(f"pytest_flopbudget is imported from {pytest_flopbudget.__file__}, not from {ROOT}")


def test_import_linter_contracts_are_kept(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from importlinter.cli import EXIT_STATUS_SUCCESS, lint_imports

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))  # lint_imports puts the working directory on it
    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert status == EXIT_STATUS_SUCCESS, capsys.readouterr().out


def test_no_import_cycle_between_any_modules() -> None:
    spec = importlib.util.spec_from_file_location("check_import_cycles", ROOT / ".ci" / "check_import_cycles.py")
    assert spec and spec.loader
    checker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checker)
    graph = checker.build_graph()
    found = checker.cycles(graph)
    assert not found, "\n".join(line for component in found for line in checker.describe(graph, component))
