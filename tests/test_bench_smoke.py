"""The benchmark's plumbing only (no timings, no models): bench/run.py --dry-run lists its plan."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_dry_run_lists_every_workload():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--dry-run"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("resnet50", "bert_base_sdpa", "bert_base_eager", "gpt2_small", "llama_7b"):
        assert name in proc.stdout
    assert "fb-meta" in proc.stdout and "torch-fcm" in proc.stdout
