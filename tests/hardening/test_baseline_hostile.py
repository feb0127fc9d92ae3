"""Hostile baseline files: each is read correctly, or refused with an error naming the file, the
entry (or line) and the problem; the file is never changed and nothing in it is run."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from pytest_flopbudget.counting.measurement import ModuleCost
from pytest_flopbudget.reporting.baseline import BaselineError, Entry, dump, load, torch_version

GOOD = "format: 1\ntorch: 2.13.0\nentries:\n  t.py::a: {flops: 8, macs: 6, params: 6}\n"
LAUGHS = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))

HOSTILE = {
    "not yaml": ("format: 1\nentries:\n  t: {flops: [1\n", "4:", "not valid YAML"),
    "a list": ("- format\n- 1\n", "1:", "expected a mapping with format, torch and entries, got list"),
    "a string": ("hello baseline\n", "1:", "got str"),
    "a number": ("42\n", "1:", "got int"),
    "string count": ("format: 1\nentries:\n  t.py::a: {flops: '8', macs: 6, params: 6}\n", "3:",
                     "entry 't.py::a': flops must be a non-negative integer, got '8'"),
    "negative count": ("format: 1\nentries:\n  t.py::a: {flops: 8, macs: -6, params: 6}\n", "3:",
                       "entry 't.py::a': macs must be a non-negative integer, got -6"),
    "float count": ("format: 1\nentries:\n  t.py::a: {flops: 8, macs: 6, params: 6.0}\n", "3:",
                    "entry 't.py::a': params must be a non-negative integer, got 6.0"),
    "bool count": ("format: 1\nentries:\n  t.py::a: {flops: yes, macs: 6, params: 6}\n", "3:",
                   "flops must be a non-negative integer, got True"),
    "huge count": ("format: 1\nentries:\n  t.py::a: {flops: " + "9" * 5000 + ", macs: 6, params: 6}\n", "",
                   "not valid YAML"),
    "missing field": ("format: 1\nentries:\n  t.py::a: {flops: 8, params: 6}\n", "3:", "entry 't.py::a': missing macs"),
    "entry not a mapping": ("format: 1\nentries:\n  t.py::a: 8\n", "3:", "entry 't.py::a' must be a mapping"),
    "duplicate entry": ("format: 1\nentries:\n  t.py::a: {flops: 8, macs: 6, params: 6}\n"
                        "  t.py::a: {flops: 9, macs: 6, params: 6}\n", "4:", "duplicate key 't.py::a' (first at line 3)"),
    "duplicate top key": ("format: 1\nformat: 1\nentries: {}\n", "2:", "duplicate key 'format'"),
    "future format": ("format: 3\ntorch: 9.0\nentries: {}\n", "1:", "format must be 2 (or the older 1), got 3"),
    "no format": ("entries: {}\n", "1:", "format must be 2 (or the older 1), got None"),
    "python tag": ("format: 1\nentries: !!python/object/apply:os.system ['touch PWNED']\n", "2:",
                   "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    "python name": ("format: 1\nentries:\n  t.py::a: !!python/name:os.system\n", "3:", "python/name:os.system"),
    "bad date": ("format: 1\ntorch: 2001-13-45\nentries: {}\n", "", "month must be in 1..12"),
    "deep nesting": ("format: 1\nentries: " + "[" * 20000 + "]" * 20000 + "\n", "", "not valid YAML"),
    "billion laughs": (LAUGHS, "1:", "unknown top-level key 'a'"),
    "billion laughs in entries": ("format: 1\nentries:\n  " + LAUGHS.replace("\n", "\n  "), "3:",
                                  "entry 'a' must be a mapping"),
    "two documents": ("format: 1\n---\nformat: 1\n", "2:", "not valid YAML"),
    "NUL byte": ("format: 1\x00\n", "", "not valid YAML"),
    "unknown module field": ("format: 1\nentries:\n  t.py::a: {flops: 8, macs: 6, params: 6, modules: "
                             "{fc: {type: Linear, flops: 1, macs: 1, params: 1, color: red}}}\n", "3:",
                             "module 'fc': unknown field 'color'"),
    "non-string key": ("format: 1\nentries:\n  12: {flops: 8, macs: 6, params: 6}\n", "3:", "entry key 12"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_is_refused_naming_file_line_and_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              name: str) -> None:
    text, line, message = HOSTILE[name]
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "flop_baseline.yaml"
    path.write_text(text, encoding="utf-8")
    before = path.read_bytes()
    started = time.perf_counter()
    with pytest.raises(BaselineError) as info:
        load(path)
    assert time.perf_counter() - started < 5  # no alias blow-up, no giant integers
    assert str(info.value).startswith(f"{path}:{line}" if line else f"{path}:")
    assert message in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flop_baseline.yaml"]  # nothing ran, nothing written


@pytest.mark.parametrize("name", ["python tag", "future format", "duplicate entry", "billion laughs", "bad date"])
def test_hostile_file_stops_an_update_run_and_is_kept(user_project: pytest.Pytester, name: str) -> None:
    text, line, message = HOSTILE[name]
    path = user_project.path / "flop_baseline.yaml"
    path.write_bytes(text.encode())
    user_project.makepyfile(test_a="import torch\n\ndef test_a(flop_budget):\n"
                                   "    flop_budget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2))\n")
    result = user_project.runpytest("-p", "no:cacheprovider", "--flop-update-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"{path}:{line}" in err and message in err and "INTERNALERROR" not in err + result.stdout.str()
    assert path.read_bytes() == text.encode()
    assert not (user_project.path / "PWNED").exists()


@pytest.mark.parametrize("encode", [
    lambda text: text.encode(),
    lambda text: text.replace("\n", "\r\n").encode(),
    lambda text: b"\xef\xbb\xbf" + text.encode(),
    lambda text: b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode(),
], ids=["lf", "crlf", "bom", "bom-crlf"])
def test_bom_and_crlf_are_read_and_left_alone(user_project: pytest.Pytester, encode) -> None:
    path = user_project.path / "flop_baseline.yaml"
    data = encode(GOOD.replace("t.py::a", "test_a.py::test_a"))
    path.write_bytes(data)
    assert load(path).entries == {"test_a.py::test_a": Entry(8, 6, 6, uncounted=None, estimated=None)}  # format 1: not recorded
    user_project.makepyfile(test_a="import torch\n\ndef test_a(flop_budget):\n"
                                   "    flop_budget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2))\n")
    result = user_project.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["flopbudget: 1 ok"])
    assert path.read_bytes() == data  # a plain run never writes


IDS = {
    "colon": "a:b::c",
    "hash": "x#y",
    "quotes": "it's \"quoted\"",
    "unicode": "naïve-Σ-日本",
    "yaml-ish": "- ? : {} [] & * ! | > % @ `",
    "long": "L" * 300,
    "spaces": "  padded  ",
}


def test_node_ids_with_yaml_special_characters_round_trip(user_project: pytest.Pytester) -> None:
    params = ", ".join(f"pytest.param({i}, id={value!r})" for i, value in enumerate(IDS.values()))
    user_project.makepyfile(test_ids=(
        "import pytest, torch\n\n"
        f"@pytest.mark.parametrize('i', [{params}])\n"
        "def test_p(flop_budget, i):\n"
        "    flop_budget.measure(torch.nn.Linear(2, 1 + i), torch.zeros(1, 2), label='lab')\n"
        "    flop_budget.measure(torch.nn.Linear(3, 1 + i), torch.zeros(1, 3), label='other')\n"
    ))
    path = user_project.path / "flop_baseline.yaml"
    user_project.runpytest("-p", "no:cacheprovider", "--flop-update-baseline").assert_outcomes(passed=len(IDS))
    first = path.read_bytes()
    entries = load(path).entries
    assert len(entries) == 2 * len(IDS)
    collected = user_project.runpytest("-p", "no:cacheprovider", "--collect-only", "-q").stdout.lines
    nodeids = [line for line in collected if line.startswith("test_ids.py::")]
    assert {f"{n}#{lab}" for n in nodeids for lab in ("lab", "other")} == set(entries)
    long_key = next(k for k in entries if "L" * 300 in k)
    assert entries[long_key].flops == (2 * 2 - 1) * 6 + 6  # Linear(2, 6): id "long" is index 5
    # the next runs find every entry: all ok, nothing new or stale, and an update rewrites nothing
    result = user_project.runpytest("-p", "no:cacheprovider", "--flop-strict")
    result.assert_outcomes(passed=len(IDS))
    result.stdout.fnmatch_lines([f"flopbudget: {2 * len(IDS)} ok"])
    user_project.runpytest("-p", "no:cacheprovider", "--flop-update-baseline", "-p", "no:randomly")
    assert path.read_bytes() == first


def baseline_text(count: int) -> tuple[str, dict[str, Entry]]:
    """A baseline of ``count`` entries with a module breakdown each, as the plugin writes it (the
    dump of one entry, repeated: dumping thousands is the slow part), and the entries it holds."""
    modules = {f"layer{j}": ModuleCost("Linear", j, j, j) for j in range(6)}
    entries = {f"tests/test_zoo.py::test_model[{'cfg' * 10}-{i}]": Entry(i, i // 2, i % 1000, modules)
               for i in range(count)}
    one = dump({"KEY": Entry(1, 2, 3, modules)}, torch_version())
    head, body = one.split("entries:\n")
    template = body.replace("{", "{{").replace("}", "}}").replace("KEY", "{key}").replace("flops: 1\n", "flops: {flops}\n", 1) \
        .replace("macs: 2\n", "macs: {macs}\n", 1).replace("params: 3\n", "params: {params}\n", 1)
    text = head + "entries:\n" + "".join(template.format(key=k, flops=e.flops, macs=e.macs, params=e.params)
                                        for k, e in sorted(entries.items()))
    assert text.startswith(dump({}, torch_version()).split("entries:")[0])
    return text, entries


def python_calls(action: Callable[[], object]) -> int:
    """Python function calls made by ``action``: a measure of work that machine load cannot change
    (wall-clock bounds failed on a loaded 2-core machine; the timings are in bench/baseline_load.py)."""
    calls = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        calls += event == "call"

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return calls


def test_reading_a_baseline_is_linear_in_its_size_and_skips_the_python_parser(tmp_path: Path) -> None:
    small, large = tmp_path / "small.yaml", tmp_path / "large.yaml"
    small_text, small_entries = baseline_text(200)
    large_text, large_entries = baseline_text(2000)
    small.write_text(small_text)
    large.write_text(large_text)
    assert load(small).entries == small_entries and load(large).entries == large_entries
    small_calls, large_calls = python_calls(lambda: load(small)), python_calls(lambda: load(large))
    # ten times the entries, about ten times the work (an alias or duplicate check that revisits
    # nodes, or a per-entry scan of the whole file, makes it ~100 times)
    assert large_calls <= 11 * small_calls, (small_calls, large_calls)
    # and the text is parsed by libyaml: PyYAML's pure-Python parser alone makes many more calls
    import yaml

    pure_python_parse = python_calls(lambda: yaml.compose(small_text, Loader=yaml.SafeLoader))
    assert small_calls * 3 < pure_python_parse, (small_calls, pure_python_parse)


@pytest.mark.slow
def test_a_10_mb_baseline_is_read_whole(tmp_path: Path) -> None:
    text, entries = baseline_text(21000)
    path = tmp_path / "flop_baseline.yaml"
    path.write_text(text)
    assert path.stat().st_size > 10_000_000
    assert load(path).entries == entries
