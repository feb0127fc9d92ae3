"""How counts read: one number format and one column layout, for the engine's per-module table,
the CLI and the plugin's messages and reports alike (so a count never reads two ways).

Torch-free, like the result types: the plugin formats with it at start-up without importing torch.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Collection, Sequence

GIGA = 1_000_000_000
_SUFFIXES = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k"))


def decimal(number: float | Fraction) -> str:
    """A number as people write it: whole numbers without decimals; from 1 up, three decimals at
    most with trailing zeros dropped (8.5, 25.557); below 1, three significant digits (0.0118,
    0.00941), so a small count keeps its precision; enormous ones in scientific form."""
    number = float(number)
    if number == int(number) and abs(number) < 1e15:
        return str(int(number))
    if 1 <= abs(number) < 1e15:
        return f"{number:.3f}".rstrip("0").rstrip(".")
    return f"{number:.3g}"


def giga(value: float | None) -> str:
    """A count in G (billions) for a table column: three decimals from 1 G up, three significant
    digits below (0.0533, 0.00941, 0.0000330), "0" for nothing and "-" for no value. Always
    positional, never scientific, so every cell of a column reads the same way (the engine's
    table is positional too)."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if value >= 1:
        return f"{value:.3f}"
    import math

    return f"{value:.{2 - math.floor(math.log10(value))}f}"


def human_count(value: int | Fraction | float) -> str:
    """A count with a unit suffix: 25557032 -> '25.557M', 26000000 -> '26M', 900 -> '900'."""
    number = float(value)
    for scale, suffix in _SUFFIXES:
        if abs(number) >= scale:
            return f"{decimal(number / scale)}{suffix}"
    return decimal(number)


def percent(value: float | None, *, signed: bool = True, missing: str = "n/a") -> str:
    """A fraction as a percentage with one decimal (0.25 -> '+25.0%', or '25.0%' unsigned); three
    significant digits from a million percent, so an absurd limit stays short; ``missing`` for
    None (nothing to compare with)."""
    if value is None:
        return missing
    sign = "+" if signed else ""
    if value == float("inf"):
        return f"{sign}inf%"
    return f"{value * 100:{sign}.1f}%" if abs(value) < 1e6 else f"{value * 100:{sign}.3g}%"


# the memory metrics of a baseline entry and a budget (bytes)
MEMORY_METRICS = ("peak_memory", "activation_memory")
_BYTE_UNITS = ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


def human_bytes(value: int | Fraction | float) -> str:
    """Bytes in binary units with three significant digits: 512 B, 518 KiB, 1.50 GiB, 24.0 GiB."""
    number = float(value)
    for scale, unit in _BYTE_UNITS:
        if abs(number) >= scale:
            scaled = number / scale
            return f"{scaled:.3g} {unit}" if scaled < 100 else f"{scaled:.0f} {unit}"
    return f"{int(number)} B"


def format_count(value: int | Fraction | float, metric: str) -> str:
    """Flops and macs in G (the unit of a budget: '8.5 GFLOPs'), bytes in binary units, params as
    a count with a suffix."""
    if metric in ("flops", "macs"):
        return f"{decimal(float(value) / GIGA)} G{metric.upper()[:-1]}s"
    if metric in MEMORY_METRICS:
        return human_bytes(value)
    return human_count(value)


def layout(rows: Sequence[Sequence[str]], *, left: Collection[int], widths: Sequence[int] | None = None) -> list[str]:
    """Rows of cells (the header first) as aligned text lines, with a rule under the header.

    Columns in ``left`` are padded on the right (names), the others on the left (numbers); ``widths``
    defaults to the widest cell of each column. Trailing spaces are dropped; the rule is as wide as
    the widest line."""
    if widths is None:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) if i in left else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(row, widths))).rstrip() for row in rows]
    rule = "-" * max(len(line) for line in lines)
    return [lines[0], rule, *lines[1:]]


def passes(backward: bool, stepped: bool) -> str:
    """What a run counted: 'forward', 'forward+backward' or 'forward+backward+optimizer step'."""
    return "forward+backward+optimizer step" if stepped else "forward+backward" if backward else "forward"
