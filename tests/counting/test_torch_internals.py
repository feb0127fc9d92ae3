"""The torch internals the engine relies on, checked against the torch installed here.

A torch release that renames or drops a kernel the RULES tables name, moves a function-level entry
point, or reorders the arguments a formula reads by position would otherwise count that work as 0
or count it wrongly, silently. These tests make such a release fail CI instead. What each check is
for, and what to do when one fails after a torch upgrade: docs/torch-internals.md.

The tables are generic: every formula family's ``RULES`` and ``FUNCTION_RULES`` is checked, so a new
rule is covered as soon as it is added. Names that exist only in some torch releases are listed in
``ONLY_IN`` with the releases that have them; a listed name found outside its range fails too, so
the list stays true.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from pytest_flopbudget.counting import formulas, registry

TORCH = tuple(int(part) for part in re.match(r"(\d+)\.(\d+)", torch.__version__).groups())  # type: ignore[union-attr]

# RULES names and FUNCTION_RULES paths that exist only in some torch releases:
# name -> (first release that has it, first release that no longer has it, or None).
# Releases tested by .ci/run: the floor (2.6), the pinned one (2.13) and the newest (2.15).
ONLY_IN: dict[str, tuple[tuple[int, int], tuple[int, int] | None]] = {
    "_fused_rms_norm": ((2, 8), None),  # not in the 2.7.1 wheel, in 2.8.0's
    "_fused_rms_norm_backward": ((2, 8), None),  # absent in 2.6, present in 2.13; 2.7-2.12 not checked
    # absent in 2.6, present in 2.13 and 2.15; 2.7-2.12 not checked (a release in between that has
    # them fails here with "correct its range")
    "_grouped_mm": ((2, 13), None),
    "_foreach_mm": ((2, 13), None),
    "_foreach_powsum": ((2, 13), None),
    # issue 21's kernels: absent in 2.6, present in 2.13 and 2.15 (2.7-2.12 not checked)
    **dict.fromkeys(
        "_cudnn_attention_forward _cudnn_attention_backward _dyn_quant_matmul_4bit "
        "_flash_attention_forward_no_dropout_inplace _scaled_grouped_mm _scaled_grouped_mm_v2 _scaled_mm_v2 "
        "_upsample_lanczos2d_aa _upsample_lanczos2d_aa_backward _weight_int4pack_mm_with_scales_and_zeros "
        "linalg__powsum miopen_ctc_loss".split(), ((2, 13), None)),
    # new in 2.15 (2.14 not checked)
    **dict.fromkeys(
        "_cudnn_attention_forward_no_dropout_inplace _scaled_addmm linalg_matrix_sqrth linalg_polar".split(),
        ((2, 15), None)),
    "cholesky": ((0, 0), (2, 15)),  # the deprecated torch.cholesky: gone in 2.15 (2.14 not checked)
}


def _in_this_torch(name: str) -> bool:
    first, gone = ONLY_IN.get(name, ((0, 0), None))
    return first <= TORCH and (gone is None or TORCH < gone)


def _family_modules() -> dict[str, Any]:
    """Every module of the formulas package that holds rules, found by walking the package."""
    modules = {}
    for info in pkgutil.iter_modules(formulas.__path__):
        module = importlib.import_module(f"{formulas.__name__}.{info.name}")
        if hasattr(module, "RULES") or hasattr(module, "FUNCTION_RULES"):
            modules[info.name] = module
    return modules


FAMILIES = _family_modules()
RULE_NAMES = sorted((family, name) for family, module in FAMILIES.items() for name in getattr(module, "RULES", {}))
FUNCTION_PATHS = sorted((family, path) for family, module in FAMILIES.items()
                        for path in getattr(module, "FUNCTION_RULES", {}))


def test_every_family_with_rules_is_in_the_registry() -> None:
    """A family module the registry does not list would have its rules silently unused."""
    assert set(FAMILIES.values()) == set(registry._FAMILIES)


def _check_present_as_listed(found: bool, name: str, shown: str, where: str) -> None:
    """``name`` resolves in this torch exactly when ONLY_IN says it should (``shown`` is how the
    message names it, ``where`` the family table that lists it)."""
    if _in_this_torch(name):
        assert found, (f"{where} names {shown}, which torch {torch.__version__} does not have: find what "
                       "replaced it (docs/torch-internals.md), or add it to ONLY_IN")
    else:
        assert not found, f"{shown} exists in torch {torch.__version__}: correct its range in ONLY_IN"


# namespaces a library other than torch's core registers when it is imported
LIBRARY_NAMESPACES = {"torchvision": "torchvision", "quantized_decomposed": "torch.ao.quantization.fx._decomposed"}


@pytest.mark.parametrize("family, name", RULE_NAMES)
def test_every_rules_name_is_an_aten_op_of_this_torch(family: str, name: str) -> None:
    if "::" in name:
        namespace = name.split("::")[0]
        if namespace in LIBRARY_NAMESPACES:
            pytest.importorskip(LIBRARY_NAMESPACES[namespace])
        found = registry._named_op(name) is not None
        _check_present_as_listed(found, name, name, f"formulas/{family}.py RULES")
        return
    found = registry._aten_op(name) is not None
    _check_present_as_listed(found, name, f"aten.{name}", f"formulas/{family}.py RULES")


@pytest.mark.parametrize("family, path", FUNCTION_PATHS)
def test_every_function_rule_resolves_in_this_torch(family: str, path: str) -> None:
    found = registry._import_path(path) is not None
    _check_present_as_listed(found, path, path, f"formulas/{family}.py FUNCTION_RULES")


# The arguments formulas read by position from private kernels, by the names aten's schema gives
# them: (overload, [name at position 0, 1, ...]); None where the formula does not read it.
POSITIONS: dict[str, tuple[str, list[str | None]]] = {
    "_scaled_dot_product_flash_attention_for_cpu": ("default", ["query", "key", "value", "dropout_p"]),
    "_scaled_dot_product_flash_attention": ("default", ["query", "key", "value", "dropout_p"]),
    "_scaled_dot_product_efficient_attention": ("default", ["query", "key", "value", "attn_bias"]),
    "_scaled_dot_product_cudnn_attention": ("default", ["query", "key", "value", "attn_bias"]),
    "_scaled_dot_product_fused_attention_overrideable": ("default", ["query", "key", "value", "attn_bias"]),
    "_scaled_dot_product_flash_attention_for_cpu_backward": ("default", ["grad_out", "query", "key", "value"]),
    "_native_multi_head_attention": ("default", [
        "query", "key", "value", "embed_dim", "num_head", "qkv_weight", "qkv_bias", "proj_weight", "proj_bias",
        "mask", "need_weights", "average_attn_weights"]),
    "_transformer_encoder_layer_fwd": ("default", [
        "src", "embed_dim", "num_heads", "qkv_weight", "qkv_bias", "proj_weight", "proj_bias", "use_gelu",
        "norm_first", "eps", "norm_weight_1", "norm_bias_1", "norm_weight_2", "norm_bias_2", "ffn_weight_1",
        "ffn_bias_1", "ffn_weight_2", "ffn_bias_2", "mask"]),
    # the fused CPU LSTM layer: the formula reads the weights and has_biases (its args[7] and, in
    # the backward, args[12], after the five named tensors)
    "mkldnn_rnn_layer": ("default", ["input", "weight0", "weight1", "weight2", "weight3"]
                         + [None] * 7 + ["has_biases"]),
    "mkldnn_rnn_layer_backward": ("default", ["input", "weight1", "weight2", "weight3", "weight4"]
                                  + [None] * 12 + ["has_biases"]),
    "_fused_rms_norm": ("default", ["input", "normalized_shape", "weight"]),
    "native_layer_norm": ("default", ["input", "normalized_shape", "weight", "bias"]),
    "native_group_norm": ("default", ["input", "weight", "bias"]),
    "native_batch_norm": ("default", ["input", "weight", "bias"]),
    # the function-level RNN cells read the aten schema of torch.*_cell (the networks, torch.lstm
    # and the like, bind by name: BY_NAME below)
    **{f"{name}_cell": ("default", ["input", "hx", "w_ih", "w_hh", "b_ih", "b_hh"])
       for name in ("lstm", "gru", "rnn_tanh", "rnn_relu")},
    "scaled_dot_product_attention": ("default", ["query", "key", "value", "attn_mask", "dropout_p"]),
    # scaled and grouped products (formulas/matmul.py): where they read offs and bias
    "_scaled_mm_v2": ("default", ["self", "mat2"] + [None] * 6 + ["bias"]),
    "_scaled_grouped_mm": ("default", ["self", "mat2", "scale_a", "scale_b", "offs", "bias"]),
    "_scaled_grouped_mm_v2": ("default", ["self", "mat2"] + [None] * 6 + ["offs", "bias"]),
    # the cudnn and miopen recurrent kernels (formulas/backend_kernels.py)
    "_cudnn_rnn": ("default", ["input", "weight", "weight_stride0", None, None, None, "mode", None, None,
                               "num_layers", None, "dropout", "train", "bidirectional", "batch_sizes"]),
    "miopen_rnn": ("default", ["input", "weight", "weight_stride0", None, None, "mode", None, "num_layers", None,
                               "dropout", "train", "bidirectional", "batch_sizes"]),
    "_cudnn_rnn_backward": ("default", ["input", "weight", "weight_stride0"] + [None] * 7
                            + ["mode", None, None, "num_layers", None, None, None, "bidirectional", "batch_sizes"]),
    "miopen_rnn_backward": ("default", ["input", "weight", "weight_stride0"] + [None] * 7
                            + ["mode", None, "num_layers", None, None, None, "bidirectional", "batch_sizes"]),
    "lstm_mps_backward": ("default", [None] * 5 + ["input", None, None, "params", "has_biases", "num_layers",
                                                   "dropout", "train", "bidirectional"]),
    "rms_norm": ("default", ["input", "normalized_shape", "weight"]),
}


@pytest.mark.parametrize("name", sorted(POSITIONS))
def test_private_kernel_arguments_are_where_the_formulas_read_them(name: str) -> None:
    aten_name = name.partition("#")[0]
    if not _in_this_torch(aten_name):
        pytest.skip(f"aten.{aten_name} is not in torch {torch.__version__} (ONLY_IN)")
    overload, expected = POSITIONS[name]
    schema = getattr(getattr(torch.ops.aten, aten_name), overload)._schema
    actual = [argument.name for argument in schema.arguments]
    for position, wanted in enumerate(expected):
        if wanted is not None:
            assert position < len(actual) and actual[position] == wanted, \
                f"aten.{aten_name}.{overload} argument {position}: the formula reads {wanted}, torch has {actual}"


# Formulas whose parameters carry the schema's names, so a private kernel's arguments bind by name:
# the formula's positional parameters must be the schema's, in order.
BOUND_BY_NAME = ["mkldnn_rnn_layer", "mkldnn_rnn_layer_backward"]


# Formulas marked formulas.by_name: the registry binds each call to the op's schema and passes
# every argument by its name. (family, RULES name or FUNCTION_RULES path, the aten packet's name)
BY_NAME = sorted(
    {(family, key, key if key in getattr(module, "RULES", {}) else module.FUNCTION_RULES[key][0].split(".", 1)[1])
     for family, module in FAMILIES.items()
     for table in (getattr(module, "RULES", {}), {p: f for p, (_, f) in getattr(module, "FUNCTION_RULES", {}).items()})
     for key, formula in table.items() if getattr(formula, "by_name", False)}
)


def test_the_private_kernels_and_networks_are_bound_by_name() -> None:
    bound = {key for _, key, _ in BY_NAME}
    assert {"_flash_attention_forward", "_efficient_attention_forward", "_flash_attention_backward",
            "_efficient_attention_backward", "torch.lstm", "torch.gru", "torch.rnn_tanh", "torch.rnn_relu"} <= bound


@pytest.mark.parametrize(("family", "key", "aten_name"), BY_NAME)
def test_formulas_bound_by_name_read_names_the_schema_has(family: str, key: str, aten_name: str) -> None:
    """Each argument such a formula reads is named in its op's schema: one it requires in every
    overload, one it may go without (``input`` or, packed, ``data``) in some overload."""
    import inspect

    if not _in_this_torch(aten_name):
        pytest.skip(f"aten.{aten_name} is not in torch {torch.__version__} (ONLY_IN)")
    module = FAMILIES[family]
    formula = module.RULES[key] if key in getattr(module, "RULES", {}) else module.FUNCTION_RULES[key][1]
    packet = getattr(torch.ops.aten, aten_name)
    schemas = {name: {a.name for a in getattr(packet, name)._schema.arguments} for name in packet.overloads()}
    for parameter in inspect.signature(formula).parameters.values():
        if parameter.kind is not parameter.KEYWORD_ONLY or parameter.name == "out_shape":
            continue
        having = [overload for overload, names in schemas.items() if parameter.name in names]
        if parameter.default is parameter.empty:
            assert having == list(schemas), f"aten.{aten_name}: {parameter.name} is missing from {schemas}"
        else:
            assert having, f"aten.{aten_name}: no overload has {parameter.name}: {schemas}"


@pytest.mark.parametrize("name", BOUND_BY_NAME)
def test_formulas_bound_by_name_take_the_schema_names(name: str) -> None:
    import inspect

    from pytest_flopbudget.counting.formulas import recurrent

    formula = recurrent.RULES[name]
    ours = [p.name for p in inspect.signature(formula).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    schema = [a.name for a in getattr(torch.ops.aten, name).default._schema.arguments]
    assert ours == schema[:len(ours)], f"aten.{name}: the formula binds {ours}, torch has {schema}"


def test_multi_head_attention_forward_takes_the_arguments_the_formula_names() -> None:
    import inspect

    from pytest_flopbudget.counting.formulas.attention import mha_forward_function

    def positional(function: Callable[..., Any]) -> list[str]:
        return [p.name for p in inspect.signature(function).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

    ours = positional(mha_forward_function)
    assert positional(F.multi_head_attention_forward)[:len(ours)] == ours


class _Calls(TorchFunctionMode):
    """Records the functions torch hands to a function mode (what _CompositeCounter sees)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[Any] = set()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.seen.add(func)
        return func(*args, **(kwargs or {}))


