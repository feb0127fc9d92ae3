"""The plugin's hooks, grouped on one object registered in ``pytest_configure``.

Every process (the xdist controller and each worker) validates markers, reads the baseline and, in
processes that run tests, turns a test's measurements into its verdict at the end of its call phase
(a budget failure is raised there as an exception, so xfail and rerun plugins see a failure like any
other). The verdict travels on the call report. Only the controller (or the single process without
xdist) collects the verdicts from the reports, writes the baseline and the reports, and prints the
summary.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Generator

import pytest

from pytest_flopbudget.counting.devices import cuda_problem
from pytest_flopbudget.reporting.baseline import Baseline, torch_version
from pytest_flopbudget.reporting.commands import STRICT_OPTION, UPDATE_OPTION
from pytest_flopbudget.plugin.collected import CollectedTests, selected_part, selection_of, shard_of, test_id
from pytest_flopbudget.plugin.failures import FlopBudgetFailure, budget_repr, short_forward_failure
from pytest_flopbudget.plugin.fixtures import junit_properties
from pytest_flopbudget.plugin.marker import MARKER, MarkerError, misspelt_marker, parse_budget
from pytest_flopbudget.plugin.options import Settings, flop_options_given, format_fraction
from pytest_flopbudget.reporting.outcome import Ending, Outcome, finish, measured_entries
from pytest_flopbudget.reporting.report import write_file, write_terminal
from pytest_flopbudget.reporting.run import RunRecord
from pytest_flopbudget.plugin.stash import BUDGET_KEY, MEASURED_KEY, VERDICT_KEY, is_xdist_worker
from pytest_flopbudget.reporting.summary import SessionSummary
from pytest_flopbudget.reporting.verdict import FAILURE_WORDS, TestVerdict, judge

REPORT_ATTRIBUTE = "flopbudget"  # a JSON-able dict on the call report; xdist carries it to the controller
WORKER_OUTPUT = "flopbudget"  # what a worker's collection saw, sent to the controller at its end
FIXTURE = "flop_budget"

# pytest.skip / pytest.xfail inside a test are not failures: a test that measured then skipped has no row
_NOT_FAILURES = (pytest.skip.Exception, pytest.xfail.Exception)


class FlopBudgetPlugin:
    def __init__(self, config: pytest.Config, settings: Settings, baseline: Baseline) -> None:
        self.config = config
        self.settings = settings
        self.baseline = baseline
        # stepwise does the same: on an xdist worker, only the controller reports and writes
        self.is_worker = is_xdist_worker(config)
        self.verdicts: dict[str, TestVerdict] = {}
        self.collected = CollectedTests(config)
        self.crashed: list[str] = []
        self.interrupted = False  # Ctrl-C or pytest.exit, not a plugin stopping the run on purpose
        self.stopped = False  # --sw, xdist's -x: the run stopped early on purpose
        self.last_item: dict[str, str] = {}  # test id -> node id of the report its verdict came from
        self.key_of: dict[str, str] = {}  # node id -> test id, for reruns that measured nothing
        self.outcome: Outcome | None = None  # decided once, when the session ends
        self.summary: SessionSummary | None = None  # built from the outcome

    # -- every process -------------------------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        if not (self.baseline.exists or config.get_verbosity() > 0 or flop_options_given(config)):
            return []  # like the cacheprovider: quiet in repositories that do not use the plugin
        path = self.baseline.path
        try:
            shown = path.relative_to(Path(str(config.rootpath)))
        except ValueError:
            shown = path
        count = f"{len(self.baseline.entries)} entries" if self.baseline.exists else "not created yet"
        lines = [f"flopbudget: baseline {shown} ({count}), device {self.settings.device}, "
                 f"tolerance {format_fraction(self.settings.tolerance)}"]
        note = self.torch_note()
        if note:
            lines.append(f"flopbudget: note: {note}")
        return lines

    def torch_note(self) -> str | None:
        """Counts follow torch's decompositions and kernels: a baseline from another release may differ."""
        written = self.baseline.torch_version
        running = torch_version()
        if written is None or written == running:
            return None
        return (f"baseline written by torch {written}; this run uses torch {running} "
                f"(counts can change between torch releases; `{UPDATE_OPTION}` rewrites it)")

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        self.collected.seen.add(test_id(item))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.collected.collected_file(report)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collected.collection_finished(session.items)
        if self.is_worker:
            self.config.workeroutput[WORKER_OUTPUT] = self.collected.to_worker_output()  # type: ignore[attr-defined]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        """Pay torch's one-time start-up before the first test, not inside it.

        The first count in a process imports hundreds of torch modules (FakeTensorMode for meta,
        about 1.1 s): seconds that would otherwise land in the first measuring test, where
        ``--timeout`` or ``--durations`` would blame that test. Only when a collected test uses the
        fixture, so suites that measure nothing never import torch. Only the forward path is warmed
        (0.01 s on cpu): autograd's own start-up (sympy, about 0.25 s) is paid by the first test that
        runs a backward, not by every process (every xdist worker) of a forward-only suite.
        """
        if self.config.getoption("collectonly", False):
            return
        if not any(FIXTURE in getattr(item, "fixturenames", ()) for item in session.items):
            return
        try:
            import torch

            from pytest_flopbudget.counting.measure import measure

            measure(torch.nn.Linear(2, 2), torch.zeros(1, 2), device=self.settings.device)
        except Exception:  # noqa: BLE001 - a warm-up only; the tests themselves will say what is wrong
            pass

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Start every attempt clean (pytest-rerunfailures reruns the same item), then validate the
        marker before any fixture (and so any model) is built."""
        self._forget_previous_attempt(item)
        marker = item.get_closest_marker(MARKER)
        if marker is None:
            item.stash[BUDGET_KEY] = None
            misspelt = misspelt_marker(item)
            if misspelt is not None:
                pytest.fail(f"{item.nodeid}: @pytest.mark.{misspelt} is no marker: did you mean "
                            f"@pytest.mark.{MARKER}? (pytest only warns about an unknown marker without "
                            "--strict-markers, and the test would run with no budget)", pytrace=False)
            return
        try:
            budget = item.stash[BUDGET_KEY] = parse_budget(marker.args, marker.kwargs)
            problem = cuda_problem(budget.device) if budget.device is not None else None
            if problem is None:
                return
            message = (f"{item.nodeid}: @pytest.mark.{MARKER}(device={budget.device!r}): {problem}; "
                       "count this test on cpu or meta (the same counts, unless the forward reads tensor values)")
        except MarkerError as error:
            message = error.describe(item.nodeid)
        pytest.fail(message, pytrace=False)  # outside the except: no chained traceback

    def _forget_previous_attempt(self, item: pytest.Item) -> None:
        previous = item.stash.get(MEASURED_KEY, [])
        if previous and self.settings.junit_properties:
            ours = [prop for record in previous for prop in junit_properties(record)]
            verdict = item.stash.get(VERDICT_KEY, None)
            ours += _why_properties(verdict) if verdict is not None else []
            for prop in ours:
                if prop in item.user_properties:
                    item.user_properties.remove(prop)
        item.stash[MEASURED_KEY] = []
        item.stash[VERDICT_KEY] = None

    def _judge(self, item: pytest.Item) -> TestVerdict | None:
        budget = item.stash.get(BUDGET_KEY, None)
        measured = item.stash.get(MEASURED_KEY, [])
        if budget is None and not measured:
            return None
        verdict = judge(test_id(item), budget, measured, self.baseline.entries, tolerance=self.settings.tolerance,
                        strict=self.settings.strict, update=self.settings.update,
                        update_command=self.settings.update_command, known_uncounted=self.settings.known_uncounted)
        return dataclasses.replace(verdict, requested=FIXTURE in getattr(item, "fixturenames", ()))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        try:
            result = yield
        except BaseException as error:
            if isinstance(error, (Exception, pytest.fail.Exception)) and not isinstance(error, _NOT_FAILURES):
                verdict = self._judge(item)
                if verdict is not None and verdict.entries:  # measured, then failed on its own
                    item.stash[VERDICT_KEY] = dataclasses.replace(verdict, test_failed=True)
            raise
        verdict = self._judge(item)
        item.stash[VERDICT_KEY] = verdict
        if verdict is not None and verdict.failing:
            __tracebackhide__ = True
            raise FlopBudgetFailure(verdict.long_repr())
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if call.when != "call":
            return report
        verdict = item.stash.get(VERDICT_KEY, None)
        excinfo = call.excinfo
        ours = excinfo is not None and isinstance(excinfo.value, FlopBudgetFailure)
        if excinfo is not None and not ours and report.failed:
            short = short_forward_failure(item, excinfo)
            if short is not None:
                report.longrepr = short
        if verdict is None:
            return report
        if ours and report.skipped:  # xfail: the expected failure happened
            verdict = dataclasses.replace(verdict, xfail=True)
        setattr(report, REPORT_ATTRIBUTE, {**verdict.to_dict(), "status": verdict.status,
                                           "failing": verdict.failing and not verdict.xfail})
        if ours and report.failed:
            assert excinfo is not None
            message = verdict.long_repr()
            report.longrepr = budget_repr(excinfo, item, message)
            report.sections.append(("flop budget", verdict.section()))
        elif any(e.uncounted_lines() for e in verdict.entries):  # a pass says what it could not count (-rA)
            report.sections.append(("flop budget", verdict.section()))
        if self.settings.junit_properties and verdict.failing:
            # junitxml reads the teardown report's properties, which are copied from the item
            item.user_properties.extend(_why_properties(verdict))
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config) -> Any:
        data = getattr(report, REPORT_ATTRIBUTE, None)
        if report.when == "call" and report.failed and isinstance(data, dict) and data.get("failing"):
            word = FAILURE_WORDS.get(data.get("status", ""), "FLOP BUDGET")
            return "failed", "B", (word, {"red": True})
        return None

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Tell Ctrl-C from a plugin that stops the run on purpose: --sw raises pytest's
        Session.Interrupted, xdist's -x its own Interrupted (both KeyboardInterrupt subclasses)."""
        error = excinfo.value
        deliberate = (type(error) is not KeyboardInterrupt and type(error).__name__ == "Interrupted"
                      and "keyboard-interrupt" not in str(error))
        if deliberate:
            self.stopped = True
        else:
            self.interrupted = True

    # -- controller ----------------------------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.is_worker:
            return
        if report.when not in ("setup", "call", "teardown"):
            self.crashed.append(report.nodeid)  # xdist reports a crashed worker's test with when="???"
            return
        if report.when != "call":
            return
        data = getattr(report, REPORT_ATTRIBUTE, None)
        if not isinstance(data, dict):
            key = self.key_of.get(report.nodeid)
            if key is not None and self.last_item.get(key) == report.nodeid:
                self.verdicts.pop(key, None)  # an earlier attempt measured, this rerun did not: nothing to judge
                del self.last_item[key]
            if report.passed:
                self.collected.ran_clean.add(report.nodeid)
            return
        verdict = TestVerdict.from_dict(data)
        if report.failed and not verdict.failing and not verdict.test_failed:
            # failed, but not by the plugin nor in the test's call (pytest 9's subtests fail the report
            # after it was made): a failed test never writes its entry, however its failure is reported
            verdict = dataclasses.replace(verdict, test_failed=True)
        key = verdict.nodeid  # the test's own id: pytest-repeat's repetitions share it
        previous = self.verdicts.get(key)
        rerun = self.last_item.get(key) == report.nodeid  # pytest-rerunfailures: the last attempt counts
        if previous is None or rerun or not previous.failing or verdict.failing:  # a failing repetition stays
            self.verdicts[key] = verdict
        self.last_item[key] = report.nodeid
        self.key_of[report.nodeid] = key
        if not verdict.test_failed:
            self.collected.ran_clean.add(key)

    def worker_down(self, node: Any, error: Any) -> None:
        """An xdist worker finished (see XdistHooks): what its collection saw, or that it crashed."""
        output = getattr(node, "workeroutput", None) or {}
        if isinstance(output.get(WORKER_OUTPUT), dict):
            self.collected.add_worker_output(output[WORKER_OUTPUT])
        if error:
            self.crashed.append(f"worker {getattr(getattr(node, 'gateway', None), 'id', node)}: {error}")

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Apply the session's outcome (reporting.outcome.finish): exit status, summary, report."""
        if self.is_worker:
            return
        partial = self.collected.partial_at_end(session, stopped=self.stopped)
        measured = measured_entries(self.verdicts.values())
        ending = Ending(
            self.baseline, measured, tuple(self.collected.stale(self.baseline.entries, measured, full=partial is None)),
            partial, update=self.settings.update, prune=self.settings.prune, strict=self.settings.strict,
            exit_status=int(session.exitstatus), crashed=tuple(self.crashed),
            stopped_on_purpose=self.stopped and not self.interrupted,
        )
        self.outcome = finish(ending)
        if self.outcome.exit_status != session.exitstatus:
            session.exitstatus = pytest.ExitCode(self.outcome.exit_status)
        self.summary = SessionSummary.of(
            self.verdicts.values(), self.outcome, baseline_path=self.baseline.path, device=self.settings.device,
            tolerance=format_fraction(self.settings.tolerance), update=self.settings.update,
            prune=self.settings.prune, torch_note=self.torch_note(), update_command=self.settings.update_command,
            run=self._run_record(session, partial) if self.settings.report_paths else None,
        )
        for path in self.settings.report_paths:  # written whenever asked for, even when nothing was measured
            write_file(path, self.summary, self.verdicts.values())

    def _run_record(self, session: pytest.Session, partial: str | None) -> RunRecord:
        """What this run covered, for the JSON report (``flopbudget merge`` joins the shards' records)."""
        collected = self.collected
        assert self.outcome is not None
        return RunRecord(
            shard=shard_of(self.config), selection=selection_of(self.config), torch=torch_version(),
            device=self.settings.device, exit_status=self.outcome.exit_status, partial=partial,
            incomplete=collected.incomplete_at_end(session, stopped=self.stopped),
            collected=tuple(sorted(collected.seen)), selected=tuple(sorted(collected.selected or ())),
            ran=tuple(sorted(collected.ran_clean)), absent=tuple(collected.absent(self.baseline.entries)),
            verdicts=tuple(self.verdicts.values()), selects=selected_part(self.config),
        )

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter, exitstatus: int,
                                config: pytest.Config) -> None:
        if self.outcome is not None:
            _count_in_final_line(terminalreporter, self.outcome)
        if self.summary is None or self.summary.empty:
            return
        width = config.get_terminal_writer().fullwidth
        write_terminal(terminalreporter, self.summary, config.get_verbosity(), width)


