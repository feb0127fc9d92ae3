"""Matrix products: mm, addmm, bmm, baddbmm, mv, addmv, dot, addr and friends.

A product with output of N elements contracted over K terms is N dot products (see
``dot_products``); an added term (addmm's bias, baddbmm's input) is one add per output, so
``addmm`` counts exactly what ``mm`` followed by ``add`` counts. alpha/beta scalings are folded
into the kernel and not counted; ``beta=0`` drops the added term (it is never read: GPT-2's
attention calls ``baddbmm(empty, q, k, beta=0)``), so no add is counted for it.
"""

from __future__ import annotations


from pytest_flopbudget.counting.formulas import Cost, Shape, dot_products, numel


def mm(a: Shape, b: Shape, *args: object, out: Shape, **kwargs: object) -> Cost:
    return dot_products(numel(out), a[-1])


def _adds_term(kwargs: dict[str, object]) -> bool:
    return kwargs.get("beta", 1) != 0


def addmm(bias: Shape, a: Shape, b: Shape, *args: object, out: Shape, **kwargs: object) -> Cost:
    return dot_products(numel(out), a[-1], bias=_adds_term(kwargs))


def addbmm(bias: Shape, a: Shape, b: Shape, *args: object, out: Shape, **kwargs: object) -> Cost:
    """Products summed over the batch: one dot product of B*K terms per output, plus the bias."""
    return dot_products(numel(out), a[0] * a[-1], bias=_adds_term(kwargs))


def mv(a: Shape, v: Shape, *args: object, out: Shape, **kwargs: object) -> Cost:
    return dot_products(numel(out), v[-1])


def addmv(bias: Shape, a: Shape, v: Shape, *args: object, out: Shape, **kwargs: object) -> Cost:
    return dot_products(numel(out), v[-1], bias=_adds_term(kwargs))


def dot(a: Shape, b: Shape, *args: object, out: Shape, **kwargs: object) -> Cost:
    return dot_products(1, a[-1])


def addr(bias: Shape, v1: Shape, v2: Shape, *args: object, out: Shape, **kwargs: object) -> Cost:
    """An outer product added to a matrix: one multiply and one add per output (the add dropped
    with ``beta=0``)."""
    n = numel(out)
    total = 2 * n if _adds_term(kwargs) else n
    return (total, total)


COUNTS_INTEGER_WORK = True  # int8 matmuls (quantized inference) are compute, not bookkeeping

RULES = {
    "mm": mm,
    "bmm": mm,
    "_int_mm": mm,
    "_scaled_mm": mm,
    "addmm": addmm,
    "baddbmm": addmm,
    "addbmm": addbmm,
    "mv": mv,
    "addmv": addmv,
    "dot": dot,
    "vdot": dot,
    "addr": addr,
}
