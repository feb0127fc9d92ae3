"""Marker arguments of every type and shape: accepted with the right value, or a MarkerError that
names the argument. Never another exception, never a hang, never evaluation of a string.

The parser is fuzzed directly with hypothesis; a few pytester runs check that the same values are an
ERROR for that one test end to end (no INTERNALERROR, no silent pass)."""

from __future__ import annotations

import math
import re
import string
import sys
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pytest_flopbudget.plugin.marker import LIMITS, MarkerError, parse_budget, parse_quantity, parse_tolerance
from pytest_flopbudget.plugin.options import tolerance_type

SUFFIX = {"": None, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9, "t": 10**12}
# the documented grammar, written independently of the implementation's regular expression
GRAMMAR = re.compile(r"[ \t\n\r\f\v]*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?)[ \t\n\r\f\v]*([kKmMgGbBtT]?)[ \t\n\r\f\v]*")

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Hostile:
    """An object whose repr raises: an error message must still be produced."""

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class Inert:
    pass


anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=1e-320, max_value=1e-180),
    st.integers(min_value=10**190, max_value=10**210),
    st.fractions(), st.decimals(allow_nan=True), st.complex_numbers(), st.text(), st.binary(),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(Inert()), st.just(float), st.just(sys.float_info.max), st.just(5e-324),
)