def _count_in_final_line(terminalreporter: pytest.TerminalReporter, outcome: Outcome) -> None:
    """What fails the run without failing a test, in pytest's last line: "4 passed, 1 stale
    (--flop-strict)" instead of a green "4 passed" over exit status 1. pytest shows every key of
    its stats there, counted, and colours the line yellow for a key it does not know."""
    if outcome.stale_failed:
        key = f"stale ({STRICT_OPTION})"
        terminalreporter.stats.setdefault(key, []).extend(_Counted(name, "stale") for name in outcome.stale)
    if outcome.write_failed:
        terminalreporter.stats.setdefault("baseline not written", []).append(_Counted("", "not written"))


@dataclasses.dataclass
class _Counted:
    """One entry of pytest's stats that is not a test report: counted in the last line; for other
    plugins that walk every key of the stats (hypothesis reads each report's ``__dict__``), it has a
    report's common attributes and belongs to no test phase."""

    nodeid: str
    outcome: str
    when: str = "session"
    longrepr: None = None
    duration: float = 0.0
    count_towards_summary: bool = True
    sections: tuple = ()
    user_properties: tuple = ()


def _why_properties(verdict: TestVerdict) -> list[tuple[str, object]]:
    """Why a test failed, for --junit-xml readers (CI test tabs) that never see the log."""
    props: list[tuple[str, object]] = []
    if verdict.over_budget:
        props.append(("flop_budget_exceeded", "; ".join(c.describe() for c in verdict.over_budget)))
    grown = [g.describe() for e in verdict.entries if e.failing for g in e.grown]
    if grown:
        props.append(("flop_grown", "; ".join(grown)))
    return props


class XdistHooks:
    """Hooks that exist only with pytest-xdist (registered only then, as pytest-randomly does)."""

    def __init__(self, plugin: FlopBudgetPlugin) -> None:
        self.plugin = plugin

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        self.plugin.worker_down(node, error)


__all__ = ["FlopBudgetFailure", "FlopBudgetPlugin", "XdistHooks"]
