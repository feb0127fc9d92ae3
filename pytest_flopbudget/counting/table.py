"""The readable per-module table of a Measurement (what ptflops prints, with both numbers)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pytest_flopbudget.counting.names import input_dependent, module_depth
from pytest_flopbudget.counting.text import GIGA, human_bytes, human_count, layout, passes

if TYPE_CHECKING:
    from pytest_flopbudget.counting.measurement import Measurement, Memory, ModuleCost

# the orders the table can be sorted in: the module tree, or a count, largest first
SORTS = ("name", "flops", "macs", "params", "memory")


def render_module_table(measurement: Measurement, *, depth: int = 2, sort: str = "name") -> str:
    """Module, type, GFLOPs, GMACs, params, share of the total flops and, where memory was tracked,
    the bytes live at the peak that each module's code allocated; indented by depth."""
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    rows = [(n, c) for n, c in measurement.modules.items() if module_depth(n) <= depth]
    if sort == "name":
        order = {n: i for i, n in enumerate(measurement.modules)}
        rows.sort(key=lambda row: _tree_order(order, row[0]))
    else:
        rows.sort(key=lambda row: (-(getattr(row[1], sort) or 0), row[0]))
    total = measurement.flops or 1
    decimals = _decimals(max(measurement.flops, measurement.macs))
    tracked = measurement.memory is not None
    phases = measurement.phases
    split = bool(phases.backward_flops or phases.optimizer_flops)  # forward-only runs keep one column
    stepped = bool(phases.optimizer_flops)
    header = (("module", "type", "GFLOPs") + (("fwd", "bwd") if split else ()) + (("step",) if stepped else ())
              + ("GMACs", "params", "share") + (("at peak",) if tracked else ()))
    lines = [header]
    for name, cost in rows:
        indent = "  " * module_depth(name) if sort == "name" else ""
        label = indent + (name.rsplit(".", 1)[-1] if sort == "name" and name else name or "(total)")
        lines.append(
            (label, cost.type, _giga(cost.flops, decimals))
            + ((_giga(cost.forward_flops, decimals), _giga(cost.backward_flops, decimals)) if split else ())
            + ((_giga(cost.optimizer_flops, decimals),) if stepped else ())
            + (_giga(cost.macs, decimals), human_count(cost.params), f"{100 * cost.flops / total:.1f}%")
            + ((human_bytes(cost.memory or 0),) if tracked else ())
        )
    out = layout(lines, left={0, 1})
    footer = (
        f"total: {measurement.gflops:.{decimals}f} GFLOPs, {measurement.gmacs:.{decimals}f} GMACs, "
        f"{human_count(measurement.params)} params ({measurement.trainable_params} trainable)"
        f" on {measurement.device}{_passes(measurement.backward, stepped)}"
    )
    out.append(footer)
    if split:
        out.append(phase_line(phases, decimals))
    if measurement.memory is not None:
        out.append(memory_line(measurement.memory))
    if measurement.uncounted:
        listed = ", ".join(f"{op} x{n}" for op, n in sorted(measurement.uncounted.items()))
        out.append(f"uncounted ops (no formula): {listed}")
    if measurement.estimated:
        listed = "; ".join(f"{op}: {why}" for op, why in sorted(measurement.estimated.items()))
        out.append(f"estimated (a stated convention, not exact): {listed}")
    if input_dependent(measurement.value_reads):
        out.append(f"value-dependent: the run read tensor values on the host ({measurement.value_reads_text()}); "
                   "another device or other input values may take another path")
    return "\n".join(out)


def phase_line(phases: ModuleCost, decimals: int = 3) -> str:
    """'GFLOPs by phase: forward 1.2, backward 2.4, optimizer step 0.1' (a step only where one ran)."""
    parts = [f"forward {_giga(phases.forward_flops, decimals)}", f"backward {_giga(phases.backward_flops, decimals)}"]
    if phases.optimizer_flops:
        parts.append(f"optimizer step {_giga(phases.optimizer_flops, decimals)}")
    return "GFLOPs by phase: " + ", ".join(parts)


def _passes(backward: bool, stepped: bool) -> str:
    return f", {passes(backward, stepped)}" if backward or stepped else ""


def _giga(count: int, decimals: int) -> str:
    """``count`` in G units at the column's precision; work too small to show there reads
    '<0.00001' rather than a zero it is not (a 640-FLOP head beside a 0.2-GFLOP body)."""
    text = f"{count / GIGA:.{decimals}f}"
    if count > 0 and not text.strip("0."):
        return f"<{10.0 ** -decimals:.{decimals}f}"
    return text


def memory_line(memory: Memory) -> str:
    """'memory: peak 24 GiB in backward (13 GiB at entry, 11 GiB for the run): parameters 13 GiB, ...'"""
    parts = ", ".join(f"{kind} {human_bytes(n)}" for kind, n in memory.categories.items() if n)
    return (f"memory: peak {human_bytes(memory.peak)} in {memory.phase} ({human_bytes(memory.at_entry)} at entry, "
            f"{human_bytes(memory.activation_peak)} for the run)" + (f": {parts}" if parts else ""))


def _decimals(largest: int) -> int:
    """Enough decimals for the largest count to show four significant digits in G units."""
    if largest <= 0:
        return 3
    return max(3, 3 - math.floor(math.log10(largest / GIGA)))


def _tree_order(order: dict[str, int], name: str) -> tuple[int, ...]:
    """Sort key that keeps children right under their parent, in registration order."""
    parts = name.split(".") if name else []
    key = []
    for i in range(len(parts) + 1):
        key.append(order.get(".".join(parts[:i]), 0))
    return tuple(key)
