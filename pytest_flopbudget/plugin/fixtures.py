"""The ``flop_budget`` and ``flop_device`` fixtures.

The recorder keeps each measurement on the test item's stash; the manager turns them into a verdict
when the call report is made. Torch is imported by the first ``measure`` call, not before.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import pytest

from pytest_flopbudget.counting.errors import MeasurementError
from pytest_flopbudget.counting.measurement import METRICS, Measurement
from pytest_flopbudget.reporting.baseline import LABEL_SEPARATOR, Entry
from pytest_flopbudget.plugin.stash import BUDGET_KEY, MEASURED_KEY, SETTINGS_KEY
from pytest_flopbudget.reporting.verdict import Measured

# none of these imports torch (pytest loads the plugin in every run, measuring or not); the
# engine's measure() and count() are imported by their first use

if TYPE_CHECKING:
    import torch


class FlopBudgetUsageError(Exception):
    """The fixture was used in a way whose measurements could not be told apart or stored."""


class FlopBudget:
    """Measures models for one test; every measurement is recorded, the budget applies to the sum."""

    def __init__(self, item: pytest.Item, device: str, junit_properties: bool, baseline_depth: int = 6) -> None:
        self._item = item
        self._device = device
        self._junit = junit_properties
        self._depth = baseline_depth
        self._records: list[Measured] = item.stash.setdefault(MEASURED_KEY, [])

    @property
    def device(self) -> str:
        """This test's counting device: the marker's ``device=`` if given, else --flop-device."""
        return self._device

    @property
    def measurements(self) -> list[Measurement]:
        """What this test measured so far, in order."""
        return [r.measurement for r in self._records if r.measurement is not None]

    def measure(self, model: Any, inputs: Any, *, backward: bool = False, optimizer: Any = None,
                label: str | None = None, formulas: Mapping[Any, Any] | None = None,
                device: Any = None) -> Measurement:
        """Count ``model`` on ``inputs`` on this test's device and record it for this test.

        ``optimizer`` (``lambda ps: torch.optim.AdamW(ps, lr=1e-3)``) measures one steady-state
        training step instead of a forward: forward, backward and the optimizer's step.

        Give each measurement a distinct ``label`` when a test measures more than once: the baseline
        keeps one entry per label (``<node id>#<label>``). ``formulas`` adds formulas for this
        measurement only. The device is the test's (``device`` is refused with the way to choose it).
        """
        _refuse_device(device, self._device)
        self._check_label(label)
        from pytest_flopbudget.counting.measure import measure

        if isinstance(inputs, list) and _takes_one_list(model):
            raise FlopBudgetUsageError(_LIST_HINT.format(type(model).__name__))
        try:
            with _option_names(self._item):
                result = measure(model, inputs, device=self._device, backward=backward, optimizer=optimizer,
                                 formulas=formulas)
        except TypeError as error:
            if isinstance(inputs, list):
                error.add_note(f"(pytest-flopbudget: {_LIST_HINT.format(type(model).__name__)})")
            raise
        self._record(result, label)
        return result

    @contextlib.contextmanager
    def count(self, label: str | None = None, *, formulas: Mapping[Any, Any] | None = None,
              device: Any = None) -> Iterator[Any]:
        """``with flop_budget.count() as counted:`` counts whatever runs in the block (a generate
        loop, a training step with its optimizer) on this test's device and records it exactly as
        ``measure`` does: same budget, baseline entry, label rules and reports. Nothing is
        recorded when the block raises."""
        _refuse_device(device, self._device)
        self._check_label(label)
        from pytest_flopbudget.counting.block import count

        with _option_names(self._item), count(device=self._device, formulas=formulas) as counted:
            yield counted
        self._record(counted.measurement, label)

    def _record(self, result: Measurement, label: str | None) -> None:
        record = Measured(label, Entry.from_measurement(result, self._depth), result)
        self._records.append(record)
        if self._junit:
            self._item.user_properties.extend(junit_properties(record))

    def _check_label(self, label: str | None) -> None:
        if label is not None and (not isinstance(label, str) or not label or LABEL_SEPARATOR in label):
            raise FlopBudgetUsageError(
                f"label={label!r}: a label must be a non-empty string without {LABEL_SEPARATOR!r}"
            )
        if not self._records:
            return
        taken = [r.label for r in self._records]
        if label is None or None in taken:
            raise FlopBudgetUsageError(
                "flop_budget.measure() called more than once in one test: give every measurement a "
                "distinct label, e.g. flop_budget.measure(encoder, x, label='encoder'), so each has "
                "its own baseline entry (a count() block too: flop_budget.count(label='generate'))"
            )
        if label in taken:
            raise FlopBudgetUsageError(f"label={label!r} was already measured in this test; labels must be distinct")


_LIST_HINT = (
    "a list of inputs is unpacked as positional arguments, forward(*inputs); to pass one list argument, "
    "as {0}.forward(images) takes, wrap it in a tuple: measure(model, ([img],)) or "
    "measure(model, {{'images': [img]}})"
)


def _takes_one_list(model: Any) -> bool:
    """Whether a ready module's forward takes a list as its first argument (torchvision's detectors:
    ``forward(images: List[Tensor], ...)``), where unpacking a list would iterate over a tensor."""
    import inspect

    forward = getattr(model, "forward", None)
    if not callable(forward) or not hasattr(model, "parameters"):
        return False
    try:
        parameters = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return False
    if not parameters or parameters[0].kind not in (parameters[0].POSITIONAL_ONLY, parameters[0].POSITIONAL_OR_KEYWORD):
        return False
    annotation = str(parameters[0].annotation).lower()
    return annotation.startswith(("list", "typing.list", "sequence", "typing.sequence", "tuple[", "typing.tuple"))


def _refuse_device(device: Any, current: str) -> None:
    """One device per test, so its baseline entry is always compared on the same device: the
    marker chooses it, not each call."""
    if device is not None:
        raise FlopBudgetUsageError(
            f"device={device!r}: the fixture counts on the test's device ({current}); choose it for this test with "
            f"@pytest.mark.flop_budget(device={str(device)!r}) or for the run with --flop-device={device}"
        )


def effective_device(item: pytest.Item) -> str:
    """The device a test counts on: its marker's ``device=`` if given, else --flop-device."""
    budget = item.stash.get(BUDGET_KEY, None)
    if budget is not None and budget.device is not None:
        return budget.device
    return item.config.stash[SETTINGS_KEY].device


