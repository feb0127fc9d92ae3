"""The counting modes: every aten call is looked up in the registry and its cost attributed to the
modules running at the time.

Two modes work together. ``_AtenCounter`` (a TorchDispatchMode) sees every aten call, whatever
path led to it: modules, functional calls, tensor methods, in-place variants, fused kernels.
``_CompositeCounter`` (a TorchFunctionMode) sees a few composite functions before aten lowers
them (scaled dot-product attention, multi-head attention, RMS norm): it counts each as one unit
and mutes the aten counter while it runs, so the total is the same whichever kernel the device
picks. Nothing is patched: both modes live only inside ``OpCounter``, and the module hooks that
name the running modules only inside its ``ModuleTracker`` (module_tracker.py).
"""

from __future__ import annotations

import functools
import os
import sys
from collections import defaultdict
from typing import Any, NamedTuple

import torch
from torch._ops import HigherOrderOperator
from torch._subclasses.fake_tensor import FakeTensor
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from pytest_flopbudget.counting.arguments import tensor_positions
from pytest_flopbudget.counting.errors import FormulaError
from pytest_flopbudget.counting.flex_switch import EagerFlexAttention
from pytest_flopbudget.counting.formulas import is_estimated
from pytest_flopbudget.counting.higher_order import reach_older_torch, run_higher_order
from pytest_flopbudget.counting.names import ancestors
from pytest_flopbudget.counting.nested import holds_nested, per_component, require_lengths
from pytest_flopbudget.counting.registry import DECOMPOSE, FREE, HOST_READ_FUNCTIONS, Registry
from pytest_flopbudget.counting.module_tracker import ModuleTracker

_Tensor = torch.Tensor
try:  # the jagged layout's tensor subclass (torch >= 2.2)
    from torch.nested._internal.nested_tensor import NestedTensor as _NESTED_TENSOR
except ImportError:  # pragma: no cover - a torch without the jagged layout
    _NESTED_TENSOR = None  # type: ignore[assignment,misc]
_PRIM_DEVICE = torch.ops.prim.device.default
_GROUPED_MM = getattr(torch.ops.aten, "_grouped_mm", None)
_GROUPED_MM = _GROUPED_MM.default if _GROUPED_MM is not None else None

# where an op's cost goes: the work of forwards (and of any code outside a backward and a step),
# of autograd's backward, of an optimizer's step()
PHASES = ("forward", "backward", "optimizer")
FORWARD, BACKWARD, OPTIMIZER = range(len(PHASES))


class PhaseCosts(NamedTuple):
    """FLOPs and MACs of one module (or a whole run) in each phase."""

    forward_flops: int = 0
    forward_macs: int = 0
    backward_flops: int = 0
    backward_macs: int = 0
    optimizer_flops: int = 0
    optimizer_macs: int = 0

    @property
    def flops(self) -> int:
        return self.forward_flops + self.backward_flops + self.optimizer_flops

    @property
    def macs(self) -> int:
        return self.forward_macs + self.backward_macs + self.optimizer_macs


def _touches_floats(args: Any, out: Any) -> bool:
    """Whether a call reads or writes floating-point (or complex) data: integer and boolean
    bookkeeping (index math, mask logic, step counters) is not FLOPs."""
    for value in (out, *args):
        if isinstance(value, _Tensor):
            if value.is_floating_point() or value.is_complex():
                return True
        elif isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, _Tensor) and (item.is_floating_point() or item.is_complex()):
                    return True
    return False


def _shape_of(value: Any) -> Any:
    """Tensors become shapes (torch.Size, a tuple of ints); lists holding tensors are converted
    element-wise."""
    if isinstance(value, _Tensor):
        return value.shape
    if isinstance(value, (list, tuple)) and value and any(isinstance(v, _Tensor) for v in value):
        return [v.shape if isinstance(v, _Tensor) else v for v in value]
    return value


def _out_shape(out: Any) -> Any:
    """The output's shape, or a tuple of shapes (None for non-tensors) for several outputs."""
    if isinstance(out, _Tensor):
        return out.shape
    if isinstance(out, (list, tuple)):
        return tuple(o.shape if isinstance(o, _Tensor) else None for o in out)
    return None


