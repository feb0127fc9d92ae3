"""Verdicts: a test's measurements against its budget and the baseline.

Pure data and pure functions, no pytest and no torch, so they are unit-tested with plain numbers and
travel from xdist workers to the controller as JSON (``to_dict``/``from_dict``). Each verdict knows
how to describe itself: a short ``long_repr`` for the failure line and a ``section`` with details.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from pytest_flopbudget.counting.measurement import METRICS, PHASE_FIELDS, Measurement, ModuleCost
from pytest_flopbudget.counting.names import input_dependent, module_order
from pytest_flopbudget.counting.text import MEMORY_METRICS, format_count, human_bytes, percent
from pytest_flopbudget.reporting.baseline import Entry, entry_key
from pytest_flopbudget.reporting.commands import UPDATE_HINT
from pytest_flopbudget.reporting.repeats import group_names

if TYPE_CHECKING:  # the plugin's marker values; only their fields are read here
    from pytest_flopbudget.plugin.marker import Budget, Limit

MEASURE_HINT = (
    "call `flop_budget.measure(model, inputs)` (model: an nn.Module or a factory; inputs: a tensor, "
    "tuple, dict or factory) or count any code with `with flop_budget.count():`"
)
FIXTURE_HINT = "request the `flop_budget` fixture (add it to the test's arguments), then "


def measure_hint(requested: bool) -> str:
    """How to measure; asks for the fixture only when the test did not request it."""
    return MEASURE_HINT if requested else FIXTURE_HINT + MEASURE_HINT

# row verdicts, worst first; the summary counts rows by these words
OVER_BUDGET, REGRESSED, UNMEASURED, DEVICE_MISMATCH, NEW, IMPROVED, OK = (
    "over budget", "regressed", "unmeasured", "device mismatch", "new", "improved", "ok",
)
UNCOUNTED = "uncounted"  # --flop-strict and an op with no formula that flop_known_uncounted does not list
# what pytest's status line says of a test the plugin fails, by its verdict
FAILURE_WORDS = {
    OVER_BUDGET: "OVER BUDGET",
    REGRESSED: "FLOPS REGRESSED",
    UNMEASURED: "NOT MEASURED",
    NEW: "NO BASELINE",
    IMPROVED: "FLOPS IMPROVED",
    DEVICE_MISMATCH: "DEVICE MISMATCH",
    UNCOUNTED: "UNCOUNTED OPS",
}
KNOWN_UNCOUNTED_INI = "flop_known_uncounted"


def change(new: int, old: int) -> float | None:
    """Relative change, None when there is nothing to compare with."""
    if old == 0:
        return None if new == 0 else float("inf")
    return (new - old) / old


@dataclass(frozen=True)
class ModuleChange:
    """A module whose counts grew against the baseline (or that is new); ``repeat`` identical
    layers grouped under one name such as ``layers.[0-5].mlp.fc1``."""

    name: str
    type: str
    old: Mapping[str, int]
    new: Mapping[str, int]
    repeat: int = 1
    own: Mapping[str, int] | None = None  # the growth of its own ops, children excluded (None: not known)

    def deltas(self) -> dict[str, int]:
        """Growth per metric; memory (bytes at the peak) only where both sides recorded it."""
        metrics = METRICS + (("memory",) if "memory" in self.old and "memory" in self.new else ())
        return {m: self.new.get(m, 0) - self.old.get(m, 0) for m in metrics}

    def describe(self) -> str:
        parts = []
        for metric, delta in self.deltas().items():
            if delta <= 0:
                continue
            before, after = self.old.get(metric, 0), self.new.get(metric, 0)
            if before == 0:
                parts.append(f"{metric} {amount(metric, after)} (new work; none in the baseline)"
                             if metric != "memory" else f"memory at the peak {amount(metric, after)} (none before)")
                continue
            # the phase split belongs to the row's whole change, so it comes right after it
            text = (f"{'memory at the peak' if metric == 'memory' else metric} {amount(metric, before)} -> "
                    f"{amount(metric, after)} ({percent(change(after, before))})"
                    + phase_growth(metric, self.old, self.new))
            own = self.own.get(metric) if self.own is not None else None
            if own is not None and own != delta:  # its children grew too: the row is inclusive
                text += f", including its children; its own ops {own:+,}" if metric != "memory" else ""
            parts.append(text)
        each = ", each" if self.repeat > 1 else ""  # the numbers are one layer's, not the group's sum
        return f"{self.label()}{each}: " + ", ".join(parts)

    def label(self) -> str:
        times = f" x{self.repeat}" if self.repeat > 1 else ""
        return f"{self.name} ({self.type}){times}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "old": dict(self.old), "new": dict(self.new),
                "repeat": self.repeat, "own": None if self.own is None else dict(self.own)}


def phase_growth(metric: str, old: Mapping[str, int], new: Mapping[str, int]) -> str:
    """' [forward +1,024, backward +2,048]': where a change of flops or macs happened, for rows that
    ran a backward on both sides; where only the new side did, what its backward adds."""
    if metric not in ("flops", "macs") or not new.get(f"backward_{metric}"):
        return ""
    if not old.get(f"backward_{metric}"):
        return (f" [this run's backward: {new[f'backward_{metric}']:,}; the baseline records none (it measured "
                "the forward only, or was written before the passes were split)]")
    deltas = {}
    for phase in ("backward", "optimizer"):
        deltas[phase] = new.get(f"{phase}_{metric}", 0) - old.get(f"{phase}_{metric}", 0)
    forward = new.get(metric, 0) - old.get(metric, 0) - deltas["backward"] - deltas["optimizer"]
    parts = [f"{phase} {delta:+,}" for phase, delta in
             (("forward", forward), ("backward", deltas["backward"]), ("optimizer step", deltas["optimizer"])) if delta]
    return f" [{', '.join(parts)}]" if parts else ""


def change_line(metric: str, measured: Entry, baseline: Entry, word: str = "regressed", tolerance: str = "") -> str:
    """'flops regressed: 1,200 vs baseline 1,000 (+20.0%, tolerance 0) [forward +66, backward +134]',
    as the failure, the reports and the job summary all say it."""
    new, old = getattr(measured, metric), getattr(baseline, metric)
    return (f"{metric} {word}: {amount(metric, new)} vs baseline {amount(metric, old)} "
            f"({percent(change(new, old))}{', tolerance ' + tolerance if tolerance else ''})"
            + phase_growth(metric, baseline.counts(), measured.counts()))


def amount(metric: str, value: int) -> str:
    """A number as messages show it: bytes in binary units (an entry's memory peaks, a module's
    bytes at the peak), counts with thousands separators."""
    return human_bytes(value) if metric == "memory" or metric in MEMORY_METRICS else f"{value:,}"


def memory_compared(old: Entry, new: Entry) -> bool:
    """Whether both entries recorded memory (a format-1 entry did not: never judged)."""
    return old.peak_memory is not None and new.peak_memory is not None


def grown_modules(old: Entry, new: Entry, order: Sequence[str] = METRICS, *,
                  memory: bool = False) -> tuple[ModuleChange, ...]:
    """The deepest modules that account for a growth, repeated layers grouped, largest first.

    A grown module is named when its own work changed (its growth is not the sum of its children's,
    e.g. a new op in its forward) or when no child below it is known (a leaf at the baseline depth);
    otherwise the children that grew are named instead. A module the baseline does not have is
    named once, whole (a new layer, not each of its parts). Identical changes in consecutive layers
    (``layers.0.mlp`` ... ``layers.5.mlp``) are one line: ``layers.[0-5].mlp (MLP) x6``. With
    ``memory`` (a memory peak regressed), modules holding more bytes at the peak are named too.
    """
    names = set(old.modules) | set(new.modules)
    memory = memory and memory_compared(old, new)
    metrics = METRICS + (("memory",) if memory else ())
    order = tuple("memory" if m in MEMORY_METRICS else m for m in order) + tuple(m for m in metrics if m not in order)
    order = tuple(dict.fromkeys(m for m in order if m in metrics))
    counts = {name: (_counts(old.modules.get(name), memory), _counts(new.modules.get(name), memory)) for name in names}
    deltas = {name: {m: after.get(m, 0) - before.get(m, 0) for m in metrics}
              for name, (before, after) in counts.items()}
    children: dict[str, list[str]] = {}
    for name in names:
        parent = name.rpartition(".")[0]
        if parent in names:
            children.setdefault(parent, []).append(name)
    named = []
    weight: dict[str, dict[str, int]] = {}  # what a named module itself adds: its own ops' growth
    for name in names:
        delta = deltas[name]
        if not any(d > 0 for d in delta.values()):
            continue
        if name not in old.modules:
            # a new module is named once, with all its work; what runs inside it is part of it
            parent = name.rpartition(".")[0]
            if parent in names and parent not in old.modules:
                continue
            named.append(name)
            weight[name] = delta
            continue
        below = children.get(name, [])
        own = {m: delta[m] - sum(deltas[c][m] for c in below) for m in metrics}
        if not below or any(own[m] != 0 for m in metrics if delta[m] > 0):
            named.append(name)
            weight[name] = own if below else delta

    def kind(name: str) -> str:
        before, after = old.modules.get(name), new.modules.get(name)
        return (after or before).type  # type: ignore[union-attr]

    grouped = []
    for label, members in group_names(sorted(named, key=module_order), key=lambda n: (kind(n), counts[n])):
        before, after = counts[members[0]]
        size = tuple(-weight[members[0]][m] * len(members) for m in order)
        grouped.append((size, module_order(label),
                        ModuleChange(label, kind(members[0]), before, after, len(members), weight[members[0]])))
    grouped.sort(key=lambda item: item[:2])
    return tuple(change for _, _, change in grouped)


def _counts(module: ModuleCost | None, memory: bool = False) -> dict[str, int]:
    if module is None:
        return {}
    counts = module.counts()
    counts.update((name, getattr(module, name)) for name in PHASE_FIELDS if getattr(module, name))
    if memory:
        counts["memory"] = module.memory or 0
    return counts


@dataclass(frozen=True)
class EntryVerdict:
    """One measurement against its baseline entry."""

    key: str
    label: str | None
    measured: Entry
    baseline: Entry | None
    status: str  # ok, regressed, improved or new
    failing: bool
    grown: tuple[ModuleChange, ...] = ()
    regressed_metrics: tuple[str, ...] = ()
    # uncounted ops the baseline entry did not have (only when the entry recorded its uncounted ops)
    new_uncounted: tuple[str, ...] = ()
    # uncounted ops that flop_known_uncounted does not accept, and whether they fail (--flop-strict)
    unaccepted: tuple[str, ...] = ()
    uncounted_failing: bool = False

    def uncounted_lines(self) -> list[str]:
        """The ops this measurement could not count, and the estimated ones: never left unsaid."""
        return uncounted_lines(self.measured, self.new_uncounted, self.unaccepted, self.uncounted_failing)

    def largest_change(self) -> tuple[str, float] | None:
        """The metric that moved most against the baseline, signed."""
        if self.baseline is None:
            return None
        moves = [(m, change(getattr(self.measured, m), getattr(self.baseline, m)))
                 for m in compared_metrics(self.measured, self.baseline)]
        moved = [(m, c) for m, c in moves if c]
        if not moved:
            return ("flops", 0.0)
        return max(moved, key=lambda mc: abs(mc[1]))  # type: ignore[arg-type]

    def change_text(self) -> str:
        moved = self.largest_change()
        if moved is None:
            return "new"
        metric, value = moved
        return "=" if value == 0 else f"{percent(value)} {metric}"


def uncounted_lines(measured: Entry, new: Sequence[str] = (), unaccepted: Sequence[str] = (),
                    failing: bool = False) -> list[str]:
    """'uncounted (no formula, counted as 0 FLOPs): mylib.fused x2 (new since the baseline)', and
    what to do; 'estimated: ...' with each reason."""
    lines = []
    uncounted = measured.uncounted or {}
    if uncounted:
        ops = ", ".join(f"{op} x{calls}" + (" (new since the baseline)" if op in new else "")
                        + ("" if op in unaccepted else " (accepted: flop_known_uncounted)")
                        for op, calls in sorted(uncounted.items()))
        lines.append(f"uncounted (no formula, counted as 0 FLOPs): {ops}")
        if unaccepted:
            lines.append("  count it with pytest_flopbudget.register_formula(op, formula), or accept it by listing "
                         f"it under the ini option {KNOWN_UNCOUNTED_INI}"
                         + (" (--flop-strict fails unaccepted uncounted ops)" if failing else ""))
    for op, reason in sorted((measured.estimated or {}).items()):
        lines.append(f"estimated: {op}: {reason}")
    return lines


def judge_entry(key: str, label: str | None, measured: Entry, baseline: Entry | None,
                tolerance: Fraction, *, strict: bool, update: bool,
                known_uncounted: frozenset[str] = frozenset()) -> EntryVerdict:
    """Above baseline x (1 + tolerance) regresses; below it improves; no entry is new.

    Regressions fail unless the run updates the baseline; under --flop-strict, new entries,
    improvements beyond the tolerance and uncounted ops not in ``known_uncounted`` fail too
    (outside an update run). Uncounted ops are always named; those the baseline entry did not
    have are new (an entry that never recorded them, format 1, has nothing to compare with).
    """
    verdict = _judge_counts(key, label, measured, baseline, tolerance, strict=strict, update=update)
    uncounted = measured.uncounted or {}
    unaccepted = tuple(sorted(op for op in uncounted if op not in known_uncounted))
    before = None if baseline is None else baseline.uncounted
    new = tuple(sorted(op for op in uncounted if before is not None and op not in before))
    failing = strict and not update and bool(unaccepted)
    if failing and not verdict.failing:
        verdict = replace(verdict, status=UNCOUNTED, failing=True)
    return replace(verdict, new_uncounted=new, unaccepted=unaccepted, uncounted_failing=failing)


def _judge_counts(key: str, label: str | None, measured: Entry, baseline: Entry | None,
                  tolerance: Fraction, *, strict: bool, update: bool) -> EntryVerdict:
    if baseline is None:
        return EntryVerdict(key, label, measured, None, NEW, failing=strict and not update)
    if _other_path(measured, baseline):
        return EntryVerdict(key, label, measured, baseline, DEVICE_MISMATCH, failing=strict and not update)
    metrics = compared_metrics(measured, baseline)
    regressed = tuple(m for m in metrics if getattr(measured, m) > getattr(baseline, m) * (1 + tolerance))
    if regressed:
        order = regressed + tuple(m for m in metrics if m not in regressed)
        # a count that grew names the modules whose work grew (the bytes follow from it); memory
        # alone regressing (an activation kept alive, a dtype, checkpointing removed) names the
        # modules holding more bytes at the peak
        memory_only = all(m in MEMORY_METRICS for m in regressed)
        grown = grown_modules(baseline, measured, order, memory=memory_only)
        return EntryVerdict(key, label, measured, baseline, REGRESSED, failing=not update,
                            grown=grown, regressed_metrics=regressed)
    lower = [m for m in metrics if getattr(measured, m) < getattr(baseline, m)]
    if lower:
        beyond = any(getattr(measured, m) < getattr(baseline, m) * (1 - tolerance) for m in lower)
        return EntryVerdict(key, label, measured, baseline, IMPROVED, failing=strict and beyond and not update)
    return EntryVerdict(key, label, measured, baseline, OK, failing=False)


def compared_metrics(measured: Entry, baseline: Entry) -> tuple[str, ...]:
    """The counts, and the memory peaks where both entries recorded them."""
    return METRICS + (MEMORY_METRICS if memory_compared(baseline, measured) else ())


def _other_path(measured: Entry, baseline: Entry) -> bool:
    """Whether the counts differ only because code that read values took another path on another device.

    The same model and inputs count the same on every device when nothing reads tensor values;
    when something does (transformers skipping an all-ones attention mask on cpu, which meta cannot
    look at), each device may take another path. Only the counts of the code that read may differ:
    a module that read (its subtree), the measured model's own forward ("" reads: everything), or,
    for reads outside every module (``AdamW.step()``), the work outside every module. Any other
    difference, and any change of parameters, is judged as usual (a regression on any pairing of
    devices)."""
    if measured.device is None or baseline.device is None or measured.device == baseline.device:
        return False
    if not (measured.value_dependent or baseline.value_dependent):
        return False
    if measured.params != baseline.params or (measured.flops, measured.macs) == (baseline.flops, baseline.macs):
        return False
    return not unexplained_by_reads(measured, baseline)


def unexplained_by_reads(measured: Entry, baseline: Entry) -> list[str]:
    """Places whose own flops or macs changed without having read values (``""``: outside every module)."""
    reads = set(measured.value_reads) | set(baseline.value_reads)
    if "" in reads:
        return []  # the measured model's own forward decides every path below it
    sites = any("(" in place for place in reads)  # outside every module: an optimizer's step, a user's line
    names = set(measured.modules) | set(baseline.modules)
    children: dict[str, list[str]] = {}
    for name in names:
        children.setdefault(name.rpartition(".")[0] if "." in name else "", []).append(name)

    def delta(name: str) -> tuple[int, int]:
        new, old = _counts(measured.modules.get(name)), _counts(baseline.modules.get(name))
        return (new.get("flops", 0) - old.get("flops", 0), new.get("macs", 0) - old.get("macs", 0))

    def explained(name: str) -> bool:
        if any(name == r or name.startswith(r + ".") for r in reads):
            return True  # a module that read, or below one
        return not children.get(name) and any(r.startswith(name + ".") for r in reads)  # read below the depth kept

    unexplained = []
    for name in sorted(names, key=module_order):
        if explained(name):
            continue
        own = [d - sum(delta(c)[i] for c in children.get(name, [])) for i, d in enumerate(delta(name))]
        if any(own):
            unexplained.append(name)
    outside = [(measured.flops - baseline.flops) - sum(delta(c)[0] for c in children.get("", [])),
               (measured.macs - baseline.macs) - sum(delta(c)[1] for c in children.get("", []))]
    if any(outside) and not sites:
        unexplained.insert(0, "")
    return unexplained


def value_read_hint(entry: EntryVerdict) -> list[str]:
    """When either side read values, a changed count may come from the values, not the code."""
    reads = [f"{e.value_reads_text()} (on {e.device})" if e.device else e.value_reads_text()
             for e in (entry.measured, entry.baseline) if e is not None and input_dependent(e.value_reads)]
    if not reads:
        return []
    return [f"  the code read tensor values on the host: {'; '.join(dict.fromkeys(reads))}; its path, and so this "
            "count, can change with the input values: make them deterministic (torch.ones, torch.arange, a fixed "
            "tensor) or draw them from a seeded generator (torch.randn(..., generator=torch.Generator().manual_seed(0)))"]


def describe_other_path(entry: EntryVerdict, update_command: str = UPDATE_HINT) -> list[str]:
    """Why a count from another device is not compared, and what to do about it."""
    assert entry.baseline is not None
    new, old = entry.measured, entry.baseline
    reads = [f"on {e.device}: {e.value_reads_text()}" for e in (new, old) if e.value_dependent]
    return [
        f"measured on {new.device}, the baseline on {old.device}, and the forward read tensor "
        f"values on the host ({'; '.join(reads)}), so each device may take another path: flops {new.flops:,} vs "
        f"{old.flops:,} ({percent(change(new.flops, old.flops))}) is not judged as a regression",
        f"  measure on the baseline's device (--flop-device={old.device}), or give inputs whose values take the "
        f"intended path on every device (e.g. an attention mask with padding), then `{update_command}`",
    ]


@dataclass(frozen=True)
class BudgetCheck:
    """One limit of the marker against the sum of the test's measurements."""

    argument: str
    metric: str
    limit: Fraction
    measured: int

    @property
    def over(self) -> bool:
        return self.measured > self.limit

    @property
    def used(self) -> float:
        return float(Fraction(self.measured) / self.limit)

    def describe(self) -> str:
        """The one sentence for a limit: the failure line, the report section, the JUnit property
        and the reports' reasons all print it."""
        sign = ">" if self.over else "<="
        if self.metric in MEMORY_METRICS:
            measured = f"{self.metric} {human_bytes(self.measured)} ({self.measured:,} bytes)"
        else:
            readable = format_count(self.measured, self.metric)
            readable = "" if readable in (f"{self.measured:,}", str(self.measured)) else f" ({readable})"
            measured = f"{self.measured:,} {self.metric}{readable}"
        return (f"{self.argument}: {measured} {sign} limit {format_count(self.limit, self.metric)} "
                f"({percent(self.used, signed=False)} of budget, {percent(self.used - 1)})")


