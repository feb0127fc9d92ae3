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
    """A number as people write it: whole numbers without decimals, otherwise three decimals at
    most with trailing zeros dropped (8.5, 25.557); tiny or enormous ones in scientific form."""
    number = float(number)
    if number == int(number) and abs(number) < 1e15:
        return str(int(number))
    if 0.01 <= abs(number) < 1e15:
        return f"{number:.3f}".rstrip("0").rstrip(".")
    return f"{number:.3g}"


def human_count(value: int | Fraction | float) -> str:
    """A count with a unit suffix: 25557032 -> '25.557M', 26000000 -> '26M', 900 -> '900'."""
    number = float(value)
    for scale, suffix in _SUFFIXES:
        if abs(number) >= scale:
            return f"{decimal(number / scale)}{suffix}"
    return decimal(number)


def format_count(value: int | Fraction | float, metric: str) -> str:
    """Flops and macs in G (the unit of a budget: '8.5 GFLOPs'), params as a count with a suffix."""
    if metric in ("flops", "macs"):
        return f"{decimal(float(value) / GIGA)} G{metric.upper()[:-1]}s"
    return human_count(value)


def layout(rows: Sequence[Sequence[str]], *, left: Collection[int], widths: Sequence[int] | None = None) -> list[str]:
    """Rows of cells (the header first) as aligned text lines, with a rule under the header.

    Columns in ``left`` are padded on the right (names), the others on the left (numbers); ``widths``
    defaults to the widest cell of each column. Trailing spaces are dropped."""
    if widths is None:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) if i in left else cell.rjust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("-" * len(lines[0]))
    return lines