def expected_quantity(value: Any, unit: int) -> Fraction | None:
    """The limit a value stands for, computed with Decimal (not the implementation's Fraction path);
    None when the value must be rejected."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        exact = Fraction(value) * unit
    elif isinstance(value, Fraction):
        exact = value * unit
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        exact = Fraction(Decimal(repr(value))) * unit
    elif isinstance(value, str):
        match = GRAMMAR.fullmatch(value)
        if match is None or len(value) > 100 or (match[2] and abs(int(match[2])) > 1000):
            return None
        factor = SUFFIX[match[3].lower()]
        exact = Fraction(Decimal(match[1])) * (unit if factor is None else factor)
    else:
        return None
    if abs(exact) > 10**200 or exact.denominator > 10**1200 or (exact and abs(exact) < Fraction(1, 10**200)):
        return None  # beyond any real limit: refused rather than printed as thousands of digits
    return exact if exact > 0 else None


def check_quantity(argument: str, value: Any) -> None:
    unit = LIMITS[argument][1]
    expected = expected_quantity(value, unit)
    try:
        got = parse_quantity(argument, value, unit)
    except MarkerError as error:
        assert expected is None, f"{value!r} should be {expected}, was rejected: {error}"
        assert error.argument == argument and str(error).startswith(f"{argument}=")
        return
    assert expected is not None, f"{value!r} was accepted as {got}"
    assert got == expected and isinstance(got, Fraction)


@FUZZ
@given(argument=st.sampled_from(sorted(LIMITS)), value=anything)
@example(argument="max_params", value=10**400)
@example(argument="max_gflops", value="1e999999999")  # would build a billion-digit integer
@example(argument="max_gflops", value="1e-999999999")
@example(argument="max_gmacs", value="٣M")  # Arabic-Indic digit three: not an ASCII number
@example(argument="max_params", value="26\u00a0M")  # non-breaking space
@example(argument="max_params", value="1" * 101)
def test_any_value_is_accepted_exactly_or_rejected_by_name(argument: str, value: Any) -> None:
    check_quantity(argument, value)


unit_strings = st.builds(
    lambda sign, whole, frac, exp, suffix, pad1, pad2: f"{pad1}{sign}{whole}{frac}{exp}{pad2}{suffix}{pad1}",
    st.sampled_from(["", "+", "-"]),
    st.from_regex(r"[0-9]{0,12}", fullmatch=True),
    st.sampled_from(["", "."]).flatmap(lambda dot: st.from_regex(r"[0-9]{0,6}", fullmatch=True).map(lambda d: dot + d if dot else "")),
    st.one_of(st.just(""), st.builds(lambda e, n: f"{e}{n}", st.sampled_from(["e", "E", "e+", "e-"]),
                                      st.integers(0, 2000))),
    st.sampled_from(["", "k", "K", "m", "M", "g", "G", "b", "B", "t", "T", "x", "Mi", "GB", "%"]),
    st.sampled_from(["", " ", "\t"]),
    st.sampled_from(["", " "]),
)


@FUZZ
@given(argument=st.sampled_from(sorted(LIMITS)), value=unit_strings)
def test_unit_strings_are_parsed_exactly(argument: str, value: str) -> None:
    check_quantity(argument, value)


@FUZZ
@given(value=st.text(alphabet=string.printable + "٣１éΣ\u00a0\u2009€", max_size=30))
def test_arbitrary_text_is_never_evaluated(value: str) -> None:
    check_quantity("max_params", value)


@pytest.mark.parametrize("code", ["__import__('os').system('touch PWNED')", "2**40", "1e3*2", "int('5')",
                                  "open('PWNED','w')", "{0}".format("9" * 50) + "**9**9"])
def test_code_in_strings_is_rejected_and_not_run(code: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for argument in LIMITS:
        with pytest.raises(MarkerError, match="not a number") as info:
            parse_quantity(argument, code, LIMITS[argument][1])
        assert info.value.argument == argument
    with pytest.raises(MarkerError, match="not a fraction"):
        parse_tolerance(code)
    assert list(tmp_path.iterdir()) == []


def expected_tolerance(value: Any) -> Fraction | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, Fraction)):
        exact = Fraction(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        exact = Fraction(Decimal(repr(value)))
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?)\s*(%?)\s*", value,
                             re.ASCII)
        if match is None or len(value) > 100 or (match[2] and abs(int(match[2])) > 1000):
            return None
        exact = Fraction(Decimal(match[1])) / (100 if match[3] else 1)
    else:
        return None
    if abs(exact) > 10**200 or exact.denominator > 10**1200 or (exact and abs(exact) < Fraction(1, 10**200)):
        return None
    if exact > 1 and not (isinstance(value, str) and value.strip().endswith("%")):
        return None  # above 100% only as a percentage: "5" is a forgotten "%" far more often than 500%
    return exact if exact >= 0 else None


tolerances = st.one_of(anything, unit_strings.map(lambda s: s.replace("M", "%")),
                       st.builds(lambda f: f"{f}%", st.floats(0, 100)))


@FUZZ
@given(value=tolerances)
@example(value="1e999999999")
@example(value="1e-999999999%")
@example(value=Fraction(1, 3))
@example(value=10**5000)
@example(value=Fraction(1, 10**2000))
def test_tolerance_is_accepted_exactly_or_rejected_by_name(value: Any) -> None:
    expected = expected_tolerance(value)
    try:
        got = parse_tolerance(value)
    except MarkerError as error:
        assert expected is None, f"{value!r} should be {expected}, was rejected: {error}"
        assert error.argument == "tolerance"
        return
    assert expected is not None and got == expected, (value, got, expected)


@FUZZ
@given(value=st.one_of(st.text(max_size=20), unit_strings.map(lambda s: s.replace("M", "%"))))
@example(value="1e999999999")
@example(value="5%")
def test_tolerance_option_agrees_with_the_marker(value: str) -> None:
    import argparse

    expected = expected_tolerance(value)
    try:
        got = tolerance_type(value)
    except argparse.ArgumentTypeError:
        assert expected is None
        return
    assert got == expected


keywords = st.one_of(st.sampled_from([*LIMITS, "tolerance"]), st.text(max_size=12))


@FUZZ
@given(args=st.lists(anything, max_size=2), kwargs=st.dictionaries(keywords, anything, max_size=4))
def test_whole_markers_parse_or_name_one_argument(args: list[Any], kwargs: dict[str, Any]) -> None:
    try:
        budget = parse_budget(tuple(args), kwargs)
    except MarkerError as error:
        text = str(error)
        assert error.argument in (*kwargs, "positional argument", "limits")
        assert text.startswith(f"{error.argument}=")
        return
    assert not args
    assert set(kwargs) <= {*LIMITS, "tolerance"}
    given_limits = {k: v for k, v in kwargs.items() if k in LIMITS and v is not None}
    assert {limit.argument for limit in budget.limits} == set(given_limits)
    for limit in budget.limits:
        assert limit.value == expected_quantity(given_limits[limit.argument], LIMITS[limit.argument][1])
    if kwargs.get("tolerance") is not None:
        assert budget.tolerance == expected_tolerance(kwargs["tolerance"])


def test_a_value_whose_repr_raises_is_still_named() -> None:
    # (not in the hypothesis strategies: hypothesis itself needs repr() of the examples it draws)
    for argument in LIMITS:
        with pytest.raises(MarkerError, match=f"^{argument}=<Hostile object>: a Hostile is not a limit"):
            parse_quantity(argument, Hostile(), 1)
    with pytest.raises(MarkerError, match="^bogus=<Hostile object>: unknown keyword"):
        parse_budget((), {"bogus": Hostile()})
    with pytest.raises(MarkerError, match=r"^positional argument=<Hostile object>"):
        parse_budget((Hostile(),), {})
    with pytest.raises(MarkerError, match=r"^tolerance=<Hostile object>: give a fraction"):
        parse_budget((), {"max_params": None, "tolerance": Hostile()})


def test_numpy_scalars_are_numbers() -> None:
    np = pytest.importorskip("numpy")
    assert parse_quantity("max_gflops", np.float32(1.5), 10**9) == Fraction(3, 2) * 10**9
    assert parse_quantity("max_gflops", np.float64(0.1), 10**9) == Fraction(10**8)
    assert parse_quantity("max_params", np.int64(7), 1) == 7
    assert parse_tolerance(np.float32(0.5)) == Fraction(1, 2)
    with pytest.raises(MarkerError, match="NaN"):
        parse_quantity("max_params", np.float32("nan"), 1)
    with pytest.raises(MarkerError, match="max_params=np.True_: a bool"):
        parse_quantity("max_params", np.bool_(True), 1)


# -- end to end: each bad marker is an ERROR for its own test, the good ones run -----------------

END_TO_END = {
    "unicode_digit": ("max_gflops='٣M'", "max_gflops='٣M': not a number"),
    "huge_exponent": ("max_gflops='1e999999999'", "max_gflops='1e999999999': exponent out of range"),
    "hostile_repr": ("max_params=Hostile()", "max_params=<Hostile object>: a Hostile is not a limit"),
    "nan": ("max_params=float('nan')", "max_params=nan: NaN is not a limit"),
    "inf": ("max_gmacs=float('-inf')", "max_gmacs=-inf: an infinite limit"),
    "bool": ("max_params=False", "max_params=False: a bool is not a limit"),
    "none_only": ("max_params=None", "limits={'max_params': None}: no limit given"),
    "tiny_string": ("max_params='1e-1001'", "max_params='1e-1001': exponent out of range"),
    "code": ("max_params=\"__import__('os').system('touch PWNED')\"", "max_params=\"__import__('os')"),
    "tolerance_code": ("max_params=100, tolerance='1/0'", "tolerance='1/0': not a fraction"),
    "huge_int": ("max_params=10**400", f"max_params={repr(10**400)[:77]}...: out of range"),
    "tiny_float": ("max_gflops=1e-300", "max_gflops=1e-300: out of range"),
    "huge_tolerance": ("max_params=100, tolerance=10**5000", "tolerance=<int object>: out of range"),
    "bytes": ("max_params=b'26M'", "max_params=b'26M': a bytes is not a limit"),
}


def test_hostile_markers_end_to_end(user_project: pytest.Pytester) -> None:
    body = ["import pytest, torch\n\n",
            "class Hostile:\n    def __repr__(self):\n        raise RuntimeError('no')\n\n"]
    for name, (args, _) in END_TO_END.items():
        body.append(f"@pytest.mark.flop_budget({args})\ndef test_{name}(flop_budget):\n"
                    "    raise AssertionError('the model must not be built')\n\n")
    body.append("@pytest.mark.flop_budget(max_params=10**200, max_gflops='1e-209', tolerance='1e202%')\n"
                "def test_extreme_but_valid(flop_budget):\n"
                "    flop_budget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2))\n\n")
    body.append("@pytest.mark.flop_budget(max_params=' 6 ')\ndef test_exactly_at_limit(flop_budget):\n"
                "    flop_budget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2))\n")
    user_project.makepyfile(test_fuzzed="".join(body))
    result = user_project.runpytest("-p", "no:cacheprovider", "-rE")
    # the 1e-209 GFLOPs limit is a real (tiny) limit: that test is over budget, not silently passed
    result.assert_outcomes(passed=1, failed=1, errors=len(END_TO_END))
    text = result.stdout.str()
    assert "INTERNALERROR" not in text and "must not be built" not in text
    for name, (_, message) in END_TO_END.items():
        assert f"test_fuzzed.py::test_{name}: invalid @pytest.mark.flop_budget: {message}" in text, name
    result.stdout.fnmatch_lines(["*test_extreme_but_valid*",
                                 "over budget: max_gflops: 8 flops (8e-09 GFLOPs) > limit 1e-209 GFLOPs (8e+202% of budget, +8e+202%)",
                                 "*test_fuzzed.py::test_extreme_but_valid * 8e+202% * OVER BUDGET"])
    reports = [line for line in text.splitlines() if "invalid @pytest.mark" not in line]
    assert not re.search(r"[0-9]{40}", "\n".join(reports))  # absurd limits do not print hundreds of digits
    assert not (user_project.path / "PWNED").exists()


def test_a_real_that_cannot_be_read_is_named_as_such_for_limits_and_tolerances():
    """A numbers.Real whose float() raises: both readers say so, naming the error."""
    import numbers

    class Unreadable(float):
        def __float__(self):
            raise ValueError("no value")

    assert isinstance(Unreadable(1.0), numbers.Real)
    with pytest.raises(MarkerError, match=r"^max_params=.*: cannot be read as a number \(ValueError\)$"):
        parse_quantity("max_params", Unreadable(1.0), 1)
    with pytest.raises(MarkerError, match=r"^tolerance=.*: cannot be read as a number \(ValueError\)$"):
        parse_tolerance(Unreadable(1.0))
