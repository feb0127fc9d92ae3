"""The pytest plugin (registered through the ``pytest11`` entry point as ``flopbudget``).

Importing it must stay cheap: pytest loads every installed plugin in every run, so nothing here
imports torch; the ``flop_budget`` fixture imports the counting engine on its first ``measure``.
"""

from __future__ import annotations

import pytest

from pytest_flopbudget.plugin.fixtures import FlopBudget, flop_budget, flop_device
from pytest_flopbudget.plugin.marker import MARKER_HELP
from pytest_flopbudget.plugin.options import Settings, add_options, check_device_available
from pytest_flopbudget.plugin.stash import SETTINGS_KEY, is_xdist_worker

PLUGIN_NAME = "flopbudget-manager"

__all__ = ["FlopBudget", "flop_budget", "flop_device", "pytest_addoption", "pytest_configure"]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    settings = Settings.from_config(config)
    config.stash[SETTINGS_KEY] = settings
    if not is_xdist_worker(config):
        check_device_available(settings.device)
        if settings.prune:
            from pytest_flopbudget.plugin.collected import partial_options
            from pytest_flopbudget.reporting.commands import PRUNE_OPTION

            reason = partial_options(config)
            if reason:
                raise pytest.UsageError(
                    f"{PRUNE_OPTION} refused: {reason}; pruning needs the whole suite, so that "
                    "entries of tests that merely did not run are kept"
                )
    # the baseline, verdict and report modules load here, once configured, not at import time
    from pytest_flopbudget.reporting.baseline import BaselineError, clean_stale_temp_files, load

    if not is_xdist_worker(config):
        clean_stale_temp_files(settings.baseline_path)  # left by a run killed while writing
    try:
        baseline = load(settings.baseline_path)
    except BaselineError as error:
        raise pytest.UsageError(f"{error} (the file is left as it is: fix that line, restore the file from version "
                                "control, or move it away and run --flop-update-baseline to record a new one)") from None
    if not settings.update:
        try:
            baseline.require_content()
        except BaselineError as error:
            raise pytest.UsageError(str(error)) from None
    from pytest_flopbudget.plugin.manager import FlopBudgetPlugin, XdistHooks

    plugin = FlopBudgetPlugin(config, settings, baseline)
    config.pluginmanager.register(plugin, PLUGIN_NAME)
    from pytest_flopbudget.plugin.formulas import FormulaScope

    config.pluginmanager.register(FormulaScope(config), PLUGIN_NAME + "-formulas")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(plugin), PLUGIN_NAME + "-xdist")
