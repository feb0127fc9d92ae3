"""Reductions, scans and selections worked by hand: one per input element (var/std/norm two);
mixture-of-experts plumbing: topk/sort one per input element, gather/scatter/indexing free,
accumulating writes one per element accumulated."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pytest_flopbudget as fb
from counting_helpers import Fn, measure_both
from pytest_flopbudget.counting.formulas import reduction


X = (2, 3, 4)
N = 24

CASES = {
    # name: (fn, ops per input element)
    "sum": (lambda x: x.sum(), 1),
    "sum-dim": (lambda x: x.sum(1), 1),
    "mean": (lambda x: x.mean(-1), 1),
    "amax": (lambda x: x.amax(-1), 1),
    "max-dim": (lambda x: x.max(-1).values, 1),
    "argmax": (lambda x: x.argmax(-1), 1),
    "prod": (lambda x: x.prod(-1), 1),
    "cumsum": (lambda x: x.cumsum(1), 1),
    "cumprod": (lambda x: x.cumprod(-1), 1),
    "logsumexp": (lambda x: x.logsumexp(-1), 1),
    "var": (lambda x: x.var(-1), 2),
    "std": (lambda x: x.std(-1), 2),
    "var_mean": (lambda x: torch.var_mean(x, -1)[0], 2),
    "norm": (lambda x: x.norm(), 2),
    "vector_norm": (lambda x: torch.linalg.vector_norm(x, dim=-1), 2),
    "topk": (lambda x: x.topk(2, -1).values, 1),
    "sort": (lambda x: x.sort(-1).values, 1),
}


@pytest.mark.parametrize("name", list(CASES))
def test_reduction_counts_each_input_element(name):
    fn, per_element = CASES[name]
    m = measure_both(Fn(fn), torch.randn(X))
    assert m.flops == m.macs == per_element * N


INDEX = torch.tensor([[[0, 3]] * 3] * 2)  # (2, 3, 2) along the last dim

FREE = {
    "gather": lambda x: x.gather(-1, INDEX),
    "scatter-src": lambda x: x.scatter(-1, INDEX, torch.ones(2, 3, 2)),
    "scatter-value": lambda x: x.scatter(-1, INDEX, 1.0),
    "index_select": lambda x: x.index_select(0, torch.tensor([1, 0, 1])),
    "advanced-index": lambda x: x[torch.tensor([1, 0])],
    "index_put-write": lambda x: x.index_put((torch.tensor([0, 1]),), torch.ones(3, 4)),
    "cat-stack": lambda x: torch.stack([torch.cat([x, x]), torch.cat([x, x])]),
}


@pytest.mark.parametrize("name", list(FREE))
def test_data_movement_is_free(name):
    m = measure_both(Fn(FREE[name]), torch.randn(X))
    assert m.flops == m.macs == 0


ACCUMULATE = {
    # name: (fn, elements accumulated)
    # src larger than index: only index.numel() elements are read and added
    "scatter_add": (lambda x: x.scatter_add(-1, INDEX, torch.ones(2, 3, 3)), 12),
    "scatter_add_-in-place": (lambda x: x.scatter_add_(-1, INDEX, torch.ones(2, 3, 2)), 12),
    "scatter_reduce": (lambda x: x.scatter_reduce(-1, INDEX, torch.ones(2, 3, 3), "amax"), 12),
    "scatter-reduce-add": (lambda x: x.scatter(-1, INDEX, torch.ones(2, 3, 2), reduce="add"), 12),
    "scatter_-reduce-multiply": (lambda x: x.scatter_(-1, INDEX, 2.0, reduce="multiply"), 12),
    # index_add adds every source element: 3 slices of (3, 4)
    "index_add": (lambda x: x.index_add(0, torch.tensor([0, 0, 1]), torch.ones(3, 3, 4)), 36),
    "index_add_-in-place": (lambda x: x.index_add_(0, torch.tensor([0, 0, 1]), torch.ones(3, 3, 4)), 36),
    "index_put-accumulate": (lambda x: x.index_put((torch.tensor([0, 1]),), torch.ones(2, 3, 4), accumulate=True), 24),
}


@pytest.mark.parametrize("name", list(ACCUMULATE))
def test_accumulating_writes_count_each_accumulated_element(name):
    fn, n = ACCUMULATE[name]
    m = measure_both(Fn(fn), torch.randn(X))
    assert m.flops == m.macs == n


def test_moe_router_by_hand():
    # a top-2 router over E experts: logits (mm), softmax, topk, then each token's expert outputs
    # combined back with index_add; copying the tokens out per choice is free
    tokens, dim, experts, k = 6, 4, 3, 2
    router = nn.Linear(dim, experts, bias=False)

    def route(x):
        probs = router(x).softmax(-1)
        weights, _ = probs.topk(k, -1)
        picked = x.index_select(0, torch.arange(tokens).repeat_interleave(k))  # free data movement
        return torch.zeros_like(x).index_add(0, torch.arange(tokens).repeat_interleave(k), picked * weights.reshape(-1, 1))

    m = measure_both(Fn(route), torch.randn(tokens, dim))
    logits = tokens * experts
    assert m.ops == {
        "aten.mm": logits * (2 * dim - 1),
        "aten._softmax": logits,
        "aten.topk": logits,
        "aten.mul": tokens * k * dim,
        "aten.index_add": tokens * k * dim,
    }


def test_isin_compares_every_element_with_every_test_element():
    x, tests = torch.tensor([[1.0, 2, 3], [4, 5, 6]]), torch.tensor([2.0, 7])
    assert fb.measure(Fn(lambda a, b: torch.isin(a, b)), (x, tests)).flops == 6 * 2
    assert fb.measure(Fn(lambda a: torch.isin(a, 3.0)), (x,)).flops == 6
    # on integer tokens (generate's stop-token check) it is not floating-point work
    assert fb.measure(Fn(lambda a, b: torch.isin(a, b)), (x.long(), tests.long())).flops == 0


# -- shape level: the formula called with plain shapes --
# X = (2, 3, 4), N = 24 input elements. A reduction is a pool over a dimension: one per input
# element (the seed's pooling rule); var/std and p-norms two.

SHAPE_CASES = [
    # aten name, positional args, keyword args, output shape, operations per input element
    ("sum", (X, [-1], False), {}, (2, 3), 1),
    ("mean", (X, [1], True), {}, (2, 1, 4), 1),
    ("prod", (X, 2, False), {}, (2, 3), 1),
    ("amax", (X, [-1]), {}, (2, 3), 1),
    ("argmax", (X, -1), {}, (2, 3), 1),
    ("max", (X, -1, False), {}, ((2, 3), (2, 3)), 1),
    ("cumsum", (X, 1), {}, X, 1),
    ("logsumexp", (X, [-1], False), {}, (2, 3), 1),
    ("topk", (X, 2, -1, True, True), {}, ((2, 3, 2), (2, 3, 2)), 1),
    ("sort", (X, -1, False), {}, (X, X), 1),
    ("var", (X, [-1]), {"correction": 1, "keepdim": False}, (2, 3), 2),
    ("std", (X, [-1]), {"correction": 1, "keepdim": False}, (2, 3), 2),
    ("var_mean", (X, [-1]), {"correction": 1}, ((2, 3), (2, 3)), 2),
    ("linalg_vector_norm", (X, 2, None, False), {}, (), 2),
]


@pytest.mark.parametrize("name, args, kwargs, out_shape, per_element", SHAPE_CASES,
                         ids=[c[0] for c in SHAPE_CASES])
def test_shape_reduction_counts_its_input(name, args, kwargs, out_shape, per_element):
    # the output's size does not matter: a top-2 or a full sort reads every element once
    assert reduction.RULES[name](*args, out_shape=out_shape, **kwargs) == (per_element * N, per_element * N)


def test_shape_var_worked_example():
    # docs/formulas.md: x.var(-1) on (2, 3, 4): a mean, then squared deviations: 2·24
    assert reduction.RULES["var"]((2, 3, 4), [-1], correction=1, keepdim=False, out_shape=(2, 3)) == (48, 48)


def test_shape_max_of_two_tensors_is_elementwise():
    # max.other(a, b) with b (3, 4) broadcast: one per output element, not per input
    assert reduction.RULES["max.other"](X, (3, 4), out_shape=X) == (N, N)


def test_shape_accumulating_writes():
    # index_add(x, dim, index, source): every source element added once
    assert reduction.RULES["index_add"]((5, 4), 0, (3,), (3, 4), out_shape=(5, 4)) == (3 * 4, 3 * 4)
    # scatter_add(x, dim, index, src): only index.shape elements of src (3, 4) are read
    assert reduction.RULES["scatter_add"]((5, 4), 0, (2, 4), (3, 4), out_shape=(5, 4)) == (2 * 4, 2 * 4)
    got = reduction.RULES["scatter_reduce"]((5, 4), 0, (2, 4), (3, 4), "sum", include_self=True, out_shape=(5, 4))
    assert got == (2 * 4, 2 * 4)
    # scatter(x, dim, index, value, reduce="add"): a scalar value broadcast to index's shape
    assert reduction.RULES["scatter.value_reduce"]((5, 4), 0, (2, 4), 1.5, reduce="add", out_shape=(5, 4)) == (8, 8)


@pytest.mark.parametrize(
    "args, kwargs, n",
    [(((5, 4), [(3,)], (3, 4), True), {}, 3 * 4),
     (((5, 4), [(3,)], (3, 4)), {"accumulate": True}, 3 * 4),
     (((5, 4), [(3,)], (3, 4), False), {}, 0),
     (((5, 4), [(3,)], (4,), True), {}, 4)],  # a broadcast value: counted before broadcasting
    ids=["accumulate", "accumulate-keyword", "write", "broadcast-value"],
)
def test_shape_index_put(args, kwargs, n):
    # index_put(self, indices, values, accumulate): a write is free, an accumulation adds each value
    assert reduction.RULES["index_put"](*args, out_shape=(5, 4), **kwargs) == (n, n)


def test_shape_isin_and_histc():
    # isin(elements, test_elements): every element compared with every test element
    assert reduction.RULES["isin"]((6,), (3,), out_shape=(6,)) == (6 * 3, 6 * 3)
    assert reduction.RULES["isin"]((2, 3), 7, out_shape=(2, 3)) == (6, 6)  # a scalar is one element
    # histc(self, bins, min, max): token counting per expert is bookkeeping
    assert reduction.RULES["histc"]((10,), 4, 0, 3, out_shape=(4,)) == (0, 0)