def _grouped_mm_output(mat_a: Any, mat_b: Any, offs: Any = None, bias: Any = None, out_dtype: Any = None) -> Any:
    """``aten._grouped_mm``'s output, made from shapes alone: the op's meta kernel copies the CUDA
    kernel's checks and refuses anything but bfloat16, although CPU runs float32 (transformers'
    MoE experts). A meta count needs only the output's shape and dtype, so on fake tensors the
    counter makes it itself (the shapes follow torch's own rules); real tensors run the kernel."""
    from torch._subclasses.fake_tensor import FakeTensor

    if not isinstance(mat_a, FakeTensor):
        return torch.ops.aten._grouped_mm.default(mat_a, mat_b, offs, bias, out_dtype)
    if mat_a.dim() == 2 and mat_b.dim() == 2:
        size = (offs.shape[0], mat_a.shape[0], mat_b.shape[-1])
    elif mat_a.dim() == 2:
        size = (mat_a.shape[0], mat_b.shape[-1])
    elif mat_b.dim() == 2:
        size = (mat_a.shape[1], mat_b.shape[-1])
    else:
        size = (mat_a.shape[0], mat_a.shape[1], mat_b.shape[-1])
    return torch.empty(size, dtype=out_dtype or mat_a.dtype, device=mat_a.device)


