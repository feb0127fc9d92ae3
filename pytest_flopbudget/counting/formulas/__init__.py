"""Op-family formulas: pure functions from an aten call's shapes to ``(flops, macs)``.

Every formula takes the call's arguments with each tensor replaced by its shape (a tuple of ints,
``None`` stays ``None``, a list of tensors becomes a list of shapes) and the output's shape as
``out_shape=`` (a tuple of shapes for ops with several outputs); aten's own ``out=`` arguments
never reach a formula (the registry counts an ``out=`` or in-place form as its functional form).
Each module exposes ``RULES``, a dict
from aten op name (``"mm"`` for every overload, ``"add.Tensor"`` for one) to formula, which the
registry resolves against the installed torch; names it lacks are skipped, so one table serves
every supported torch release. Formula modules import no torch: they are arithmetic on ints.
"""

from __future__ import annotations

from math import prod
from typing import Callable, Sequence

Cost = tuple[int, int]
Shape = Sequence[int]
Formula = Callable[..., Cost]


def numel(shape: Shape | None) -> int:
    """Element count of a shape; a missing tensor has none."""
    return 0 if shape is None else prod(shape)


def first_shape(out_shape: object) -> Shape:
    """The first output's shape, whether the op returned one tensor or several."""
    if isinstance(out_shape, (tuple, list)) and out_shape and isinstance(out_shape[0], (tuple, list)):
        return out_shape[0]
    return out_shape  # type: ignore[return-value]


def dot_products(n_outputs: int, length: int, bias: bool = False) -> Cost:
    """``n_outputs`` dot products of ``length`` terms: K multiplies and K-1 adds each (the seed's
    rule), one MAC per term (ptflops' rule); a bias adds one add per output to both."""
    if n_outputs == 0 or length == 0:
        return (0, 0)
    extra = n_outputs if bias else 0
    return (n_outputs * (2 * length - 1) + extra, n_outputs * length + extra)


def sum_costs(*costs: Cost) -> Cost:
    """Costs added up, flops with flops and macs with macs; nothing costs (0, 0)."""
    return (sum(c[0] for c in costs), sum(c[1] for c in costs))


def per_element(n: int) -> Cost:
    """One operation per element, counted alike in both numbers."""
    return (n, n)


def estimated(reason: str, when: Callable[..., bool] | None = None) -> Callable[[Formula], Formula]:
    """Mark a formula whose count is fixed by a stated convention rather than by shapes (an upper
    bound, an iterative solver's nominal iterations): the counter records ``reason`` under the op's
    name in ``Measurement.estimated``, so the number is shown as an estimate, never as exact.
    ``when`` (called with the formula's arguments) limits the mark to the calls it holds for
    (``roi_align`` is exact for a fixed sampling ratio, an estimate for an adaptive one)."""

    def mark(formula: Formula) -> Formula:
        formula.estimated = reason  # type: ignore[attr-defined]
        formula.estimated_when = when  # type: ignore[attr-defined]
        return formula

    return mark


def by_name(formula: Formula) -> Formula:
    """Mark a formula that takes its op's arguments by the names of the op's schema, every one as a
    keyword (shapes for tensors, as always): the registry binds each call to the schema of the
    installed torch first. For private kernels, whose argument positions may move between torch
    releases while the names the formula reads stay (tests/counting/test_torch_internals.py
    checks that the schema still has them)."""
    formula.by_name = True  # type: ignore[attr-defined]
    return formula


def is_estimated(formula: Formula, *args: object, **kwargs: object) -> str | None:
    """The reason ``formula``'s count for these arguments is an estimate, or None when it is exact."""
    reason = getattr(formula, "estimated", None)
    when = getattr(formula, "estimated_when", None)
    if reason is None or (when is not None and not when(*args, **kwargs)):
        return None
    return reason


def per_output_element(*args: object, out_shape: object, **kwargs: object) -> Cost:
    """The formula of one operation per output element (elementwise ops, activations, and
    reductions' elementwise forms), whatever the op's arguments."""
    return per_element(numel(first_shape(out_shape)))