@dataclass(frozen=True)
class TestVerdict:
    """Everything the plugin decided about one test; travels to the xdist controller as a dict."""

    nodeid: str
    marked: bool
    checks: tuple[BudgetCheck, ...] = ()
    entries: tuple[EntryVerdict, ...] = ()
    tolerance: Fraction = Fraction(0)
    update: bool = False
    # the test failed on its own after measuring: shown, never judged or recorded
    test_failed: bool = False
    # the budget failure was expected (@pytest.mark.xfail): shown, does not fail the run
    xfail: bool = False
    # the command that accepts the counts, with the options of this run that decide what is written
    update_command: str = UPDATE_HINT
    # the test requested the flop_budget fixture (a hint never asks for it again)
    requested: bool = True
    __test__ = False  # not a pytest test class, despite the name

    @property
    def unmeasured(self) -> bool:
        return self.marked and not self.entries

    @property
    def over_budget(self) -> tuple[BudgetCheck, ...]:
        return tuple(c for c in self.checks if c.over)

    @property
    def failing(self) -> bool:
        """Whether the plugin fails the test (before xfail has its say)."""
        if self.test_failed:
            return False
        return bool(self.over_budget) or self.unmeasured or any(e.failing for e in self.entries)

    @property
    def budget_used(self) -> float | None:
        return max((c.used for c in self.checks), default=None)

    def row_status(self, entry: EntryVerdict) -> str:
        return OVER_BUDGET if self.over_budget else entry.status

    @property
    def status(self) -> str:
        """The test's worst verdict word."""
        if self.over_budget:
            return OVER_BUDGET
        if self.unmeasured:
            return UNMEASURED
        words = [e.status for e in self.entries if e.failing] or [e.status for e in self.entries]
        for word in (REGRESSED, DEVICE_MISMATCH, NEW, IMPROVED, UNCOUNTED, OK):
            if word in words:
                return word
        return OK

    def long_repr(self) -> str:
        """The failure in a few lines: measured value, limit or baseline, change in %, and what to do.

        The test's node id is not repeated (pytest prints it above, and the short summary has
        room for the reason only); a labelled measurement is named by its label.
        """
        lines = []
        if self.unmeasured:
            lines.append(f"marked @pytest.mark.flop_budget but measured nothing: {measure_hint(self.requested)}")
        for check in self.over_budget:
            lines.append(f"over budget: {check.describe()}")
            if check.metric in MEMORY_METRICS:
                lines.extend(f"  {line}" for line in self._live_at_peak(check))
        if self.over_budget:
            names = ", ".join(dict.fromkeys(c.argument for c in self.over_budget))
            lines.append(f"  if intended, raise {names} in @pytest.mark.flop_budget(...) of this test "
                         "(the baseline does not change a budget)")
        for entry in self.entries:
            if not entry.failing:
                continue
            who = "" if entry.label is None else f"[{entry.label}] "
            if entry.status == UNCOUNTED:
                lines.extend(who + line for line in entry.uncounted_lines())
                continue
            if entry.status == NEW:
                lines.append(f"{who}no baseline entry (--flop-strict); create it with `{self.update_command}`")
                continue
            if entry.status == DEVICE_MISMATCH:
                lines.extend(describe_other_path(entry, self.update_command))
                lines.append("  (--flop-strict fails this; without it, it passes with this note)")
                continue
            assert entry.baseline is not None
            metrics = entry.regressed_metrics if entry.status == REGRESSED else METRICS
            for metric in metrics:
                new, old = getattr(entry.measured, metric), getattr(entry.baseline, metric)
                if new == old:
                    continue
                word = "regressed" if entry.status == REGRESSED else "improved beyond the tolerance (--flop-strict)"
                lines.append(who + change_line(metric, entry.measured, entry.baseline, word, f"{float(self.tolerance):g}"))
            lines.extend(value_read_hint(entry))
            if entry.status == REGRESSED:
                if entry.grown:
                    names = ", ".join(c.label() for c in entry.grown[:5])
                    more = f" and {len(entry.grown) - 5} more" if len(entry.grown) > 5 else ""
                    lines.append(f"  grown: {names}{more}")
                if self.over_budget:
                    lines.append(f"  {self.update_command} accepts the regression, not the budget")
                else:
                    lines.append(f"  if intended, accept with `{self.update_command}` and commit the baseline")
            else:
                lines.append(f"  tighten the baseline with `{self.update_command}`")
        for entry in self.entries:  # what could not be counted, also where something else failed
            if entry.status != UNCOUNTED or not entry.failing:
                who = "" if entry.label is None else f"[{entry.label}] "
                lines.extend(who + line for line in entry.uncounted_lines())
        return "\n".join(lines)

    def _live_at_peak(self, check: BudgetCheck) -> list[str]:
        """What was live at the peak that broke a memory limit: kinds first, then the modules whose
        code held the most (the deepest holders of the bytes)."""
        entry = next((e.measured for e in self.entries if getattr(e.measured, check.metric) == check.measured), None)
        if entry is None or entry.memory_at_peak is None:
            return []
        kinds = sorted(entry.memory_at_peak.items(), key=lambda kv: -kv[1])
        lines = ["live at the peak: " + ", ".join(f"{kind} {human_bytes(n)}" for kind, n in kinds)]
        held = {name: cost.memory for name, cost in entry.modules.items() if name and cost.memory}
        deepest = [n for n in held if not any(c.startswith(n + ".") and held[c] == held[n] for c in held)]
        top = sorted(deepest, key=lambda n: (-held[n], module_order(n)))[:3]
        if top:
            lines.append("held most by: " + ", ".join(
                f"{n} ({entry.modules[n].type}) {human_bytes(held[n])}" for n in top))
        return lines

    def section(self) -> str:
        """Details for the report section: every limit, every measurement, every grown module."""
        lines = []
        for check in self.checks:
            lines.append(("OVER  " if check.over else "ok    ") + check.describe())
        for entry in self.entries:
            lines.append(f"{entry.key}: {entry.status}")
            if entry.status == DEVICE_MISMATCH:
                lines.extend("  " + line for line in describe_other_path(entry, self.update_command))
            width = max(len(m) for m in METRICS + MEMORY_METRICS)
            for metric in METRICS + MEMORY_METRICS:
                new = getattr(entry.measured, metric)
                if new is None:
                    continue
                old = None if entry.baseline is None else getattr(entry.baseline, metric)
                if old is None:
                    lines.append(f"  {metric:<{width}} {new:>20,}")
                else:
                    assert entry.baseline is not None
                    lines.append(f"  {metric:<{width}} {new:>20,}  baseline {old:>20,}  {percent(change(new, old))}"
                                 + phase_growth(metric, entry.baseline.counts(), entry.measured.counts()))
            for grown in entry.grown:
                lines.append(f"  grew: {grown.describe()}")
            if entry.status in (REGRESSED, IMPROVED):
                lines.extend(value_read_hint(entry))
            lines.extend("  " + line for line in entry.uncounted_lines())
        if self.unmeasured:
            lines.append(measure_hint(self.requested))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "marked": self.marked,
            "tolerance": str(self.tolerance),
            "update": self.update,
            "checks": [{"argument": c.argument, "metric": c.metric, "limit": str(c.limit), "measured": c.measured}
                       for c in self.checks],
            "entries": [_entry_to_dict(e) for e in self.entries],
            "test_failed": self.test_failed,
            "xfail": self.xfail,
            "update_command": self.update_command,
            "requested": self.requested,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestVerdict:
        return cls(
            nodeid=data["nodeid"],
            marked=data["marked"],
            checks=tuple(BudgetCheck(c["argument"], c["metric"], Fraction(c["limit"]), int(c["measured"]))
                         for c in data["checks"]),
            entries=tuple(_entry_from_dict(e) for e in data["entries"]),
            tolerance=Fraction(data["tolerance"]),
            update=data["update"],
            test_failed=bool(data.get("test_failed", False)),
            xfail=bool(data.get("xfail", False)),
            update_command=str(data.get("update_command", UPDATE_HINT)),
            requested=bool(data.get("requested", True)),
        )


