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

from pytest_flopbudget.counting.formulas import Cost, Shape, first_shape, numel, per_element, per_output_element


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


def bookkeeping(*args: object, out_shape: object = None, **kwargs: object) -> Cost:
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


# Segment, index and histogram reductions, and reductions with companions (issue 21).


def segment_reduce(data: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    """``segment_reduce(data, reduce, *, lengths, indices, offsets, axis, ...)``: every element
    joins its segment's sum, mean, max, min or product once."""
    return per_element(numel(data))


def segment_reduce_backward(grad: Shape, output: Shape, data: Shape, *args: object, out_shape: object,
                            **kwargs: object) -> Cost:
    """``_segment_reduce_backward(grad, output, data, reduce, ...)``: one gradient per data element."""
    return per_element(numel(data))


def index_reduce(x: Shape, dim: int, index: Shape, source: Shape, *args: object, out_shape: object,
                 **kwargs: object) -> Cost:
    """``index_reduce(x, dim, index, source, reduce, *, include_self)``: every source element is
    combined once (as ``index_add``); ``mean`` adds a division per output element."""
    reduce = kwargs.get("reduce", args[0] if args else "")
    extra = numel(out_shape) if reduce == "mean" else 0  # type: ignore[arg-type]
    return per_element(numel(source) + extra)


def put(x: Shape, index: Shape, source: Shape, accumulate: bool = False, *args: object, out_shape: object,
        **kwargs: object) -> Cost:
    """``put(x, index, source, accumulate)``: writing is free, accumulating adds each value once."""
    return per_element(numel(source)) if kwargs.get("accumulate", accumulate) else (0, 0)


def masked_index_put_accumulate(x: Shape, mask: Shape, indices: object, values: Shape, *args: object,
                                out_shape: object, **kwargs: object) -> Cost:
    """``_unsafe_masked_index_put_accumulate(x, mask, indices, values)``: one add per value."""
    return per_element(numel(values))


def weighted_count(x: Shape, weights: Shape | None = None, *args: object, out_shape: object,
                   **kwargs: object) -> Cost:
    """``bincount(x, weights, minlength)``: counting ids is bookkeeping (as ``histc``), but each
    weight is added once."""
    weights = kwargs.get("weights", weights)  # type: ignore[assignment]
    return per_element(numel(weights)) if weights is not None else (0, 0)


def histogram(x: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    """``histogram`` / ``_histogramdd_*``: binning is bookkeeping; a weight is one add per
    sample; ``density=True`` divides each bin once."""
    weight = kwargs.get("weight")
    n = numel(weight) if weight is not None else 0  # type: ignore[arg-type]
    if kwargs.get("density"):
        n += numel(first_shape(out_shape))
    return per_element(n)


def renorm(x: Shape, p: float, dim: int, maxnorm: float, *args: object, out_shape: object, **kwargs: object) -> Cost:
    """``renorm(x, p, dim, maxnorm)``: each sub-tensor's p-norm (a power and an add per element),
    then a rescale (one multiply per element): three per element."""
    return per_element(3 * numel(x))


def embedding_renorm(weight: Shape, indices: Shape, max_norm: float, norm_type: float, *args: object,
                     out_shape: object, **kwargs: object) -> Cost:
    """``embedding_renorm_(weight, indices, max_norm, norm_type)``: the rows it reaches (one per
    index, at most) renormalised as ``renorm``: three per element of each row."""
    return per_element(3 * numel(indices) * (weight[-1] if weight else 0))


def with_companion(x: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    """``_cummax_helper``/``_cummin_helper``: one comparison per element, as ``cummax``."""
    return per_element(numel(x))


def two_per_input(x: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    """``_aminmax`` (a min and a max per element), ``native_norm`` (a power and an add, as a vector
    norm), ``_logcumsumexp`` (an exp and a log-add per element)."""
    return per_element(2 * numel(x))


def allclose(a: Shape, b: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    """``allclose(a, b, rtol, atol)``: |a − b| ≤ atol + rtol·|b| per element: six operations
    (subtract, two absolute values, multiply, add, compare) and the final all-reduction."""
    size = max(len(a), len(b))
    left, right = [1] * (size - len(a)) + list(a), [1] * (size - len(b)) + list(b)
    return per_element(6 * numel([max(x, y) for x, y in zip(left, right)]))


RULES.update({
    "segment_reduce": segment_reduce,
    "_segment_reduce_backward": segment_reduce_backward,
    "index_reduce": index_reduce,
    "put": put,
    "_unsafe_index_put": index_put,
    "_unsafe_masked_index_put_accumulate": masked_index_put_accumulate,
    "bincount": weighted_count,
    "histogram": histogram,
    "_histogramdd_from_bin_cts": histogram,
    "_histogramdd_from_bin_tensors": histogram,
    "_histogramdd_bin_edges": bookkeeping,
    "renorm": renorm,
    "embedding_renorm": embedding_renorm,
    "_aminmax": two_per_input,
    "_cummax_helper": with_companion,
    "_cummin_helper": with_companion,
    "_logcumsumexp": two_per_input,
    "native_norm": two_per_input,
    "allclose": allclose,
})
