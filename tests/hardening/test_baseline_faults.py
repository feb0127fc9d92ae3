"""Faults while the baseline is written: SIGKILL at any moment, and two processes updating at once.

The contract: the file is always the old one or the new one, never partial; temporary files of a
killed writer are removed by the next run; concurrent updates lose no entry (the read-merge-write
is locked, and the file re-read under the lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_flopbudget.reporting import baseline as bl

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL") or sys.platform == "win32",
                                reason="POSIX signals and flock")

WRITER = textwrap.dedent("""
    import os, stat, sys
    from pathlib import Path
    from pytest_flopbudget.reporting import baseline as bl

    def pause(event):
        # tell the parent where the writer is, and wait: the parent answers "go" or kills it here
        print(event, flush=True)
        if sys.stdin.readline().strip() != "go":
            sys.exit(3)

    real_fsync, real_replace = os.fsync, os.replace
    def fsync(fd):
        real_fsync(fd)
        if stat.S_ISREG(os.fstat(fd).st_mode):  # the temporary file, written and synced, not renamed
            pause("temp synced")
    def replace(src, dst):
        real_replace(src, dst)
        pause("replaced")
    os.fsync, os.replace = fsync, replace

    def entries(version):
        return {f"tests/test_m.py::test_{i}[{'p' * 40}]": bl.Entry(i * version, i, i) for i in range(400)}

    path = Path(sys.argv[1])
    pause("ready")
    bl.update(path, entries(2))
    bl.update(path, entries(1))
    pause("done")
""")


def contents(version: int) -> bytes:
    entries = {f"tests/test_m.py::test_{i}[{'p' * 40}]": bl.Entry(i * version, i, i) for i in range(400)}
    return bl.dump(entries, bl.torch_version()).encode()


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def kill_at(script: Path, path: Path, event: str, occurrence: int) -> None:
    """Run the writer and SIGKILL it when it reaches ``event`` for the ``occurrence``-th time."""
    child = subprocess.Popen([sys.executable, str(script), str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    seen: dict[str, int] = {}
    try:
        while True:
            line = child.stdout.readline().strip()
            assert line, f"the writer ended before {event} #{occurrence}"
            seen[line] = seen.get(line, 0) + 1
            if (line, seen[line]) == (event, occurrence):
                os.kill(child.pid, signal.SIGKILL)
                break
            child.stdin.write("go\n")
            child.stdin.flush()
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()


# The writer writes version 2 (new) over version 1 (old), then version 1 again; each kill lands at
# one moment of that sequence (the writer stops there until the parent answers), and the file is
# then exactly the old or the new one, with a temporary file left only by a kill inside a write.
KILLS = [
    ("ready", 1, "old", 0),  # before any write
    ("temp synced", 1, "old", 1),  # new version in the temp file, not renamed yet
    ("replaced", 1, "new", 0),  # renamed, directory not yet synced
    ("temp synced", 2, "new", 1),  # second write (old content again) in the temp file
    ("replaced", 2, "old", 0),
]


@pytest.mark.slow
def test_sigkill_at_each_moment_of_a_write_leaves_old_or_new_and_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "flop_baseline.yaml"
    versions = {"old": contents(1), "new": contents(2)}
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    for event, occurrence, expected, temps in KILLS:
        path.write_bytes(versions["old"])  # a temp file of the previous kill stays: the writer cleans it
        kill_at(script, path, event, occurrence)
        assert path.read_bytes() == versions[expected], (event, occurrence)
        assert len(temp_files(tmp_path)) == temps, (event, occurrence, temp_files(tmp_path))
        assert bl.load(path).exists  # and it parses
    bl.clean_stale_temp_files(path)
    assert temp_files(tmp_path) == []
    assert path.read_bytes() == versions["old"]


def test_a_stale_temp_file_is_removed_by_the_next_run_and_never_read(user_project: pytest.Pytester) -> None:
    user_project.makepyfile(test_a="import torch\n\ndef test_a(flop_budget):\n"
                                   "    flop_budget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2))\n")
    stale = user_project.path / ".flop_baseline.yaml.abc123.tmp"
    stale.write_text("format: 1\nentries:\n  half-writ")
    other = user_project.path / "notes.tmp"  # not ours: left alone
    other.write_text("keep")
    result = user_project.runpytest("-p", "no:cacheprovider")  # not even an update: start-up cleans
    result.assert_outcomes(passed=1)
    assert not stale.exists() and other.read_text() == "keep"
    assert not (user_project.path / "flop_baseline.yaml").exists()


def test_update_merges_into_the_file_as_it_is_now(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    start = bl.load(path)  # what a run saw at start-up: nothing
    bl.update(path, {"a": bl.Entry(1, 1, 1)})  # meanwhile another process wrote its entry
    written, count = bl.update(start.path, {"b": bl.Entry(2, 2, 2)})
    assert written and count == 2
    assert set(bl.load(path).entries) == {"a", "b"}
    assert bl.update(path, {"b": bl.Entry(2, 2, 2)}) == (False, 2)  # nothing changed: not rewritten


KILLED_RUN = """
import pytest, torch

