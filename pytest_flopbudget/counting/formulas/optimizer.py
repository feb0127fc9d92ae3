"""Optimizer steps: the ``_foreach_*`` list ops and the fused ``_fused_adam(w)_``/``_fused_sgd_``/
``_fused_adagrad_`` kernels, counted so that one optimizer gives one total in all three of the
implementations torch offers (a Python for-loop over parameters, ``foreach=True``, ``fused=True``).

A ``_foreach_<op>`` applies ``<op>`` to every tensor of its first list argument, so it costs what
``<op>`` costs once per element of each tensor: one per element for elementwise arithmetic, two
for ``addcmul``/``addcdiv``/``lerp`` (the engine's rule for those ops), two for ``norm`` and
``powsum`` (square, accumulate), one for ``max``; ``_foreach_mm`` is a list of matrix products;
copies, clones and zero fills are free. In-place forms (``_foreach_add_``) count like their
functional forms, as everywhere in the engine.

A fused kernel counts the elementwise steps its for-loop implementation runs, per parameter
element (N = elements of all parameters it updates):

    Adam / AdamW   exp_avg lerp (2), exp_avg_sq scale and addcmul (1 + 2), sqrt, divide by the
                   bias correction, add eps (3), parameter addcdiv (2)            10·N
                   + N with weight_decay != 0 (Adam: grad += wd·param; AdamW: param *= 1 − lr·wd)
                   + N with amsgrad (the running maximum), + N with maximize (negate the gradient)
    SGD            parameter update (1); with momentum, after the first step, buf·m + grad (2);
                   + N nesterov, + N weight_decay, + N maximize
    Adagrad        state_sum addcmul (2), sqrt and add eps (2), parameter addcdiv (2)   6·N
                   + N weight_decay, + N maximize

The step counters (one-element tensors) are advanced outside the fused kernels in every
implementation (``_foreach_add_(state_steps, 1)`` or ``step += 1``), and counted there. Bias
corrections computed in Python on floats are not tensor work. Gradient unscaling (``grad_scale``)
inside a fused kernel is not counted.
"""

from __future__ import annotations

from typing import Any, Sequence

from pytest_flopbudget.counting.formulas import Cost, Shape, dot_products, numel


def total_elements(tensors: Sequence[Shape | None] | None) -> int:
    """Elements of every tensor in a list of shapes."""
    return sum(numel(s) for s in tensors or () if s is not None)


def foreach(steps: int) -> Any:
    """``steps`` operations per element of every tensor in the first list."""

    def formula(tensors: Sequence[Shape], *args: object, out_shape: object = None, **kwargs: object) -> Cost:
        n = steps * total_elements(tensors)
        return (n, n)

    formula.__name__ = f"foreach_{steps}_per_element"
    return formula


def foreach_mm(a: Sequence[Shape], b: Sequence[Shape], *args: object, out_shape: object = None,
               **kwargs: object) -> Cost:
    """One matrix product per pair: (n, k) @ (k, m) is n·m dot products of k terms."""
    flops = macs = 0
    for left, right in zip(a, b):
        f, m = dot_products(numel(left[:-1]) * right[-1], left[-1])
        flops, macs = flops + f, macs + m
    return (flops, macs)


def _flag(kwargs: dict[str, Any], name: str) -> int:
    return int(bool(kwargs.get(name)))


def fused_adam(params: Sequence[Shape], *args: object, out_shape: object = None, **kwargs: Any) -> Cost:
    """``_fused_adam_``/``_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
    state_steps, *, lr, beta1, beta2, weight_decay, eps, amsgrad, maximize, ...)``."""
    per = 10 + int(kwargs.get("weight_decay", 0) != 0) + _flag(kwargs, "amsgrad") + _flag(kwargs, "maximize")
    n = per * total_elements(params)
    return (n, n)


def fused_sgd(params: Sequence[Shape], *args: object, out_shape: object = None, **kwargs: Any) -> Cost:
    """``_fused_sgd_(params, grads, momentum_buffer_list, *, weight_decay, momentum, lr, dampening,
    nesterov, maximize, is_first_step, ...)``."""
    momentum = kwargs.get("momentum", 0) != 0
    per = 1 + 2 * int(momentum and not kwargs.get("is_first_step")) + int(momentum and bool(kwargs.get("nesterov")))
    per += int(kwargs.get("weight_decay", 0) != 0) + _flag(kwargs, "maximize")
    n = per * total_elements(params)
    return (n, n)


def fused_adagrad(params: Sequence[Shape], *args: object, out_shape: object = None, **kwargs: Any) -> Cost:
    """``_fused_adagrad_(params, grads, state_sums, state_steps, *, lr, lr_decay, weight_decay,
    eps, maximize, ...)``."""
    per = 6 + int(kwargs.get("weight_decay", 0) != 0) + _flag(kwargs, "maximize")
    n = per * total_elements(params)
    return (n, n)


_ONE = (
    "abs acos add asin atan ceil clamp_max clamp_min cos cosh div erf erfc exp expm1 floor frac "
    "lgamma log log10 log1p log2 maximum minimum mul neg pow reciprocal round rsqrt sigmoid sign "
    "sin sinh sqrt sub tan tanh trunc max"
).split()
_TWO = "addcdiv addcmul lerp norm powsum".split()

RULES = {
    **{f"_foreach_{name}": foreach(1) for name in _ONE},
    **{f"_foreach_{name}": foreach(2) for name in _TWO},
    "_foreach_mm": foreach_mm,
    "_fused_adam": fused_adam,
    "_fused_adamw": fused_adam,
    "_fused_sgd": fused_sgd,
    "_fused_adagrad": fused_adagrad,
}
