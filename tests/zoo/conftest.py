"""The zoo runs where its libraries do (CI's newest environment: torchvision, timm, diffusers,
transformers). Where timm or torchvision cannot be imported, nothing here is collected and the run
says so in one line, instead of a skip line per model."""

from __future__ import annotations

from zoo_helpers import optional

UNUSABLE = [reason for reason in (optional(name)[1] for name in ("torchvision", "timm")) if reason]

# Relative to this directory: every test module of the zoo.
collect_ignore_glob = ["test_*.py"] if UNUSABLE else []


def pytest_report_collectionfinish(config, start_path, items) -> str | None:
    if not UNUSABLE:
        return None
    return "tests/zoo not collected (it runs in CI's newest environment): " + "; ".join(UNUSABLE)
