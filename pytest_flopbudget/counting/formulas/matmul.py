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


from pytest_flopbudget.counting.formulas import Cost, Shape, dot_products, numel


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
               *args: object, out: object = None, out_shape: object = None, **kwargs: object) -> Cost:
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
