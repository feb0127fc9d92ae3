"""Tensor subclasses: jagged nested tensors counted by their real sizes (once a RecursionError under
counting), and sharded models (FSDP2's collectives and buffer packing free) counted like their plain twins."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pytest_flopbudget as fb
from pytest_flopbudget.counting.registry import FREE, default_registry

LENGTHS = (3, 5)


def _jagged(width: int, *rest: int) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.nested.nested_tensor([torch.randn(n, *rest, width) for n in LENGTHS], layout=torch.jagged)


def _linear_cost(rows: int, k: int, n: int) -> tuple[int, int]:
    return rows * n * (2 * k - 1) + rows * n, rows * n * k + rows * n


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_jagged_tensor_through_linear_counts_its_total_length(device: str) -> None:
    # 3 + 5 = 8 rows of 8 features into 4: only the total length matters, so meta counts it too
    with torch.device(device):
        layer = nn.Linear(8, 4)
    measured = fb.measure(layer, lambda: _jagged(8), device=device)
    assert (measured.flops, measured.macs) == _linear_cost(8, 8, 4)
    with fb.count(device=device) as counted:
        layer(_jagged(8)).relu()
    assert counted.flops == _linear_cost(8, 8, 4)[0] + 8 * 4
    assert counted.uncounted == {}


def test_jagged_attention_counts_each_sequence_by_its_length() -> None:
    # (B, j, H, D) -> (B, H, j, D): the cost is that of each sequence on its own (sum of squared lengths)
    with fb.count() as counted:
        q = _jagged(4, 2).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, q, q)
    per_sequence = 0
    for n in LENGTHS:
        with fb.count() as one:
            d = torch.randn(1, 2, n, 4)
            F.scaled_dot_product_attention(d, d, d)
        per_sequence += one.flops
    assert counted.flops == per_sequence
    assert tuple(out.transpose(1, 2).values().shape) == (sum(LENGTHS), 2, 4)


def test_jagged_attention_on_meta_is_a_clear_error() -> None:
    with pytest.raises(fb.MeasurementError, match="lengths are values"):
        with fb.count(device="meta"):
            q = _jagged(4, 2).transpose(1, 2)
            F.scaled_dot_product_attention(q, q, q)


def test_collectives_and_fsdp_packing_are_free() -> None:
    registry = default_registry()
    assert registry.resolve(torch.ops._c10d_functional.all_reduce.default) == FREE
    assert registry.resolve(torch.ops._c10d_functional.wait_tensor.default) == FREE


def test_fsdp2_on_one_rank_counts_like_the_plain_model() -> None:
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available():
        pytest.skip("torch.distributed is not built into this torch")
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        probe = nn.Linear(2, 2)
        fully_shard(probe)
        try:  # without counting: FSDP2 on CPU needs a newer torch than the floor
            probe(torch.randn(1, 2)).sum().backward()
        except (AttributeError, RuntimeError) as error:
            pytest.skip(f"FSDP2 does not run on CPU in torch {torch.__version__}: {error}")
        torch.manual_seed(0)
        plain = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
        sharded = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
        fully_shard(sharded[0])
        fully_shard(sharded)
        x = torch.randn(2, 8)
        with fb.count() as expected:
            plain(x).sum().backward()
        with fb.count() as counted:
            sharded(x).sum().backward()
    finally:
        dist.destroy_process_group()
    assert (counted.flops, counted.macs) == (expected.flops, expected.macs)
    assert counted.uncounted == {}
    # FSDP packs its gradients with fsdp.chunk_cat (a copy), which is free, not uncounted
    assert default_registry().resolve(torch.ops.fsdp.chunk_cat.default) == FREE
