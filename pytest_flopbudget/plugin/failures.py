"""How failures read: the plugin's own budget failure, and a model's forward that raised while measured.

A forward that fails inside ``flop_budget.measure`` raises through the counting engine's dispatch
mode and torch's module machinery; pytest's default traceback shows every one of those frames with
their arguments (tensor values included), some sixty lines in which the user's line is hard to
find. Under the default ``--tb=auto`` and verbosity, only the frames of the user's code are shown,
in pytest's short style, with a hint where the error has a common cause; ``-v``, ``--tb=long`` or
``--fulltrace`` show everything, as usual.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import pytest_flopbudget
from pytest_flopbudget.counting.errors import wants_integer_inputs


class FlopBudgetFailure(Exception):
    """Raised at the end of a test's call phase when its measurements fail the budget or the baseline.

    An exception (not a rewritten report) so that ``@pytest.mark.xfail`` and pytest-rerunfailures
    treat a budget failure like any other test failure.
    """


def budget_repr(excinfo: pytest.ExceptionInfo[BaseException], item: pytest.Item, message: str) -> Any:
    """The failure as pytest prints ``pytest.fail(..., pytrace=False)``: the message, no traceback;
    the crash line (``--tb=line``, the short summary) is the test's location and the first line."""
    longrepr = excinfo.getrepr(style="value")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        crash.path = str(item.path)
        crash.lineno = (item.location[1] or 0) + 1
        crash.message = message.splitlines()[0] if message else ""
    return longrepr


def _internal_paths() -> tuple[str, ...]:
    """Where frames are not the user's: this package, pytest, pluggy, torch, and the standard
    library's contextlib (the fixture's ``count()`` is a context manager)."""
    dirs = [Path(pytest_flopbudget.__file__).parent, Path(pytest.__file__).parent.parent / "_pytest"]
    for name in ("torch", "pluggy"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            dirs.append(Path(module.__file__).parent)  # type: ignore[arg-type]
    return (*(os.fspath(d) + os.sep for d in dirs), contextlib.__file__)


def _in_package(path: Any) -> bool:
    package = os.fspath(Path(pytest_flopbudget.__file__).parent) + os.sep
    return os.fspath(path).startswith(package)


def _where_values_were_read(error: BaseException, internal: tuple[str, ...]) -> str | None:
    """The user's line a meta block failed on (``idx = y.nonzero()``), not the ``with`` line where
    the block reported it: the innermost user frame of the error the engine explained."""
    from pytest_flopbudget.counting.errors import MeasurementError

    cause = error.__cause__ if isinstance(error, MeasurementError) else None
    tb = getattr(cause, "__traceback__", None)
    found = None
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename
        if not path.startswith(internal) and not path.startswith("<"):
            found = tb
        tb = tb.tb_next
    if found is None:
        return None
    import linecache

    path, lineno = found.tb_frame.f_code.co_filename, found.tb_lineno
    return f"{os.path.basename(path)}:{lineno}: {linecache.getline(path, lineno).strip()}"


def short_forward_failure(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> Any | None:
    """A few lines for an exception raised through the engine or the fixture (a model's forward,
    a misuse of ``flop_budget``), or None to leave pytest's own."""
    config = item.config
    if (config.getoption("tbstyle", "auto") != "auto" or config.get_verbosity() > 0
            or config.getoption("fulltrace", False)):
        return None
    if not any(_in_package(entry.path) for entry in excinfo.traceback):
        return None
    internal = _internal_paths()
    user_frames = excinfo.traceback.filter(lambda entry: not os.fspath(entry.path).startswith(internal))
    if not user_frames:
        return None
    excinfo.traceback = user_frames
    longrepr = excinfo.getrepr(style="short", funcargs=False, showlocals=bool(config.getoption("showlocals", False)),
                               chain=False)
    line = _where_values_were_read(excinfo.value, internal)
    if line is not None:
        longrepr.addsection("flop budget", f"the code read tensor values here: {line}")
    if wants_integer_inputs(excinfo.value):
        longrepr.addsection("flop budget", "the model wants integer inputs (token ids, indices): build them with "
                            "dtype=torch.long, e.g. torch.zeros(1, 128, dtype=torch.long); -v shows the full traceback")
    return longrepr
