"""measure(): put a model and its inputs on the counting device, run it under the counter, and
collect the numbers, without touching the caller's objects.

"meta" runs under torch's FakeTensorMode: tensors carry shapes, dtypes and devices but no memory,
and code that asks whether it is being traced (transformers' mask preparation) takes its
data-independent path, where plain meta tensors would fail on ``.item()``.

The caller's module runs by one of two strategies, each read top to bottom below:

- **in place** (``_run_in_place``): its weights already live on the counting device, so it runs as
  it is; the buffers and attributes a forward may change (running statistics, caches) are put back;
- **on substitutes** (``_run_on_substitutes``): elsewhere (another device, or meta), it runs through
  ``torch.func.functional_call`` with substitute parameters and buffers (fake ones on meta, copies
  elsewhere), so its weights, devices, modes and ``requires_grad`` flags are never changed.

Either way ``backward=True`` uses ``torch.autograd.grad``, so no ``.grad`` is left behind.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook
from torch.utils._pytree import tree_flatten, tree_map

from pytest_flopbudget.counting.devices import DeviceLike, resolve_device
from pytest_flopbudget.counting.errors import FormulaError, MeasurementError
from pytest_flopbudget.counting.measurement import Measurement
from pytest_flopbudget.counting.model_state import ModelState
from pytest_flopbudget.counting.module_tracker import ModuleTracker
from pytest_flopbudget.counting.registry import Registry, default_registry
from pytest_flopbudget.counting.session import CountingSession, device_scope, explain_meta_failure, optimizer_state_tensors

__all__ = ["DeviceLike", "MeasurementError", "measure", "resolve_device"]


def measure(
    model: nn.Module | Callable[[], nn.Module],
    inputs: Any,
    *,
    device: DeviceLike = None,
    backward: bool = False,
    optimizer: Callable[[list[torch.Tensor]], Any] | None = None,
    registry: Registry | None = None,
    formulas: Mapping[Any, Any] | None = None,
) -> Measurement:
    """Count the FLOPs, MACs and parameters of one forward (and, with ``backward``, backward) pass.

    ``model`` is a module or a zero-argument factory (built on ``device``); ``inputs`` a tensor, a
    tuple/list of positional arguments, a dict of keyword arguments, or a zero-argument factory of
    one of these. ``device`` None leaves everything where it is; "meta" uses no real memory.

    ``backward=True`` also counts the backward pass of the *sum of every floating-point tensor that
    requires grad* in the output, wherever it sits (a tensor, a tuple, a dict, a ModelOutput, nested
    lists); integer tensors, detached tensors and non-tensors are ignored, and an output with no such
    tensor is a MeasurementError. Gradients are returned, never accumulated into ``.grad``.

    ``optimizer`` (a function of the trainable parameters returning a torch optimizer, such as
    ``lambda ps: torch.optim.AdamW(ps, lr=1e-3)``) measures one training step instead: forward,
    the same backward, and ``optimizer.step()``, in steady state (one uncounted step runs first, so
    the optimizer's state exists as in every later step). It implies ``backward=True`` and runs on
    copies of the weights (fakes on meta): the caller's model never changes.

    ``formulas`` ({op: formula}) adds formulas for this measurement only, over the registered ones.
    """
    target = resolve_device(device)
    registry = (registry or default_registry()).scoped(formulas)
    if optimizer is not None:
        _check_optimizer_factory(optimizer)
        backward = True
    module = _build_model(model, target)
    state = ModelState.read(module)
    # a forward that differentiates (a PINN's du/dx, a score model's gradient of its energy) cannot run
    # without autograd: it is measured again, with autograd on, only when the no-grad run failed for
    # that reason; only the second run is counted
    for autograd in (backward, True):
        counting = CountingSession(registry, ModuleTracker(state.names(), track_backward=backward), grad=autograd)
        with device_scope(target) as fake_mode:
            with _default_device(target):
                args, kwargs = _build_inputs(inputs, target, fake_mode)
            if fake_mode is None:
                _refuse_meta_state(state, target)
            # an optimizer step changes the weights: it always runs on copies
            in_place = fake_mode is None and state.tensors_on(target) and optimizer is None
            # made before counting starts: copying weights to the counting device is not the model's work
            substitutes = {} if in_place else _substitute_state(state, target, fake_mode, copies=optimizer is not None)
            weights = list(state.params.values()) if in_place else [substitutes[n] for n in state.params]
            buffers = list(state.buffers.values()) if in_place else [substitutes[n] for n in state.buffers]
            counting.register_entry(weights, "parameters")
            counting.register_entry(buffers, "buffers")
            counting.register_entry(tree_flatten((args, kwargs))[0], "inputs")
            stepped: list[Any] = []
            try:
                if in_place:
                    _run_in_place(module, state, args, kwargs, counting, backward)
                elif optimizer is not None:
                    stepped.append(_run_training_step(module, state, args, kwargs, counting, substitutes, optimizer))
                else:
                    _run_on_substitutes(module, state, args, kwargs, counting, backward, substitutes)
            except Exception as error:
                if not autograd and _differentiates(error):
                    continue
                explained = _explain(error, module, target)
                if explained is error:
                    raise
                raise explained from error
            memory = counting.finish_memory(parameters=weights, buffers=buffers,
                                            gradients=[p.grad for p in weights if p.grad is not None],
                                            optimizer_state=optimizer_state_tensors(stepped))
        break
    return counting.measurement(state, target, backward, memory)


def _run_in_place(module: nn.Module, state: ModelState, args: tuple, kwargs: dict, counting: CountingSession,
                  backward: bool) -> None:
    """The caller's module as it is, where its weights already are; its buffers (running
    statistics) and attributes are put back afterwards."""
    trainable = [p for p in state.params.values() if p.requires_grad]
    with state.attributes_kept(), state.buffers_kept(), counting:
        counting.phase("forward")
        output = module(*args, **kwargs)
        if backward:
            counting.phase("backward")
            counting.name(_run_backward(output, trainable, module), "gradients")


def _run_on_substitutes(module: nn.Module, state: ModelState, args: tuple, kwargs: dict, counting: CountingSession,
                        backward: bool, substitutes: dict[str, torch.Tensor]) -> None:
    """The caller's module with ``substitutes`` for its parameters and buffers; its attributes are
    put back afterwards."""
    trainable = [p for p in substitutes.values() if p.requires_grad]
    with state.attributes_kept(), counting:
        counting.phase("forward")
        output = torch.func.functional_call(module, substitutes, args, kwargs, strict=False)
        if backward:
            counting.phase("backward")
            counting.name(_run_backward(output, trainable, module), "gradients")


def _default_device(target: torch.device | None) -> contextlib.AbstractContextManager[Any]:
    """``target`` as torch's default device while input factories run (meta inputs are fake meta
    tensors, which ``_fake`` moves to the one fake device the forward runs on)."""
    return target if target is not None else contextlib.nullcontext()


def _run_training_step(module: nn.Module, state: ModelState, args: tuple, kwargs: dict, counting: CountingSession,
                       substitutes: dict[str, torch.Tensor], make_optimizer: Callable[[list[torch.Tensor]], Any]) -> Any:
    """One steady-state training step of the caller's module on ``substitutes`` (copies, or fakes
    on meta): an uncounted step first, so the optimizer's state exists (at entry, for memory) as
    in every later step, then the counted one. Returns the optimizer."""
    trainable = [substitutes[name] for name, p in state.params.items() if p.requires_grad]
    optimizer = _built_optimizer(make_optimizer, trainable)

    def step() -> None:
        counting.phase("forward")
        output = torch.func.functional_call(module, substitutes, args, kwargs, strict=False)
        roots, grads = _backward_roots(output, module)
        counting.phase("backward")
        torch.autograd.backward(roots, grads)
        del output, roots, grads  # a training loop holds none of them during the step
        counting.phase("optimizer")
        optimizer.step()

    with state.attributes_kept():
        with torch.enable_grad():
            step()
        optimizer.zero_grad(set_to_none=True)
        counting.register_entry(optimizer_state_tensors([optimizer]), "optimizer_state")
        with counting:
            step()
    return optimizer


def _check_optimizer_factory(make_optimizer: Any) -> None:
    if isinstance(make_optimizer, torch.optim.Optimizer) or not callable(make_optimizer):
        raise MeasurementError(
            f"optimizer= takes a function of the parameters that returns an optimizer, such as "
            f"`optimizer=lambda ps: torch.optim.AdamW(ps, lr=1e-3)`; got {type(make_optimizer).__name__} "
            "(measure() steps copies of the weights, never the caller's own, so it builds the optimizer itself)"
        )


def _built_optimizer(make_optimizer: Callable[[list[torch.Tensor]], Any], params: list[torch.Tensor]) -> Any:
    if not params:
        raise MeasurementError("optimizer= given, but the model has no trainable parameters to step")
    optimizer = make_optimizer(params)
    if not (callable(getattr(optimizer, "step", None)) and callable(getattr(optimizer, "zero_grad", None))):
        raise MeasurementError(
            f"the optimizer function {_name_of(make_optimizer)} returned {type(optimizer).__name__}, not an "
            "optimizer (an object with step() and zero_grad()); return it, for example "
            "`lambda ps: torch.optim.AdamW(ps, lr=1e-3)`"
        )
    return optimizer


@contextlib.contextmanager
def _parameters_to_meta() -> Iterator[None]:
    """While a factory runs: every parameter moves to the meta device as it is registered (the way
    ``accelerate.init_empty_weights`` builds large models), everything else stays a real tensor."""
    handle = register_module_parameter_registration_hook(_parameter_to_meta)
    try:
        yield
    finally:
        handle.remove()


def _parameter_to_meta(module: nn.Module, name: str, param: Any) -> Any:
    """A meta copy of a parameter being registered (None keeps it: lazy or already meta)."""
    if param is None or param.device.type == "meta" or isinstance(param, nn.parameter.UninitializedParameter):
        return None
    meta = param.detach().to("meta")
    if type(param) is nn.Parameter:
        return nn.Parameter(meta, requires_grad=param.requires_grad)
    try:  # a Parameter subclass: rebuilt the same way it was, on meta
        return type(param)(meta, requires_grad=param.requires_grad)
    except TypeError:
        return nn.Parameter(meta, requires_grad=param.requires_grad)


def _build_model(model: Any, target: torch.device | None) -> nn.Module:
    if isinstance(model, nn.Module):
        return _uncompiled(model)
    if not callable(model):
        raise MeasurementError(
            f"model must be an nn.Module or a zero-argument callable returning one, "
            f"got {type(model).__name__}"
        )
    built = _call_factory(model, target)
    if not isinstance(built, nn.Module):
        raise MeasurementError(
            f"the model factory {_name_of(model)} returned {type(built).__name__}, not an nn.Module; "
            "return the model itself (for example `return MyNet()`)"
        )
    return _uncompiled(built)


def _call_factory(factory: Callable[[], Any], target: torch.device | None) -> Any:
    """Run a model factory so that its weights land on ``target``.

    On meta it first runs with meta as the default device: nothing is allocated, whatever the
    model's size. A constructor that computes with tensor values (timm's drop-path schedule calls
    ``.item()`` on a ``linspace``, RegNet widths go through ``unique``) cannot run that way; it is run
    again as plain Python on real CPU tensors, with only its parameters moved to meta as they are
    registered, which keeps the weights off memory too. Elsewhere ``target`` is the default device.
    """
    if target is None:
        return factory()
    try:
        with target:
            return factory()
    except Exception:  # any failure on meta tensors gets the real-tensor build
        if target.type != "meta":
            raise
    with _parameters_to_meta():
        return factory()


def _uncompiled(module: nn.Module) -> nn.Module:
    """torch.compile's wrapper counts as the module it wraps (same ops, names without _orig_mod)."""
    original = getattr(module, "_orig_mod", None)
    return original if isinstance(original, nn.Module) else module


