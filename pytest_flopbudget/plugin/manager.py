"""The plugin's hooks, grouped on one object registered in ``pytest_configure``.

Every process (the xdist controller and each worker) validates markers, reads the baseline and, in
processes that run tests, turns a test's measurements into its verdict on the call report. Only the
controller (or the single process without xdist) collects the verdicts from the reports, writes the
baseline and the reports, and prints the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Generator

import pytest

from pytest_flopbudget.plugin import report as reporting
from pytest_flopbudget.plugin.baseline import Baseline, BaselineError, Entry, nodeid_of, update
from pytest_flopbudget.plugin.marker import MARKER, MarkerError, parse_budget
from pytest_flopbudget.plugin.options import Settings, format_fraction
from pytest_flopbudget.plugin.scope import RunScope
from pytest_flopbudget.plugin.state import BUDGET_KEY, MEASURED_KEY
from pytest_flopbudget.plugin.verdict import TestVerdict, judge

REPORT_ATTRIBUTE = "flopbudget"  # a JSON-able dict on the call report; xdist carries it to the controller

STATUS_WORDS = {
    "over budget": "OVER BUDGET",
    "regressed": "FLOPS REGRESSED",
    "unmeasured": "NOT MEASURED",
    "new": "NO BASELINE",
    "improved": "FLOPS IMPROVED",
    "device mismatch": "DEVICE MISMATCH",
}


class FlopBudgetPlugin:
    def __init__(self, config: pytest.Config, settings: Settings, baseline: Baseline) -> None:
        self.config = config
        self.settings = settings
        self.baseline = baseline
        # stepwise does the same: on an xdist worker, only the controller reports and writes
        self.is_worker = hasattr(config, "workerinput")
        self.verdicts: dict[str, TestVerdict] = {}
        self.scope = RunScope(config)
        self.crashed: list[str] = []
        self.stale: list[str] = []
        self.notes: list[str] = []
        self.stale_failed = False
        self.write_failed = False

    # -- every process -------------------------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> str:
        path = self.baseline.path
        try:
            shown = path.relative_to(Path(str(config.rootpath)))
        except ValueError:
            shown = path
        count = f"{len(self.baseline.entries)} entries" if self.baseline.exists else "not created yet"
        return (f"flopbudget: baseline {shown} ({count}), device {self.settings.device}, "
                f"tolerance {format_fraction(self.settings.tolerance)}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Validate the marker before any fixture (and so any model) is built."""
        marker = item.get_closest_marker(MARKER)
        if marker is None:
            item.stash[BUDGET_KEY] = None
            return
        try:
            item.stash[BUDGET_KEY] = parse_budget(marker.args, marker.kwargs)
            return
        except MarkerError as error:
            message = error.describe(item.nodeid)
        pytest.fail(message, pytrace=False)  # outside the except: no chained traceback

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if call.when != "call" or not report.passed:
            return report
        budget = item.stash.get(BUDGET_KEY, None)
        measured = item.stash.get(MEASURED_KEY, [])
        if budget is None and not measured:
            return report
        verdict = judge(item.nodeid, budget, measured, self.baseline.entries, tolerance=self.settings.tolerance,
                        strict=self.settings.strict, update=self.settings.update)
        setattr(report, REPORT_ATTRIBUTE, {**verdict.to_dict(), "status": verdict.status, "failing": verdict.failing})
        if verdict.failing:
            report.outcome = "failed"
            report.longrepr = verdict.long_repr()
            report.sections.append(("flop budget", verdict.section()))
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config) -> Any:
        data = getattr(report, REPORT_ATTRIBUTE, None)
        if report.when == "call" and report.failed and isinstance(data, dict) and data.get("failing"):
            word = STATUS_WORDS.get(data.get("status", ""), "FLOP BUDGET")
            return "failed", "B", (word, {"red": True})
        return None

    # -- controller ----------------------------------------------------------------------------

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.scope.collected.update(item.nodeid for item in session.items)

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.scope.deselected += len(items)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.scope.collection_errors += 1
        if not report.passed:
            # tests under a module that failed or skipped collection are not gone, just not known
            self.scope.uncertain.add(report.nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.is_worker:
            return
        if report.when not in ("setup", "call", "teardown"):
            self.crashed.append(report.nodeid)  # xdist reports a crashed worker's test with when="???"
            return
        if report.when != "call":
            return
        data = getattr(report, REPORT_ATTRIBUTE, None)
        if isinstance(data, dict):
            self.verdicts[report.nodeid] = TestVerdict.from_dict(data)
            self.scope.ran_clean.add(report.nodeid)
        elif report.passed:
            self.scope.ran_clean.add(report.nodeid)

    def measured_entries(self) -> dict[str, Entry]:
        return {entry.key: entry.measured for verdict in self.verdicts.values() for entry in verdict.entries}

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            return
        full = self.scope.is_full(session)
        measured = self.measured_entries()
        self.stale = self.scope.stale(self.baseline.entries, measured, full=full)
        pruned: list[str] = []
        if self.settings.prune and not full:
            self.notes.append(f"--flop-prune-baseline refused: this run was partial ({self.scope.partial_reason}); "
                              "run the whole suite to prune")
        elif self.settings.prune:
            pruned = list(self.stale)
        if self.settings.update or self.settings.prune:
            self._write_baseline(measured, pruned, exitstatus)
            if self.write_failed and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.settings.strict and self.stale and not pruned:
            self.stale_failed = True
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.settings.report_path is not None and (self.verdicts or self.stale):
            reporting.write_file(self.settings.report_path, self)

    def _write_baseline(self, measured: dict[str, Entry], pruned: list[str], exitstatus: int) -> None:
        path = self.baseline.path
        if self.crashed:
            self.notes.append(f"baseline {path} not written: a worker crashed ({', '.join(self.crashed)})")
            return
        if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
            self.notes.append(f"baseline {path} not written: the run was interrupted or errored")
            return
        try:
            # merged into the file as it is now, under a lock: a concurrent update's entries are kept
            written, count = update(path, measured if self.settings.update else {}, remove=pruned)
        except (BaselineError, OSError) as error:
            self.write_failed = True
            self.notes.append(f"baseline {path} not written: {error}")
            return
        if pruned:
            self.notes.append(f"pruned {len(pruned)} stale entr{'y' if len(pruned) == 1 else 'ies'}: {', '.join(pruned)}")
            self.stale = []
        self.notes.append(f"baseline {'written' if written else 'unchanged'}: {path} ({count} entries)")

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter, exitstatus: int,
                                config: pytest.Config) -> None:
        if self.is_worker or not (self.verdicts or self.stale or self.notes):
            return
        reporting.write_terminal(terminalreporter, self, config.get_verbosity())


class XdistHooks:
    """Hooks that exist only with pytest-xdist (registered only then, as pytest-randomly does)."""

    def __init__(self, plugin: FlopBudgetPlugin) -> None:
        self.plugin = plugin

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.plugin.scope.collected.update(ids)

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        if error:
            self.plugin.crashed.append(f"worker {getattr(getattr(node, 'gateway', None), 'id', node)}: {error}")


__all__ = ["FlopBudgetPlugin", "XdistHooks", "nodeid_of"]