def _entry_to_dict(entry: EntryVerdict) -> dict[str, Any]:
    return {
        "key": entry.key,
        "label": entry.label,
        "measured": entry.measured.to_dict(),
        "baseline": entry.baseline.to_dict() if entry.baseline else None,
        "status": entry.status,
        "failing": entry.failing,
        "grown": [g.to_dict() for g in entry.grown],
        "regressed": list(entry.regressed_metrics),
        "new_uncounted": list(entry.new_uncounted),
        "unaccepted": list(entry.unaccepted),
        "uncounted_failing": entry.uncounted_failing,
    }


def _entry_from_dict(data: Mapping[str, Any]) -> EntryVerdict:
    return EntryVerdict(
        key=data["key"],
        label=data["label"],
        measured=Entry.from_dict(data["measured"]),
        baseline=Entry.from_dict(data["baseline"]) if data["baseline"] else None,
        status=data["status"],
        failing=data["failing"],
        grown=tuple(ModuleChange(g["name"], g["type"], g["old"], g["new"], int(g.get("repeat", 1)), g.get("own"))
                    for g in data["grown"]),
        regressed_metrics=tuple(data["regressed"]),
        new_uncounted=tuple(data.get("new_uncounted", ())),
        unaccepted=tuple(data.get("unaccepted", ())),
        uncounted_failing=bool(data.get("uncounted_failing", False)),
    )