def _build_inputs(inputs: Any, target: torch.device | None, fake_mode: Any) -> tuple[tuple, dict]:
    if callable(inputs) and not isinstance(inputs, (torch.Tensor, nn.Module)):
        inputs = inputs()
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    if isinstance(inputs, torch.Tensor):
        args, kwargs = (inputs,), {}
    elif isinstance(inputs, (tuple, list)):
        args, kwargs = tuple(inputs), {}
    elif isinstance(inputs, dict):
        if not all(isinstance(k, str) for k in inputs):
            raise MeasurementError("inputs given as a dict must map argument names (str) to values")
        args, kwargs = (), dict(inputs)
    else:
        raise MeasurementError(
            f"inputs must be a Tensor, a tuple/list of positional arguments, a dict of keyword "
            f"arguments, or a zero-argument callable returning one of these; got {type(inputs).__name__}"
        )
    place = _placer(target, fake_mode)
    return tree_map(place, args), tree_map(place, kwargs)


def _placer(target: torch.device | None, fake_mode: Any) -> Callable[[Any], Any]:
    """How one tensor reaches the counting device without the caller's tensor being changed."""

    def place(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        if fake_mode is not None:
            return _fake(value, fake_mode)
        moved = value if target is None else value.to(target)
        # a copy, so that in-place ops in the forward never reach the caller's tensor
        return moved.clone() if moved is value else moved

    return place


def _substitute_state(state: ModelState, target: torch.device | None, fake_mode: Any, *,
                      copies: bool = False) -> dict[str, torch.Tensor]:
    """Parameters and buffers to run the module with on another device: copies there (buffers
    always copies, since running statistics change in train mode; parameters too with ``copies``,
    for an optimizer to step), or fake tensors on meta."""
    substitutes = {name: _moved(p, target, fake_mode, is_param=not copies) for name, p in state.params.items()}
    if copies:
        for name, param in state.params.items():
            substitutes[name].requires_grad_(param.requires_grad)
    substitutes.update({name: _moved(b, target, fake_mode, is_param=False) for name, b in state.buffers.items()})
    return substitutes


def _refuse_meta_state(state: ModelState, target: torch.device | None) -> None:
    """Weights on meta hold no values: only a meta count can run them."""
    for kind, named in (("parameter", state.params), ("buffer", state.buffers)):
        for name, tensor in named.items():
            if tensor.device.type == "meta" and (target is None or target.type != "meta"):
                where = f"device={str(target)!r}" if target is not None else "device=None"
                raise MeasurementError(
                    f"{kind} {name!r} of {type(state.root).__name__} is on the meta device and has no "
                    f"values, so it cannot run with {where}; measure with device='meta', "
                    "which counts the same numbers without memory",
                    use_device="meta",
                )


def _moved(tensor: torch.Tensor, target: torch.device | None, fake_mode: Any, *, is_param: bool) -> torch.Tensor:
    if fake_mode is not None:
        return _fake(tensor, fake_mode)
    if target is not None and tensor.device != target:
        moved = tensor.detach().to(target)
        return moved.requires_grad_(tensor.requires_grad) if is_param else moved
    if is_param:
        return tensor
    return tensor.detach().clone()


def _fake(tensor: torch.Tensor, fake_mode: Any) -> torch.Tensor:
    """A fake tensor for ``tensor``, without copying its data. Tensors on the meta device become
    fake *cpu* tensors, so weights built on meta and inputs built on cpu (or the other way round)
    meet on one device, and aten picks the same kernels it picks on a real CPU."""
    from torch._subclasses.fake_tensor import FakeTensor, unset_fake_temporarily

    if getattr(tensor, "_offsets", None) is not None and not isinstance(tensor, FakeTensor):
        # a jagged nested tensor: its values and offsets made fake, the ragged size symbolic
        with fake_mode:
            return torch.nested.nested_tensor_from_jagged(_fake(tensor.values(), fake_mode),
                                                          _fake(tensor.offsets(), fake_mode))
    if tensor.device.type != "meta":
        if isinstance(tensor, FakeTensor):
            return tensor
        return fake_mode.from_tensor(tensor, static_shapes=True)
    with unset_fake_temporarily():
        shell = torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device="meta")
    fake = fake_mode.fake_tensor_converter.from_meta_and_device(fake_mode, shell, torch.device("cpu"))
    return fake.requires_grad_(tensor.requires_grad) if tensor.is_floating_point() else fake


