"""What one pytest run covered, as its JSON report carries it for ``flopbudget merge``.

A suite split across machines (pytest-split, pytest-shard, ``-k`` or path splits) gives one report
per shard; each says which shard it was, what it collected and deselected, which tests ran to the
end, what they measured and how they were judged. The merge rebuilds the whole suite's session end
from these records alone: no shard's machine, checkout or torch is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pytest_flopbudget.reporting.verdict import TestVerdict


@dataclass(frozen=True)
class RunRecord:
    """One run (a shard, or the whole suite) as the merge needs it."""

    shard: Mapping[str, Any] | None  # pytest-split / pytest-shard: kind, index, count, first, name
    selection: Mapping[str, Any]  # -k, -m, --deselect, path arguments (rootdir-relative)
    torch: str
    device: str
    exit_status: int
    partial: str | None  # why the run covered part of the suite (a shard always does)
    incomplete: str | None  # why it did not run all it selected: collection errors, an early stop, --lf
    collected: tuple[str, ...]  # test ids of every collected item, deselected ones included
    selected: tuple[str, ...]  # the ones left to run
    ran: tuple[str, ...]  # tests that ran to the end without failing on their own
    absent: tuple[str, ...]  # baseline entries of tests this run's collection shows to be gone
    verdicts: tuple[TestVerdict, ...] = field(default=(), compare=False)
    selects: str | None = None  # why its options select part of the suite, a shard plugin's aside

    @property
    def name(self) -> str:
        """How messages name this shard: its numbered identity, else its selection."""
        if self.shard is not None:
            return f"{self.shard['kind']} {self.shard['name']}"
        parts = [f"{option} {value!r}" for option, value in self.selection.items()
                 if option.startswith("-") and value and not isinstance(value, list)]
        parts += [f"--deselect {item}" for item in self.selection.get("--deselect", ())]
        parts += list(self.selection.get("args", ()))
        return " ".join(parts) or "the whole suite"

    def to_dict(self) -> dict[str, Any]:
        measured = sorted({v.nodeid for v in self.verdicts if v.entries})
        entries = {e.key: e.measured.to_dict() for v in self.verdicts if not v.test_failed for e in v.entries}
        return {
            "shard": dict(self.shard) if self.shard is not None else None,
            "selection": dict(self.selection),
            "torch": self.torch,
            "device": self.device,
            "exit_status": self.exit_status,
            "partial": self.partial,
            "selects": self.selects,
            "incomplete": self.incomplete,
            "collected": list(self.collected),
            "selected": list(self.selected),
            "deselected": sorted(set(self.collected) - set(self.selected)),
            "ran": list(self.ran),
            "measured": measured,
            "absent": list(self.absent),
            "entries": {key: entries[key] for key in sorted(entries)},
            "verdicts": [v.to_dict() for v in sorted(self.verdicts, key=lambda v: v.nodeid)],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        return cls(
            shard=data["shard"], selection=data["selection"], torch=str(data["torch"]), device=str(data["device"]),
            exit_status=int(data["exit_status"]), partial=data["partial"], incomplete=data["incomplete"],
            collected=tuple(data["collected"]), selected=tuple(data["selected"]), ran=tuple(data["ran"]),
            absent=tuple(data["absent"]), verdicts=tuple(TestVerdict.from_dict(v) for v in data["verdicts"]),
            selects=data.get("selects"),
        )


__all__ = ["RunRecord"]
