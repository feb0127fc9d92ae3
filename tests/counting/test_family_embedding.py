"""Embeddings worked by hand: a lookup is free; a bag's reduction (sum, mean, max) counts each
looked-up element once, twice with per-sample weights; the lookup's backward adds each gradient
element once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from counting_helpers import measure_both


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