x3 = torch.zeros(2, 3, 4)
# the public ways in to each function-level rule the issue names: the rule's function must be what
# torch hands the function mode when a model makes that call
ENTRY_POINTS: dict[str, Callable[[], object]] = {
    "torch.nn.functional.scaled_dot_product_attention": lambda: torch.nn.functional.scaled_dot_product_attention(
        torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4)),
    "torch.nn.functional.multi_head_attention_forward": lambda: torch.nn.MultiheadAttention(4, 2)(x3, x3, x3),
    "torch.nn.functional.rms_norm": lambda: torch.nn.RMSNorm(4)(x3),
    "torch.lstm": lambda: torch.nn.LSTM(4, 5)(x3),
    "torch.gru": lambda: torch.nn.GRU(4, 5)(x3),
    "torch.rnn_tanh": lambda: torch.nn.RNN(4, 5)(x3),
    "torch.rnn_relu": lambda: torch.nn.RNN(4, 5, nonlinearity="relu")(x3),
    "torch.lstm_cell": lambda: torch.nn.LSTMCell(4, 5)(x3[0]),
    "torch.gru_cell": lambda: torch.nn.GRUCell(4, 5)(x3[0]),
    "torch.rnn_tanh_cell": lambda: torch.nn.RNNCell(4, 5)(x3[0]),
    "torch.rnn_relu_cell": lambda: torch.nn.RNNCell(4, 5, nonlinearity="relu")(x3[0]),
}