class OpCounter:
    """Accumulates flops and macs per module name, per op, and the ops with no formula."""

    def __init__(self, registry: Registry, modules: ModuleTracker) -> None:
        self.registry = registry
        self.modules = modules
        self.flops = 0
        self.macs = 0
        # cost per tuple of active module names, one table per phase (forward, backward, optimizer),
        # spread over the modules once at the end: one dict update per counted op however deep the
        # module stack is
        self._by_scopes: tuple[dict[tuple[str, ...], list[int]], ...] = ({}, {}, {})
        # > 0 while an optimizer's step() runs (outside a backward its work is the optimizer's)
        self.stepping = 0
        self.op_flops: dict[str, int] = defaultdict(int)
        self.op_macs: dict[str, int] = defaultdict(int)
        self.uncounted: dict[str, int] = defaultdict(int)
        # op -> why its count is an estimate (a formula marked with formulas.estimated)
        self.estimated: dict[str, str] = {}
        # module name ("" outside every submodule) -> op -> calls that read tensor values on the host
        self.value_reads: dict[str, dict[str, int]] = {}
        self.muted = 0
        # on a meta block: replaces the caller's real tensors among an op's arguments by fakes
        self.fakify: Any = None
        # the memory tracker fed every call's arguments and output (None: memory not tracked)
        self.memory: Any = None
        self._aten: _AtenCounter | None = None
        self._composite: _CompositeCounter | None = None

    def __enter__(self) -> OpCounter:
        # the modes point back at this counter: made on entry and dropped on exit, so that a finished
        # count is freed when its last user lets go, not at the garbage collector's next pass
        self._aten = _AtenCounter(self)
        self._composite = _CompositeCounter(self) if self.registry.function_rules else None
        self._flex = EagerFlexAttention().__enter__()
        reach_older_torch(_AtenCounter)
        if self._composite is not None:
            self._composite.__enter__()
        self._aten.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._aten is not None
        try:
            self._aten.__exit__(*exc)
        finally:
            try:
                if self._composite is not None:
                    self._composite.__exit__(*exc)
            finally:
                self._flex.__exit__(*exc)
                self._aten = self._composite = None

    def add(self, op_name: str, flops: int, macs: int) -> None:
        flops, macs = int(flops), int(macs)
        self.flops += flops
        self.macs += macs
        self.op_flops[op_name] += flops
        self.op_macs[op_name] += macs
        scopes, backward = self.modules.locate()  # asks autograd for the running node: once
        by_scopes = self._by_scopes[BACKWARD if backward else OPTIMIZER if self.stepping else FORWARD]
        cost = by_scopes.get(scopes)
        if cost is None:
            by_scopes[scopes] = [flops, macs]
        else:
            cost[0] += flops
            cost[1] += macs

    def read_value(self, op_name: str) -> None:
        """Note that the code read a tensor's values on the host (its path may depend on them): in
        the running module, or, outside every module (a count() block), at its call site."""
        active = self.modules.active
        where = self.value_reads.setdefault(active[-1] if active else read_site(), {})
        where[op_name] = where.get(op_name, 0) + 1

    def fresh(self) -> OpCounter:
        """A counter of its own with the same formulas and no module names (a function's cost)."""
        return OpCounter(self.registry, ModuleTracker({}))

    def module_totals(self) -> dict[str, PhaseCosts]:
        """Inclusive costs of every module whose subtree ran an op, per phase: a module's cost
        includes every descendant's, also for containers that are never called themselves
        (ModuleList, ModuleDict), whose rows would otherwise read 0 while holding the layers."""
        totals: dict[str, list[int]] = {}
        for phase, by_scopes in enumerate(self._by_scopes):
            for names, (flops, macs) in by_scopes.items():
                for name in _with_ancestors(names):
                    cost = totals.get(name)
                    if cost is None:
                        cost = totals[name] = [0] * (2 * len(PHASES))
                    cost[2 * phase] += flops
                    cost[2 * phase + 1] += macs
        return {name: PhaseCosts(*cost) for name, cost in totals.items()}

    def phase_totals(self) -> PhaseCosts:
        """The run's whole cost per phase (also what ran outside every module)."""
        cost = [0] * (2 * len(PHASES))
        for phase, by_scopes in enumerate(self._by_scopes):
            for flops, macs in by_scopes.values():
                cost[2 * phase] += flops
                cost[2 * phase + 1] += macs
        return PhaseCosts(*cost)

    def count_call(self, op_name: str, formula: Any, args: Any, kwargs: Any, out: Any) -> None:
        if holds_nested(args, out):
            # components of several sizes: the op once per component, by its own sizes
            for shapes, kw_shapes, out_shape in per_component(args, kwargs, out):
                self._apply(op_name, formula, shapes, kw_shapes, out_shape)
            return
        shapes = [_shape_of(a) for a in args]
        kw_shapes = {k: _shape_of(v) for k, v in kwargs.items()} if kwargs else {}
        self._apply(op_name, formula, shapes, kw_shapes, _out_shape(out))

    def count_aten_call(self, op_name: str, formula: Any, args: Any, kwargs: Any, out: Any) -> None:
        """``count_call`` for the aten mode's hot path: jagged nested tensors never reach it (their
        subclass runs its own ops), and a strided nested tensor has no shape (``.shape`` raises), so
        the shapes are taken first and the nested check runs only when that fails."""
        try:
            shapes = [_shape_of(a) for a in args]
            kw_shapes = {k: _shape_of(v) for k, v in kwargs.items()} if kwargs else {}
            out_shape = _out_shape(out)
        except RuntimeError:
            self.count_call(op_name, formula, args, kwargs, out)
            return
        self._apply(op_name, formula, shapes, kw_shapes, out_shape)

    def _apply(self, op_name: str, formula: Any, shapes: Any, kw_shapes: Any, out_shape: Any) -> None:
        try:
            flops, macs = formula(*shapes, out_shape=out_shape, **kw_shapes)
        except Exception as error:
            raise FormulaError.wrap(op_name, formula, shapes, kw_shapes, error) from error
        if getattr(formula, "estimated", None) is not None:  # marked formulas are rare: no call otherwise
            reason = is_estimated(formula, *shapes, out_shape=out_shape, **kw_shapes)
            if reason is not None:
                self.estimated.setdefault(op_name, reason)
        self.add(op_name, flops, macs)


_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_OWN_DIR = os.path.dirname(os.path.dirname(__file__)) + os.sep


def read_site() -> str:
    """Where a value read outside every module happened: "" in the measured model's own forward;
    else as 'AdamW.step()' (the outermost public
    torch method the user's code called: an optimizer's or scheduler's step) or 'file.py:12 (fn)'
    (the user's own line); always with '(' so it is never taken for a module name."""
    outer = sys._getframe(2)
    while outer is not None:  # inside a module's call that is not tracked: measure()'s model itself
        if outer.f_code.co_name == "_call_impl" and isinstance(outer.f_locals.get("self"), torch.nn.Module):
            return ""
        outer = outer.f_back
    frame = sys._getframe(2)
    called = None
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(_OWN_DIR) or "torch/utils/_python_dispatch" in path:
            frame = frame.f_back
            continue
        if not path.startswith(_TORCH_DIR):
            if called is not None:
                return called
            return f"{os.path.basename(path)}:{frame.f_lineno} ({frame.f_code.co_name})"
        name = frame.f_code.co_name
        owner = frame.f_locals.get("self")
        if owner is not None and not name.startswith("_") and name != "wrapper":
            called = f"{type(owner).__name__}.{name}()"
        frame = frame.f_back
    return called or "(outside any module)"


