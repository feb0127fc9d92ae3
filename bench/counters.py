"""The counters compared: this project (cpu and meta) and its peers, each as a function
``count(model, x) -> dict`` that runs one count of ``model(x)`` and returns what the tool reports.

Every result names the tool's unit. ``macs`` is filled where the tool reports multiply-accumulates
(ptflops, thop, fvcore's "flops", calflops' macs), ``flops`` where it reports floating-point
operations (this project, calflops, torch's FlopCounterMode: 2 per multiply-accumulate).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Callable

CounterFn = Callable[[Any, Any], dict]


class CounterFailed(Exception):
    """The tool reported a failure without raising (ptflops prints and returns None)."""


def _params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _reported(m: Any) -> dict:
    """What this project reports, in the shape every counter's result takes."""
    return {
        "flops": m.flops,
        "macs": m.macs,
        "params": m.params,
        "unit": "flops (seed rules) and macs (ptflops rules), exact integers",
        "op_macs": dict(m.op_macs),
        "op_flops": dict(m.ops),
        "uncounted": dict(m.uncounted),
    }


def ours(device: str | None) -> CounterFn:
    def count(model: Any, x: Any) -> dict:
        import pytest_flopbudget as fb

        return _reported(fb.measure(model, x, device=device))

    return count


def ours_factory(build: Callable[[], Any], make_input: Callable[[], Any]) -> Callable[[], dict]:
    """The meta workload: model and inputs built by factories under FakeTensorMode inside measure()."""

    def count() -> dict:
        import pytest_flopbudget as fb

        return _reported(fb.measure(build, make_input, device="meta"))

    return count


def ptflops_counter(backend: str) -> CounterFn:
    def count(model: Any, x: Any) -> dict:
        from ptflops import get_model_complexity_info

        captured = io.StringIO()
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            macs, params = get_model_complexity_info(
                model,
                tuple(x.shape[1:]),
                input_constructor=lambda _res: x,
                as_strings=False,
                print_per_layer_stat=False,
                backend=backend,
                ost=captured,
            )
        if macs is None:
            raise CounterFailed(_ptflops_error(captured.getvalue()))
        return {"macs": int(macs), "params": int(params), "unit": "MACs (ptflops 'Mac')"}

    return count


def _ptflops_error(text: str) -> str:
    # ptflops prints "...because of the following exception: \n<class 'X'>: message" and a traceback
    lines = [line for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "the following exception" in line and i + 1 < len(lines):
            return lines[i + 1].replace("<class '", "").replace("'>", "")
    return lines[-1] if lines else "ptflops returned None"


def fvcore_counter(model: Any, x: Any) -> dict:
    import logging

    from fvcore.nn import FlopCountAnalysis, parameter_count

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(model, (x,))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    total = analysis.total()
    return {
        "macs": int(total),
        "params": int(parameter_count(model)[""]),
        "unit": "'flops' that are MACs (one per fused multiply-add)",
        "by_operator": {k: int(v) for k, v in analysis.by_operator().items()},
        "uncounted": {k: int(v) for k, v in analysis.unsupported_ops().items()},
    }


def thop_counter(model: Any, x: Any) -> dict:
    from thop import profile

    with contextlib.redirect_stdout(io.StringIO()):
        macs, params = profile(model, inputs=(x,), verbose=False)
    return {"macs": int(macs), "params": int(params), "unit": "MACs (thop 'ops')"}


def calflops_counter(model: Any, x: Any) -> dict:
    from calflops import calculate_flops

    with contextlib.redirect_stdout(io.StringIO()):
        flops, macs, params = calculate_flops(
            model,
            args=[x],
            print_results=False,
            print_detailed=False,
            output_as_string=False,
        )
    return {
        "flops": int(flops),
        "macs": int(macs),
        "params": int(params),
        "unit": "FLOPs (= 2×MACs for matmuls) and MACs",
    }


def fcm_counter(model: Any, x: Any) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as mode:
        model(x)
    by_op = {str(k): int(v) for k, v in mode.get_flop_counts().get("Global", {}).items()}
    return {
        "flops": int(mode.get_total_flops()),
        "params": _params(model),
        "unit": "FLOPs (2 per multiply-accumulate, matmul/conv/attention only); params: n/a (numel shown)",
        "by_operator": by_op,
    }


# name -> (counter function for a ready model on cpu, short description)
COUNTERS: dict[str, tuple[CounterFn, str]] = {
    "fb-cpu": (ours(None), "this project, measure(model, x) on cpu"),
    "fb-meta": (ours("meta"), "this project, measure(model, x, device='meta') (FakeTensorMode)"),
    "ptflops-pytorch": (ptflops_counter("pytorch"), "ptflops 0.7, backend='pytorch' (module hooks + patched functionals)"),
    "ptflops-aten": (ptflops_counter("aten"), "ptflops 0.7, backend='aten' (TorchDispatchMode, mm/bmm/addmm/conv only)"),
    "fvcore": (fvcore_counter, "fvcore FlopCountAnalysis (jit trace)"),
    "thop": (thop_counter, "thop.profile (module hooks)"),
    "calflops": (calflops_counter, "calflops.calculate_flops (module hooks + patched functionals)"),
    "torch-fcm": (fcm_counter, "torch.utils.flop_counter.FlopCounterMode"),
}
