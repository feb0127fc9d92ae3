"""The baseline workflow end to end: create, regress, improve, partial updates, stale, prune, corrupt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from plugin_project import Project, linear_flops, linear_params

NET = """
class Net(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU())
        self.head = torch.nn.Linear(hidden, 2)

    def forward(self, x):
        return self.head(self.encoder(x))

"""


def net_test(hidden: int) -> str:
    return NET + ("def test_net(flop_budget):\n"
                  f"    flop_budget.measure(Net({hidden}), torch.zeros(1, 8))\n")


def net_flops(hidden: int) -> int:
    return linear_flops(1, 8, hidden) + hidden + linear_flops(1, hidden, 2)  # + one per ReLU element


def test_create_regress_and_name_the_modules_that_grew(project: Project) -> None:
    project.write("test_net.py", net_test(4))
    result = project.run()
    result.stdout.fnmatch_lines(["test_net.py::test_net * new", "*accept these changes: pytest --flop-update-baseline*"])
    assert not project.baseline.exists()  # only --flop-update-baseline writes
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    data = project.load()
    assert data["format"] == 2 and data["torch"] == torch_version()
    entry = data["entries"]["test_net.py::test_net"]
    assert entry["flops"] == net_flops(4)
    assert entry["params"] == linear_params(8, 4) + linear_params(4, 2)
    assert set(entry["modules"]) == {"encoder", "encoder.0", "encoder.1", "head"}  # depth 2, root excluded
    assert entry["modules"]["head"] == {"type": "Linear", "flops": linear_flops(1, 4, 2), "macs": 10, "params": 10}

    project.write("test_net.py", net_test(6))
    result = project.run("-v")
    result.assert_outcomes(failed=1)
    change = (net_flops(6) - net_flops(4)) / net_flops(4) * 100
    result.stdout.fnmatch_lines([
        "*::test_net FLOPS REGRESSED*",
        f"flops regressed: {net_flops(6)} vs baseline {net_flops(4)} (+{change:.1f}%, tolerance 0)",
        # the deepest modules that account for the growth: the Sequential is only their sum
        "  grown: encoder.0 (Linear), head (Linear), encoder.1 (ReLU)",
        f"*grew: encoder.0 (Linear): flops {linear_flops(1, 8, 4)} -> {linear_flops(1, 8, 6)} (+50.0%)*",
    ])
    # within the tolerance it passes
    project.run(f"--flop-tolerance={change / 100 + 0.001:.4f}").assert_outcomes(passed=1)
    # updating accepts it and rewrites the entry
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    assert project.load()["entries"]["test_net.py::test_net"]["flops"] == net_flops(6)
    # smaller again: passes, says the baseline can be tightened
    project.write("test_net.py", net_test(5))
    result = project.run()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_net.py::test_net * improved", "*accept these changes*"])


def torch_version() -> str:
    from importlib.metadata import version

    return version("torch")


def test_over_budget_fails_even_while_updating(project: Project) -> None:
    project.write("test_a.py", project.linear_test("test_a", 8, 4, 1, f"max_params={linear_params(8, 4) - 1}"))
    result = project.run("--flop-update-baseline")
    result.assert_outcomes(failed=1)
    assert project.load()["entries"]["test_a.py::test_a"]["params"] == linear_params(8, 4)


def test_partial_updates_keep_other_entries(project: Project) -> None:
    project.write("test_a.py", project.linear_test("test_a1", 8, 4), project.linear_test("test_a2", 8, 4))
    project.write("test_b.py", project.linear_test("test_b", 8, 4))
    project.run("--flop-update-baseline").assert_outcomes(passed=3)
    project.write("test_a.py", project.linear_test("test_a1", 8, 5), project.linear_test("test_a2", 8, 5))
    project.write("test_b.py", project.linear_test("test_b", 8, 5))
    project.run("--flop-update-baseline", "-k", "a1").assert_outcomes(passed=1)
    project.run("--flop-update-baseline", "test_b.py").assert_outcomes(passed=1)
    entries = project.load()["entries"]
    assert [entries[k]["flops"] for k in ("test_a.py::test_a1", "test_a.py::test_a2", "test_b.py::test_b")] == [
        linear_flops(1, 8, 5), linear_flops(1, 8, 4), linear_flops(1, 8, 5)]
    project.run("--flop-update-baseline", "test_a.py::test_a2").assert_outcomes(passed=1)
    assert project.load()["entries"]["test_a.py::test_a2"]["flops"] == linear_flops(1, 8, 5)


def test_update_with_last_failed_is_partial_and_safe(project: Project) -> None:
    project.write("test_a.py", project.linear_test("test_a", 8, 4), project.linear_test("test_b", 8, 4))
    project.pytester.runpytest("--flop-update-baseline").assert_outcomes(passed=2)
    project.write("test_a.py", project.linear_test("test_a", 8, 4), project.linear_test("test_b", 8, 6))
    project.pytester.runpytest().assert_outcomes(passed=1, failed=1)
    project.pytester.runpytest("--lf", "--flop-update-baseline").assert_outcomes(passed=1)
    entries = project.load()["entries"]
    assert set(entries) == {"test_a.py::test_a", "test_a.py::test_b"}
    assert entries["test_a.py::test_b"]["flops"] == linear_flops(1, 8, 6)
    result = project.pytester.runpytest("--lf", "--flop-prune-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--flop-prune-baseline refused: --lf selects part of the suite*"])


def test_stale_entries_are_listed_and_pruned_on_full_runs_only(project: Project) -> None:
    project.write("test_a.py", project.linear_test("test_keep", 8, 4), project.linear_test("test_gone", 8, 4))
    project.write("test_b.py", project.linear_test("test_file_gone", 8, 4))
    project.run("--flop-update-baseline").assert_outcomes(passed=3)
    project.write("test_a.py", project.linear_test("test_keep", 8, 4), "def test_other():\n    pass\n")
    (project.pytester.path / "test_b.py").unlink()

    result = project.run()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "stale baseline entries (tests that no longer exist or no longer measure):",
        "  test_a.py::test_gone", "  test_b.py::test_file_gone",
        "flopbudget: 1 ok, 2 stale",
        "remove stale entries: pytest --flop-prune-baseline",
    ])
    # a partial run does not call anything stale, and refuses to prune
    result = project.run("-k", "keep")
    assert "stale baseline entries" not in result.stdout.str()
    for args in (["-k", "keep"], ["-m", "slow"], ["test_a.py"], ["test_a.py::test_keep"]):
        result = project.run("--flop-prune-baseline", *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, args
        result.stderr.fnmatch_lines(["*--flop-prune-baseline refused:*"])
    assert len(project.load()["entries"]) == 3
    # strict fails on stale entries, and says so even at -q
    result = project.run("--flop-strict", "-q")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["stale baseline entries: test_a.py::test_gone, test_b.py::test_file_gone",
                                 "remove stale entries: pytest --flop-prune-baseline (failing: --flop-strict)"])
    assert "2 passed, 2 stale (--flop-strict) in " in result.stdout.lines[-1]
    # the same under xdist (the controller's line), and next to a plugin that reads every report (hypothesis)
    result = project.run("--flop-strict", "-q", "-n", "2", "-p", "hypothesis")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "2 passed, 2 stale (--flop-strict) in " in result.stdout.lines[-1]
    result = project.run("--flop-prune-baseline")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["pruned 2 stale entries: test_a.py::test_gone, test_b.py::test_file_gone"])
    assert set(project.load()["entries"]) == {"test_a.py::test_keep"}
    assert project.run("--flop-strict").ret == pytest.ExitCode.OK


def test_prune_is_refused_when_collection_fails(project: Project) -> None:
    project.write("test_a.py", project.linear_test("test_a", 8, 4))
    project.write("test_b.py", project.linear_test("test_b", 8, 4))
    project.run("--flop-update-baseline").assert_outcomes(passed=2)
    project.pytester.makepyfile(test_b="import not_a_module_anywhere\n")
    result = project.run("--flop-prune-baseline")
    result.stdout.fnmatch_lines(["*--flop-prune-baseline refused: this run was partial (some files failed to collect)*"])
    assert set(project.load()["entries"]) == {"test_a.py::test_a", "test_b.py::test_b"}


def test_rewrite_is_byte_identical_and_skipped_when_unchanged(project: Project) -> None:
    project.write("test_a.py", project.linear_test("test_z", 8, 4), project.linear_test("test_a", 4, 2, 2, label="x"))
    project.run("--flop-update-baseline").assert_outcomes(passed=2)
    first = project.baseline.read_bytes()
    assert b"test_a.py::test_a#x:" in first
    assert first.index(b"test_a.py::test_a#x") < first.index(b"test_a.py::test_z")
    for word in (b"time", b"host", os.uname().nodename.encode()):
        assert word not in first
    before = os.stat(project.baseline)
    project.run("--flop-update-baseline", "-p", "no:randomly").assert_outcomes(passed=2)
    after = os.stat(project.baseline)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    project.baseline.unlink()
    project.run("--flop-update-baseline").assert_outcomes(passed=2)
    assert project.baseline.read_bytes() == first
    assert [p.name for p in project.pytester.path.iterdir() if p.name.endswith(".tmp")] == []


CORRUPT = [
    ("format: 1\nentries:\n  test_a.py::test_a:\n    flops: [1\n", 5, "not valid YAML"),
    # an unclosed mapping is noticed on the next line: the message names the line it began on too
    ("format: 2\nentries:\n  test_a.py::test_a:\n    modules:\n      fc: {type: Linear, flops: 1\n      fd: {}\n",
     6, "not valid YAML: did not find expected ',' or '}' (while parsing a flow mapping at line 5)"),
    ("format: 1\nentries:\n  test_a.py::test_a: {flops: 1, macs: 1, params: 1}\n"
     "  test_a.py::test_a: {flops: 2, macs: 1, params: 1}\n", 4, "duplicate key 'test_a.py::test_a'"),
    ("format: 1\nentries:\n  test_a.py::test_a: {flops: -1, macs: 1, params: 1}\n", 3, "flops must be a non-negative integer"),
]


@pytest.mark.parametrize(("text", "line", "message"), CORRUPT)
def test_corrupt_baseline_is_an_error_and_never_overwritten(project: Project, text: str, line: int, message: str) -> None:
    project.baseline.write_text(text)
    project.write("test_a.py", project.linear_test("test_a", 8, 4))
    result = project.run("--flop-update-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{project.baseline}:{line}: *{message}*restore the file from version control*"])
    assert project.baseline.read_text() == text


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"], ids=["zero-bytes", "blank", "comments"])
def test_an_empty_baseline_file_is_refused_for_judging_and_filled_by_an_update(project: Project, text: str) -> None:
    """A truncated baseline read as one with no entries would pass every test as new: no regression
    could fail the run, and nothing would say why."""
    project.write("test_a.py", project.linear_test("test_a", 8, 4))
    project.baseline.write_text(text)
    for args in ([], ["--flop-strict"], ["-n", "2"]):
        result = project.run(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, args
        result.stderr.fnmatch_lines([f"*{project.baseline}: the baseline file is empty (no header, no entries), so "
                                     "every test would pass as new: restore it from version control*"])
        assert project.baseline.read_text() == text
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    linear = 4 * (2 * 8 - 1) + 4  # one row through Linear(8, 4): the seed's FC rule with bias
    assert project.load()["entries"]["test_a.py::test_a"]["flops"] == linear
    project.run().assert_outcomes(passed=1)


def test_hostile_yaml_does_not_run(project: Project) -> None:
    flag = project.pytester.path / "pwned"
    text = f"format: 1\nentries: !!python/object/apply:os.system ['touch {flag}']\n"
    project.baseline.write_text(text)
    project.write("test_a.py", project.linear_test("test_a", 8, 4))
    result = project.run("--flop-update-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{project.baseline}:2: the baseline is not valid YAML*"])
    assert not flag.exists()
    assert project.baseline.read_text() == text


def test_a_symlinked_baseline_is_written_through_to_its_target(project: Project) -> None:
    """Issue 19.6: os.replace on the link replaced the link with a plain file, the target never updated."""
    project.write("test_net.py", net_test(4))
    shared = project.pytester.path / "shared"
    shared.mkdir()
    target = shared / "baseline.yaml"
    target.write_text("format: 2\nentries: {}\n")
    project.baseline.symlink_to(Path("shared") / "baseline.yaml")
    project.run("--flop-update-baseline").assert_outcomes(passed=1)
    assert project.baseline.is_symlink() and project.baseline.resolve() == target.resolve()
    import yaml

    entry = yaml.safe_load(target.read_text())["entries"]["test_net.py::test_net"]
    assert entry["flops"] == net_flops(4)
    assert not [p.name for p in project.pytester.path.iterdir() if p.name.endswith(".tmp")]  # nothing beside the link