@functools.lru_cache(maxsize=16384)
def _with_ancestors(names: tuple[str, ...]) -> tuple[str, ...]:
    """The running modules and every module above them by qualified name ("a.b.c" -> "a", "a.b",
    "a.b.c"), each once, so one op is added once to every module whose subtree ran it. Cached: the
    same stacks recur in every measurement of a model."""
    found: dict[str, None] = {}
    for name in names:
        if name not in found:
            found.update(dict.fromkeys(ancestors(name)[1:]))  # [1:]: the root's cost is the total
    return tuple(found)


class _AtenCounter(TorchDispatchMode):
    # higher-order ops (flex_attention, cond, while_loop...) reach __torch_dispatch__ too, instead
    # of raising NotImplementedError: counted or reported by counting/higher_order.py
    supports_higher_order_operators = True

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch's default wraps __torch_dispatch__ in torch._disable_dynamo, whose first call
        # imports dynamo (about a second, once per process); _never_traced_by_dynamo below gives
        # the same protection without the import
        return False

    def __init__(self, counter: OpCounter) -> None:
        super().__init__()
        self.counter = counter
        self.resolution = counter.registry.resolution
        # id(func) -> (rule, "aten.name", floats only, reads values, out= arguments, tensor positions,
        # func kept alive): one dict lookup per aten call, by id (an OpOverload hashes in Python)
        self._rules: dict[int, tuple[Any, str, bool, Any, tuple[str, ...], Any, Any]] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if _NESTED_TENSOR is not None and _NESTED_TENSOR in types:
            # a jagged nested tensor computes on its packed values buffer: let it run its own
            # implementation, whose ops on plain tensors come back here with their real sizes
            return NotImplemented
        kwargs = kwargs or {}
        counter = self.counter
        if counter.fakify is not None:
            args, kwargs = counter.fakify(args, kwargs)
        memory = counter.memory
        if func is _PRIM_DEVICE and type(args[0]) is FakeTensor:
            # autograd asks a fake tensor its device for every op it records (hundreds per forward
            # on meta): answered as the fake tensor's own handler answers it, without the round
            # trip through the op and the fake mode
            out = args[0].device
        elif memory is None:
            return self._dispatch(func, args, kwargs)
        else:
            out = self._dispatch(func, args, kwargs)
        if memory is not None:
            memory.record(func, args, kwargs, out)
        return out

    def _dispatch(self, func: Any, args: Any, kwargs: Any) -> Any:
        """Run one aten call and count it."""
        counter = self.counter
        if counter.muted:
            return func(*args, **kwargs)
        try:
            rule, name, floats_only, reads_values, drop, positions, _ = self._rules[id(func)]
        except KeyError:
            if isinstance(func, HigherOrderOperator):  # rare: kept off the cached hot path
                return run_higher_order(self, func, args, kwargs)
            registry = counter.registry
            found = self.resolution(func)
            rule, name, drop = found.rule, found.name, found.drop
            floats_only = not registry.counts_integer_work(rule)
            # a composite's reads are seen in its decomposition (argwhere -> nonzero)
            reads_values = rule is not DECOMPOSE and registry.reads_values(func)
            positions = tensor_positions(func)
            self._rules[id(func)] = (rule, name, floats_only, reads_values, drop, positions, func)
        if drop:
            # aten's out= arguments are the output itself: the formula gets its shape as out_shape
            counted_kwargs = {k: v for k, v in kwargs.items() if k not in drop}
        else:
            counted_kwargs = kwargs
        if reads_values and (reads_values is True or reads_values(args)):
            out = func(*args, **kwargs)
            counter.read_value(name)  # once it succeeded: on meta values are unknown and a read raises
            if rule is not FREE:
                self._count(rule, name, floats_only, positions, args, counted_kwargs, out)
            return out
        if rule is FREE:
            return func(*args, **kwargs)
        if rule is DECOMPOSE:
            # a composite op reaches this mode whole under inference_mode (conv2d, linear,
            # layer_norm...): run its decomposition inside this mode so its aten calls are counted
            if holds_nested(args, None):
                # torch's decompositions know no nested tensors: run it, and say it was not counted
                counter.uncounted[name] += 1
                return func(*args, **kwargs)
            with self:
                return func.decompose(*args, **kwargs)
        if func is _GROUPED_MM:
            # the fake kernel refuses float32 (see _grouped_mm_output)
            out = _grouped_mm_output(*args, **kwargs)
        else:
            out = func(*args, **kwargs)
        self._count(rule, name, floats_only, positions, args, counted_kwargs, out)
        return out

    def _count(self, rule: Any, name: str, floats_only: bool, positions: tuple[int, ...] | None,
               args: Any, kwargs: Any, out: Any) -> None:
        """``OpCounter.count_aten_call`` written out for the hot path: shapes are taken only at the
        positions whose schema type is a tensor (``positions``; None: every argument is looked at)."""
        counter = self.counter
        if rule is None:
            counter.uncounted[name] += 1
            return
        if floats_only and not _touches_floats(args, out):
            return
        try:
            if positions is None:
                shapes = [_shape_of(a) for a in args]
            else:
                shapes = list(args)
                size = len(shapes)
                for i in positions:
                    if i < size:
                        value = shapes[i]
                        if isinstance(value, _Tensor):
                            shapes[i] = value.shape
            kw_shapes = {k: _shape_of(v) for k, v in kwargs.items()} if kwargs else {}
            out_shape = out.shape if isinstance(out, _Tensor) else _out_shape(out)
        except RuntimeError:  # a strided nested tensor has no shape (see count_aten_call)
            counter.count_call(name, rule, args, kwargs, out)
            return
        # OpCounter._apply, written out
        try:
            flops, macs = rule(*shapes, out_shape=out_shape, **kw_shapes)
        except Exception as error:
            raise FormulaError.wrap(name, rule, shapes, kw_shapes, error) from error
        if getattr(rule, "estimated", None) is not None:
            reason = is_estimated(rule, *shapes, out_shape=out_shape, **kw_shapes)
            if reason is not None:
                counter.estimated.setdefault(name, reason)
        counter.add(name, flops, macs)