@dataclass(frozen=True)
class Measured:
    """One measurement of a test, as the fixture recorded it: what the baseline keeps of it, and
    the whole Measurement for the test's own use (``flop_budget.measurements``)."""

    label: str | None
    entry: Entry
    measurement: Measurement | None = None


def judge(nodeid: str, budget: Budget | None, measured: Sequence[Measured], baseline: Mapping[str, Entry],
          *, tolerance: Fraction, strict: bool, update: bool, update_command: str = UPDATE_HINT,
          known_uncounted: frozenset[str] = frozenset()) -> TestVerdict:
    """The verdict of one test: the budget applies to the sum of its measurements, the baseline to each."""
    if budget is not None and budget.tolerance is not None:
        tolerance = budget.tolerance
    # a test that measured nothing fails as unmeasured, not as "0% of budget"
    checks = tuple(_check(limit, measured) for limit in (budget.limits if budget and measured else ()))
    entries = tuple(
        judge_entry(key, m.label, m.entry, baseline.get(key), tolerance, strict=strict, update=update,
                    known_uncounted=known_uncounted)
        for m in measured
        for key in [entry_key(nodeid, m.label)]
    )
    return TestVerdict(nodeid, budget is not None, checks, entries, tolerance, update, update_command=update_command)


def _check(limit: Limit, measured: Sequence[Measured]) -> BudgetCheck:
    """Counts add up over a test's measurements; memory peaks do not (the runs came one after the
    other): the largest peak is what must fit."""
    values = [getattr(m.entry, limit.metric) or 0 for m in measured]
    total = max(values) if limit.metric in MEMORY_METRICS else sum(values)
    return BudgetCheck(limit.argument, limit.metric, limit.value, total)


__all__ = ["BudgetCheck", "EntryVerdict", "Measured", "ModuleChange", "TestVerdict", "judge", "judge_entry"]
