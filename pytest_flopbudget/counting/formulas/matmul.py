"""Matrix products: mm, addmm, bmm, baddbmm, mv, addmv, dot, addr and friends.

A product with output of N elements contracted over K terms is N dot products (see
``dot_products``); an added term (addmm's bias, baddbmm's input) is one add per output, so
``addmm`` counts exactly what ``mm`` followed by ``add`` counts. alpha/beta scalings are folded
into the kernel and not counted; ``beta=0`` drops the added term (it is never read: GPT-2's
attention calls ``baddbmm(empty, q, k, beta=0)``), so no add is counted for it.

Grouped products (``_grouped_mm``, mixture-of-experts GEMMs): the groups' sizes sit in the
*values* of ``offs``, which a formula never sees, yet the total is fixed by the shapes, because the
groups tile the jagged dimension. 2-D × 3-D (the MoE forward): the rows of ``mat_a`` are split
among the experts and every row is multiplied by its own expert's (K, N) matrix once, so
whatever the routing, rows·N dot products of K terms. 3-D × 2-D and 3-D × 3-D likewise: one dot
product of K terms per output element. 2-D × 2-D (the weight gradient) splits K: group g yields
M·N outputs of K_g terms, summing to M·N·K multiplies and M·N·(K − G) adds. Two assumptions,
both true of transformers' experts: the groups cover the whole jagged dimension (rows past
``offs[-1]`` are skipped by the kernel: expert-parallel sentinels would be counted as work), and
no group is empty in the 2-D × 2-D case (an empty group has no −1 add).
"""

from __future__ import annotations


from math import prod

from pytest_flopbudget.counting.formulas import Cost, Shape, dot_products, numel, sum_costs