def _never_traced_by_dynamo(fn: Any) -> Any:
    """Mark ``fn``'s code so dynamo runs it, and everything it calls, without tracing (what
    ``torch._dynamo.disable`` does, set directly in torch's C extension so dynamo is never
    imported for it: the first count of a process stays fast). Eager ``torch.cond`` and
    ``while_loop`` run under ``torch.compile``; when their higher-order op reaches the counter,
    dynamo would otherwise try to trace the counter itself."""
    eval_frame = getattr(getattr(torch._C, "_dynamo", None), "eval_frame", None)
    if eval_frame is not None and hasattr(eval_frame, "set_code_exec_strategy"):
        skip = eval_frame._FrameAction.SKIP
        eval_frame.set_code_exec_strategy(fn.__code__, eval_frame._FrameExecStrategy(skip, skip))
    return fn


_never_traced_by_dynamo(_AtenCounter.__torch_dispatch__)
_never_traced_by_dynamo(_AtenCounter._dispatch)


class _CompositeCounter(TorchFunctionMode):
    def __init__(self, counter: OpCounter) -> None:
        super().__init__()
        self.counter = counter
        self.rules = counter.registry.function_rules

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        rule = self.rules.get(func)
        counter = self.counter
        if rule is None and func in HOST_READ_FUNCTIONS:
            # reads that never reach aten (tolist, numpy); item() and bool() are seen there
            counter.read_value(f"Tensor.{func.__name__}")
        if rule is None or counter.muted:
            return func(*args, **kwargs)
        if holds_nested(args, None):
            require_lengths(rule.name, args)  # before the op fails on meta in its own words
        counter.muted += 1
        try:
            out = func(*args, **kwargs)
        finally:
            counter.muted -= 1
        bound_args, bound_kwargs = rule.bind(args, kwargs)
        counter.count_call(rule.name, rule.formula, bound_args, bound_kwargs, out)
        return out