@pytest.mark.parametrize("path", sorted(ENTRY_POINTS))
def test_modules_reach_the_function_level_rules(path: str) -> None:
    assert any(p == path for _, p in FUNCTION_PATHS), f"{path} is no longer a function-level rule"
    with _Calls() as calls:
        ENTRY_POINTS[path]()
    assert registry._import_path(path) in calls.seen, f"{path} is not what torch {torch.__version__} calls"


def test_aten_tags_and_dispatch_queries_the_registry_uses() -> None:
    # an op with no formula is counted by aten's pointwise tag, or decomposed if it is composite
    assert torch.Tag.pointwise in torch.ops.aten.sigmoid.default.tags
    assert torch.Tag.pointwise in torch.ops.aten.hypot.default.tags
    # the public query registry._is_composite asks; a TorchScript-only overload is not a dispatcher op
    assert registry._is_composite(torch.ops.aten.linear.default)
    assert not registry._is_composite(torch.ops.aten.mm.default)
    assert not registry._is_dispatched(torch.ops.aten.add.t) and registry._is_dispatched(torch.ops.aten.mm.default)
    assert torch.ops.aten.view.default.is_view and not torch.ops.aten.mm.default.is_view
    assert callable(torch.ops.aten.linear.default.decompose)


def test_the_fake_tensor_machinery_meta_counting_uses() -> None:
    import inspect

    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    shell = torch.empty(2, 3, device="meta")
    with unset_fake_temporarily():
        fake = mode.fake_tensor_converter.from_meta_and_device(mode, shell, torch.device("cpu"))
    assert isinstance(fake, FakeTensor) and fake.shape == (2, 3) and fake.device == torch.device("cpu")
    assert "allow_non_fake_inputs" in inspect.signature(FakeTensorMode).parameters


