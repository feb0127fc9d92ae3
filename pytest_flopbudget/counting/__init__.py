"""The counting engine: exact FLOPs, MACs and parameters of a PyTorch model. Knows nothing of pytest."""

from pytest_flopbudget.counting.measure import MeasurementError, measure
from pytest_flopbudget.counting.measurement import Measurement, ModuleCost
from pytest_flopbudget.counting.registry import register_formula, unregister_formula

__all__ = ["Measurement", "MeasurementError", "ModuleCost", "measure", "register_formula", "unregister_formula"]
