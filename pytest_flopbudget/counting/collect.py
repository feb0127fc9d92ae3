"""The Measurement of one counted run: the counter's totals spread over the module tree.

Shared by measure() (one model) and count() (whatever ran in a block, gathered under one root).
"""

from __future__ import annotations

import torch

from pytest_flopbudget.counting.counter import OpCounter, PhaseCosts
from pytest_flopbudget.counting.devices import device_of
from pytest_flopbudget.counting.measurement import Measurement, Memory, ModuleCost
from pytest_flopbudget.counting.model_state import ModelState

_NOTHING = PhaseCosts()


def collect(state: ModelState, counter: OpCounter, target: torch.device | None, backward: bool,
            memory: Memory | None = None) -> Measurement:
    """Every module of ``state`` with its inclusive cost, the unique parameters, the per-op
    breakdown, what had no formula and where values were read; ``device`` is ``target``, or where
    the parameters are when the run left them in place. With ``memory``, each module's row carries
    the bytes live at the peak that its code allocated (rows are made once: hundreds per model)."""
    modules: dict[str, ModuleCost] = {}
    per_module = counter.module_totals()
    per_module[""] = counter.phase_totals()
    memory_per_module = memory.modules if memory is not None else None
    params_per_module = state.params_per_module
    for name, sub in state.modules:
        cost = per_module.get(name, _NOTHING)
        modules[name] = ModuleCost(
            type(sub).__name__, cost.flops, cost.macs, params_per_module.get(name, 0),
            memory=None if memory_per_module is None else memory_per_module.get(name, 0),
            backward_flops=cost.backward_flops, backward_macs=cost.backward_macs,
            optimizer_flops=cost.optimizer_flops, optimizer_macs=cost.optimizer_macs,
        )
    all_params = list(state.params.values())
    return Measurement(
        flops=counter.flops,
        macs=counter.macs,
        params=sum(p.numel() for p in all_params),
        trainable_params=sum(p.numel() for p in all_params if p.requires_grad),
        modules=modules,
        ops=dict(sorted(counter.op_flops.items())),
        op_macs=dict(sorted(counter.op_macs.items())),
        uncounted=dict(sorted(counter.uncounted.items())),
        estimated=dict(sorted(counter.estimated.items())),
        value_reads={name: dict(sorted(ops.items())) for name, ops in sorted(counter.value_reads.items())},
        device=str(target) if target is not None else device_of(all_params),
        backward=backward,
        memory=memory,
    )
