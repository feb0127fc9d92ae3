"""Embeddings: a lookup is free (``embedding`` is on the registry's free list); a bag's sum or mean adds each looked-up element once.

``embedding_bag`` with ``per_sample_weights`` also multiplies each looked-up element once. The
backward of a lookup scatters each gradient element back with one add. The backward of a bag
mirrors its forward: in sum and mean mode each bag's gradient row is added into the row of every
index in the bag (one add per looked-up element, and a multiply with per-sample weights); in max
mode only the row that won each position receives it (one add per bag element).
"""

from __future__ import annotations

from pytest_flopbudget.counting.formulas import Cost, Shape, numel, per_element


def embedding_bag(weight: Shape, indices: Shape, offsets: Shape | None = None,
                  scale_grad_by_freq: bool = False, mode: int = 0, sparse: bool = False,
                  per_sample_weights: Shape | None = None, *args: object, out_shape: object,
                  **kwargs: object) -> Cost:
    looked_up = numel(indices) * weight[-1]
    weighted = kwargs.get("per_sample_weights", per_sample_weights) is not None
    return per_element(looked_up * (2 if weighted else 1))


def embedding_backward(grad_out: Shape, *args: object, out_shape: object, **kwargs: object) -> Cost:
    return per_element(numel(grad_out))


_MAX_MODE = 2


def _bag_backward(grad: Shape, indices: Shape, mode: object, per_sample_weights: object) -> Cost:
    if mode == _MAX_MODE:
        return per_element(numel(grad))
    looked_up = numel(indices) * grad[-1]
    return per_element(looked_up * (2 if per_sample_weights is not None else 1))


def embedding_bag_backward(grad: Shape, indices: Shape, offsets: Shape, offset2bag: Shape, bag_size: Shape,
                           maximum_indices: Shape, num_weights: int, scale_grad_by_freq: bool, mode: int,
                           sparse: bool, per_sample_weights: Shape | None = None, *args: object,
                           out_shape: object, **kwargs: object) -> Cost:
    return _bag_backward(grad, indices, mode, kwargs.get("per_sample_weights", per_sample_weights))


def embedding_bag_dense_backward(grad: Shape, indices: Shape, offset2bag: Shape, bag_size: Shape,
                                 maximum_indices: Shape, num_weights: int, scale_grad_by_freq: bool, mode: int,
                                 per_sample_weights: Shape | None = None, *args: object, out_shape: object,
                                 **kwargs: object) -> Cost:
    return _bag_backward(grad, indices, mode, kwargs.get("per_sample_weights", per_sample_weights))


RULES = {
    "_embedding_bag": embedding_bag,
    "_embedding_bag_forward_only": embedding_bag,
    "embedding_dense_backward": embedding_backward,
    "_embedding_bag_backward": embedding_bag_backward,
    "_embedding_bag_dense_backward": embedding_bag_dense_backward,
}


def per_sample_weights_backward(grad: Shape, weight: Shape, indices: Shape, *args: object, out_shape: object,
                                **kwargs: object) -> Cost:
    """``_embedding_bag_per_sample_weights_backward(grad, weight, indices, ...)``: each index's
    weight gradient is the dot product of its embedding row with its bag's gradient."""
    length = weight[-1] if weight else 0
    n = numel(indices)
    return (n * (2 * length - 1), n * length) if length else (0, 0)


RULES.update({"_embedding_bag_per_sample_weights_backward": per_sample_weights_backward})
