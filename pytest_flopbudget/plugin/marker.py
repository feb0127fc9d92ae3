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
    "flop_budget(*, max_gflops=None, max_gmacs=None, max_params=None, max_memory=None, "
    "max_activation_memory=None, tolerance=None, device=None): fail the "
    "test if the models it measures through the flop_budget fixture exceed these limits (numbers, or strings "
    "with a unit suffix such as '26M', '4.1G', '900k'; memory as bytes with a unit: '24GiB', '512MB'); "
    "tolerance overrides --flop-tolerance for the "
    "comparison with the baseline; device ('cpu', 'cuda', 'meta') overrides --flop-device for this test. "
    "See docs/plugin.md."
)

# which Measurement field each limit checks, and the unit a bare number is given in
LIMITS: Mapping[str, tuple[str, int]] = {
    "max_gflops": ("flops", 10**9),
    "max_gmacs": ("macs", 10**9),
    "max_params": ("params", 1),
}
# memory limits: which entry field each checks (bytes, always written with a unit)
MEMORY_LIMITS: Mapping[str, str] = {
    "max_memory": "peak_memory",
    "max_activation_memory": "activation_memory",
}
KEYWORDS = (*LIMITS, *MEMORY_LIMITS, "tolerance", "device")
# kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB of 1024 (as DESIGN.md and the IEC say)
_BYTE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}

_SUFFIXES = {"": None, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9, "t": 10**12}
_NUMBER = r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE](?P<exponent>[+-]?\d+))?)"
# ASCII digits and spaces only; re.ASCII keeps \d from matching other scripts' digits
_QUANTITY = re.compile(r"^\s*" + _NUMBER + r"\s*(?P<suffix>[kKmMgGbBtT]?)\s*$", re.ASCII)
_BYTES = re.compile(r"^\s*" + _NUMBER + r"\s*(?P<unit>[kKmMgGtT]?i?[bB])\s*$", re.ASCII)
_FRACTION = re.compile(r"^\s*" + _NUMBER + r"\s*(?P<percent>%?)\s*$", re.ASCII)
# a string longer than this, or an exponent beyond this, is no limit anyone writes; refusing them
# keeps Fraction from building numbers of millions of digits ("1e999999999" would hang the run)
MAX_TEXT = 100
MAX_EXPONENT = 1000
# numbers (in counted units) must fit a float and a percentage of budget: 10**400 would overflow the
# report, 10**5000 cannot even be printed (int max str digits)
MAX_MAGNITUDE = 10**200


def out_of_range(exact: Fraction) -> bool:
    return abs(exact) > MAX_MAGNITUDE or exact.denominator > 10**1200 or bool(exact and abs(exact) * MAX_MAGNITUDE < 1)


def _in_range(argument: str, value: Any, exact: Fraction) -> Fraction:
    if out_of_range(exact):
        raise MarkerError(argument, value, "out of range: keep it between 1e-200 and 1e200 (in flops, macs or params)")
    return exact


def safe_repr(value: Any, limit: int = 80) -> str:
    """repr() for messages: never raises, never floods the terminal."""
    try:
        text = repr(value)
    except Exception:  # a hostile or broken __repr__ must not turn an ERROR into an INTERNALERROR
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MarkerError(ValueError):
    """One bad argument of a flop_budget marker; ``describe`` names the test too."""

    def __init__(self, argument: str, value: Any, reason: str) -> None:
        super().__init__(f"{argument}={safe_repr(value)}: {reason}")
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


@dataclass(frozen=True)
class Budget:
    """A parsed marker: the limits that apply to the sum of a test's measurements."""

    limits: tuple[Limit, ...]
    tolerance: Fraction | None = None
    device: str | None = None  # overrides --flop-device for this test


def parse_quantity(argument: str, value: Any, unit: int) -> Fraction:
    """A positive limit in counted units. Numbers are in ``unit`` (1e9 for max_gflops); strings may
    carry a suffix k, M, G (or B), T that gives the count itself: "4.1G" is 4.1e9."""
    if isinstance(value, bool):
        raise MarkerError(argument, value, "a bool is not a limit; give a number or a string like '26M'")
    if isinstance(value, numbers.Real):
        try:
            scaled = _exact_real(value) * unit
        except _NotReal as error:
            reasons = {"unreadable": f"cannot be read as a number ({error.detail})", "nan": "NaN is not a limit",
                       "infinite": "an infinite limit is no limit; leave the argument out"}
            raise MarkerError(argument, value, reasons[error.problem]) from None
    elif isinstance(value, str):
        match = _QUANTITY.match(value) if len(value) <= MAX_TEXT else None
        if match is None:
            raise MarkerError(
                argument, value, "not a number; write a number or a string with a unit suffix k, M, G, T ('26M', '4.1G')"
            )
        number = _exact_decimal(argument, value, match)
        suffix = _SUFFIXES[match["suffix"].lower()]
        scaled = number * unit if suffix is None else number * suffix
    else:
        raise MarkerError(argument, value, f"a {type(value).__name__} is not a limit; give a number or a string like '26M'")
    scaled = _in_range(argument, value, scaled)
    if scaled < 0:
        raise MarkerError(argument, value, "a limit cannot be negative")
    if scaled == 0:
        raise MarkerError(argument, value, "a limit of zero fails every model; give a positive limit")
    return scaled