def _run_backward(output: Any, params: list[torch.Tensor], module: nn.Module) -> tuple[Any, ...]:
    """Backward of the sum of every floating-point output tensor, as a training step would run it;
    the gradients are returned (to be named, then dropped), not accumulated into ``.grad``."""
    roots, grads = _backward_roots(output, module)
    targets = params or [t for t in roots]
    return torch.autograd.grad(roots, targets, grads, allow_unused=True)


def _backward_roots(output: Any, module: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The outputs a backward starts from (every floating-point tensor that requires grad) and
    their gradients (ones: the backward of their sum, without counting the sum itself)."""
    leaves, _ = tree_flatten(_plain(output))
    outputs = [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad]
    if not outputs:
        raise MeasurementError(
            f"backward=True, but no output of {type(module).__name__} requires grad: the model has "
            "no trainable parameters on the path to its outputs, or its forward runs under no_grad"
        )
    # a free view in front of each output, so gradient hooks on the outputs themselves fire and
    # the last module's backward is attributed to it like every other module's
    return [t.view_as(t) for t in outputs], [torch.ones_like(t) for t in outputs]


def _plain(output: Any) -> Any:
    """Model outputs that are dict-like (transformers' ModelOutput) as plain dicts."""
    if isinstance(output, dict):
        return {k: _plain(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return [_plain(v) for v in output]
    return output


def _differentiates(error: Exception) -> bool:
    """Whether a forward run without autograd failed because it differentiates (calls autograd.grad)."""
    return isinstance(error, RuntimeError) and "does not require grad and does not have a grad_fn" in str(error)


def _name_of(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _explain(error: Exception, module: nn.Module, target: torch.device | None) -> BaseException:
    """What to do, for a failure only meta causes; else the original exception with a note saying
    what was being measured."""
    name = type(module).__name__
    explained = explain_meta_failure(error, name, target)
    if explained is not error or isinstance(error, (MeasurementError, FormulaError)):
        return explained
    if hasattr(error, "add_note"):
        where = f" on {target}" if target is not None else ""
        error.add_note(f"(pytest-flopbudget: raised by the model's forward while measuring {name}{where})")
    return error
