"""The commands the plugin's messages tell people to run, spelled in one place.

Hints in the plugin, the session summary and the baseline file's header build them from here, so
renaming an option cannot leave a message telling people to run a flag that no longer exists
(tests/plugin/test_options.py checks that each is a flag the plugin registers). Imports nothing:
the baseline module, the lowest of the reporting package, reads it too.
"""

from __future__ import annotations

from typing import Sequence

UPDATE_OPTION = "--flop-update-baseline"
PRUNE_OPTION = "--flop-prune-baseline"
STRICT_OPTION = "--flop-strict"


def update_command(*options: str) -> str:
    """``pytest --flop-update-baseline``, followed by ``options`` (those of this run that decide what
    is written, such as ``--flop-baseline=PATH``)."""
    return " ".join(("pytest", UPDATE_OPTION, *options))


UPDATE_HINT = update_command()
PRUNE_COMMAND = f"pytest {PRUNE_OPTION}"


def prune_hint(failing: bool) -> str:
    """What to do about stale entries; says when they fail the run."""
    return f"remove stale entries: {PRUNE_COMMAND}" + (f" (failing: {STRICT_OPTION})" if failing else "")


def merge_update_command(reports: Sequence[object], baseline: str | None = None) -> str:
    """``flopbudget merge REPORTS... --update``: how a sharded run accepts what its merge judged
    (it writes the baseline a serial update run writes); ``--baseline`` where it is not the default."""
    import shlex

    parts = ["flopbudget", "merge", *(shlex.quote(str(report)) for report in reports)]
    if baseline is not None:
        parts += ["--baseline", shlex.quote(baseline)]
    return " ".join([*parts, "--update"])