def mm(a: Shape, b: Shape, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    return dot_products(numel(out_shape), a[-1])


def scaled_mm(a: Shape, b: Shape, scale_a: Shape, scale_b: Shape, bias: Shape | None = None, *args: object,
              out_shape: Shape, **kwargs: object) -> Cost:
    """``_scaled_mm`` (fp8 products): the product's dot products, plus one add per output with a
    bias; the scales are applied in the kernel's epilogue, as a matmul's output cast is."""
    bias = kwargs.get("bias", bias)  # type: ignore[assignment]
    return dot_products(numel(out_shape), a[-1], bias=bias is not None)


def _adds_term(kwargs: dict[str, object]) -> bool:
    return kwargs.get("beta", 1) != 0


def addmm(bias: Shape, a: Shape, b: Shape, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    return dot_products(numel(out_shape), a[-1], bias=_adds_term(kwargs))


def addbmm(bias: Shape, a: Shape, b: Shape, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """Products summed over the batch: one dot product of B*K terms per output, plus the bias."""
    return dot_products(numel(out_shape), a[0] * a[-1], bias=_adds_term(kwargs))


def mv(a: Shape, v: Shape, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    return dot_products(numel(out_shape), v[-1])


def addmv(bias: Shape, a: Shape, v: Shape, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    return dot_products(numel(out_shape), v[-1], bias=_adds_term(kwargs))


def dot(a: Shape, b: Shape, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    return dot_products(1, a[-1])


def addr(bias: Shape, v1: Shape, v2: Shape, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """An outer product added to a matrix: one multiply and one add per output (the add dropped
    with ``beta=0``)."""
    n = numel(out_shape)
    total = 2 * n if _adds_term(kwargs) else n
    return (total, total)


COUNTS_INTEGER_WORK = True  # int8 matmuls (quantized inference) are compute, not bookkeeping


def grouped_mm(a: Shape, b: Shape, offs: Shape | None = None, bias: Shape | None = None,
               *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``_grouped_mm(mat_a, mat_b, offs, bias)``, counted from the operands' shapes alone (see the
    module docstring for why the per-group sizes are not needed)."""
    k = a[-1]
    if len(a) == 2 and len(b) == 2:
        groups = 1 if offs is None else offs[0]
        n_outputs = a[0] * b[-1]  # per group; the output is (groups, M, N)
        multiplies = n_outputs * k
        extra = groups * n_outputs if bias is not None else 0
        return (2 * multiplies - groups * n_outputs + extra, multiplies + extra)
    if len(a) == 2:  # (rows, K) × (G, K, N) -> (rows, N)
        n_outputs = a[0] * b[-1]
    elif len(b) == 2:  # (G, M, K) × (K, G·N) -> (M, G·N)
        n_outputs = a[1] * b[-1]
    else:  # (G, M, K) × (G, K, N) -> (G, M, N): a batched product
        n_outputs = a[0] * a[1] * b[-1]
    return dot_products(n_outputs, k, bias=bias is not None)


RULES = {
    "mm": mm,
    "bmm": mm,
    "_int_mm": mm,
    "_scaled_mm": scaled_mm,
    "addmm": addmm,
    "baddbmm": addmm,
    "addbmm": addbmm,
    "mv": mv,
    "addmv": addmv,
    "dot": dot,
    "vdot": dot,
    "addr": addr,
    "_grouped_mm": grouped_mm,
}


# Weight-only quantized and scaled products count as their float twins (DESIGN, "Quantized twins"):
# the activation's last dimension is K whatever the packed weight's layout, and dequantizing the
# weight or applying the scales happens in the kernel, as a matmul's output cast does.


def weight_only_mm(x: Shape, packed_weight: Shape, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """``_weight_int4pack_mm(x, w, group_size, scales_and_zeros)``, ``_weight_int8pack_mm(x, w,
    scales)``, ``_dyn_quant_matmul_4bit(x, packed, block_size, in_features, out_features)``."""
    return dot_products(numel(out_shape), x[-1])


def scaled_grouped_mm(a: Shape, b: Shape, scale_a: Shape, scale_b: Shape, offs: Shape | None = None,
                      bias: Shape | None = None, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``_scaled_grouped_mm(a, b, scale_a, scale_b, offs, bias, ...)``: ``_grouped_mm``'s count."""
    return grouped_mm(a, b, kwargs.get("offs", offs), kwargs.get("bias", bias))  # type: ignore[arg-type]


def scaled_mm_v2(a: Shape, b: Shape, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """``_scaled_mm_v2(a, b, scale_a, recipe_a, swizzle_a, scale_b, recipe_b, swizzle_b, bias, ...)``."""
    bias = kwargs.get("bias", args[6] if len(args) > 6 else None)
    return dot_products(numel(out_shape), a[-1], bias=bias is not None)


def addmm_activation(bias: Shape, a: Shape, b: Shape, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """``_addmm_activation(bias, a, b, *, beta, alpha, use_gelu)``: addmm, then relu or gelu (one
    per output element), as the unfused pair counts."""
    flops, macs = addmm(bias, a, b, *args, out_shape=out_shape, **kwargs)
    n = numel(out_shape)
    return (flops + n, macs + n)


def linear_backward(x: Shape, grad_out: Shape, weight: Shape, output_mask: object = (True, True, True),
                    *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linear_backward(input, grad_output, weight, output_mask)`` (oneDNN): the gradients asked
    for, each the product autograd runs for a linear layer: grad_input = grad·W (input elements,
    out_features terms each), grad_weight = gradᵀ·x (weight elements, tokens terms each),
    grad_bias = the sum of grad over tokens (one add per grad element)."""
    mask = list(output_mask) if isinstance(output_mask, (list, tuple)) else [True, True, True]  # type: ignore[arg-type]
    tokens = numel(grad_out[:-1])
    costs = []
    if mask[0]:
        costs.append(dot_products(numel(x), grad_out[-1]))
    if mask[1]:
        costs.append(dot_products(numel(weight), tokens))
    if len(mask) > 2 and mask[2]:
        costs.append((numel(grad_out), numel(grad_out)))
    return sum_costs(*costs)


def semi_structured_mm(a: Shape, a_meta: Shape, b: Shape, *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """``_sparse_semi_structured_mm(a_compressed, meta, b)``: 2:4 sparsity keeps half of each row's K
    terms, stored as the compressed (M, K/2) operand; the kernel multiplies those alone."""
    return dot_products(numel(out_shape), a[-1])


def semi_structured_addmm(bias: Shape, a: Shape, a_meta: Shape, b: Shape, *args: object, out_shape: Shape,
                          **kwargs: object) -> Cost:
    """``_sparse_semi_structured_addmm(input, a_compressed, meta, b, *, alpha, beta)``."""
    return dot_products(numel(out_shape), a[-1], bias=_adds_term(kwargs))


def semi_structured_linear(x: Shape, weight: Shape, meta: Shape, *args: object, out_shape: Shape,
                           **kwargs: object) -> Cost:
    """``_sparse_semi_structured_linear(x, w_compressed (out, in/2), meta, *, bias, activation)``:
    half of the in-features terms per output, the bias one add per output, an activation one more."""
    flops, macs = dot_products(numel(out_shape), weight[-1], bias=kwargs.get("bias") is not None)
    extra = numel(out_shape) if kwargs.get("activation") else 0
    return (flops + extra, macs + extra)


def cusparselt_mm(compressed: Shape, dense_b: Shape, bias: Shape | None = None, *args: object,
                  out_shape: Shape, **kwargs: object) -> Cost:
    """``_cslt_sparse_mm(compressed_a, b (K, N), bias, ...)``: 2:4 sparse, K/2 terms per output."""
    bias = kwargs.get("bias", bias)  # type: ignore[assignment]
    return dot_products(numel(out_shape), (dense_b[0] + 1) // 2, bias=bias is not None)


RULES.update({
    "_weight_int4pack_mm": weight_only_mm,
    "_weight_int4pack_mm_for_cpu": weight_only_mm,
    "_weight_int4pack_mm_with_scales_and_zeros": weight_only_mm,
    "_weight_int8pack_mm": weight_only_mm,
    "_dyn_quant_matmul_4bit": weight_only_mm,
    "_scaled_grouped_mm": scaled_grouped_mm,
    "_scaled_mm_v2": scaled_mm_v2,
    "_addmm_activation": addmm_activation,
    "linear_backward": linear_backward,
    "_sparse_semi_structured_mm": semi_structured_mm,
    "_sparse_semi_structured_addmm": semi_structured_addmm,
    "_sparse_semi_structured_linear": semi_structured_linear,
    "_cslt_sparse_mm": cusparselt_mm,
})


def scaled_grouped_mm_v2(a: Shape, b: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``_scaled_grouped_mm_v2(a, b, scale_a, recipe_a, swizzle_a, scale_b, recipe_b, swizzle_b, offs, bias, ...)``."""
    offs = kwargs.get("offs", args[6] if len(args) > 6 else None)
    bias = kwargs.get("bias", args[7] if len(args) > 7 else None)
    return grouped_mm(a, b, offs, bias)  # type: ignore[arg-type]


def trilinear(i1: Shape, i2: Shape, i3: Shape, expand1: list, expand2: list, expand3: list, sumdim: list,
              *args: object, out_shape: Shape, **kwargs: object) -> Cost:
    """``_trilinear(i1, i2, i3, expand1, expand2, expand3, sumdim, unroll_dim)`` (``F.bilinear``):
    each output sums K products of three factors over the summed dimensions, two multiplies
    and one add per term: K·(3) − 1 flops and K macs per output."""
    def expanded(shape: Shape, expand: list) -> list[int]:
        dims = list(shape)
        for d in sorted(expand):
            dims.insert(d, 1)
        return dims

    shapes = [expanded(s, e) for s, e in ((i1, expand1), (i2, expand2), (i3, expand3))]
    terms = prod(max(s[d] for s in shapes) for d in sumdim) if sumdim else 1
    n = numel(out_shape)
    return (n * (3 * terms - 1), n * terms)


RULES.update({
    "_scaled_grouped_mm_v2": scaled_grouped_mm_v2,
    "_trilinear": trilinear,
    "_scaled_addmm": addmm,  # torch 2.15: _scaled_mm_v2 with an added term (beta=0 drops it)
})