@pytest.mark.parametrize("i", range(120))
def test_k(flop_budget, i):
    flop_budget.measure(torch.nn.Linear(4, {width} + i % 5), torch.zeros(1, 4))
"""

# In the user's project: with FLOPBUDGET_PAUSE set, the run stops at each moment of its baseline
# write, says which on stdout (-s: nothing captured), and goes on only when the parent answers.
PAUSING_CONFTEST = """
import os, stat, sys

if os.environ.get("FLOPBUDGET_PAUSE"):
    def pause(event):
        print("@@" + event, flush=True)
        if sys.stdin.readline().strip() != "go":
            sys.exit(3)

    real_fsync, real_replace = os.fsync, os.replace
    def fsync(fd):
        real_fsync(fd)
        if stat.S_ISREG(os.fstat(fd).st_mode):
            pause("temp synced")
    def replace(src, dst):
        real_replace(src, dst)
        pause("replaced")
    os.fsync, os.replace = fsync, replace
"""


def run_update_until(project: Path, event: str | None) -> list[str]:
    """Run ``pytest --flop-update-baseline`` in ``project`` and SIGKILL it at ``event``'s first
    occurrence (None: let it finish). Returns the events it reached."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", "--flop-update-baseline"]
    child = subprocess.Popen(command, cwd=project, env={**os.environ, "FLOPBUDGET_PAUSE": "1"},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdin is not None and child.stdout is not None
    seen: list[str] = []
    try:
        for line in child.stdout:
            _, mark, reached = line.partition("@@")  # after the progress dots, on their line
            if not mark:
                continue
            seen.append(reached.strip())
            if seen[-1] == event:
                os.kill(child.pid, signal.SIGKILL)
                break
            child.stdin.write("go\n")
            child.stdin.flush()
        assert child.wait() == (-signal.SIGKILL if event else 0), seen
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
    return seen


@pytest.mark.slow
def test_sigkill_of_a_real_update_run(user_project: pytest.Pytester) -> None:
    path = user_project.path / "flop_baseline.yaml"
    user_project.makeconftest(PAUSING_CONFTEST)
    user_project.makepyfile(test_k=KILLED_RUN.format(width=1))
    assert run_update_until(user_project.path, None) == ["temp synced", "replaced"]
    old = path.read_bytes()
    user_project.makepyfile(test_k=KILLED_RUN.format(width=2))
    killed = {}
    # new entries in the temp file, not renamed (the temp file stays); renamed (and the previous
    # kill's temp file removed by this run's start-up)
    for event, temps in (("temp synced", 1), ("replaced", 0)):
        path.write_bytes(old)
        run_update_until(user_project.path, event)
        killed[event] = path.read_bytes()
        assert bl.load(path).exists  # whole, and it parses
        assert len(temp_files(user_project.path)) == temps, event
    path.write_bytes(old)
    run_update_until(user_project.path, None)
    new = path.read_bytes()
    assert killed == {"temp synced": old, "replaced": new}
    # what the finished run wrote: Linear(4, w) on one row on cpu: w dot products of 4 terms
    # (7 flops, 4 macs each) plus w bias adds; 4w + w parameters
    entries = bl.load(path).entries
    assert {key: (e.flops, e.macs, e.params, e.device) for key, e in entries.items()} == {
        f"test_k.py::test_k[{i}]": (7 * w + w, 4 * w + w, 4 * w + w, "cpu")
        for i in range(120) for w in [2 + i % 5]}
    # the next run, even a plain one, leaves no temporary file behind
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"], cwd=user_project.path,
                            capture_output=True, text=True)
    assert "INTERNALERROR" not in result.stdout
    assert temp_files(user_project.path) == []


CONCURRENT = """
import pytest, torch

@pytest.mark.parametrize("i", range(40))
def test_{name}(flop_budget, i):
    flop_budget.measure(torch.nn.Linear(4, 1 + i % 5), torch.zeros(1, 4))
"""


@pytest.mark.slow
def test_two_processes_updating_one_baseline_lose_nothing(user_project: pytest.Pytester) -> None:
    for name in ("left", "right"):
        user_project.makepyfile(**{f"test_{name}": CONCURRENT.format(name=name)})
    path = user_project.path / "flop_baseline.yaml"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for attempt in range(2):
        if path.exists():
            path.unlink()
        jobs = [subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                                  f"test_{name}.py", "--flop-update-baseline"],
                                 cwd=user_project.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                for name in ("left", "right")]
        outputs = [job.communicate(timeout=300)[0].decode() for job in jobs]
        assert all(job.returncode == 0 for job in jobs), outputs
        keys = set(bl.load(path).entries)
        assert keys == {f"test_{name}.py::test_{name}[{i}]" for name in ("left", "right") for i in range(40)}, \
            (attempt, len(keys), outputs)
        assert temp_files(user_project.path) == []
