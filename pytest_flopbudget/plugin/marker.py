"""``@pytest.mark.flop_budget(...)``: parse and validate the marker into a ``Budget``.

Parsing happens before any fixture runs, so a typo is an ERROR for that one test that names the
argument and the value, never a silent pass and never an INTERNALERROR. Unit strings are matched by
a regular expression and converted with ``Fraction``: nothing is evaluated.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping

MARKER = "flop_budget"
MARKER_HELP = (
    "flop_budget(*, max_gflops=None, max_gmacs=None, max_params=None, tolerance=None): fail the test "
    "if the models it measures through the flop_budget fixture exceed these limits (numbers, or strings "
    "with a unit suffix such as '26M', '4.1G', '900k'); tolerance overrides --flop-tolerance for the "
    "comparison with the baseline. See docs/plugin.md."
)

# which Measurement field each limit checks, and the unit a bare number is given in
LIMITS: Mapping[str, tuple[str, int]] = {
    "max_gflops": ("flops", 10**9),
    "max_gmacs": ("macs", 10**9),
    "max_params": ("params", 1),
}
KEYWORDS = (*LIMITS, "tolerance")

_SUFFIXES = {"": None, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9, "t": 10**12}
_QUANTITY = re.compile(r"^\s*(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<suffix>[kKmMgGbBtT]?)\s*$")


class MarkerError(ValueError):
    """One bad argument of a flop_budget marker; ``describe`` names the test too."""

    def __init__(self, argument: str, value: Any, reason: str) -> None:
        super().__init__(f"{argument}={value!r}: {reason}")
        self.argument = argument
        self.value = value
        self.reason = reason

    def describe(self, nodeid: str) -> str:
        return f"{nodeid}: invalid @pytest.mark.{MARKER}: {self}"


@dataclass(frozen=True)
class Limit:
    """One limit in the counted unit (flops, macs or params), exact."""

    argument: str  # max_gflops, max_gmacs or max_params
    metric: str  # flops, macs or params
    value: Fraction

    def display(self) -> str:
        """The limit in the unit of its argument: GFLOPs, GMACs or a parameter count."""
        return format_count(self.value, self.metric)


@dataclass(frozen=True)
class Budget:
    """A parsed marker: the limits that apply to the sum of a test's measurements."""

    limits: tuple[Limit, ...]
    tolerance: Fraction | None = None


def parse_quantity(argument: str, value: Any, unit: int) -> Fraction:
    """A positive limit in counted units. Numbers are in ``unit`` (1e9 for max_gflops); strings may
    carry a suffix k, M, G (or B), T that gives the count itself: "4.1G" is 4.1e9."""
    if isinstance(value, bool):
        raise MarkerError(argument, value, "a bool is not a limit; give a number or a string like '26M'")
    if isinstance(value, numbers.Real):
        as_float = float(value)
        if math.isnan(as_float):
            raise MarkerError(argument, value, "NaN is not a limit")
        if math.isinf(as_float):
            raise MarkerError(argument, value, "an infinite limit is no limit; leave the argument out")
        # repr() gives the shortest decimal that round-trips, so 8.5 and 1e-7 are taken as written
        exact = Fraction(repr(as_float)) if isinstance(value, float) else Fraction(value)  # type: ignore[arg-type]
        scaled = exact * unit
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        if match is None:
            raise MarkerError(
                argument, value, "not a number; write a number or a string with a unit suffix k, M, G, T ('26M', '4.1G')"
            )
        number = Fraction(match["number"])
        suffix = _SUFFIXES[match["suffix"].lower()]
        scaled = number * unit if suffix is None else number * suffix
    else:
        raise MarkerError(argument, value, f"a {type(value).__name__} is not a limit; give a number or a string like '26M'")
    if scaled < 0:
        raise MarkerError(argument, value, "a limit cannot be negative")
    if scaled == 0:
        raise MarkerError(argument, value, "a limit of zero fails every model; give a positive limit")
    return scaled


def parse_tolerance(value: Any) -> Fraction:
    """A fraction >= 0 (0.05) or a percentage string ("5%")."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise MarkerError("tolerance", value, "give a fraction such as 0.05 or '5%'")
    text = repr(float(value)) if isinstance(value, float) else str(value).strip()
    percent = text.endswith("%")
    body = text[:-1].strip() if percent else text
    try:
        as_float = float(body)
        exact = Fraction(body)
    except (ValueError, ZeroDivisionError):
        raise MarkerError("tolerance", value, "not a fraction; write e.g. 0.05 or '5%'") from None
    if math.isnan(as_float) or math.isinf(as_float):
        raise MarkerError("tolerance", value, "must be a finite fraction")
    if exact < 0:
        raise MarkerError("tolerance", value, "cannot be negative")
    return exact / 100 if percent else exact


def parse_budget(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Budget:
    """Validate a marker's arguments; raises MarkerError for the first bad one."""
    if args:
        raise MarkerError(
            "positional argument", args[0],
            f"{MARKER} takes keyword arguments only: {', '.join(k + '=...' for k in KEYWORDS)}",
        )
    for key in kwargs:
        if key not in KEYWORDS:
            close = difflib.get_close_matches(key, KEYWORDS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise MarkerError(key, kwargs[key], f"unknown keyword; {hint}known: {', '.join(KEYWORDS)}")
    limits = []
    for argument, (metric, unit) in LIMITS.items():
        value = kwargs.get(argument)
        if value is not None:
            limits.append(Limit(argument, metric, parse_quantity(argument, value, unit)))
    tolerance = kwargs.get("tolerance")
    parsed_tolerance = parse_tolerance(tolerance) if tolerance is not None else None
    if not limits:
        raise MarkerError(
            "limits", dict(kwargs),
            f"no limit given; set at least one of {', '.join(LIMITS)} (e.g. max_gflops=8.5, max_params='26M')",
        )
    return Budget(tuple(limits), parsed_tolerance)


def format_count(value: int | Fraction | float, metric: str) -> str:
    """Flops and macs in G (the unit of the marker), params as a count with a suffix."""
    if metric in ("flops", "macs"):
        return f"{_g(float(value) / 1e9)} G{metric.upper()[:-1]}s"
    return human_count(value)


def human_count(value: int | Fraction | float) -> str:
    number = float(value)
    for size, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k")):
        if abs(number) >= size:
            return f"{_g(number / size)}{suffix}"
    return _g(number)


def _g(number: float) -> str:
    if number == int(number) and abs(number) < 1e15:
        return str(int(number))
    if abs(number) >= 0.01:
        return f"{number:.3f}".rstrip("0").rstrip(".")
    return f"{number:.3g}"
