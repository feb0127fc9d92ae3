"""Time reading a large baseline (the load-time claim in README/plugin docs; never asserted in tests).

    python bench/baseline_load.py            # 21000 entries with a module breakdown each, ~10 MB
    python bench/baseline_load.py --entries 1600 --repeats 5

Prints the file size and, per repeat, process CPU time and wall time of ``baseline.load``. CPU time
is what to compare across runs on a shared machine; wall time is inflated by other jobs. The tests
bound the *work* instead (tests/hardening/test_baseline_hostile.py counts Python calls).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "hardening"))

from test_baseline_hostile import baseline_text  # noqa: E402  (the same file the tests read)

from pytest_flopbudget.reporting.baseline import load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=21000)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    text, entries = baseline_text(options.entries)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "flop_baseline.yaml"
        path.write_text(text)
        print(f"{options.entries} entries, {path.stat().st_size / 1e6:.1f} MB")
        for repeat in range(options.repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            loaded = load(path)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            assert loaded.entries == entries
            print(f"repeat {repeat + 1}: {cpu:.2f} s CPU, {wall:.2f} s wall")


if __name__ == "__main__":
    main()
