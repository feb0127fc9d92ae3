"""Loss functions: what their fused kernels compute, counted like their written-out forms.

Each fused loss counts the elementwise steps of its textbook form per element, plus one per
element for the reduction (``mean``/``sum``; none with ``reduction='none'``), so that
``F.mse_loss(x, t)`` and ``(x - t).pow(2).mean()`` give one total:

    mse_loss                    (x − t)²                               2 per element
    l1_loss                     |x − t|            (lowered by aten)   2 per element
    smooth_l1_loss, huber_loss  d = |x − t|; d < β ? ½d²/β : d − ½β     7 per element
    soft_margin_loss            log(1 + exp(−y·x))                      4 per element
    binary_cross_entropy        −(t·log x + (1 − t)·log(1 − x))         7 per element (+1 weight)
    bce_with_logits             max(x, 0) − x·t + log(1 + exp(−|x|))    8 per element (+1 weight, +2 pos_weight)
    nll_loss                    −Σ w[y]·logp[y]                         0 per target (+1 weight)

A negation in front of a sum is folded into the accumulation (aten's kernels subtract), so
the negative log-likelihood is the reduction alone: one per target, one more with class weights;
with ``reduction='none'`` it is one negation per target.

Backward kernels evaluate one derivative per element: 2 per element for mse, 1 per target for
nll, 3 per element for the others.
"""

from __future__ import annotations

from typing import Any

from pytest_flopbudget.counting.formulas import Cost, Shape, estimated, numel

_REDUCTION_NONE = 0  # aten's enum: 0 none, 1 mean, 2 sum


def _reduction(args: tuple[Any, ...], kwargs: dict[str, Any], position: int) -> int:
    value = kwargs.get("reduction", args[position] if len(args) > position else 1)
    return int(value) if isinstance(value, int) else 1


def _cost(per_element: int, n: int, reduction: int) -> Cost:
    total = n * (per_element + (0 if reduction == _REDUCTION_NONE else 1))
    return (total, total)


def elementwise_loss(per_element: int, reduction_position: int) -> Any:
    """A loss of (input, target, ..., reduction) costing ``per_element`` steps per element."""

    def formula(x: Shape, target: Shape, *args: Any, out_shape: Any, **kwargs: Any) -> Cost:
        return _cost(per_element, numel(x), _reduction(args, kwargs, reduction_position))

    formula.__doc__ = f"{per_element} steps per element, plus the reduction."
    return formula


def binary_cross_entropy(x: Shape, target: Shape, weight: Shape | None = None, reduction: int = 1,
                         *args: Any, out_shape: Any, **kwargs: Any) -> Cost:
    weighted = kwargs.get("weight", weight) is not None
    return _cost(7 + int(weighted), numel(x), int(kwargs.get("reduction", reduction)))


def bce_with_logits(x: Shape, target: Shape, weight: Shape | None = None,
                    pos_weight: Shape | None = None, reduction: int = 1, *args: Any, out_shape: Any,
                    **kwargs: Any) -> Cost:
    extra = int(kwargs.get("weight", weight) is not None) + 2 * int(kwargs.get("pos_weight", pos_weight) is not None)
    return _cost(8 + extra, numel(x), int(kwargs.get("reduction", reduction)))


def nll_loss(logp: Shape, target: Shape, weight: Shape | None = None, reduction: int = 1,
             *args: Any, out_shape: Any, **kwargs: Any) -> Cost:
    weighted = kwargs.get("weight", weight) is not None
    reduction = int(kwargs.get("reduction", reduction))
    if reduction == _REDUCTION_NONE:
        return _cost(1 + int(weighted), numel(target), reduction)
    return _cost(int(weighted), numel(target), reduction)


def per_element_backward(steps: int) -> Any:
    def formula(grad_out: Shape, x: Shape, *args: Any, out_shape: Any, **kwargs: Any) -> Cost:
        n = steps * numel(x)
        return (n, n)

    formula.__doc__ = f"{steps} per element of the input."
    return formula


def nll_loss_backward(grad_out: Shape, logp: Shape, target: Shape, *args: Any, out_shape: Any, **kwargs: Any) -> Cost:
    n = numel(target)
    return (n, n)


