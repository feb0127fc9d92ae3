"""Reductions, scans and selections over a dimension.

One operation per input element, the rule the seed gives pooling (a pool is a windowed
reduction): sum, mean, amax, prod, argmax, cumsum, logsumexp's pieces, topk, sort (a lower bound:
the comparisons of a sort grow as n·log n, counted here as n). Variance and standard deviation
take two passes (mean, then squared deviations): two per element; p-norms square (or raise) and
accumulate: two per element. ``max``/``min`` with a second tensor (``max.other``) are
elementwise, one per output element.

Mixture-of-experts plumbing: ``topk`` and ``sort`` count one per input element (routing does
compare every score); ``gather``, ``scatter`` (plain writes), ``index_select`` and indexing move
data and are free (registry's free list). Accumulating writes add: ``index_add`` once per source
element, ``scatter_add``/``scatter_reduce``/``scatter(..., reduce=)`` once per index element (only
the first index.shape elements of src are read), ``index_put(accumulate=True)`` once per value
given (before broadcasting). ``histc`` costs nothing: transformers' grouped-GEMM experts use it
only to count tokens per expert (index bookkeeping, like ``bincount``), and feed it float ids on
cpu but integer ids on cuda, so any cost would differ between devices. ``isin`` compares every
element with every test element.
"""

from __future__ import annotations

from pytest_flopbudget.counting.formulas import Cost, Shape, numel, per_element, per_output_element


def reduce_input(x: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    return per_element(numel(x))


def two_passes(x: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    n = 2 * numel(x)
    return (n, n)


elementwise = per_output_element  # one operation per output element


def index_add(x: Shape, dim: int, index: Shape, source: Shape, *args: object, out_shape: object,
              **kwargs: object) -> Cost:
    """``index_add(x, dim, index, source)``: every source element is added once."""
    return per_element(numel(source))


def scatter_accumulate(x: Shape, dim: int, index: Shape, *args: object, out_shape: object,
                       **kwargs: object) -> Cost:
    """``scatter_add``/``scatter_reduce``/``scatter(reduce=)``: one per index element (src, when
    a tensor, is read only where index reaches; a scalar value is broadcast to index's shape)."""
    return per_element(numel(index))


def index_put(x: Shape, indices: object, values: Shape, accumulate: bool = False,
              *args: object, out_shape: object, **kwargs: object) -> Cost:
    """Writing is free; accumulating adds each value once."""
    if accumulate or kwargs.get("accumulate"):
        return per_element(numel(values))
    return (0, 0)


def bookkeeping(*args: object, out: object = None, out_shape: object = None, **kwargs: object) -> Cost:
    """Counting occurrences (a histogram of ids) is bookkeeping, not arithmetic on the model's data."""
    return (0, 0)


def isin(elements: object, test_elements: object, *args: object, out_shape: object = None,
         **kwargs: object) -> Cost:
    """``isin(elements, test_elements)``: every element compared with every test element (a
    scalar on either side is one element); generate() checks its stop tokens this way."""
    def count(x: object) -> int:
        return numel(x) if isinstance(x, (tuple, list)) else 1  # type: ignore[arg-type]

    return per_element(count(elements) * count(test_elements))


_ONE_PASS = (
    "sum mean nansum nanmean prod amax amin max min argmax argmin aminmax any all "
    "count_nonzero cumsum cumprod cummax cummin logcumsumexp logsumexp topk sort kthvalue "
    "median nanmedian mode"
).split()
_TWO_PASSES = "var std var_mean std_mean linalg_vector_norm norm".split()

RULES = {
    **{name: reduce_input for name in _ONE_PASS},
    **{name: two_passes for name in _TWO_PASSES},
    "max.other": elementwise,
    "min.other": elementwise,
    "index_add": index_add,
    "scatter_add": scatter_accumulate,
    "scatter_reduce": scatter_accumulate,
    "scatter.reduce": scatter_accumulate,
    "scatter.value_reduce": scatter_accumulate,
    "scatter_.reduce": scatter_accumulate,
    "scatter_.value_reduce": scatter_accumulate,
    "histc": bookkeeping,
    "isin": isin,
    "index_put": index_put,
    "_index_put_impl": index_put,
}
