"""A user's repository inside pytester, shared by the plugin's end-to-end tests.

A module of its own (not conftest.py, which exists in several test folders under one name), so
tests import it unambiguously whichever folders a run collects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def linear_flops(rows: int, cin: int, cout: int, bias: bool = True) -> int:
    """The seed's FC formula: (2*Cin - 1) * Cout per row, +Cout per row for the bias."""
    return rows * ((2 * cin - 1) * cout + (cout if bias else 0))


def linear_params(cin: int, cout: int, bias: bool = True) -> int:
    return cin * cout + (cout if bias else 0)


class Project:
    """A user's repository inside pytester: test files with small Linear models and a baseline."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        pytester.makeini("[pytest]\n")

    @property
    def baseline(self) -> Path:
        return self.pytester.path / "flop_baseline.yaml"

    def linear_test(self, name: str, cin: int, cout: int, rows: int = 1, marker: str = "", label: str | None = None) -> str:
        """Source of one test measuring Linear(cin, cout) on a (rows, cin) input."""
        deco = f"@pytest.mark.flop_budget({marker})\n" if marker else ""
        lab = f", label={label!r}" if label else ""
        return (f"{deco}def {name}(flop_budget):\n"
                f"    flop_budget.measure(torch.nn.Linear({cin}, {cout}), torch.zeros({rows}, {cin}){lab})\n\n")

    def write(self, filename: str, *bodies: str) -> Path:
        source = "import pytest\nimport torch\n\n" + "".join(bodies)
        return self.pytester.makepyfile(**{filename: source})

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest("-p", "no:cacheprovider", *args)

    def load(self) -> dict[str, Any]:
        import yaml

        return yaml.safe_load(self.baseline.read_text())
