"""Stash keys and constants shared by the plugin's modules (public pytest API: pytest.StashKey)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_flopbudget.plugin.marker import Budget
    from pytest_flopbudget.plugin.options import Settings
    from pytest_flopbudget.plugin.verdict import Measured, TestVerdict

# a labelled measurement's baseline key is "<node id>#<label>"
LABEL_SEPARATOR = "#"

SETTINGS_KEY = pytest.StashKey["Settings"]()
BUDGET_KEY = pytest.StashKey["Budget | None"]()
MEASURED_KEY = pytest.StashKey["list[Measured]"]()
VERDICT_KEY = pytest.StashKey["TestVerdict | None"]()
