"""Pairwise distances: ``cdist``, ``pdist``, ``dist`` and the kernels they lower to.

A p-norm distance between two vectors of M coordinates is M subtractions, M powers (a square
for p = 2, an absolute value for p = 1 and p = ∞, |d|^p otherwise), M − 1 accumulations (adds,
or comparisons for p = ∞) and one root (none for p = 0, 1, ∞): 3M flops for p = 2, 3M − 1 for
p = 1. ``cdist`` computes one per pair of rows of x1 (P×M) and x2 (R×M) in each batch; ``pdist``
one per unordered pair of its N rows, N(N − 1)/2; ``dist`` one over the broadcast of its inputs.
For p = 2 and large inputs torch may take the matrix-product route (‖x‖² + ‖y‖² − 2x·y,
``_euclidean_dist``); it is counted by the same pairwise rule, so the count does not depend on
the route torch picks. MACs: M per pair, one multiply–accumulate per coordinate, as a dot
product of M terms has (ptflops, fvcore and thop count no distances). A backward (``_cdist_backward``,
``_pdist_backward``) is one gradient per pair and coordinate: the difference, its scaling by the
pair's gradient over its distance and the accumulation, counted like the forward pair.
"""

from __future__ import annotations

from math import isinf, prod

from pytest_flopbudget.counting.formulas import Cost, Shape, numel


def pair_flops(coordinates: int, p: float) -> int:
    """One distance between two vectors of ``coordinates`` terms."""
    if coordinates == 0:
        return 0
    root = 0 if p in (0, 1) or isinf(p) else 1
    return 3 * coordinates - 1 + root


def pairs_cost(pairs: int, coordinates: int, p: float) -> Cost:
    return (pairs * pair_flops(coordinates, p), pairs * coordinates)


def _cdist_pairs(x1: Shape, x2: Shape) -> int:
    batch = max(prod(x1[:-2]), prod(x2[:-2]))
    return batch * x1[-2] * x2[-2]


def cdist(x1: Shape, x2: Shape, p: float = 2.0, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``cdist(x1, x2, p, compute_mode)`` / ``_cdist_forward``: every row of x1 against every row of x2."""
    return pairs_cost(_cdist_pairs(x1, x2), x1[-1], float(kwargs.get("p", p)))  # type: ignore[arg-type]


def euclidean_dist(x1: Shape, x2: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``_euclidean_dist(x1, x2)``: cdist's p = 2 count, whichever route computes it."""
    return pairs_cost(_cdist_pairs(x1, x2), x1[-1], 2.0)


def cdist_backward(grad: Shape, x1: Shape, x2: Shape, p: float = 2.0, *args: object, out_shape: object = None,
                   **kwargs: object) -> Cost:
    """``_cdist_backward(grad, x1, x2, p, cdist)``: x1's gradient, one per pair and coordinate (x2's
    gradient is another call, with the operands swapped)."""
    return pairs_cost(_cdist_pairs(x1, x2), x1[-1], float(p))


def pdist(x: Shape, p: float = 2.0, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``pdist(x, p)`` / ``_pdist_forward``: every unordered pair of rows of the (N, M) input."""
    n = x[-2]
    return pairs_cost(n * (n - 1) // 2, x[-1], float(kwargs.get("p", p)))  # type: ignore[arg-type]


def pdist_backward(grad: Shape, x: Shape, p: float = 2.0, *args: object, out_shape: object = None,
                   **kwargs: object) -> Cost:
    """``_pdist_backward(grad, x, p, pdist)``: one gradient per pair and coordinate."""
    n = x[-2]
    return pairs_cost(n * (n - 1) // 2, x[-1], float(p))


def dist(a: Shape, b: Shape, p: float = 2.0, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``dist(a, b, p)``: one distance over the broadcast of ``a`` and ``b``."""
    size = max(len(a), len(b))
    left = [1] * (size - len(a)) + list(a)
    right = [1] * (size - len(b)) + list(b)
    coordinates = numel([max(x, y) for x, y in zip(left, right)])
    return pairs_cost(1, coordinates, float(kwargs.get("p", p)))  # type: ignore[arg-type]


RULES = {
    "cdist": cdist,
    "_cdist_forward": cdist,
    "_euclidean_dist": euclidean_dist,
    "_cdist_backward": cdist_backward,
    "pdist": pdist,
    "_pdist_forward": pdist,
    "_pdist_backward": pdist_backward,
    "dist": dist,
}
