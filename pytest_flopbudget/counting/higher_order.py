"""Higher-order ops (HOPs): aten-level operators that take functions as arguments.

torch runs ``flex_attention``, ``cond``, ``while_loop``, ``invoke_subgraph``, activation
checkpointing, triton kernel wrappers and others as HigherOrderOperators; a dispatch mode must
opt in to see them, and one without a rule for them raised ``NotImplementedError`` before. The
counter now sees every HOP and either counts it or reports it as uncounted, never raising:

- ``flex_attention`` (and its backward) with a formula (formulas/attention.py): the two products,
  the scaling and the softmax as for scaled dot-product attention, one per score for applying a
  block mask, and the ``score_mod`` function's own work once per score, measured by running it
  once on scalars under a counter of its own;
- ``cond``, ``while_loop`` (and ``while_loop_stack_output``, its form for inputs that require
  grad), ``invoke_subgraph``, ``wrap``, ``tag_activation_checkpoint`` and
  ``wrap_with_set_grad_enabled`` through their body: the branch that is taken, every iteration
  of the loop, the subgraph, the wrapped function, each counted op by op as if called directly;
  a ``cond`` or ``while_loop`` whose predicate has no value (on meta) is reported as uncounted;
- every other HOP (triton kernel wrappers, ``map``, ``scan``, ``auto_functionalized``...) runs
  untouched and is reported as uncounted under ``higher_order.<name>``.

How a HOP reaches the counter depends on the release. torch 2.9 on hands it to any mode whose
``supports_higher_order_operators`` is set. 2.6 (the floor) to 2.8 have no such attribute: a
HOP there looks up a rule registered for the mode's exact class (``hop.py_impl(ModeClass)``,
torch's own mechanism for its proxy and fake modes) and raises ``NotImplementedError`` without
one, so ``reach_older_torch`` registers the counting mode's rule on every HOP that exists when
counting starts, a rule that calls the mode's ``__torch_dispatch__`` as newer torches do. The
eager ``cond``, ``while_loop`` and ``flex_attention`` of those releases go through
``torch.compile``, whose first use imports dynamo, and 2.6's dynamo runs a few dozen one-element
tensor ops while it is imported (to map Python operators to tensor methods): imported before
counting starts, once per process, they are not counted as the model's work.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from pytest_flopbudget.counting.formulas import attention

Handler = Callable[[Any, Any, tuple, dict], Any]


# False on the releases whose HOPs reach a mode only through a rule registered for its class
_GENERIC_PATH = hasattr(TorchDispatchMode, "supports_higher_order_operators")


def reach_older_torch(mode_class: type) -> None:
    """On a torch without the generic path, import dynamo and give every HOP defined so far a
    rule for ``mode_class``; cheap to repeat (a HOP already given one is skipped), a no-op on
    newer releases."""
    if _GENERIC_PATH:
        return
    importlib.import_module("torch._dynamo")  # its import-time tensor ops, run here, uncounted
    from torch._ops import _higher_order_ops

    for hop in list(_higher_order_ops.values()):
        if mode_class not in hop.python_key_table:
            hop.py_impl(mode_class)(functools.partial(_through_dispatch, hop))


def _through_dispatch(hop: Any, mode: Any, *args: Any, **kwargs: Any) -> Any:
    """The rule an older torch calls with the mode popped, as newer ones call the mode itself."""
    return mode.__torch_dispatch__(hop, (), args, kwargs)


def run_higher_order(mode: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    """Called by the counting mode with itself popped: run ``func`` and count it, or report it."""
    handler = _HANDLERS.get(func._name)
    if handler is not None:
        return handler(mode, func, args, kwargs)
    return _uncounted(mode, func, args, kwargs)


def _uncounted(mode: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    mode.counter.uncounted[f"higher_order.{func._name}"] += 1
    return func(*args, **kwargs)


def _has_values(*values: Any) -> bool:
    """Whether every tensor among ``values`` holds real data (fake and meta tensors do not)."""
    from torch._subclasses.fake_tensor import FakeTensor

    return not any(isinstance(t, FakeTensor) or (isinstance(t, torch.Tensor) and t.is_meta)
                   for t in tree_leaves(values))


def _per_call_cost(mode: Any, fn: Callable[..., Any], args: tuple) -> tuple[int, int] | None:
    """(flops, macs) of one call of ``fn`` under a counter of its own; None if it cannot run."""
    sub = mode.counter.fresh()
    try:
        with sub:
            fn(*args)
    except Exception:
        return None
    return sub.flops, sub.macs


def _flex_attention(mode: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    """``flex_attention(query, key, value, score_mod, block_mask, scale, kernel_options,
    score_mod_other_buffers=(), mask_mod_other_buffers=())``."""
    out = func(*args, **kwargs)
    query, key, value, score_mod, block_mask = args[:5]
    buffers = tuple(args[7]) if len(args) > 7 else tuple(kwargs.get("score_mod_other_buffers", ()))
    score = torch.zeros((), dtype=query.dtype, device=query.device)
    index = torch.zeros((), dtype=torch.int32, device=query.device)
    cost = _per_call_cost(mode, score_mod, (score, index, index, index, index, *buffers))
    if cost is None:
        mode.counter.uncounted["higher_order.flex_attention.score_mod"] += 1
        cost = (0, 0)
    mask_mod = block_mask[-1] if isinstance(block_mask, (tuple, list)) and block_mask else None
    masked = mask_mod is not None and getattr(mask_mod, "__name__", "") != "noop_mask"
    mode.counter.count_call(
        "higher_order.flex_attention", attention.flex_attention, (query, key, value),
        {"score_mod_cost": cost, "masked": masked}, out,
    )
    return out


def _flex_attention_backward(mode: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    """``flex_attention_backward(query, key, value, out, logsumexp, grad_out, ...)``."""
    out = func(*args, **kwargs)
    mode.counter.count_call(
        "higher_order.flex_attention_backward", attention.flex_attention_backward, tuple(args[:3]), {}, out,
    )
    return out


def _cond(mode: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    pred, true_fn, false_fn, operands = args
    if not _has_values(pred, operands):
        return _uncounted(mode, func, args, kwargs)
    branch = true_fn if bool(pred) else false_fn
    with mode:
        return branch(*operands)


def _while_loop(mode: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    cond_fn, body_fn, carried, additional = args
    if not _has_values(carried, additional):
        return _uncounted(mode, func, args, kwargs)
    carried = tuple(carried)
    with mode:
        while bool(cond_fn(*carried, *additional)):
            carried = tuple(body_fn(*carried, *additional))
    return carried


def _while_loop_stack_output(mode: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    """The forward of a ``while_loop`` whose inputs require grad (torch 2.13 on): the same loop,
    returning every iteration's carries stacked (the initial ones, once, when it never runs)."""
    cond_fn, body_fn, carried, additional = args
    if not _has_values(carried, additional):
        return _uncounted(mode, func, args, kwargs)
    carried = tuple(carried)
    steps: list[tuple] = []
    with mode:
        while bool(cond_fn(*carried, *additional)):
            carried = tuple(body_fn(*carried, *additional))
            steps.append(carried)
    if not steps:
        return tuple(v.unsqueeze(0).clone() if isinstance(v, torch.Tensor) else v for v in carried)
    return tuple(torch.stack(values) for values in zip(*steps))


def _invoke_subgraph(mode: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    subgraph, _identifier, *operands = args
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])  # torch 2.6 passes the operands as one tuple, later ones spread
    with mode:
        return subgraph(*operands)


def _wrap(mode: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    body, *operands = args
    with mode:
        return body(*operands, **kwargs)


def _checkpoint(mode: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    body, *operands = args  # kwargs are checkpointing options, not the body's
    with mode:
        return body(*operands)


def _set_grad_enabled(mode: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    enable, body, *operands = args
    with mode, torch.set_grad_enabled(enable):
        return body(*operands, **kwargs)


_HANDLERS: dict[str, Handler] = {
    "flex_attention": _flex_attention,
    "flex_attention_backward": _flex_attention_backward,
    "cond": _cond,
    "while_loop": _while_loop,
    "while_loop_stack_output": _while_loop_stack_output,
    "invoke_subgraph": _invoke_subgraph,
    "wrap": _wrap,
    "tag_activation_checkpoint": _checkpoint,
    "wrap_with_set_grad_enabled": _set_grad_enabled,
}