def test_the_counting_mode_is_not_wrapped_in_dynamo() -> None:
    """torch 2.13 wraps a dispatch mode's __torch_dispatch__ in torch._disable_dynamo (importing
    dynamo, about a second per process) unless the mode's _should_skip_dynamo says no, which the
    counter's does; torch 2.6 wraps nothing. A release that renames the hook fails here."""
    import pytest_flopbudget as fb
    from pytest_flopbudget.counting.counter import _AtenCounter

    fb.measure(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    assert not hasattr(_AtenCounter.__dict__["__torch_dispatch__"], "__wrapped__")


# Below 2.13 (the floor, 2.6) neither surface exists: the counter leaves both alone there (2.6's
# dynamo does not trace frames under a dispatch mode, and its flex_attention has no debug flag).
needs_hop_surfaces = pytest.mark.skipif(TORCH < (2, 13), reason="absent below the releases tested from 2.13 on")


@needs_hop_surfaces
def test_the_code_execution_strategy_the_counter_sets_at_import() -> None:
    # counter.py's _never_traced_by_dynamo: dynamo's per-code frame action, set without importing dynamo
    from pytest_flopbudget.counting import counter

    eval_frame = torch._C._dynamo.eval_frame
    skip = eval_frame._FrameAction.SKIP
    strategy = eval_frame._FrameExecStrategy(skip, skip)
    assert (strategy.cur_action, strategy.recursive_action) == (skip, skip)

    def scaled(x: torch.Tensor) -> torch.Tensor:
        return x * 3

    assert counter._never_traced_by_dynamo(scaled) is scaled
    compiled = torch.compile(lambda x: scaled(x) + 1, backend="eager")
    assert compiled(torch.ones(2)).tolist() == [4.0, 4.0]  # a skipped frame still runs, eagerly


@needs_hop_surfaces
def test_the_flex_attention_debug_flag_the_counter_flips() -> None:
    import torch.nn.attention.flex_attention as flex

    from pytest_flopbudget.counting.flex_switch import EagerFlexAttention

    before = flex._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG
    assert isinstance(before, bool)
    manager = EagerFlexAttention().__enter__()  # entered: the flag is set while counting
    assert flex._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG is True
    manager.__exit__(None, None, None)
    assert flex._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG == before


def test_how_a_higher_order_op_reaches_a_dispatch_mode() -> None:
    """higher_order.py: a release whose TorchDispatchMode has supports_higher_order_operators hands
    a HOP to the __torch_dispatch__ of a mode that sets it; an older one (2.6) calls the rule
    registered for the mode's class with hop.py_impl(ModeClass), as rule(mode, *args), the mode
    popped. reach_older_torch registers one on every HOP in torch._ops._higher_order_ops."""
    from torch._C import DispatchKey
    from torch._ops import HigherOrderOperator, _higher_order_ops
    from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode

    assert {"cond", "while_loop", "invoke_subgraph"} <= set(_higher_order_ops)

    class Double(HigherOrderOperator):
        def __init__(self) -> None:
            super().__init__("flopbudget_internals_double")

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return super().__call__(x)

    double = Double()
    assert _higher_order_ops["flopbudget_internals_double"] is double
    double.py_impl(DispatchKey.CompositeExplicitAutograd)(lambda x: x * 2)
    double.fallthrough(DispatchKey.AutogradCPU)
    seen: list[Any] = []

    class Probe(TorchDispatchMode):
        supports_higher_order_operators = True

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            seen.append((func, _get_current_dispatch_mode()))
            return func(*args, **(kwargs or {}))

    if not hasattr(TorchDispatchMode, "supports_higher_order_operators"):
        double.py_impl(Probe)(lambda mode, *args: mode.__torch_dispatch__(double, (), args, {}))
    ones = torch.ones(2)
    with Probe():
        doubled = double(ones)
    assert doubled.tolist() == [2.0, 2.0]
    # the HOP, with the mode popped while its rule runs (on 2.6 a first HOP call imports dynamo,
    # whose import runs aten ops of its own: counting/higher_order.py imports it before counting)
    assert [(func, mode) for func, mode in seen if isinstance(func, HigherOrderOperator)] == [(double, None)]
    _higher_order_ops.pop("flopbudget_internals_double")


def test_the_autograd_engine_surfaces_the_module_tracker_uses() -> None:
    # module_tracker.py: the node running now, its graph task, the sequence counter, and a callback
    # queued on the engine that runs once the backward pass has ended
    seen: dict[str, Any] = {}
    x = torch.ones(3, requires_grad=True)
    y = x * 2

    def hook(grad: torch.Tensor) -> torch.Tensor:
        seen["node"] = torch._C._current_autograd_node()
        seen["task"] = torch._C._current_graph_task_id()
        torch.autograd.Variable._execution_engine.queue_callback(lambda: seen.setdefault("ended", len(seen)))
        return grad

    y.register_hook(hook)
    before = torch._C._autograd._get_sequence_nr()
    z = y.sum()
    assert torch._C._autograd._get_sequence_nr() == before + 1  # one node made: SumBackward0
    assert z.grad_fn._sequence_nr() == before
    z.backward()
    assert type(seen["node"]).__name__ == "MulBackward0" and seen["task"] >= 0
    assert seen["ended"] == 2  # ran after the hook, once
    assert torch._C._current_graph_task_id() == -1  # outside any backward
    assert torch._C._current_autograd_node() is None


def test_the_fake_tensor_converter_calls_the_caller_guard_makes() -> None:
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    mode = FakeTensorMode()
    converter = mode.fake_tensor_converter
    constant = converter.from_real_tensor(mode, torch.ones(2, 3), make_constant=True)
    assert isinstance(constant, FakeTensor) and constant.shape == (2, 3) and constant.device.type == "cpu"
    shell = converter.from_meta_and_device(mode, torch.empty(4, 5, device="meta"), torch.device("cpu"))
    assert isinstance(shell, FakeTensor) and shell.shape == (4, 5) and shell.device.type == "cpu"


def test_functional_call_runs_the_module_under_the_frame_the_caller_guard_looks_for() -> None:
    import sys

    from pytest_flopbudget.counting.caller_guard import _REPARAMETRIZING

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            frame, codes = sys._getframe(), set()
            while frame is not None:
                codes.add(frame.f_code)
                frame = frame.f_back
            seen.append(bool(codes & _REPARAMETRIZING))
            return x

    torch.func.functional_call(Probe(), {}, (torch.zeros(1),))
    Probe()(torch.zeros(1))
    assert seen == [True, False]


def test_modes_are_popped_while_the_caller_guard_makes_twins() -> None:
    from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

    calls = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            calls.append(func)
            return func(*args, **(kwargs or {}))

    with Spy():
        torch.ones(1)
        with _disable_current_modes():
            torch.empty_strided((2,), (1,), device="meta")
        assert len(calls) == 1
    assert calls[0] is torch.ops.aten.ones.default


def test_untyped_storages_are_weakly_referenced_as_the_memory_tracker_does() -> None:
    import gc
    import weakref

    tensor = torch.ones(4)
    storage = tensor.untyped_storage()
    ref = weakref.ref(storage)
    assert tensor.untyped_storage() is storage  # one Python object per storage while it lives
    assert tensor[1:].untyped_storage() is storage  # views share it
    del storage, tensor
    gc.collect()
    assert ref() is None  # the tracker's callback fires when the storage dies
