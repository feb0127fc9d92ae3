"""pytest-flopbudget: compute budgets for neural networks, enforced in the test suite.

The public API is re-exported lazily: pytest imports this package for its plugin in every run,
and a run that measures nothing must not pay for importing torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

# public name -> the engine module that defines it
_EXPORTS = {
    "count": "pytest_flopbudget.counting.block",
    "Counted": "pytest_flopbudget.counting.block",
    "FormulaError": "pytest_flopbudget.counting.errors",
    "measure": "pytest_flopbudget.counting.measure",
    "MeasurementError": "pytest_flopbudget.counting.errors",
    "Measurement": "pytest_flopbudget.counting.measurement",
    "ModuleCost": "pytest_flopbudget.counting.measurement",
    "register_formula": "pytest_flopbudget.counting.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pytest_flopbudget' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
