"""One counted run, the same for measure() and count(): the device it runs on, the modes that
count it, how a backward pass ends, and how a failure only the meta device causes is explained.

A run is entered in two steps, because measure() prepares tensors between them:

- ``device_scope(target)``: on meta, torch's FakeTensorMode (yielded, so tensors made before the
  run can be converted to fake ones); with ``default_device``, ``target`` as torch's default device
  for the whole scope (a ``count()`` block's own code creates its tensors there);
- ``CountingSession``: the module tracker, the counter and the grad mode, entered and left together;
  ``measurement()`` afterwards collects what the run counted.

Backward scopes end one way for both front ends: the module tracker closes them when the autograd
pass ends (see module_tracker.py), whether the pass was started by measure() or by user code.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterable, Iterator

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from pytest_flopbudget.counting.collect import collect
from pytest_flopbudget.counting.counter import OpCounter
from pytest_flopbudget.counting.devices import fake_mode as fake_mode_for_meta
from pytest_flopbudget.counting.devices import is_meta, quiet_fake_tensor_log
from pytest_flopbudget.counting.errors import FormulaError, MeasurementError, first_line, mixes_devices, needs_values
from pytest_flopbudget.counting.measurement import Measurement, Memory
from pytest_flopbudget.counting.memory import MemoryTracker
from pytest_flopbudget.counting.model_state import ModelState
from pytest_flopbudget.counting.module_tracker import ModuleTracker
from pytest_flopbudget.counting.registry import Registry


@contextlib.contextmanager
def device_scope(target: torch.device | None, *, default_device: bool = False) -> Iterator[Any]:
    """FakeTensorMode on meta (yielded; None elsewhere), and with ``default_device`` the device new
    tensors land on while the scope lasts: ``target``, or on meta fake *cpu* tensors (no memory,
    and the kernels a real CPU picks, as measure() runs on meta)."""
    with contextlib.ExitStack() as stack:
        fake_mode = None
        if is_meta(target):
            stack.enter_context(quiet_fake_tensor_log())
            fake_mode = stack.enter_context(fake_mode_for_meta())
        if default_device and target is not None:
            wanted = torch.device("cpu" if fake_mode is not None else target)
            if not _already_default(wanted):
                stack.enter_context(wanted)
        yield fake_mode


def _already_default(device: torch.device) -> bool:
    """Whether new tensors land on ``device`` already: torch's default-device mode sees every torch
    call in the block (a Python function each), so it is entered only when it changes something."""
    current = getattr(torch, "get_default_device", None)  # torch >= 2.3
    return current is not None and current() == device


class CountingSession:
    """The module tracker, the counter, the memory tracker and the grad mode of one counted run,
    entered together.

    ``grad``: True turns autograd on for the run (a backward will be counted), False off (an
    autograd graph nobody uses costs up to a tenth of a forward, and the counts are the same either
    way), None leaves the caller's mode (a block's code decides for itself). The memory tracker is
    fed by the counter's dispatch mode (one mode for both); the front end tells it what existed
    before the run (``register_entry``), where the run is (``phase``) and, once the run is over,
    what its tensors were (``finish_memory``)."""

    def __init__(self, registry: Registry, tracker: ModuleTracker, *, grad: bool | None) -> None:
        self.tracker = tracker
        self.counter = OpCounter(registry, tracker)
        # a block runs user code, which may use torch.func: no saved-tensor hooks there
        # the property's getter bound to the tracker: asked for every new storage, one frame fewer
        active = functools.partial(type(tracker).active.fget, tracker)  # type: ignore[attr-defined]
        self.memory = MemoryTracker(active, saved_hooks=grad is not None)
        self.counter.memory = self.memory
        self._grad = grad
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> CountingSession:
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.memory)
            stack.enter_context(self.tracker)
            stack.enter_context(self.counter)
            stack.enter_context(_optimizer_steps(self.counter, self.memory))
            if self._grad is not None:
                stack.enter_context(torch.enable_grad() if self._grad else torch.no_grad())
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)

    def register_entry(self, tensors: Iterable[Any], category: str) -> None:
        """Tensors that exist before the run: live at entry (parameters, buffers, inputs, optimizer_state)."""
        self.memory.register_entry(tensors, category)

    def name(self, tensors: Iterable[Any], category: str) -> None:
        """What live tensors are (gradients ``autograd.grad`` returned), for the categories at the peak."""
        self.memory.name(tensors, category)

    def phase(self, name: str) -> None:
        """Where the run is now, for the phase at the memory peak: forward, backward, optimizer, block."""
        self.memory.set_phase(name)

    def finish_memory(self, *, parameters: Iterable[Any] = (), buffers: Iterable[Any] = (),
                      gradients: Iterable[Any] = (), optimizer_state: Iterable[Any] = ()) -> Memory:
        """The run's memory, once it is over; the tensors named here give the categories at the peak."""
        return self.memory.finish(parameters=parameters, buffers=buffers, gradients=gradients,
                                  optimizer_state=optimizer_state)

    def measurement(self, state: ModelState, target: torch.device | None, backward: bool,
                    memory: Memory | None = None) -> Measurement:
        """What the run counted, spread over the module tree of ``state``, with its memory (each
        module's row carries the bytes live at the peak that its code allocated)."""
        return collect(state, self.counter, target, backward, memory)


@contextlib.contextmanager
def _optimizer_steps(counter: OpCounter, memory: MemoryTracker) -> Iterator[None]:
    """Tell the counter while any optimizer's step() runs, so that its work is the optimizer's
    phase, in measure(optimizer=) and in a count() block alike (torch's global step hooks; removed
    on exit). The gradients a step reads are named then, while they live: a ``zero_grad()`` later
    in the run frees them before it ends."""

    def started(optimizer: Any, args: Any, kwargs: Any) -> None:
        counter.stepping += 1
        memory.name((p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None),
                    "gradients")

    def ended(optimizer: Any, args: Any, kwargs: Any) -> None:
        counter.stepping = max(0, counter.stepping - 1)

    pre = register_optimizer_step_pre_hook(started)
    post = register_optimizer_step_post_hook(ended)
    try:
        yield
    finally:
        pre.remove()
        post.remove()
        counter.stepping = 0


def optimizer_state_tensors(optimizers: Iterable[Any]) -> list[torch.Tensor]:
    """Every tensor in the state of ``optimizers`` (moments, momentum buffers, step counters)."""
    return [value for optimizer in optimizers for per_param in optimizer.state.values()
            for value in per_param.values() if isinstance(value, torch.Tensor)]


def explain_meta_failure(error: BaseException, subject: str, target: torch.device | None) -> BaseException:
    """A MeasurementError saying what to do, for failures only the meta device causes (a value
    read, a real tensor meeting a fake one); any other error is returned as it is."""
    if isinstance(error, (MeasurementError, FormulaError)) or not is_meta(target):
        return error
    if mixes_devices(error):
        return MeasurementError(
            f"{subject} cannot run on meta: a real tensor met a meta one ({first_line(error)}). On meta every "
            "tensor the code creates is fake; build models before a count() block with "
            "`with torch.device('meta'): model = build()`, or count on 'cpu' (device='cpu').",
            use_device="cpu",
        )
    if needs_values(error):
        return MeasurementError(
            f"{subject} cannot run on meta: the code reads tensor values, which meta tensors do not have "
            f"({first_line(error)}). Code whose shapes or control flow depend on values (nonzero, .item(), "
            "masks built from data, stopping criteria) must be counted on 'cpu' (device='cpu').",
            use_device="cpu",
        )
    return error