def parse_bytes(argument: str, value: Any) -> Fraction:
    """A positive memory limit in bytes, from a string with a unit: '24GiB', '512MB', '1.5GB', '300B'.
    A bare number is refused, since it could mean bytes or gigabytes: the message shows the string."""
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Real)):
        raise MarkerError(argument, value, f"a {type(value).__name__} is not a size; give a string such as '24GiB'")
    if isinstance(value, numbers.Real):
        raise MarkerError(
            argument, value,
            f"a memory limit needs its unit: write it as a string such as {_bytes_hint(value)!r}"
            + (f" (or {_as_bytes(value)!r} if you meant bytes)" if _as_bytes(value) != _bytes_hint(value) else "")
            + "; units: B, kB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024)",
        )
    match = _BYTES.match(value) if len(value) <= MAX_TEXT else None
    if match is None and _FRACTION.match(value) and len(value) <= MAX_TEXT and "%" not in value:
        raise MarkerError(argument, value, f"a memory limit needs its unit, such as {value.strip()!r} + 'GiB' "
                                           f"({value.strip() + 'GiB'!r}) or 'MB'")
    if match is None or match["unit"].lower() not in _BYTE_UNITS:
        raise MarkerError(
            argument, value,
            "not a size; write a number and a unit: B, kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB "
            "(powers of 1024), as in '24GiB' or '512MB'",
        )
    size = _in_range(argument, value, _exact_decimal(argument, value, match) * _BYTE_UNITS[match["unit"].lower()])
    if size < 0:
        raise MarkerError(argument, value, "a limit cannot be negative")
    if size == 0:
        raise MarkerError(argument, value, "a limit of zero fails every model; give a positive limit")
    return size


def _bytes_hint(value: Any) -> str:
    """How a bare number would be written as a size: 24 -> '24GiB' (small numbers mean GiB), 512e6 -> '512000000B'."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return "24GiB"
    if not math.isfinite(number) or number <= 0:
        return "24GiB"
    if number < 10**4:
        return f"{number:g}GiB"
    return f"{int(number)}B"


def _as_bytes(value: Any) -> str:
    """A bare number read as bytes: 1000 -> '1000B'."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return "1024B"
    if not math.isfinite(number) or number <= 0:
        return "1024B"
    return f"{int(number)}B" if number.is_integer() else f"{math.ceil(number)}B"