def junit_properties(record: Measured) -> list[tuple[str, object]]:
    """The JUnit XML properties of one measurement: flops, macs, params and the memory peaks in
    bytes (``flops[label]``)."""
    suffix = "" if record.label is None else f"[{record.label}]"
    props: list[tuple[str, object]] = [(f"{metric}{suffix}", getattr(record.entry, metric)) for metric in METRICS]
    props += [(f"{metric}{suffix}", getattr(record.entry, metric)) for metric in ("peak_memory", "activation_memory")
              if getattr(record.entry, metric) is not None]
    for name in ("uncounted", "estimated"):  # never silent, also in a CI test tab
        ops = getattr(record.entry, name) or {}
        if ops:
            props.append((f"{name}{suffix}", ", ".join(f"{op} x{n}" if name == "uncounted" else f"{op}: {n}"
                                                       for op, n in sorted(ops.items()))))
    return props


@contextlib.contextmanager
def _option_names(item: pytest.Item | None = None) -> Iterator[None]:
    """The engine names the device to use as ``device='cpu'``; in a test it is chosen with an option.
    Where the test's baseline entry recorded value reads (a run on cpu), it names where they were."""
    try:
        yield
    except MeasurementError as error:
        if error.use_device is not None:
            reads = _recorded_reads(item) if item is not None else []
            if reads:
                error.add_note(f"(the baseline's run read values there: {'; '.join(reads)})")
            error.add_note(f"(pytest-flopbudget: choose the device with --flop-device={error.use_device}, or for "
                           f"this test alone with @pytest.mark.flop_budget(device={error.use_device!r}))")
        raise


def _recorded_reads(item: pytest.Item) -> list[str]:
    """Where this test's baseline entries recorded value reads, with the device they were measured on."""
    from pytest_flopbudget.reporting.baseline import nodeid_of

    manager = item.config.pluginmanager.get_plugin("flopbudget-manager")
    entries = getattr(getattr(manager, "baseline", None), "entries", {})
    return [f"{entry.value_reads_text()} (on {entry.device})" for key, entry in sorted(entries.items())
            if nodeid_of(key) == item.nodeid and entry.value_dependent]


@pytest.fixture
def flop_budget(request: pytest.FixtureRequest) -> FlopBudget:
    """Measure models against this test's @pytest.mark.flop_budget and the baseline."""
    settings = request.config.stash[SETTINGS_KEY]
    return FlopBudget(request.node, effective_device(request.node), settings.junit_properties, settings.baseline_depth)


@pytest.fixture
def flop_device(request: pytest.FixtureRequest) -> torch.device:
    """This test's counting device (the marker's ``device=``, else --flop-device), to build inputs on it."""
    import torch

    return torch.device(effective_device(request.node))
