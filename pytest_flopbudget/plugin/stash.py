"""Keys of what the plugin keeps on pytest's config and items (pytest's public ``StashKey`` API),
and which kind of process holds that config."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_flopbudget.plugin.marker import Budget
    from pytest_flopbudget.plugin.options import Settings
    from pytest_flopbudget.reporting.verdict import Measured, TestVerdict

SETTINGS_KEY: pytest.StashKey[Settings] = pytest.StashKey()  # on the config
BUDGET_KEY: pytest.StashKey[Budget | None] = pytest.StashKey()  # on each item: its parsed marker
MEASURED_KEY: pytest.StashKey[list[Measured]] = pytest.StashKey()  # what its fixture measured
VERDICT_KEY: pytest.StashKey[TestVerdict | None] = pytest.StashKey()  # what the plugin decided


def is_xdist_worker(config: pytest.Config) -> bool:
    """Whether this process is an xdist worker (xdist gives a worker's config ``workerinput``):
    workers run tests, only the controller (or the one process without xdist) reports and writes."""
    return hasattr(config, "workerinput")