class _NotReal(ValueError):
    """A number with no exact real value: ``problem`` is "unreadable" (``detail`` names the error
    reading it raised), "nan" or "infinite"; limits and tolerances each word it their own way."""

    def __init__(self, problem: str, detail: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.detail = detail


def _exact_real(value: Any) -> Fraction:
    """A real number exactly: ints of any size, Fractions, floats as written, numpy scalars."""
    try:
        if isinstance(value, numbers.Integral):
            return Fraction(int(value))
        if isinstance(value, numbers.Rational):
            return Fraction(int(value.numerator), int(value.denominator))
        as_float = float(value)
    except (TypeError, ValueError, OverflowError, ArithmeticError) as error:
        raise _NotReal("unreadable", type(error).__name__) from None
    if math.isnan(as_float):
        raise _NotReal("nan")
    if math.isinf(as_float):
        raise _NotReal("infinite")
    # repr() gives the shortest decimal that round-trips, so 8.5 and 1e-7 are taken as written
    return Fraction(repr(as_float))


def _exact_decimal(argument: str, value: str, match: re.Match[str]) -> Fraction:
    """The matched decimal number exactly, refusing exponents that would build enormous integers."""
    exponent = match["exponent"]
    if exponent is not None and abs(int(exponent)) > MAX_EXPONENT:
        raise MarkerError(argument, value, f"exponent out of range (at most 1e{MAX_EXPONENT})")
    return Fraction(match["number"])


def decimal_fraction(text: str) -> Fraction | None:
    """A decimal or percentage string ("0.05", "5%", "-1e-3") exactly, or None when it
    is not one (shared with --flop-tolerance); never evaluates, never builds enormous numbers."""
    match = _FRACTION.match(text) if len(text) <= MAX_TEXT else None
    if match is None:
        return None
    exponent = match["exponent"]
    if exponent is not None and abs(int(exponent)) > MAX_EXPONENT:
        return None
    exact = Fraction(match["number"])
    return exact / 100 if match["percent"] else exact


def percent_hint(exact: Fraction, written: str, *, quoted: bool = False) -> str:
    """Why a tolerance above 1 without "%" is refused, and what was probably meant."""
    meant = f"'{written}%'" if quoted else f"{written}%"
    whole = f"'{float(exact * 100):g}%'" if quoted else f"{float(exact * 100):g}%"
    return (f"{float(exact * 100):g}%; did you mean {meant} ({float(exact / 100):g})? "
            f"Write {whole} if you mean it")


class ToleranceError(ValueError):
    """A tolerance that cannot be used: ``problem`` says which way (each front end words it in its
    own terms), ``exact`` is the value where one was read."""

    def __init__(self, problem: str, exact: Fraction | None = None, detail: str = "") -> None:
        super().__init__(problem)
        # "not a number", "unreadable", "not a fraction", "nan", "infinite", "out of range",
        # "negative" or "percent" (above 1 without a percent sign)
        self.problem = problem
        self.exact = exact
        self.detail = detail  # for "unreadable": the error reading the number raised


def read_tolerance(value: Any) -> Fraction:
    """A fraction >= 0 (0.05) or a percentage string ("5%"); above 1 only as a percentage, since
    "5" is far more often a forgotten "%" than a 500% tolerance. The one reader of tolerances: the
    marker's argument and --flop-tolerance (and its ini key, TOML numbers included)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ToleranceError("not a number")
    if isinstance(value, str):
        exact = decimal_fraction(value)
        if exact is None:
            raise ToleranceError("not a fraction")
    else:
        try:
            exact = _exact_real(value)
        except _NotReal as error:
            raise ToleranceError(error.problem, detail=error.detail) from None
    if out_of_range(exact):
        raise ToleranceError("out of range", exact)
    if exact < 0:
        raise ToleranceError("negative", exact)
    if exact > 1 and not (isinstance(value, str) and value.strip().endswith("%")):
        raise ToleranceError("percent", exact)
    return exact


def parse_tolerance(value: Any) -> Fraction:
    """The marker's ``tolerance=``; a MarkerError naming the problem otherwise."""
    try:
        return read_tolerance(value)
    except ToleranceError as error:
        reasons = {
            "not a number": "give a fraction such as 0.05 or '5%'",
            "unreadable": f"cannot be read as a number ({error.detail})",
            "not a fraction": "not a fraction; write e.g. 0.05 or '5%'",
            "nan": "NaN is not a fraction",
            "infinite": "must be a finite fraction",
            "out of range": "out of range: keep it between 1e-200 and 1e200 (in flops, macs or params)",
            "negative": "cannot be negative",
        }
        if error.problem == "percent":
            assert error.exact is not None
            written = value.strip() if isinstance(value, str) else repr(value)
            reason = "that is " + percent_hint(error.exact, written, quoted=True)
        else:
            reason = reasons[error.problem]
        raise MarkerError("tolerance", value, reason) from None


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
    for argument, metric in MEMORY_LIMITS.items():
        value = kwargs.get(argument)
        if value is not None:
            limits.append(Limit(argument, metric, parse_bytes(argument, value)))
    tolerance = kwargs.get("tolerance")
    parsed_tolerance = parse_tolerance(tolerance) if tolerance is not None else None
    device = parse_device(kwargs["device"]) if kwargs.get("device") is not None else None
    if not limits and device is not None:
        return Budget((), parsed_tolerance, device)  # a device alone: measured there, no limit
    if not limits:
        raise MarkerError(
            "limits", dict(kwargs),
            f"no limit given; set at least one of {', '.join((*LIMITS, *MEMORY_LIMITS))} "
            "(e.g. max_gflops=8.5, max_params='26M', max_memory='24GiB')",
        )
    return Budget(tuple(limits), parsed_tolerance, device)


def parse_device(value: Any) -> str:
    """The marker's ``device=``: 'cpu', 'cuda', 'cuda:N' or 'meta' (a torch.device too)."""
    from pytest_flopbudget.counting.devices import parse_device_name

    if not isinstance(value, str) and type(value).__name__ != "device":
        raise MarkerError("device", value, "give a device name: 'cpu', 'cuda' or 'meta'")
    try:
        return parse_device_name(str(value))
    except ValueError as error:
        raise MarkerError("device", value, str(error)) from None


def misspelt_marker(item: Any) -> str | None:
    """The name of a marker on ``item`` that looks like a misspelt ``flop_budget`` (flop_budgt,
    flopbudget, flop_budgets) and is not registered: it would leave the test without a budget."""
    registered = {line.split(":")[0].split("(")[0].strip() for line in item.config.getini("markers")}
    for mark in item.iter_markers():
        name = mark.name
        if name != MARKER and name not in registered and difflib.get_close_matches(name, [MARKER], n=1, cutoff=0.8):
            return name
    return None