RULES = {
    "mse_loss": elementwise_loss(2, 0),
    "l1_loss": elementwise_loss(2, 0),
    "smooth_l1_loss": elementwise_loss(7, 0),
    "huber_loss": elementwise_loss(7, 0),
    "soft_margin_loss": elementwise_loss(4, 0),
    "binary_cross_entropy": binary_cross_entropy,
    "binary_cross_entropy_with_logits": bce_with_logits,
    "nll_loss_forward": nll_loss,
    "nll_loss2d_forward": nll_loss,
    "nll_loss_nd": nll_loss,
    "mse_loss_backward": per_element_backward(2),
    "smooth_l1_loss_backward": per_element_backward(3),
    "huber_loss_backward": per_element_backward(3),
    "soft_margin_loss_backward": per_element_backward(3),
    "binary_cross_entropy_backward": per_element_backward(3),
    "nll_loss_backward": nll_loss_backward,
    "nll_loss2d_backward": nll_loss_backward,
}


# Margin and CTC losses (issue 21).


def multi_margin_loss(x: Shape, target: Shape, *args: Any, out_shape: Any, **kwargs: Any) -> Cost:
    """``multi_margin_loss(x (N, C), target, p, margin, weight, reduction)``: per class,
    margin − x[y] + x[i], the clamp, the power (p = 2) or not (p = 1), and the class weight:
    4 per element, then the sum over classes (one per element) and the reduction."""
    weighted = kwargs.get("weight", args[2] if len(args) > 2 else None) is not None
    return _cost(4 + int(weighted), numel(x), _reduction(args, kwargs, 3))


def multi_margin_loss_backward(grad_out: Shape, x: Shape, *args: Any, out_shape: Any, **kwargs: Any) -> Cost:
    """Its backward: one derivative per element, summed into the target class: 3 per element."""
    n = 3 * numel(x)
    return (n, n)


def _multilabel(x: Shape) -> int:
    return numel(x) * (x[-1] if x else 1)


@estimated("how many labels each sample has is data (the targets' values); counted as every class "
           "a target: C² hinge terms per sample")
def multilabel_margin_loss(x: Shape, target: Shape, *args: Any, out_shape: Any, **kwargs: Any) -> Cost:
    """``multilabel_margin_loss_forward(x (N, C), target, reduction)``: for each target label j and
    non-target class i, max(0, 1 − (x[j] − x[i])): a subtract, an add, a clamp and the
    accumulation, 4 per (j, i) pair; the pairs' number is data, counted as C·C per sample."""
    pairs = _multilabel(x)
    return _cost(4, pairs, 0)


@estimated("how many labels each sample has is data; counted as C² hinge terms per sample, as the forward")
def multilabel_margin_loss_backward(grad_out: Shape, x: Shape, *args: Any, out_shape: Any, **kwargs: Any) -> Cost:
    """Its backward: one gradient per (target, class) pair."""
    n = _multilabel(x)
    return (n, n)


@estimated("the input and target lengths are values; counted at the padded lengths")
def ctc_loss(log_probs: Shape, targets: Shape, *args: Any, out_shape: Any, **kwargs: Any) -> Cost:
    """``_ctc_loss(log_probs (T, N, C), targets (N, S), input_lengths, target_lengths, ...)``: the
    forward (alpha) recursion over T steps and 2S + 1 states per sample, each a log-sum-exp of
    up to three predecessors plus the emission: 8 operations per (step, state)."""
    steps, batch = log_probs[0], (log_probs[1] if len(log_probs) == 3 else 1)
    longest = targets[-1] if len(targets) == 2 else (numel(targets) // max(batch, 1))
    n = 8 * steps * batch * (2 * longest + 1)
    return (n, n)


@estimated("the input and target lengths are values; counted at the padded lengths")
def ctc_loss_backward(grad: Shape, log_probs: Shape, targets: Shape, *args: Any, out_shape: Any,
                      **kwargs: Any) -> Cost:
    """``_ctc_loss_backward``: the beta recursion (as the forward's) and the gradient, one per
    log-probability."""
    forward = ctc_loss(log_probs, targets, out_shape=None)
    return (forward[0] + numel(log_probs), forward[1] + numel(log_probs))


RULES.update({
    "multi_margin_loss": multi_margin_loss,
    "multi_margin_loss_backward": multi_margin_loss_backward,
    "multilabel_margin_loss_forward": multilabel_margin_loss,
    "multilabel_margin_loss_backward": multilabel_margin_loss_backward,
    "_ctc_loss": ctc_loss,
    "_ctc_loss_backward": ctc_loss_backward,
    "_cudnn_ctc_loss": ctc_loss,
    "miopen_ctc_loss": ctc_loss,
})
