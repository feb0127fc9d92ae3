"""Session set-up and fixtures for the plugin's end-to-end tests.

torch is imported here, before any pytester run: in-process runs restore ``sys.modules`` afterwards,
and a torch first imported inside one of them would be dropped and re-imported (which torch does
not survive).
"""

from __future__ import annotations

import pytest
import torch  # noqa: F401  (see the module docstring)

import pytest_flopbudget
from plugin_project import Project

# torch imports more of itself on first use (FakeTensorMode for meta, autograd for backward): do it
# now, outside any pytester run, for the same reason
pytest_flopbudget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2), device="meta", backward=True)
pytest_flopbudget.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2), device="cpu", backward=True)


@pytest.fixture
def project(pytester: pytest.Pytester) -> Project:
    return Project(pytester)
