"""Fixtures for the hardening tests: hostile input, faults, concurrency and long suites.

torch is imported (and warmed up on meta and with backward) before any in-process pytester run, for
the reason given in tests/plugin/conftest.py: a torch first imported inside such a run would be
dropped from ``sys.modules`` afterwards and re-imported, which torch does not survive.
"""

from __future__ import annotations

import pytest
import torch

import pytest_flopbudget

pytest_flopbudget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2), device="meta", backward=True)
pytest_flopbudget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2), device="cpu", backward=True)


@pytest.fixture
def user_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """An empty user repository (its own ini file, so the repository's pytest settings stay out)."""
    pytester.makeini("[pytest]\n")
    return pytester
