"""The counting engine: exact FLOPs, MACs and parameters of a PyTorch model. Knows nothing of pytest."""

from pytest_flopbudget.counting.block import Counted, count
from pytest_flopbudget.counting.counter import FormulaError
from pytest_flopbudget.counting.measure import MeasurementError, measure
from pytest_flopbudget.counting.measurement import Measurement, ModuleCost
from pytest_flopbudget.counting.registry import register_formula, unregister_formula

__all__ = [
    "Counted", "FormulaError", "Measurement", "MeasurementError", "ModuleCost", "count", "measure",
    "register_formula", "unregister_formula",
]
