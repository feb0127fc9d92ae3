"""Reductions, scans and selections over a dimension.

One operation per input element, the rule the seed gives pooling (a pool is a windowed
reduction): sum, mean, amax, prod, argmax, cumsum, logsumexp's pieces, topk, sort (a lower bound:
the comparisons of a sort grow as n·log n, counted here as n). Variance and standard deviation
take two passes (mean, then squared deviations): two per element; p-norms square (or raise) and
accumulate: two per element. ``index_add``/``scatter_add``/``index_put`` with accumulation add
each source element once.
"""

from __future__ import annotations

from pytest_flopbudget.counting.formulas import Cost, Shape, numel, per_element


def reduce_input(x: Shape, *args: object, out: object, **kwargs: object) -> Cost:
    return per_element(numel(x))


def two_passes(x: Shape, *args: object, out: object, **kwargs: object) -> Cost:
    n = 2 * numel(x)
    return (n, n)


def scatter_accumulate(x: Shape, dim: int, index: Shape, src: Shape | None = None,
                       *args: object, out: object, **kwargs: object) -> Cost:
    """``index_add(x, dim, index, source)`` / ``scatter_add(x, dim, index, src)``."""
    return per_element(numel(src if isinstance(src, (tuple, list)) else index))


def scatter_reduce(x: Shape, dim: int, index: Shape, src: Shape, *args: object, out: object,
                   **kwargs: object) -> Cost:
    return per_element(numel(index))


def index_put(x: Shape, indices: object, values: Shape, accumulate: bool = False,
              *args: object, out: object, **kwargs: object) -> Cost:
    """Writing is free; accumulating adds each value once."""
    if accumulate or kwargs.get("accumulate"):
        return per_element(numel(values))
    return (0, 0)


_ONE_PASS = (
    "sum mean nansum nanmean prod amax amin max min argmax argmin aminmax any all "
    "count_nonzero cumsum cumprod cummax cummin logcumsumexp logsumexp topk sort kthvalue "
    "median nanmedian mode _cumsum_helper"
).split()
_TWO_PASSES = "var std var_mean std_mean linalg_vector_norm norm _linalg_norm".split()

RULES = {
    **{name: reduce_input for name in _ONE_PASS},
    **{name: two_passes for name in _TWO_PASSES},
    "index_add": scatter_accumulate,
    "scatter_add": scatter_accumulate,
    "scatter_reduce": scatter_reduce,
    "index_put": index_put,
    "_index_put_impl": index_put,
}
