"""Which formula counts an aten call: built-in op families, user formulas, and the free ops.

Every overload is first normalised to its functional form, once: ``add_.Tensor`` (in-place) and
``add.out`` (aten's ``out=`` form) both become ``add.Tensor``, for built-in and user formulas
alike, so the three forms of one op always count the same and are reported under one name. The
``out=`` arguments themselves are dropped before a formula is called: they are the output, whose
shape the formula receives as ``out_shape``.

Resolution order for the normalised overload, cached after its first call:
user formula for the overload, then for its packet; built-in formula for the overload, then for
the packet; the free list (views, copies, casts, creation, indexing); aten's ``pointwise`` tag
(one per output element); a composite op (seen whole only under inference_mode) is decomposed
and its parts counted; otherwise uncounted, and reported as such, never silently zero.

Function-level rules (``FUNCTION_RULES``) see the Python call itself; its arguments are bound
to the function's real signature first, so ``F.scaled_dot_product_attention(query=q, key=k,
value=v)`` reaches the formula as ``(q, k, v, None, 0.0, False)`` like a positional call.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from pytest_flopbudget.counting.formulas import Formula
from pytest_flopbudget.counting.formulas import (
    activation,
    attention,
    backend_kernels,
    backward_kernels,
    conv,
    distance,
    elementwise,
    embedding,
    fft,
    linalg,
    loss,
    matmul,
    norm,
    optimizer,
    pooling,
    quantized,
    recurrent,
    reduction,
    resampling,
    vision_ops,
)

FREE = "free"  # sentinel: the op moves or creates data but computes nothing
DECOMPOSE = "decompose"  # sentinel: a composite op with no formula; count its decomposition

_FAMILIES = (
    matmul, conv, pooling, norm, activation, elementwise, reduction, embedding, attention, recurrent,
    resampling, loss, optimizer, fft, linalg, distance, backend_kernels, backward_kernels, quantized, vision_ops,
)

# Ops that compute nothing: views and reshapes, copies and casts, tensor creation, indexing and
# data movement (gather, scatter without reduction, cat), random fills, metadata queries.
FREE_OPS = frozenset(
    (
        "view reshape _unsafe_view _reshape_alias expand expand_as permute transpose t squeeze "
        "unsqueeze flatten unflatten unfold narrow select slice split split_with_sizes "
        "unbind chunk tensor_split movedim as_strided alias detach lift_fresh lift_fresh_copy "
        "view_as_real view_as_complex real imag _conj _neg_view resolve_conj resolve_neg "
        "clone copy copy_ _to_copy to contiguous _copy_from _copy_from_and_resize "
        "empty empty_like empty_strided new_empty new_empty_strided zeros zeros_like new_zeros "
        "ones ones_like new_ones full full_like new_full fill fill_ zero_ arange linspace "
        "logspace eye scalar_tensor tensor rand rand_like randn randn_like randint randint_like "
        "randperm uniform_ normal_ bernoulli bernoulli_ exponential_ random_ cauchy_ geometric_ "
        "log_normal_ multinomial index index_select gather scatter masked_select masked_scatter "
        "take take_along_dim cat stack hstack vstack concat concatenate repeat "
        "repeat_interleave tile flip roll rot90 tril triu diag diagonal diag_embed "
        "constant_pad_nd pad reflection_pad1d reflection_pad2d reflection_pad3d "
        "replication_pad1d replication_pad2d replication_pad3d embedding nonzero "
        "unsafe_split unsafe_split_with_sizes unsafe_chunk "
        "_local_scalar_dense item sym_size sym_stride sym_numel sym_storage_offset "
        "size stride dim is_contiguous sym_is_contiguous is_same_size _has_compatible_shallow_copy_type "
        "resize_ resize_as_ set_ as_strided_ _resize_output_ "
        "pixel_shuffle pixel_unshuffle channel_shuffle native_channel_shuffle "
        "one_hot bucketize searchsorted unique _unique2 unique_consecutive unique_dim "
        "_assert_async _assert_tensor_metadata _functional_assert_async "
        "record_stream _version detach_ requires_grad_ _make_dep_token _foreach_copy_ "
        "slice_scatter select_scatter diagonal_scatter as_strided_scatter index_fill "
        "slice_backward select_backward "
        "_pin_memory pin_memory is_pinned _nested_tensor_from_mask equal "
        "_nested_tensor_from_mask_left_aligned _foreach_zero _foreach_copy _foreach_clone"
    ).split()
    # Functional and *_copy twins count exactly as their in-place or view twins (DESIGN, "Conventions
    # for new families"): free where the twin is free. Then creation, layout and metadata ops of
    # backends, sparse and nested tensors, and random draws (free like every random fill).
    + (
        "alias_copy as_strided_copy detach_copy diagonal_copy expand_copy narrow_copy permute_copy "
        "select_copy slice_copy split_copy split_with_sizes_copy squeeze_copy t_copy transpose_copy "
        "unbind_copy unfold_copy unsqueeze_copy view_copy view_as_real_copy view_as_complex_copy "
        "_conj_copy _neg_view_copy _reshape_copy _reshape_alias_copy _fw_primal_copy _make_dual_copy "
        "_indices_copy _values_copy indices_copy values_copy ccol_indices_copy col_indices_copy "
        "crow_indices_copy row_indices_copy _nested_get_values_copy _nested_view_from_buffer_copy "
        "_nested_view_from_jagged_copy _sparse_broadcast_to_copy _test_autograd_multiple_dispatch_view_copy "
        "normal normal_functional uniform exponential geometric cauchy log_normal random zero binomial "
        "poisson _standard_gamma _sample_dirichlet _philox_normal _philox_uniform _philox_key_split "
        "_philox_key_fold_in _fill_mem_eff_dropout_mask_ _cudnn_init_dropout_state "
        "resize resize_as _resize_output set lift empty_permuted _efficientzerotensor "
        "_empty_affine_quantized _empty_per_channel_affine_quantized empty_quantized from_file "
        "_new_zeros_with_same_feature_meta _lazy_clone range tril_indices triu_indices fft_fftfreq "
        "fft_rfftfreq hann_window hamming_window bartlett_window blackman_window kaiser_window "
        "complex block_diag _chunk_cat _stack _spdiags index_copy max_unpool2d max_unpool3d "
        "diagonal_backward masked_scatter_backward lu_unpack nonzero_static unique_dim_consecutive "
        "_unique _unsafe_index _unsafe_masked_index _pack_padded_sequence "
        "_jagged_to_padded_dense_forward _padded_dense_to_jagged_forward to_padded_tensor "
        "_nested_tensor_from_tensor_list _nested_from_padded _nested_from_padded_and_nested_example "
        "_nested_from_padded_tensor _nested_compute_contiguous_strides_offsets _nested_get_jagged_dummy "
        "_nested_get_lengths _nested_get_max_seqlen _nested_get_min_seqlen _nested_get_offsets "
        "_nested_get_ragged_idx _nested_tensor_size _nested_tensor_storage_offsets _nested_tensor_strides "
        "_nested_select_backward _nested_sum_backward "
        "_to_dense _to_sparse _to_sparse_csr _to_sparse_csc _to_sparse_bsr _to_sparse_bsc "
        "_to_sparse_semi_structured _sparse_semi_structured_tile _cslt_compress _sparse_coo_tensor_with_dims "
        "_sparse_coo_tensor_with_dims_and_tensors _sparse_compressed_tensor_with_dims sparse_coo_tensor "
        "sparse_compressed_tensor _validate_compressed_sparse_indices _convert_indices_from_coo_to_csr "
        "_convert_indices_from_csr_to_coo copy_sparse_to_sparse resize_as_sparse sparse_resize "
        "sparse_resize_and_clear _coalesce _coalesced is_coalesced dense_dim sparse_dim _dimI _dimV _nnz "
        "_convert_weight_to_int4pack _convert_weight_to_int4pack_for_cpu _dyn_quant_pack_4bit_weight "
        "_cudnn_rnn_flatten_weight mkldnn_reorder_conv2d_weight mkldnn_reorder_conv3d_weight to_mkldnn "
        "_mkldnn_reshape _mkldnn_transpose _make_per_channel_quantized_tensor _make_per_tensor_quantized_tensor "
        "int_repr q_scale q_zero_point q_per_channel_scales q_per_channel_zero_points q_per_channel_axis "
        "qscheme is_set_to _has_same_storage_numel _is_all_true _is_any_true _fused_sdp_choice "
        "_use_cudnn_ctc_loss _use_miopen_ctc_loss _linalg_check_errors _assert_scalar "
        "_functional_assert_scalar sym_constrain_range sym_constrain_range_for_size "
        "_functional_sym_constrain_range _functional_sym_constrain_range_for_size _print hash_tensor "
        "_sparse_semi_structured_apply _sparse_semi_structured_apply_dense _philox_randint shallow_copy_data_"
    ).split()
)
# profiler marks (an optimizer's step() is wrapped in record_function) compute nothing; neither do
# collectives and FSDP's buffer packing (communication, copies): a sharded model counts like its plain twin
_FREE_NAMESPACES = frozenset({
    "prim", "prims_common", "profiler", "fsdp", "_c10d_functional", "c10d_functional", "_c10d_functional_autograd",
})

# Ops whose result depends on tensor values in a way the host sees: a Python scalar (item(),
# bool(t), int(t), torch.equal) or an output whose shape is data (nonzero, unique, masked_select).
# Code that branches on them may take another path on another device, or on meta, where values are
# unknown: the Measurement records where they ran, so that such counts are never compared blindly.
VALUE_READING_OPS = frozenset(
    "_local_scalar_dense equal allclose is_nonzero nonzero argwhere masked_select unique _unique "
    "_unique2 unique_consecutive unique_dim bincount".split()
)
# repeat_interleave reads values only when the repeats are a tensor
VALUE_READING_OVERLOADS = frozenset({"repeat_interleave.Tensor", "repeat_interleave.self_Tensor"})
# Tensor methods that copy values to the host without an aten call (seen by the function mode)
HOST_READ_FUNCTIONS = frozenset({torch.Tensor.tolist, torch.Tensor.numpy})

# Ops deliberately left uncounted, with the reason: each is still reported in
# Measurement.uncounted when it runs (never a silent 0), and docs/formulas.md lists them. Keys are
# op names (every overload) or "name.overload".
_SPARSE = ("a sparse layout's work is its stored elements (nnz), a value the shapes do not give; "
           "sparse tensors are outside the counted dense model")
_TEST_OP = "torch's own test op, never in a model"
DELIBERATELY_UNCOUNTED: dict[str, str] = {
    **dict.fromkeys(
        "_sparse_addmm _sparse_csr_prod _sparse_csr_sum _sparse_log_softmax _sparse_log_softmax_backward_data "
        "_sparse_mask_projection _sparse_mm_reduce_impl _sparse_mm_reduce_impl_backward _sparse_softmax "
        "_sparse_softmax_backward_data _sparse_sparse_matmul _sparse_sum _sparse_sum_backward _spsolve hspmm "
        "sparse_mask sparse_sampled_addmm sspaddmm".split(), _SPARSE),
    **dict.fromkeys(
        "_foobar _test_autograd_multiple_dispatch _test_functorch_fallback _test_optional_filled_intlist "
        "_test_optional_floatlist _test_optional_intlist _test_parallel_materialize _test_warn_in_autograd "
        "_test_serialization_subcmul _test_string_default _test_ambiguous_defaults _test_check_tensor".split(), _TEST_OP),
    "quantized_lstm": "legacy TorchScript dynamic quantization: the weights arrive as opaque packed "
                      "objects (CellParamsBase) whose shapes a formula cannot read",
    "quantized_gru": "legacy TorchScript dynamic quantization: the weights arrive as opaque packed "
                     "objects (CellParamsBase) whose shapes a formula cannot read",
    "_cslt_sparse_mm_search": "cuSPARSELt autotuning: times the product to pick an algorithm id; not "
                              "part of a model's computation",
}
# Overloads that exist only for TorchScript (aten::add.t, aten::__and__.bool on Python scalars):
# the dispatcher has no such operator, so no tensor computation can ever reach the counter with them.
TORCHSCRIPT_ONLY = "TorchScript-only overload (scalar or list arithmetic): not a dispatcher operator, never dispatched"


def uncounted_reason(op: Any) -> str | None:
    """Why ``op`` (an aten overload) is deliberately left uncounted, or None when it should be counted."""
    name = op._schema.name.split("::", 1)[-1]
    overload = op._overloadname
    reason = DELIBERATELY_UNCOUNTED.get(f"{name}.{overload}") or DELIBERATELY_UNCOUNTED.get(name)
    if reason is None and not _is_dispatched(op):
        return TORCHSCRIPT_ONLY
    return reason


def _is_dispatched(op: Any) -> bool:
    """Whether the dispatcher knows ``op`` (TorchScript-only overloads have a schema but no operator)."""
    try:
        _is_composite(op)
    except RuntimeError:
        return False
    return True


def _is_composite(op: Any) -> bool:
    """Whether ``op`` has a CompositeImplicitAutograd kernel (it decomposes into other ops), through
    torch's public ``OpOverload.has_kernel_for_dispatch_key``. Called only while an overload is
    resolved, and resolutions are cached per overload, so it stays off the counting hot path.
    Raises RuntimeError for an overload the dispatcher does not know."""
    return op.has_kernel_for_dispatch_key(torch._C.DispatchKey.CompositeImplicitAutograd)


@dataclass(frozen=True)
class Resolution:
    """How one aten overload is counted: its rule (a formula, FREE, DECOMPOSE or None), the name
    it is reported under (its functional form's packet) and the ``out=`` arguments to drop."""

    rule: Any
    name: str
    drop: tuple[str, ...] = ()


@dataclass(frozen=True)
class FunctionRule:
    """A composite function counted as one unit: its reported name, formula and argument binder."""

    name: str
    formula: Formula
    bind: Callable[[tuple, dict], tuple[tuple, dict]]


@dataclass(frozen=True)
class BuiltinTables:
    """The built-in formulas, resolved once against the installed torch and shared by every
    registry (scoped copies included); nothing changes them once built."""

    by_op: dict[Any, Formula]  # aten packet or overload (functional form) -> formula
    # formulas of other namespaces' ops by qualified name ("quantized::linear", "torchvision::nms"):
    # resolved when an op is first seen, since a namespace exists only once its library is loaded
    by_name: dict[str, Formula]
    function_rules: dict[Callable[..., Any], FunctionRule]
    # formulas of families whose integer work is compute (int8 matmul, quantized conv)
    integer_work: frozenset[Any]

    @classmethod
    def load(cls) -> BuiltinTables:
        by_op: dict[Any, Formula] = {}
        by_name: dict[str, Formula] = {}
        function_rules: dict[Callable[..., Any], FunctionRule] = {}
        integer_work: set[Any] = set()
        for family in _FAMILIES:
            rules = family.RULES
            if getattr(family, "PACKED_ARGUMENTS", False):
                rules = {name: _unpacking(formula) for name, formula in rules.items()}
            if getattr(family, "COUNTS_INTEGER_WORK", False):
                integer_work.update(rules.values())
            for name, formula in rules.items():
                if "::" in name:
                    by_name[name] = formula
                    continue
                op = _aten_op(name)
                if op is None:
                    continue
                if getattr(formula, "by_name", False):  # bound to each overload's own schema
                    for overload in _overloads(op):
                        by_op[functional_form(overload)] = _bound_by_name(formula, overload)
                else:
                    by_op[functional_form(op)] = formula
            for path, (op_name, formula) in getattr(family, "FUNCTION_RULES", {}).items():
                fn = _import_path(path)
                if fn is not None:
                    bind = _binder(fn, by_name=getattr(formula, "by_name", False))
                    function_rules[fn] = FunctionRule(op_name, formula, bind)
        return cls(by_op, by_name, function_rules, frozenset(integer_work))


class Registry:
    """Maps aten overloads to formulas; one instance is shared, users add to it. ``scoped``
    gives a copy with extra formulas that leaves this one untouched.

    Every registry, scoped copies included, is made by ``__init__``: an attribute added there is
    in every copy (tests/counting/test_registry_copies.py checks it)."""

    def __init__(self, builtins: BuiltinTables | None = None, user: Mapping[Any, Formula] | None = None) -> None:
        """``builtins`` (loaded when not given) are shared; ``user`` formulas are copied."""
        self._builtins = builtins if builtins is not None else BuiltinTables.load()
        self._builtin = self._builtins.by_op
        self._by_name = self._builtins.by_name
        self.function_rules = self._builtins.function_rules
        self._integer_work = self._builtins.integer_work
        self._user: dict[Any, Formula] = dict(user or {})
        self._resolved: dict[Any, Resolution] = {}  # per registry: it depends on the user formulas

    def scoped(self, formulas: Mapping[Any, Formula] | None) -> Registry:
        """This registry plus ``formulas`` (op -> formula), as a new registry; None or empty: self."""
        if not formulas:
            return self
        if not isinstance(formulas, Mapping):
            raise TypeError(
                f"formulas= must be a dict of op -> formula, e.g. {{torch.ops.aten.mm: my_mm}}; "
                f"got {type(formulas).__name__}"
            )
        scoped = Registry(self._builtins, self._user)
        for op, formula in formulas.items():
            scoped.register(op, formula, scoped=True)
        return scoped

    def register(self, op: Any, formula: Formula, *, scoped: bool = False) -> None:
        """Count ``op`` (an aten/custom op, overload or packet, or a 'ns::name[.overload]' string)
        with ``formula(*shapes, out_shape=..., **kwargs) -> (flops, macs)``. The in-place and
        ``out=`` forms of ``op`` are counted by it too. Replacing another user formula warns, unless
        ``scoped`` (one measurement's ``formulas=``, which override on purpose)."""
        if not callable(formula):
            raise TypeError(f"register_formula: the formula for {op!r} must be callable, got {formula!r}")
        key = functional_form(_as_op(op))
        previous = self._user.get(key)
        if previous is not None and previous is not formula and not scoped:
            import warnings

            warnings.warn(f"register_formula: {key} already had a user formula ({getattr(previous, '__qualname__', previous)}); "
                          f"it is replaced by {getattr(formula, '__qualname__', formula)}", UserWarning, stacklevel=3)
        self._user[key] = formula
        self._resolved.clear()

    def unregister(self, op: Any) -> None:
        self._user.pop(functional_form(_as_op(op)), None)
        self._resolved.clear()

    def user_formulas(self) -> dict[Any, Formula]:
        """A copy of the user formulas, to put back with ``restore_user_formulas``."""
        return dict(self._user)

    def restore_user_formulas(self, saved: Mapping[Any, Formula]) -> None:
        if saved != self._user:
            self._user = dict(saved)
            self._resolved.clear()

    def resolve(self, func: torch._ops.OpOverload) -> Any:
        """The formula for one overload, ``FREE``, ``DECOMPOSE`` or None when nothing is known."""
        return self.resolution(func).rule

    def resolution(self, func: torch._ops.OpOverload) -> Resolution:
        try:
            return self._resolved[func]
        except KeyError:
            pass
        canonical = functional_form(func)
        drop = tuple(a.name for a in func._schema.arguments if a.is_out)
        resolved = Resolution(self._lookup(func, canonical), str(canonical.overloadpacket), drop)
        self._resolved[func] = resolved
        return resolved

    def counts_integer_work(self, rule: Any) -> bool:
        """Whether ``rule`` counts calls on integer and boolean tensors too.

        FLOPs are floating-point work: elementwise and reduction ops on integers and booleans (index
        math, mask logic, ``num_batches_tracked += 1``) cost 0. Matrix products and convolutions
        count whatever the dtype (quantized inference computes with them), and so do user formulas:
        whoever registers one decides what it counts."""
        return rule in self._integer_work or any(rule is user for user in self._user.values())

    def reads_values(self, func: torch._ops.OpOverload) -> Any:
        """Whether the op hands tensor values (or a shape that depends on them) to the host: True,
        False, or a test of the call's arguments for ops that do so only for some arguments."""
        packet = func.overloadpacket.__name__
        if packet in VALUE_READING_OPS or f"{packet}.{func._overloadname}" in VALUE_READING_OVERLOADS:
            return True
        if packet == "index":
            return _indexes_with_a_mask
        return False

    def _lookup(self, func: torch._ops.OpOverload, canonical: torch._ops.OpOverload) -> Any:
        packet = canonical.overloadpacket
        for table in (self._user, self._builtin):
            if canonical in table:
                return table[canonical]
            if packet in table:
                return table[packet]
        if func.namespace != "aten":
            qualified = f"{func.namespace}::{packet.__name__}"
            for key in (f"{qualified}.{func._overloadname}", qualified):
                if key in self._by_name:
                    return self._by_name[key]
        twin = _aten_twin(func)
        if twin is not None:
            return self._lookup(twin, functional_form(twin))
        names = {packet.__name__, func.overloadpacket.__name__}
        if func.namespace in _FREE_NAMESPACES or any(n in FREE_OPS or n.rstrip("_") in FREE_OPS for n in names):
            return FREE
        if func.is_view:
            return FREE
        if torch.Tag.pointwise in canonical.tags or torch.Tag.pointwise in func.tags:
            return elementwise.elementwise
        if _is_dispatched(func) and _is_composite(func):
            return DECOMPOSE
        return None


def _unpacking(formula: Formula) -> Formula:
    """``formula`` called with packed weights (TorchScript objects such as quantized Linear's
    ``LinearPackedParamsBase``) described as dicts of shapes, which pure formulas can read."""

    def rule(*args: Any, **kwargs: Any) -> Any:
        return formula(*(_described(a) for a in args), **{k: _described(v) for k, v in kwargs.items()})

    rule.__name__ = rule.__qualname__ = getattr(formula, "__name__", "formula")
    rule.__doc__ = formula.__doc__
    for mark in ("estimated", "estimated_when"):
        if hasattr(formula, mark):
            setattr(rule, mark, getattr(formula, mark))
    return rule


def _described(value: Any) -> Any:
    """Packed weights as ``{"weight": shape, "bias": shape or None, "groups": int, "transposed": bool}``;
    anything else unchanged. Called inside the counting mode's dispatch, so unpacking is not counted."""
    if not isinstance(value, torch.ScriptObject) or not value._has_method("unpack"):
        return value
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily():  # packed weights are real, also in a meta count
        unpacked = value.unpack()
    weight, bias = (unpacked[0], unpacked[1]) if isinstance(unpacked, (tuple, list)) else (unpacked, None)
    described: dict[str, Any] = {
        "weight": tuple(weight.shape),
        "bias": tuple(bias.shape) if isinstance(bias, torch.Tensor) else None,
    }
    for method, key in (("groups", "groups"), ("transpose", "transposed")):
        if value._has_method(method):
            described[key] = getattr(value, method)()
    return described


def _aten_twin(func: torch._ops.OpOverload) -> Any:
    """The aten overload a ``prims::`` op computes like (``prims.add`` -> ``aten.add.Tensor``; forward-mode
    AD and decompositions emit prims), matched by argument names; None for other namespaces."""
    if func.namespace != "prims":
        return None
    packet = getattr(torch.ops.aten, func.overloadpacket.__name__, None)
    if packet is None:
        return None
    wanted = [(a.name, a.type.kind()) for a in func._schema.arguments]
    for overload_name in packet.overloads():
        candidate = getattr(packet, overload_name)
        schema = candidate._schema
        arguments = schema.arguments
        if schema.is_mutable or any(a.is_out for a in arguments) or len(arguments) < len(wanted):
            continue
        if [(a.name, a.type.kind()) for a in arguments[: len(wanted)]] == wanted and all(
            a.has_default_value() for a in arguments[len(wanted):]
        ):
            return candidate
    return None


def _indexes_with_a_mask(args: Any) -> bool:
    """``x[mask]``: a boolean index selects as many elements as the mask holds trues."""
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


def functional_form(op: Any) -> Any:
    """The functional overload (or packet) that an in-place or ``out=`` form computes like:
    ``add_.Tensor`` -> ``add.Tensor``, ``add.out`` -> ``add.Tensor``, ``max.dim_max`` ->
    ``max.dim``, ``_foreach_mul_.List`` -> ``_foreach_mul.List``; anything else is itself."""
    if isinstance(op, torch._ops.OpOverloadPacket):
        base = _inplace_base(op)
        return base if base is not None else op
    if not isinstance(op, torch._ops.OpOverload):
        return op
    arguments = op._schema.arguments
    has_out = any(a.is_out for a in arguments)
    base_packet = _inplace_base(op.overloadpacket) if not has_out else op.overloadpacket
    if base_packet is None:
        return op
    if not has_out:
        same = getattr(base_packet, op._overloadname, None)
        if same is not None and _argument_names(same) == _argument_names(op):
            return same
    wanted = [a.name for a in arguments if not a.is_out]
    for overload_name in base_packet.overloads():
        candidate = getattr(base_packet, overload_name)
        schema = candidate._schema
        if any(a.is_out for a in schema.arguments) or schema.is_mutable:
            continue
        if [a.name for a in schema.arguments] == wanted:
            return candidate
    return op


def _inplace_base(packet: Any) -> Any:
    """``aten.add`` for ``aten.add_`` (None for ops without a functional twin, and for dunders)."""
    name = packet.__name__
    if not name.endswith("_") or name.endswith("__"):
        return None
    namespace = getattr(torch.ops, packet._qualified_op_name.split("::")[0], None)
    return getattr(namespace, name[:-1], None) if namespace is not None else None


def _overloads(op: Any) -> list[Any]:
    """An overload itself, or every overload of a packet."""
    if isinstance(op, torch._ops.OpOverloadPacket):
        return [getattr(op, name) for name in op.overloads()]
    return [op]


def _argument_names(op: Any) -> list[str]:
    return [a.name for a in op._schema.arguments]


def _binder(fn: Callable[..., Any], *, by_name: bool = False) -> Callable[[tuple, dict], tuple[tuple, dict]]:
    """Binds a call of ``fn`` to its signature (positional parameters positional, defaults filled
    in, keyword-only ones as keywords), so a formula sees one form whichever way it was called.
    Builtins have no Python signature: their aten schema (every overload, the first that the
    arguments fit) is used. ``by_name`` (formulas marked ``formulas.by_name``): every argument as a
    keyword named as the signature names it, and a call that fits no signature is an error, never
    handed on by position."""
    signatures = _signatures(fn)
    if not signatures and not by_name:
        return lambda args, kwargs: (args, kwargs)

    def bind(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        for signature in signatures:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                continue
            if not _fits(signature, bound.arguments):
                continue
            bound.apply_defaults()
            return ((), dict(bound.arguments)) if by_name else (bound.args, bound.kwargs)
        if by_name:
            raise TypeError(f"the arguments fit no signature of {getattr(fn, '__name__', fn)}: "
                            + "; ".join(str(signature) for signature in signatures))
        return args, kwargs

    return bind


class _TensorKind:
    """What a schema-typed parameter is annotated with, so that a call is bound to the overload its
    arguments fit (aten.lstm.input and aten.lstm.data take as many arguments, of other types);
    shown as the schema writes the type when a signature is printed in an error."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


_ONE_TENSOR, _TENSOR_LIST = _TensorKind("Tensor"), _TensorKind("Tensor[]")


def _fits(signature: inspect.Signature, arguments: Mapping[str, Any]) -> bool:
    """Whether bound arguments fit their schema types where tensors and tensor lists differ, for
    tensors and for their shapes alike: one tensor is never a list (a shape is a tuple of ints, a
    list of tensors becomes a list of shapes), and a tensor list is a list, or a tuple that is not
    a shape."""
    for name, value in arguments.items():
        kind = signature.parameters[name].annotation
        if kind is _ONE_TENSOR and isinstance(value, list):
            return False
        if kind is _TENSOR_LIST and not (isinstance(value, list) or (
                isinstance(value, tuple) and value and not all(isinstance(v, int) for v in value))):
            return False
    return True


def _bound_by_name(formula: Formula, op: Any) -> Formula:
    """``formula`` (marked ``formulas.by_name``) called with the arguments of a call of ``op`` (an
    aten overload) by their schema names: a private kernel's positions may move between torch
    releases, and a formula that reads them by name reads the right ones or fails."""
    bind = _binder(op, by_name=True)

    def rule(*args: Any, out_shape: Any = None, **kwargs: Any) -> Any:
        _, named = bind(args, kwargs)
        return formula(**named, out_shape=out_shape)

    rule.__name__ = rule.__qualname__ = getattr(formula, "__name__", "formula")
    rule.__doc__ = formula.__doc__
    rule.__wrapped__ = formula  # type: ignore[attr-defined]
    for mark in ("estimated", "estimated_when"):
        if hasattr(formula, mark):
            setattr(rule, mark, getattr(formula, mark))
    return rule


def _signatures(fn: Callable[..., Any]) -> list[inspect.Signature]:
    if isinstance(fn, torch._ops.OpOverload):
        return [_schema_signature(fn._schema)]
    if isinstance(fn, torch._ops.OpOverloadPacket):
        return [_schema_signature(getattr(fn, name)._schema) for name in fn.overloads()]
    try:
        return [inspect.signature(fn)]
    except (TypeError, ValueError):
        pass
    packet = getattr(torch.ops.aten, getattr(fn, "__name__", ""), None)
    if packet is None:
        return []
    return [_schema_signature(getattr(packet, name)._schema) for name in packet.overloads()]


def _schema_signature(schema: Any) -> inspect.Signature:
    parameters = []
    for argument in schema.arguments:
        kind = inspect.Parameter.KEYWORD_ONLY if argument.kwarg_only else inspect.Parameter.POSITIONAL_OR_KEYWORD
        default = argument.default_value if argument.has_default_value() else inspect.Parameter.empty
        typed = str(argument.type)
        annotation = (_ONE_TENSOR if typed in ("Tensor", "Optional[Tensor]")
                      else _TENSOR_LIST if typed in ("List[Tensor]", "List[Optional[Tensor]]")
                      else inspect.Parameter.empty)
        parameters.append(inspect.Parameter(argument.name, kind, default=default, annotation=annotation))
    return inspect.Signature(parameters)


def _aten_op(name: str) -> Any:
    """aten.<name> (packet) or aten.<name>.<overload>, or None where this torch lacks it."""
    packet_name, _, overload = name.partition(".")
    packet = getattr(torch.ops.aten, packet_name, None)
    if packet is None or not overload:
        return packet
    return getattr(packet, overload, None)


def _named_op(name: str) -> Any:
    """The op a 'namespace::name[.overload]' RULES key names, or None where it is not loaded."""
    namespace, _, rest = name.partition("::")
    packet_name, _, overload = rest.partition(".")
    try:
        packet = getattr(getattr(torch.ops, namespace), packet_name)
    except (AttributeError, RuntimeError):
        return None
    return getattr(packet, overload, None) if overload else packet


def _as_op(op: Any) -> Any:
    """An op from what a user passes: an op, a custom_op, or its name 'ns::name[.overload]'; anything
    else is refused here, as torch's own registry does, not at the first count."""
    if isinstance(op, str):
        namespace, _, rest = op.partition("::")
        if not rest:
            namespace, rest = "aten", op
        packet_name, _, overload = rest.partition(".")
        try:
            packet = getattr(getattr(torch.ops, namespace), packet_name)
            return getattr(packet, overload) if overload else packet
        except (AttributeError, RuntimeError):
            raise ValueError(
                f"register_formula: unknown op {op!r}: torch.ops.{namespace} has no {rest!r}; name an op as "
                "'namespace::name' or 'namespace::name.overload' (e.g. 'aten::mm', 'mylib::fused'), after the "
                "library that defines it is imported, or pass the op itself (torch.ops.aten.mm)"
            ) from None
    # torch.library.custom_op returns a CustomOpDef that wraps its OpOverload
    op = getattr(op, "_opoverload", op)
    if not isinstance(op, (torch._ops.OperatorBase, torch._ops.OpOverloadPacket)):
        raise TypeError(f"register_formula: {op!r} is not an op; pass an op (torch.ops.aten.mm, "
                        "torch.ops.aten.mm.default, a torch.library.custom_op) or its name 'aten::mm'")
    return op


def _import_path(path: str) -> Any:
    if path.startswith("torch.ops."):
        # an aten entry point called directly (torch.ops.aten.name[.overload]): its packet or overload
        target: Any = torch.ops
        for part in path.split(".")[2:]:
            target = getattr(target, part, None)
            if target is None:
                return None
        return target
    module_path, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_path), attr)
    except (ImportError, AttributeError):
        return None


_REGISTRY: Registry | None = None


def default_registry() -> Registry:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def register_formula(op: Any, fn: Formula) -> None:
    """Count ``op`` with ``fn(*shapes, out_shape=..., **kwargs) -> (flops, macs)``.

    Tensors arrive as their shapes (tuples of ints); ``out_shape`` is the output's shape, or a
    tuple of shapes for several outputs (named so it never collides with aten's own ``out=``
    argument). A user formula wins over a built-in one. An exception raised by ``fn`` is re-raised
    as a FormulaError naming the op and the formula."""
    default_registry().register(op, fn)


def _unregister_formula(op: Any) -> None:
    """Remove a formula added with ``register_formula`` (for tests: a suite scopes its formulas
    where it registers them, and ``formulas=`` scopes them to one count)."""
    default_registry().unregister(op)
