"""The baseline file: load and validate, merge, and write atomically.

Format (version 2)::

    # pytest-flopbudget baseline ...
    format: 2
    torch: 2.13.0
    entries:
      tests/test_models.py::test_resnet:          # node id of an unlabelled measurement
        flops: 8210000000
        macs: 4110000000
        params: 25557032
        backward_flops: 5470000000                # the backward's part of flops (and backward_macs;
        optimizer_flops: 281000000                # optimizer_flops/macs: a step's), only where not 0
        device: cpu                               # where it was measured
        value_reads: {'': {aten._local_scalar_dense: 1}}  # only when the forward read values
        uncounted: {mylib.fused: 2}               # only when ops without a formula ran (0 FLOPs each)
        estimated: {torchvision.nms.default: ...} # only when a count follows a stated convention
        peak_memory: 612368384                    # bytes live at the run's peak
        activation_memory: 510312448              # the peak less what was live when the run began
        memory_at_peak: {parameters: ..., activations: ...}  # the peak by kind (non-zero kinds)
        modules:                                  # inclusive costs, depth <= flop_baseline_depth
          layer1: {type: Sequential, flops: ..., macs: ..., params: ..., backward_flops: ..., backward_macs: ...}
          layers.[0-31].mlp: {type: MLP, ...}     # identical repeated blocks, written once
        memory_modules: {lm_head: 33554432, ...}  # bytes at the peak each module's code held (non-zero ones)
      tests/test_models.py::test_pair#encoder:    # node id + "#" + label of a labelled one

Format 2 added ``uncounted``, ``estimated``, the memory fields, each module's ``memory`` and the
forward/backward split (``backward_*`` and ``optimizer_*``, entry and rows; the forward's part is the
rest). A format-1 file still loads: a field its entries lack is "not recorded" (``None``), never
judged (no op is "new" against it); the next update rewrites the file as format 2. Fields added
later slot in the same way: optional per entry, absent from older files, ``None`` when not recorded
(the split, only ever used to say where a growth happened, reads 0 and is then not shown).

Keys are sorted and nothing varies between machines (no timestamps, no hostnames), so the same
measurements always give the same bytes, whatever the order the tests ran in (xdist included).
The file is read with ``yaml.safe_load`` only; ``yaml.compose`` (which builds nodes, never objects)
gives line numbers for shape errors and finds duplicate keys, which ``safe_load`` would silently merge.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from pytest_flopbudget.counting.measurement import (
    METRICS,
    PHASE_FIELDS,
    Measurement,
    ModuleCost,
    describe_value_reads,
)
from pytest_flopbudget.counting.names import module_order
from pytest_flopbudget.reporting.commands import UPDATE_HINT
from pytest_flopbudget.reporting.repeats import RangeError, compress, expand, expand_all

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # format 1 lacks uncounted, estimated and memory: not recorded
_FORMAT_2_FIELDS = ("uncounted", "estimated", "peak_memory", "activation_memory", "memory_at_peak", "memory_modules",
                    *PHASE_FIELDS)
# deep enough for the leaf layers of transformers' decoders (model.layers.0.self_attn.q_proj is 5)
# and encoder-decoders (encoder.block.0.layer.0.SelfAttention.q is 6)
DEFAULT_BASELINE_DEPTH = 6
# the baseline file, in the rootdir (the plugin) or the current directory (flopbudget merge)
DEFAULT_BASELINE = "flop_baseline.yaml"
# a labelled measurement's key is "<node id>#<label>"
LABEL_SEPARATOR = "#"
_HEADER = (
    "# pytest-flopbudget baseline: exact FLOPs, MACs and parameters per test (see docs/plugin.md).\n"
    f"# Review changes like code; regenerate with `{UPDATE_HINT}`.\n"
)


class BaselineError(Exception):
    """The baseline file cannot be used; the message names the file and, where known, the line."""


def entry_key(nodeid: str, label: str | None) -> str:
    """Key of one measurement: the node id, plus "#label" for labelled measurements."""
    return nodeid if label is None else f"{nodeid}{LABEL_SEPARATOR}{label}"


def nodeid_of(key: str) -> str:
    """The test a key belongs to (labels never contain the separator; node ids may, so split right)."""
    return key.rsplit(LABEL_SEPARATOR, 1)[0] if LABEL_SEPARATOR in key else key


@dataclass(frozen=True)
class Entry:
    """The exact counts of one measurement, where it was measured, where its forward read values
    on the host, and its modules down to the baseline depth to name what grew."""

    flops: int
    macs: int
    params: int
    modules: Mapping[str, ModuleCost] = field(default_factory=dict)
    device: str | None = None
    value_reads: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # op -> calls with no formula (counted as 0); None: not recorded (a format-1 entry)
    uncounted: Mapping[str, int] | None = field(default_factory=dict)
    # op -> why its count follows a stated convention; None: not recorded (a format-1 entry)
    estimated: Mapping[str, str] | None = field(default_factory=dict)
    # bytes at the memory peak, and that less what was live at entry; None: not recorded
    peak_memory: int | None = None
    activation_memory: int | None = None
    # the peak by kind (parameters, gradients, activations...), non-zero kinds only
    memory_at_peak: Mapping[str, int] | None = None
    # the part of flops and macs done by the backward and by an optimizer step (the forward is the
    # rest), as in every module row; 0 where that phase did nothing (or the file predates the split)
    backward_flops: int = 0
    backward_macs: int = 0
    optimizer_flops: int = 0
    optimizer_macs: int = 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"flops": self.flops, "macs": self.macs, "params": self.params}
        data.update((name, getattr(self, name)) for name in PHASE_FIELDS if getattr(self, name))
        if self.device is not None:
            data["device"] = self.device
        if self.value_reads:
            data["value_reads"] = {name: dict(sorted(self.value_reads[name].items()))
                                   for name in sorted(self.value_reads)}
        for name in ("uncounted", "estimated"):  # {} (recorded: none) travels; the file omits it
            recorded = getattr(self, name)
            if recorded is not None:
                data[name] = dict(sorted(recorded.items()))
        if self.peak_memory is not None:
            data["peak_memory"] = self.peak_memory
            data["activation_memory"] = self.activation_memory
            data["memory_at_peak"] = dict(sorted((self.memory_at_peak or {}).items()))
        # memory at the peak varies from layer to layer (the peak catches each at another point): it
        # is kept apart, non-zero modules only, so identical layers still group into one row
        counts = compress({name: replace(cost, memory=None) for name, cost in self.modules.items()})
        data["modules"] = {name: counts[name].to_dict() for name in sorted(counts, key=module_order)}
        if self.peak_memory is not None:
            held = compress({name: cost.memory for name, cost in self.modules.items() if cost.memory})
            data["memory_modules"] = {name: held[name] for name in sorted(held, key=module_order)}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        """From the transport form (already checked: written by this plugin)."""
        modules = {name: ModuleCost.from_dict(m) for name, m in data.get("modules", {}).items()}
        return cls(
            int(data["flops"]), int(data["macs"]), int(data["params"]),
            _with_memory(expand_all(modules), data.get("memory_modules"), data.get("peak_memory") is not None),
            data.get("device"),
            {str(name): {str(op): int(n) for op, n in ops.items()} for name, ops in data.get("value_reads", {}).items()},
            _recorded(data.get("uncounted"), int), _recorded(data.get("estimated"), str),
            _optional_int(data.get("peak_memory")), _optional_int(data.get("activation_memory")),
            _recorded(data.get("memory_at_peak"), int),
            **{name: int(data.get(name, 0)) for name in PHASE_FIELDS},
        )

    @classmethod
    def from_measurement(cls, measurement: Measurement, depth: int = DEFAULT_BASELINE_DEPTH) -> Entry:
        """What the baseline keeps of a measurement: its totals, device and value reads, and its
        modules down to ``depth`` (the root is the entry itself)."""
        modules = {name: cost for name, cost in measurement.modules_to_depth(depth).items() if name != ""}
        memory = measurement.memory
        phases = measurement.phases
        return cls(measurement.flops, measurement.macs, measurement.params, modules, measurement.device,
                   {name: dict(ops) for name, ops in measurement.value_reads.items()},
                   dict(measurement.uncounted), dict(measurement.estimated),
                   memory.peak if memory else None, memory.activation_peak if memory else None,
                   {kind: n for kind, n in memory.categories.items() if n} if memory else None,
                   **{name: getattr(phases, name) for name in PHASE_FIELDS})

    def counts(self) -> dict[str, int]:
        """flops, macs and params by name, with the backward and optimizer parts where not zero
        (the form module rows take in messages)."""
        counts = {metric: getattr(self, metric) for metric in METRICS}
        counts.update((name, getattr(self, name)) for name in PHASE_FIELDS if getattr(self, name))
        return counts

    @property
    def value_dependent(self) -> bool:
        return bool(self.value_reads)

    def value_reads_text(self, limit: int = 3) -> str:
        """Where the forward read values, for messages: 'aten.all x2 in encoder (Encoder), ...'."""
        types = {name: module.type for name, module in self.modules.items()}
        return describe_value_reads(self.value_reads, types, limit, separator=", ")


def _with_memory(modules: dict[str, ModuleCost], held: Mapping[str, int] | None, recorded: bool) -> dict[str, ModuleCost]:
    """Module rows with their bytes at the peak (``memory_modules``, written for non-zero modules
    only) put back: 0 for the others where the entry recorded memory, None where it did not."""
    if not recorded:
        return modules
    bytes_at_peak = expand_all({name: int(n) for name, n in (held or {}).items()})
    return {name: replace(cost, memory=bytes_at_peak.get(name, 0)) for name, cost in modules.items()}


def _optional_int(raw: Any) -> int | None:
    return None if raw is None else int(raw)


def _recorded(raw: Any, kind: type) -> dict[str, Any] | None:
    return None if raw is None else {str(op): kind(value) for op, value in raw.items()}


@dataclass(frozen=True)
class Baseline:
    path: Path
    entries: Mapping[str, Entry]
    torch_version: str | None = None
    exists: bool = False
    # a file with no YAML document (empty, blank or comments only): never written by this plugin,
    # which always writes its header and ``entries``; a truncated baseline looks like this
    empty_file: bool = False

    def require_content(self) -> None:
        """Refuse to judge against an empty file: every test would pass as new and no regression
        could fail, silently. An update may write into it (there is nothing in it to lose)."""
        if self.empty_file:
            raise BaselineError(f"{self.path}: the baseline file is empty (no header, no entries), so every test "
                                "would pass as new: restore it from version control if it was truncated, or "
                                "write a new one with an update run (pytest --flop-update-baseline, or "
                                "flopbudget merge --update)")

    def merged(self, measured: Mapping[str, Entry], remove: Iterable[str] = ()) -> dict[str, Entry]:
        """Upsert what was measured, keep every other entry, drop ``remove`` (stale keys when pruning)."""
        entries = dict(self.entries)
        for key in remove:
            entries.pop(key, None)
        entries.update(measured)
        return entries


def load(path: Path) -> Baseline:
    """Read and validate the baseline; a missing file is an empty baseline."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (some Windows editors add one) is not content
    except FileNotFoundError:
        return Baseline(path, {}, None, exists=False)
    except (OSError, UnicodeDecodeError) as error:
        raise BaselineError(f"{path}: cannot read the baseline: {error}") from None
    import yaml

    # parsed once, by libyaml where available (a 10 MB file in seconds, not minutes); the node tree
    # gives line numbers and duplicate keys, the safe constructor builds plain data from it
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error)
        # the parser notices some mistakes a line late (an unclosed mapping): name where it began
        began = getattr(error, "context_mark", None)
        if began is not None and mark is not None and began.line != mark.line and getattr(error, "context", None):
            problem += f" ({error.context} at line {began.line + 1})"
        raise BaselineError(f"{where}: the baseline is not valid YAML: {problem}") from None
    except RecursionError:
        raise BaselineError(f"{path}: the baseline is not valid YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as error:
        # the safe constructor's own errors: a date like 2001-13-45, an integer of 5000 digits
        raise BaselineError(f"{path}: the baseline is not valid YAML: {error}") from None
    finally:
        loader.dispose()
    if data is None:  # an empty file
        return Baseline(path, {}, None, exists=True, empty_file=True)
    _check_duplicates(root, path, set())
    return _validate(data, root, path)


def _line(node: Any) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def _check_duplicates(node: Any, path: Path, visited: set[int]) -> None:
    """Iterates each node once: aliases make the tree a graph ("billion laughs" would never end)."""
    import yaml

    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            if key in seen:
                raise BaselineError(
                    f"{path}:{_line(key_node)}: duplicate key {key!r} (first at line {seen[key]}); "
                    "each test must appear once"
                )
            seen[key] = _line(key_node)
            _check_duplicates(value_node, path, visited)
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _check_duplicates(child, path, visited)


def _child(node: Any, key: str) -> Any:
    """The value node under ``key`` of a mapping node, for line numbers."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == key:
                return value_node
    return node


def _children(node: Any) -> dict[str, Any]:
    """Value nodes of a mapping node by key, first occurrence (duplicates are refused before)."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return {}
    found: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            found.setdefault(key_node.value, value_node)
    return found


def _validate(data: Any, root: Any, path: Path) -> Baseline:
    def fail(node: Any, message: str) -> BaselineError:
        return BaselineError(f"{path}:{_line(node)}: invalid baseline: {message}")

    if not isinstance(data, dict):
        raise fail(root, f"expected a mapping with format, torch and entries, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - {"format", "torch", "entries"})
    if unknown:
        raise fail(_child(root, unknown[0]), f"unknown top-level key {unknown[0]!r}")
    version = data.get("format")
    if version not in READABLE_FORMATS or isinstance(version, bool):
        raise fail(_child(root, "format"), f"format must be {FORMAT_VERSION} (or the older 1), got {version!r}")
    torch_version = data.get("torch")
    if torch_version is not None and not isinstance(torch_version, str):
        raise fail(_child(root, "torch"), f"torch must be a version string, got {torch_version!r}")
    raw_entries = data.get("entries", {})
    entries_node = _child(root, "entries")
    if raw_entries is None:
        raw_entries = {}
    if not isinstance(raw_entries, dict):
        raise fail(entries_node, "entries must be a mapping of test ids to counts")
    entries: dict[str, Entry] = {}
    nodes = _children(entries_node)  # one pass: _child per entry would be quadratic in the entries
    for key, raw in raw_entries.items():
        node = nodes.get(key, entries_node) if isinstance(key, str) else entries_node
        if not isinstance(key, str) or not key:
            raise fail(node, f"entry key {key!r} must be a test node id")
        entries[key] = _validate_entry(key, raw, node, fail, version)
    return Baseline(path, entries, torch_version, exists=True)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _validate_entry(key: str, raw: Any, node: Any, fail: Any, version: int = FORMAT_VERSION) -> Entry:
    if not isinstance(raw, dict):
        raise fail(node, f"entry {key!r} must be a mapping with flops, macs, params, modules")
    fields = {*METRICS, "modules", "device", "value_reads"} | (set(_FORMAT_2_FIELDS) if version >= 2 else set())
    extra = sorted(set(map(str, raw)) - fields)
    if extra:
        raise fail(_child(node, extra[0]), f"entry {key!r}: unknown field {extra[0]!r}")
    for metric in METRICS:
        if metric not in raw:
            raise fail(node, f"entry {key!r}: missing {metric}")
        if not _count(raw[metric]):
            raise fail(_child(node, metric), f"entry {key!r}: {metric} must be a non-negative integer, got {raw[metric]!r}")
    _validate_phases(f"entry {key!r}", raw, node, fail)
    device = raw.get("device")
    if device is not None and not isinstance(device, str):
        raise fail(_child(node, "device"), f"entry {key!r}: device must be a string like 'cpu', got {device!r}")
    value_reads = _validate_value_reads(key, raw.get("value_reads", {}), _child(node, "value_reads"), fail)
    modules_raw = raw.get("modules", {}) or {}
    modules_node = _child(node, "modules")
    if not isinstance(modules_raw, dict):
        raise fail(modules_node, f"entry {key!r}: modules must be a mapping")
    modules: dict[str, ModuleCost] = {}
    for name, module in modules_raw.items():
        module_node = _child(modules_node, name)
        if not isinstance(name, str) or not isinstance(module, dict):
            raise fail(module_node, f"entry {key!r}: module {name!r} must map a name to type, flops, macs, params")
        extra = sorted(set(map(str, module)) - {*METRICS, "type", *(PHASE_FIELDS if version >= 2 else ())})
        if extra:
            raise fail(module_node, f"entry {key!r}: module {name!r}: unknown field {extra[0]!r}")
        if not isinstance(module.get("type"), str):
            raise fail(module_node, f"entry {key!r}: module {name!r}: type must be a string")
        for metric in METRICS:
            if not _count(module.get(metric)):
                raise fail(module_node, f"entry {key!r}: module {name!r}: {metric} must be a non-negative integer")
        _validate_phases(f"entry {key!r}: module {name!r}", module, module_node, fail)
        try:  # a repeated block written once, "layers.[0-31].mlp", stands for 32 modules
            names = expand(name)
        except RangeError as error:
            raise fail(module_node, f"entry {key!r}: {error}") from None
        for expanded in names:
            if expanded in modules:
                raise fail(module_node, f"entry {key!r}: module {expanded!r} is given twice (module key {name!r})")
            modules[expanded] = ModuleCost(module["type"], module["flops"], module["macs"], module["params"],
                                           **{field: module.get(field, 0) for field in PHASE_FIELDS})
    # format 2 omits an empty field (recorded: none); format 1 never recorded it (None)
    absent = {} if version >= 2 else None
    uncounted = _validate_ops(key, "uncounted", raw.get("uncounted", absent), _child(node, "uncounted"), fail, _count,
                              "op names to calls")
    estimated = _validate_ops(key, "estimated", raw.get("estimated", absent), _child(node, "estimated"), fail,
                              lambda reason: isinstance(reason, str), "op names to the reason")
    for name in ("peak_memory", "activation_memory"):
        if name in raw and not _count(raw[name]):
            raise fail(_child(node, name), f"entry {key!r}: {name} must be a non-negative integer (bytes), got {raw[name]!r}")
    at_peak = _validate_ops(key, "memory_at_peak", raw.get("memory_at_peak"), _child(node, "memory_at_peak"), fail,
                            _count, "kinds (parameters, activations...) to bytes")
    held = _validate_ops(key, "memory_modules", raw.get("memory_modules"), _child(node, "memory_modules"), fail,
                         _count, "module names to bytes at the peak")
    try:
        modules = _with_memory(modules, held, raw.get("peak_memory") is not None)
    except RangeError as error:
        raise fail(_child(node, "memory_modules"), f"entry {key!r}: {error}") from None
    return Entry(raw["flops"], raw["macs"], raw["params"], modules, device, value_reads, uncounted, estimated,
                 raw.get("peak_memory"), raw.get("activation_memory"), at_peak,
                 **{field: raw.get(field, 0) for field in PHASE_FIELDS})


def _validate_phases(where: str, raw: Mapping[str, Any], node: Any, fail: Any) -> None:
    """The backward and optimizer parts of a row: counts, and never more than the row's total."""
    for name in PHASE_FIELDS:
        if name in raw and not _count(raw[name]):
            raise fail(_child(node, name), f"{where}: {name} must be a non-negative integer, got {raw[name]!r}")
    for metric in ("flops", "macs"):
        parts = raw.get(f"backward_{metric}", 0) + raw.get(f"optimizer_{metric}", 0)
        if parts > raw[metric]:
            raise fail(node, f"{where}: backward_{metric} + optimizer_{metric} ({parts:,}) exceed {metric} "
                             f"({raw[metric]:,}); regenerate the entry with --flop-update-baseline")


def _validate_ops(key: str, name: str, raw: Any, node: Any, fail: Any, valid: Any, shape: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(isinstance(op, str) and valid(value) for op, value in raw.items()):
        raise fail(node, f"entry {key!r}: {name} must map {shape}, got {raw!r}")
    return dict(raw)


def _validate_value_reads(key: str, raw: Any, node: Any, fail: Any) -> dict[str, dict[str, int]]:
    if raw is None:
        return {}
    shape = "value_reads must map module names to {op: calls}"
    if not isinstance(raw, dict):
        raise fail(node, f"entry {key!r}: {shape}")
    reads: dict[str, dict[str, int]] = {}
    for name, ops in raw.items():
        if not isinstance(name, str) or not isinstance(ops, dict) or not all(
            isinstance(op, str) and _count(calls) for op, calls in ops.items()
        ):
            raise fail(node, f"entry {key!r}: {shape}, got {name!r}: {ops!r}")
        reads[name] = dict(ops)
    return reads


def dump(entries: Mapping[str, Entry], torch_version: str) -> str:
    """The file's text: the same entries always give the same bytes."""
    import yaml

    data = {
        "format": FORMAT_VERSION,
        "torch": torch_version,
        "entries": {key: _rows(entries[key].to_dict()) for key in sorted(entries)},
    }
    # insertion order is already sorted (entries, modules) and puts the header fields first; each
    # module is one line, so a diff shows one line per module that changed
    body = yaml.dump(data, Dumper=_one_line_rows_dumper(), sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=4096)
    return _HEADER + body


class _Row(dict):  # type: ignore[type-arg]
    """A mapping written on one line (a module's counts, one place's value reads)."""


def _rows(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry's dict with its module counts and value reads marked to be written one per line."""
    for field_name in ("uncounted", "estimated"):
        if not entry.get(field_name, True):
            del entry[field_name]  # recorded, none: the file leaves it out
    for field_name in ("uncounted", "estimated", "memory_at_peak"):
        if field_name in entry:
            entry[field_name] = _Row(entry[field_name])
    if not entry.get("memory_modules", True):
        del entry["memory_modules"]
    for field_name in ("modules", "value_reads"):
        if field_name in entry:
            entry[field_name] = {name: _Row(value) for name, value in entry[field_name].items()}
    return entry


@functools.lru_cache(maxsize=None)
def _one_line_rows_dumper() -> Any:
    """The safe dumper (libyaml's where available), writing ``_Row`` mappings in flow style."""
    import yaml

    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    dumper: Any = type("FlopBaselineDumper", (base,), {})
    dumper.add_representer(
        _Row, lambda d, row: d.represent_mapping("tag:yaml.org,2002:map", row.items(), flow_style=True)
    )
    return dumper


def torch_version() -> str:
    """Read from the package metadata, so writing a baseline never imports torch."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:  # pragma: no cover - torch is a dependency
        return "unknown"


def save(baseline: Baseline, entries: Mapping[str, Entry], torch: str | None = None) -> bool:
    """Write ``entries`` if they differ from what the file holds; returns whether it wrote. The
    header names ``torch`` (the running torch's version by default; a merge gives the shards').

    A temporary file in the same directory, fsynced, then ``os.replace``: a reader (or a crash)
    sees the old file or the new one, never half of one.
    """
    if baseline.exists and dict(entries) == dict(baseline.entries):
        return False
    text = dump(entries, torch or torch_version())
    path = baseline.path
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600; a committed file should read like any other
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return True


def update(path: Path, measured: Mapping[str, Entry], remove: Iterable[str] = (),
           torch: str | None = None) -> tuple[bool, int]:
    """Merge ``measured`` into the file as it is *now* and write it; returns (written, entries).

    The read-merge-write runs under an exclusive lock (``flock`` on the baseline's directory), and
    the file is re-read under that lock: two pytest processes updating one baseline at the same time
    (two CI jobs on one checkout) each keep the other's entries. Temporary files left by a writer that
    was killed are removed first (no writer holds the lock, so none is in use). A symlinked
    baseline is written through to its target (lock and temporary file beside the target).
    """
    path = written_path(path)
    with _locked(path.parent) as _:
        _remove_stale_temp_files(path)
        current = load(path)
        entries = current.merged(measured, remove=remove)
        return save(current, entries, torch), len(entries)


def written_path(path: Path) -> Path:
    """The file an update replaces: a symlink's target (``os.replace`` on the link would turn it into
    a plain file and leave the real baseline as it was)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def clean_stale_temp_files(path: Path) -> None:
    """Remove temporary files of killed writers, if no writer is running now (never waits)."""
    path = written_path(path)
    if not path.parent.is_dir() or not any(_temp_files(path)):
        return
    with _locked(path.parent, blocking=False) as acquired:
        if acquired:
            _remove_stale_temp_files(path)


def _temp_files(path: Path) -> Iterator[Path]:
    return (p for p in path.parent.glob(f".{path.name}.*.tmp") if p.is_file() and not p.is_symlink())


def _remove_stale_temp_files(path: Path) -> None:
    for stale in list(_temp_files(path)):
        try:
            stale.unlink()
        except OSError:
            pass


@contextlib.contextmanager
def _locked(directory: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on ``directory`` (nothing is created, nothing left behind); yields
    whether it is held. Without fcntl (Windows) there is no lock and updates are not serialised."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield True
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            held = True
        except BlockingIOError:
            held = False
        yield held
    finally:
        os.close(fd)  # closing the descriptor releases the lock (so does the process dying)


def _file_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
