"""The reference counts (.ci/compat/counts.py) under every torch minor between the floor and the
newest, compared with the pinned torch's, one release at a time.

    python bench/torch_releases.py 2.10 2.11      # the minors to check (default: 2.7 to 2.14)

For each minor it makes a temporary virtual environment, installs ``torch==<minor>.*`` from the
registry (on Linux a CUDA build: about 3 GB downloaded, about 5 GB installed; 90 s for 2.10 on the
machine that recorded docs/torch-releases.md), pyyaml, numpy and the reference's transformers
(counts.py imports it), with this checkout on PYTHONPATH, runs ``counts.py compare`` against the
reference the current interpreter writes (run it with the pinned torch, 2.13), prints one row, and
deletes the environment before the next: the disk needed at any time is one environment (about
5 GB, pip's cache off). ``PIP_CONSTRAINT`` is cleared so a constraints file set for the pinned
environment does not pin torch. The reference includes the higher-order ops (flex_attention,
cond, while_loop, invoke_subgraph); each row also says how they reach the counting mode in that
release: torch's generic path (``TorchDispatchMode.supports_higher_order_operators``) or the rule
counting/higher_order.py registers per op where that is missing. The table at the end is what
docs/torch-releases.md records.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COUNTS = ROOT / ".ci" / "compat" / "counts.py"
DEFAULT = [f"2.{minor}" for minor in range(7, 15)]


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


HOP_PATH = ("from torch.utils._python_dispatch import TorchDispatchMode as M; "
            "print('generic' if hasattr(M, 'supports_higher_order_operators') else 'py_impl rule')")


def check_release(minor: str, reference: Path, work: Path) -> tuple[str, str, float, str, str]:
    """(torch version installed, verdict, seconds, how HOPs reach the mode, the comparison's last
    line) for one minor."""
    start = time.monotonic()
    venv = work / f"torch-{minor}"
    env = {**os.environ, "PIP_CONSTRAINT": "/dev/null", "PIP_NO_CACHE_DIR": "1", "PYTHONPATH": str(ROOT)}
    try:
        run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = str(venv / "bin" / "python")
        # counts.py imports transformers: the reference's release, so its architectures compare too
        packages = [f"torch=={minor}.*", "pyyaml", "numpy", f"transformers=={version('transformers')}"]
        install = run([python, "-m", "pip", "install", "-q", *packages], env=env)
        if install.returncode != 0:
            why = install.stderr.strip().splitlines()[-1:][0]
            return "-", "not installable", time.monotonic() - start, "-", why
        installed = run([python, "-c", "import torch; print(torch.__version__)"], env=env).stdout.strip()
        hop_path = run([python, "-c", HOP_PATH], env=env).stdout.strip()
        compare = run([python, str(COUNTS), "compare", str(reference)], env=env, cwd=ROOT)
        lines = [line for line in (compare.stdout + compare.stderr).strip().splitlines()
                 if "Warning" not in line and line.strip()]
        verdict = "equal" if compare.returncode == 0 else "DIFFERS"
        if compare.returncode != 0:
            print(*lines, sep="\n", flush=True)  # every model and op that differs, not only the last
        return installed, verdict, time.monotonic() - start, hop_path, lines[-1] if lines else ""
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def main(argv: list[str]) -> int:
    minors = argv or DEFAULT
    with tempfile.TemporaryDirectory(prefix="flopbudget-torch-releases-") as tmp:
        work = Path(tmp)
        reference = work / "reference.json"
        subprocess.run([sys.executable, str(COUNTS), "write", str(reference)], check=True, cwd=ROOT)
        import torch

        here = run([sys.executable, "-c", HOP_PATH]).stdout.strip()
        rows = [(f"reference: torch {torch.__version__}", "", "", here, "")]
        for minor in minors:
            print(f"torch {minor}: installing and comparing...", flush=True)
            installed, verdict, seconds, hop_path, detail = check_release(minor, reference, work)
            rows.append((f"torch {installed} ({minor})", verdict, f"{seconds:.0f} s", hop_path, detail))
            print("| " + " | ".join(rows[-1]) + " |", flush=True)  # each row as soon as it is known
    print("| release | counts vs the reference | time (install + compare) | HOPs reach the mode by "
          "| counts.py's last line |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0 if all(r[1] in ("", "equal") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
