"""The ``--flop-`` options: registration, validation, and command line over ini over default.

Every option is also an ini key of the same name with ``flop_`` instead of ``--flop-``. Values are
checked by argparse ``type=`` functions, so a bad command-line value is a usage error (exit 4) that
names the option; the same functions check ini values in ``Settings.from_config``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_flopbudget.counting.devices import cuda_problem, parse_device_name
from pytest_flopbudget.reporting.baseline import DEFAULT_BASELINE, DEFAULT_BASELINE_DEPTH
from pytest_flopbudget.reporting.commands import UPDATE_HINT, update_command


def device_type(value: str) -> str:
    """cpu, cuda, cuda:N or meta; whether CUDA exists is checked later, and only if asked for."""
    try:
        return parse_device_name(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def tolerance_type(value: str | float) -> Fraction:
    """A non-negative fraction ("0.05") or percentage ("5%"), kept exact for the comparisons; read
    by the marker's reader (TOML numbers from pytest 9's ``[tool.pytest]`` arrive as int or float)."""
    from pytest_flopbudget.plugin.marker import ToleranceError, percent_hint, read_tolerance, safe_repr

    try:
        return read_tolerance(value)
    except ToleranceError as error:
        text = (repr(value) if isinstance(value, float) else str(value)).strip()
        if error.problem == "negative":
            message = f"{text!r} must be a finite fraction >= 0 (e.g. 0.05 or 5%)"
        elif error.problem == "out of range":
            message = f"{safe_repr(value)} is out of range (between 1e-200 and 1e200)"
        elif error.problem == "percent":
            assert error.exact is not None
            message = f"{text!r} is {percent_hint(error.exact, text)}"
        else:
            message = f"{safe_repr(value)} is not a fraction; write e.g. 0.05 or 5%"
        raise argparse.ArgumentTypeError(message) from None


def path_type(value: str) -> str:
    """A non-empty path that is not an existing directory (we will write a file there)."""
    text = str(value).strip()
    if not text:
        raise argparse.ArgumentTypeError("an empty path is not a file name")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{value!r} is a directory; give a file path")
    return text




def baseline_depth(raw: object) -> int:
    """The ini value of flop_baseline_depth: a whole number of levels, 1 or more."""
    text = str(raw).strip()
    if not text.isdigit() or int(text) < 1:
        raise pytest.UsageError(
            f"ini option flop_baseline_depth = {raw!r}: give a whole number of module levels, 1 or more "
            f"(default {DEFAULT_BASELINE_DEPTH})"
        )
    return int(text)


@dataclass(frozen=True)
class _Option:
    name: str  # the ini key; the flag is --flop-... with dashes
    help: str
    kind: str  # "bool", "value", or "paths" (the flag given several times, the ini value one per line)
    check: Callable[[str], Any] | None = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS = (
    _Option("flop_device", "device to count on: cpu, cuda or meta (meta allocates nothing; default cpu)",
            "value", device_type, "DEVICE"),
    _Option("flop_baseline", f"baseline YAML file (default {DEFAULT_BASELINE} in the rootdir)",
            "value", path_type, "PATH"),
    _Option("flop_update_baseline", "write the measurements of the tests that ran into the baseline, "
            "keeping every other entry", "bool"),
    _Option("flop_prune_baseline", "remove baseline entries of tests that no longer exist (full runs only)",
            "bool"),
    _Option("flop_tolerance", "allowed growth over the baseline, as a fraction (0.05 or 5%%; default 0)",
            "value", tolerance_type, "FRACTION"),  # argparse: %% is a percent sign
    _Option("flop_strict", "also fail on missing baseline entries, stale entries, improvements "
            "beyond the tolerance and uncounted ops not listed in flop_known_uncounted (keeps baselines exact "
            "in CI)", "bool"),
    _Option("flop_report", "write the measurements as JSON, as Markdown (appended) if PATH ends in .md, as a "
            "self-contained HTML page with each test's module tree if it ends in .html; give it once per format",
            "paths", path_type, "PATH"),
)


# every ini key the plugin reads (the options' keys, and the ini-only ones)
INI_KEYS = (*(option.name for option in OPTIONS), "flop_baseline_depth", "flop_formulas", "flop_known_uncounted",
            "flop_junit_properties")


def add_options(parser: pytest.Parser) -> None:
    """Register each option in one ``--flop-`` group and as an ini key."""
    group = parser.getgroup("flopbudget", "compute budgets (pytest-flopbudget)")
    for option in OPTIONS:
        ini_help = option.help.replace("%%", "%")  # argparse formats help with %, the ini listing does not
        if option.kind == "bool":
            group.addoption(option.flag, action="store_true", default=None, dest=option.name, help=option.help)
            parser.addini(option.name, ini_help, type="bool", default=False)
        elif option.kind == "paths":
            group.addoption(option.flag, action="append", default=None, dest=option.name, type=option.check,
                            metavar=option.metavar, help=option.help)
            # a string, not a linelist: pytest 9's TOML tables would then refuse the single path they took so far
            parser.addini(option.name, ini_help, type="string", default="")
        else:
            group.addoption(option.flag, action="store", default=None, dest=option.name, type=option.check,
                            metavar=option.metavar, help=option.help)
            if option.check is tolerance_type:
                _add_number_ini(parser, option.name, ini_help)
            else:
                parser.addini(option.name, ini_help, type="string", default="")
    _add_number_ini(parser, "flop_baseline_depth", "how many levels of modules below the model each baseline "
                    f"entry keeps, to name the layer that grew (default {DEFAULT_BASELINE_DEPTH}; repeated blocks "
                    "are written once)", default=str(DEFAULT_BASELINE_DEPTH))
    parser.addini("flop_formulas", "modules with custom formulas (register_formula calls or a FLOP_FORMULAS "
                  "dict), imported once per session in every process that runs tests", type="linelist", default=[])
    parser.addini("flop_known_uncounted", "ops with no formula this repository accepts, one per line, as "
                  "Measurement.uncounted names them (e.g. torchvision.nms.default): still listed, never failing "
                  "under --flop-strict", type="linelist", default=[])
    parser.addini("flop_junit_properties", "add flops, macs and params of each measurement as JUnit XML "
                  "properties (record_property)", type="bool", default=False)


def _add_number_ini(parser: pytest.Parser, name: str, help: str, default: str = "") -> None:
    """A string key that also takes TOML numbers (``flop_tolerance = 0.05`` in pytest 9's native
    ``[tool.pytest]`` table). pytest 9.2 accepts a union type; older versions only "string", and
    their TOML-less ini files give strings anyway."""
    try:
        parser.addini(name, help, type=str | float | int, default=default)  # type: ignore[arg-type]
    except (AssertionError, TypeError, ValueError):
        parser.addini(name, help, type="string", default=default)


def _from_ini(config: pytest.Config, option: _Option) -> Any:
    raw = config.getini(option.name)
    if option.kind == "bool":
        return bool(raw)
    if raw in ("", None):
        return None
    assert option.check is not None
    try:
        if option.kind == "paths":
            return [option.check(line) for line in str(raw).splitlines() if line.strip()] or None
        return option.check(raw)
    except argparse.ArgumentTypeError as error:
        raise pytest.UsageError(f"ini option {option.name} = {raw!r}: {error}") from None


def _value(config: pytest.Config, option: _Option) -> tuple[Any, str]:
    """The value and where it came from: command line over ini over default."""
    given = config.getoption(option.name, None)
    if given is not None:
        return given, "cli"
    return _from_ini(config, option), "ini"


@dataclass(frozen=True)
class Settings:
    """The resolved options of one run."""

    device: str
    baseline_path: Path
    update: bool
    prune: bool
    tolerance: Fraction
    strict: bool
    report_paths: tuple[Path, ...]
    junit_properties: bool
    baseline_depth: int = DEFAULT_BASELINE_DEPTH
    known_uncounted: frozenset[str] = frozenset()  # ini flop_known_uncounted: accepted, still shown
    # what a hint tells the user to run to accept the counts: the command-line options that decide
    # what is written (which file, which device) are repeated; ini values apply by themselves
    update_command: str = UPDATE_HINT

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for option in OPTIONS:
            values[option.name], sources[option.name] = _value(config, option)
        rootdir = Path(str(config.rootpath))
        inidir = Path(str(config.inipath)).parent if config.inipath else rootdir
        invocation = Path(str(config.invocation_params.dir))

        def resolve(name: str, raw: str) -> Path:
            # a command-line path is relative to where pytest was started, an ini path to the ini file
            base = invocation if sources[name] == "cli" else inidir
            return (base / raw).resolve() if not os.path.isabs(raw) else Path(raw)

        given = values["flop_baseline"]
        baseline = resolve("flop_baseline", given) if given is not None else rootdir / DEFAULT_BASELINE
        repeated = []
        if sources["flop_baseline"] == "cli":
            repeated.append(f"--flop-baseline={_quoted(values['flop_baseline'])}")
        if sources["flop_device"] == "cli" and values["flop_device"] != "cpu":
            repeated.append(f"--flop-device={values['flop_device']}")
        return cls(
            device=values["flop_device"] or "cpu",
            baseline_path=baseline,
            update=bool(values["flop_update_baseline"]),
            prune=bool(values["flop_prune_baseline"]),
            tolerance=values["flop_tolerance"] if values["flop_tolerance"] is not None else Fraction(0),
            strict=bool(values["flop_strict"]),
            report_paths=tuple(resolve("flop_report", raw) for raw in values["flop_report"] or ()),
            junit_properties=bool(config.getini("flop_junit_properties")),
            baseline_depth=baseline_depth(config.getini("flop_baseline_depth")),
            known_uncounted=frozenset(op.strip() for op in config.getini("flop_known_uncounted") if op.strip()),
            update_command=update_command(*repeated),
        )


def flop_options_given(config: pytest.Config) -> bool:
    """Whether this run or its ini file sets any of the plugin's options or keys."""
    if any(config.getoption(option.name, None) is not None for option in OPTIONS):
        return True
    unset = ("", None, False, [], str(DEFAULT_BASELINE_DEPTH), DEFAULT_BASELINE_DEPTH)  # the keys' defaults
    return any(config.getini(name) not in unset for name in INI_KEYS)


def _quoted(text: str) -> str:
    """A path as a shell reads it back: quoted only when it needs to be."""
    import shlex

    return shlex.quote(str(text))


def check_device_available(device: str) -> None:
    """CUDA asked for but absent is a usage error; torch is imported only when CUDA was asked for."""
    problem = cuda_problem(device)
    if problem is None:
        return
    raise pytest.UsageError(f"--flop-device={device}: {problem}; use --flop-device=cpu or meta (the same counts, "
                            "unless the forward reads tensor values)")


def format_fraction(value: Fraction) -> str:
    """A tolerance as the user would write it: 0, 0.05, 0.125."""
    if value == 0:
        return "0"
    return f"{float(value):g}"
