"""The result model: what one measurement found, as plain data free of torch.

The engine builds these, the plugin's baseline stores their numbers, the CLI and the reports print
them: one set of types for all, importable without torch (the plugin loads in every pytest run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pytest_flopbudget.counting.names import input_dependent, module_depth
from pytest_flopbudget.counting.text import GIGA

# the exact integers every measurement, baseline entry and module row carries
METRICS = ("flops", "macs", "params")
# how a row's flops and macs split over autograd's backward and an optimizer's step (the forward
# is the rest): zero, and left out of files, where the phase did nothing
PHASE_FIELDS = ("backward_flops", "backward_macs", "optimizer_flops", "optimizer_macs")


@dataclass(frozen=True)
class ModuleCost:
    """Inclusive cost of one module: its own ops plus those of every module it called."""

    type: str
    flops: int = 0
    macs: int = 0
    params: int = 0
    # bytes live at the memory peak that the module's code (its descendants included) allocated;
    # None where memory was not tracked (a format-1 baseline)
    memory: int | None = None
    # the part of flops and macs done by autograd's backward for this module's forward, and by an
    # optimizer's step() called inside it (outside every module a step's work is the root's); the
    # forward's part is the rest
    backward_flops: int = 0
    backward_macs: int = 0
    optimizer_flops: int = 0
    optimizer_macs: int = 0

    @property
    def forward_flops(self) -> int:
        return self.flops - self.backward_flops - self.optimizer_flops

    @property
    def forward_macs(self) -> int:
        return self.macs - self.backward_macs - self.optimizer_macs

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "flops": self.flops, "macs": self.macs, "params": self.params}
        for name in PHASE_FIELDS:  # only where the phase did work: a forward-only row stays as it was
            if getattr(self, name):
                data[name] = getattr(self, name)
        if self.memory is not None:
            data["memory"] = self.memory
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModuleCost:
        return cls(
            type=str(data.get("type", "")),
            flops=int(data.get("flops", 0)),
            macs=int(data.get("macs", 0)),
            params=int(data.get("params", 0)),
            memory=int(data["memory"]) if data.get("memory") is not None else None,
            **{name: int(data.get(name, 0)) for name in PHASE_FIELDS},
        )

    def counts(self) -> dict[str, int]:
        """flops, macs and params by name."""
        return {"flops": self.flops, "macs": self.macs, "params": self.params}


# what was live at the memory peak, by kind
MEMORY_CATEGORIES = ("parameters", "buffers", "inputs", "gradients", "optimizer_state", "activations", "temporaries")
# where a run was when its memory peaked
MEMORY_PHASES = ("forward", "backward", "optimizer", "block")


@dataclass(frozen=True)
class Memory:
    """Bytes of tensor storage one run held: each storage once, at its ``nbytes()``.

    ``peak`` is everything live at the run's highest point (weights, inputs, gradients, optimizer
    state, activations); ``at_entry`` what was live when the run began; ``modules`` the bytes live
    at the peak that each module's code allocated (inclusive of its descendants, "" for code
    outside any module); ``retained`` what the run allocated that outlives it (a KV cache, optimizer
    state). Kernel workspaces, allocator rounding and fragmentation are not seen."""

    peak: int
    at_entry: int
    phase: str
    categories: dict[str, int] = field(default_factory=dict)
    param_bytes: dict[str, int] = field(default_factory=dict)
    modules: dict[str, int] = field(default_factory=dict)
    retained: int = 0

    @property
    def activation_peak(self) -> int:
        """What the run itself needed on top of what existed when it began."""
        return self.peak - self.at_entry

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "at_entry": self.at_entry,
            "activation_peak": self.activation_peak,
            "phase": self.phase,
            "categories": dict(self.categories),
            "param_bytes": dict(self.param_bytes),
            "modules": dict(self.modules),
            "retained": self.retained,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Memory:
        return cls(
            peak=int(data["peak"]),
            at_entry=int(data["at_entry"]),
            phase=str(data.get("phase", "")),
            categories={str(k): int(v) for k, v in data.get("categories", {}).items()},
            param_bytes={str(k): int(v) for k, v in data.get("param_bytes", {}).items()},
            modules={str(k): int(v) for k, v in data.get("modules", {}).items()},
            retained=int(data.get("retained", 0)),
        )


@dataclass(frozen=True)
class Measurement:
    """FLOPs, MACs and parameters of one model on one input, with a per-module and per-op breakdown.

    ``flops`` follows the seed article (a length-K dot product is K multiplies and K-1 adds);
    ``macs`` follows ptflops (one multiply-accumulate per weight use). Both are exact integers.
    """

    flops: int
    macs: int
    params: int
    trainable_params: int
    modules: dict[str, ModuleCost] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)
    uncounted: dict[str, int] = field(default_factory=dict)
    device: str = "cpu"
    backward: bool = False
    op_macs: dict[str, int] = field(default_factory=dict)
    # module name ("" for the model itself) -> op -> calls that read tensor values on the host
    value_reads: dict[str, dict[str, int]] = field(default_factory=dict)
    # op -> why its count follows a stated convention rather than shapes alone (an upper bound, an
    # iterative solver's nominal work); not a value read: it never feeds the device-mismatch rule
    estimated: dict[str, str] = field(default_factory=dict)
    # bytes: the peak and what was live at it (None where memory was not tracked)
    memory: Memory | None = None

    @property
    def value_dependent(self) -> bool:
        """Whether the run read tensor values on the host (``.item()``, ``bool(t)``, ``nonzero``...),
        so that its path, and its count, may differ with other values or on another device. Reads
        of an optimizer's or scheduler's own step counter (``AdamW.step()``) do not count: they are
        the same on every device and for every input (``value_reads`` still lists them)."""
        return bool(input_dependent(self.value_reads))

    def value_reads_text(self, limit: int = 3) -> str:
        """Where values were read, for messages: 'aten.all x2 in encoder (Encoder), ...'."""
        return describe_value_reads(self.value_reads, {n: c.type for n, c in self.modules.items()}, limit)

    @property
    def phases(self) -> ModuleCost:
        """The whole run's row ("" in ``modules``): its flops and macs split into forward, backward
        (``backward_flops``) and optimizer step (``optimizer_flops``)."""
        root = self.modules.get("")
        return root if root is not None else ModuleCost("", self.flops, self.macs, self.params)

    @property
    def gflops(self) -> float:
        return self.flops / GIGA

    @property
    def gmacs(self) -> float:
        return self.macs / GIGA

    def table(self, depth: int = 2, *, sort: str = "name") -> str:
        """The per-module table, down to ``depth`` levels below the root."""
        from pytest_flopbudget.counting.table import render_module_table

        return render_module_table(self, depth=depth, sort=sort)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form; ``from_dict`` gives back an equal Measurement."""
        return {
            "flops": self.flops,
            "macs": self.macs,
            "params": self.params,
            "trainable_params": self.trainable_params,
            "device": self.device,
            "backward": self.backward,
            "modules": {name: cost.to_dict() for name, cost in self.modules.items()},
            "ops": dict(self.ops),
            "op_macs": dict(self.op_macs),
            "uncounted": dict(self.uncounted),
            "value_reads": {name: dict(ops) for name, ops in self.value_reads.items()},
            "estimated": dict(self.estimated),
            "memory": self.memory.to_dict() if self.memory is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        return cls(
            flops=int(data["flops"]),
            macs=int(data["macs"]),
            params=int(data["params"]),
            trainable_params=int(data.get("trainable_params", data["params"])),
            modules={name: ModuleCost.from_dict(c) for name, c in data.get("modules", {}).items()},
            ops={str(k): int(v) for k, v in data.get("ops", {}).items()},
            op_macs={str(k): int(v) for k, v in data.get("op_macs", {}).items()},
            uncounted={str(k): int(v) for k, v in data.get("uncounted", {}).items()},
            device=str(data.get("device", "cpu")),
            backward=bool(data.get("backward", False)),
            value_reads={str(name): {str(op): int(n) for op, n in ops.items()}
                         for name, ops in data.get("value_reads", {}).items()},
            estimated={str(k): str(v) for k, v in data.get("estimated", {}).items()},
            memory=Memory.from_dict(data["memory"]) if data.get("memory") is not None else None,
        )

    def modules_to_depth(self, depth: int) -> dict[str, ModuleCost]:
        """Modules at most ``depth`` levels below the root (the root itself is depth 0)."""
        return {name: cost for name, cost in self.modules.items() if module_depth(name) <= depth}


def describe_value_reads(reads: Mapping[str, Mapping[str, int]], types: Mapping[str, str], limit: int = 3,
                         *, separator: str = "; ") -> str:
    """'aten._local_scalar_dense x2 in encoder.layer.0 (BertLayer); ...', the first ``limit`` places
    (``types``: module name -> class name, for the modules known)."""
    places = []
    for name in sorted(reads):
        ops = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(reads[name].items()))
        where = f"{name} ({types[name]})" if name and name in types else (name or "the model's own forward")
        places.append(f"{ops} in {where}")
    more = f" and {len(places) - limit} more places" if len(places) > limit else ""
    return separator.join(places[:limit]) + more
