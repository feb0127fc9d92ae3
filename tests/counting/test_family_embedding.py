"""Embeddings worked by hand: a lookup is free; a bag's reduction (sum, mean, max) counts each
looked-up element once, twice with per-sample weights; the lookup's backward adds each gradient
element once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pytest_flopbudget as fb

from counting_helpers import measure_both
from pytest_flopbudget.counting.formulas import embedding


VOCAB, DIM = 10, 4
IDS = torch.tensor([[1, 2, 3], [4, 5, 6]])


def test_embedding_lookup_is_free():
    m = measure_both(nn.Embedding(VOCAB, DIM), IDS)
    assert (m.flops, m.macs, m.params) == (0, 0, VOCAB * DIM)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_reduces_each_looked_up_element_once(mode):
    m = measure_both(nn.EmbeddingBag(VOCAB, DIM, mode=mode), IDS)
    assert m.flops == m.macs == IDS.numel() * DIM
    assert m.params == VOCAB * DIM


def test_embedding_bag_with_offsets_and_per_sample_weights():
    ids, offsets = torch.tensor([1, 2, 3, 4, 5]), torch.tensor([0, 2])
    weights = torch.rand(5)
    m = measure_both(nn.EmbeddingBag(VOCAB, DIM, mode="sum"), (ids, offsets, weights))
    assert m.flops == m.macs == 2 * ids.numel() * DIM  # a multiply and an add per element


def test_embedding_backward_adds_each_gradient_element_once():
    m = measure_both(nn.Embedding(VOCAB, DIM), IDS, backward=True)
    assert m.ops == {"aten.embedding_dense_backward": IDS.numel() * DIM}


# -- shape level: the formula called with plain shapes --
# _embedding_bag(weight, indices, offsets, scale_grad_by_freq, mode, sparse, per_sample_weights,
# include_last_offset, padding_idx): a bag reduces numel(indices)·D looked-up elements.

WEIGHT, BAG_OUT = (VOCAB, DIM), ((2, DIM), (6,), (2,), (2, DIM))  # output, offset2bag, bag_size, max_indices


@pytest.mark.parametrize("name", ["_embedding_bag", "_embedding_bag_forward_only"])
@pytest.mark.parametrize("mode", [0, 1, 2], ids=["sum", "mean", "max"])
def test_shape_embedding_bag_reduces_each_looked_up_element(name, mode):
    looked_up = 6 * DIM
    got = embedding.RULES[name](WEIGHT, (6,), (2,), False, mode, False, None, False, -1, out_shape=BAG_OUT)
    assert got == (looked_up, looked_up)


def test_shape_embedding_bag_with_per_sample_weights_multiplies_too():
    looked_up = 6 * DIM
    positional = embedding.embedding_bag(WEIGHT, (6,), (2,), False, 0, False, (6,), False, -1, out_shape=BAG_OUT)
    keyword = embedding.embedding_bag(WEIGHT, (6,), (2,), out_shape=BAG_OUT, per_sample_weights=(6,))
    assert positional == keyword == (2 * looked_up, 2 * looked_up)


def test_shape_embedding_backward_adds_each_gradient_element():
    # embedding_dense_backward(grad_output, indices, num_weights, padding_idx, scale_grad_by_freq)
    n = 2 * 3 * DIM
    assert embedding.embedding_backward((2, 3, DIM), (2, 3), VOCAB, -1, False, out_shape=WEIGHT) == (n, n)


def test_shape_embedding_bag_backward_scatters_into_every_looked_up_row():
    # _embedding_bag_backward(grad, indices, offsets, offset2bag, bag_size, maximum_indices,
    # num_weights, scale_grad_by_freq, mode, sparse, per_sample_weights, padding_idx): 2 bags of 3
    got = embedding.RULES["_embedding_bag_backward"]((2, DIM), (6,), (2,), (6,), (2,), (2, DIM), VOCAB, False, 0,
                                                     False, None, -1, out_shape=WEIGHT)
    assert got == (6 * DIM, 6 * DIM)


@pytest.mark.parametrize(("mode", "per_element"), [("sum", 1), ("mean", 1), ("max", None)])
def test_embedding_bag_backward_mirrors_its_forward(mode, per_element):
    """Sum and mean: each bag's gradient row goes back into the row of every index in the bag
    (one add per looked-up element, as many as the forward's adds); max: only the winning row of
    each position receives it (one add per bag element)."""
    bags, size, dim = 2, 3, 4
    bag = nn.EmbeddingBag(10, dim, mode=mode)
    indices = torch.tensor([[1, 2, 3], [4, 5, 6]])
    forward = fb.measure(bag, indices)
    training = fb.measure(bag, indices, backward=True)
    expected = bags * size * dim if per_element else bags * dim
    assert training.flops - forward.flops == expected
