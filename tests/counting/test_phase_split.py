"""Forward, backward and optimizer step apart, per module (issue 23 item 2): worked by hand on a
small MLP, and held to what separate runs measure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pytest_flopbudget as fb

B, IN, HIDDEN, OUT = 5, 4, 8, 3


def dots(n_outputs: int, length: int) -> int:
    """The seed's dot product: K multiplies and K − 1 adds."""
    return n_outputs * (2 * length - 1)


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, OUT))


# per module (forward, backward) of Linear(4→8) → ReLU → Linear(8→3) on a batch of 5 whose input
# needs no gradient (the terms as in test_backward_and_custom_ops.test_mlp_backward_by_hand)
BY_HAND = {
    "0": (dots(B * HIDDEN, IN) + B * HIDDEN,
          dots(HIDDEN * IN, B) + B * HIDDEN),  # grad W1, grad b1; no input gradient
    "1": (B * HIDDEN, B * HIDDEN),  # relu and its backward, one per element
    "2": (dots(B * OUT, HIDDEN) + B * OUT,
          dots(B * HIDDEN, OUT) + dots(OUT * HIDDEN, B) + B * OUT),  # grad of H, grad W2, grad b2
}
PARAMS = HIDDEN * IN + HIDDEN + OUT * HIDDEN + OUT


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_each_module_row_splits_into_its_forward_and_its_backward(device: str) -> None:
    m = fb.measure(mlp(), torch.randn(B, IN), backward=True, device=device)
    for name, (forward, backward) in BY_HAND.items():
        row = m.modules[name]
        assert (row.forward_flops, row.backward_flops, row.optimizer_flops) == (forward, backward, 0), name
        assert row.flops == forward + backward
    total = m.phases
    assert total.forward_flops == sum(f for f, _ in BY_HAND.values())
    assert total.backward_flops == sum(b for _, b in BY_HAND.values())


def test_the_split_agrees_with_a_forward_only_run_in_flops_and_macs() -> None:
    model, x = mlp(), torch.randn(B, IN)
    forward = fb.measure(model, x)
    both = fb.measure(model, x, backward=True)
    for name, row in both.modules.items():
        assert (row.forward_flops, row.forward_macs) == (forward.modules[name].flops, forward.modules[name].macs)
        assert forward.modules[name].backward_flops == forward.modules[name].backward_macs == 0


def test_an_optimizer_step_is_its_own_phase_outside_every_module() -> None:
    model, x = mlp(), torch.randn(B, IN)
    step = fb.measure(model, x, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
    # plain SGD: p.add_(g, alpha=-lr), one FLOP and one MAC per parameter element
    assert step.phases.optimizer_flops == step.phases.optimizer_macs == PARAMS
    assert step.phases.backward_flops == sum(b for _, b in BY_HAND.values())
    assert all(row.optimizer_flops == 0 for name, row in step.modules.items() if name)


def test_a_count_block_splits_its_loss_backward_and_step() -> None:
    model, x = mlp(), torch.randn(B, IN)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with fb.count() as counted:
        model(x).sum().backward()
        optimizer.step()
    root = counted.modules[""]
    loss = B * OUT  # the sum outside every module: forward work; its backward is a copy (free)
    assert root.forward_flops == sum(f for f, _ in BY_HAND.values()) + loss
    assert root.backward_flops == sum(b for _, b in BY_HAND.values())
    assert root.optimizer_flops == PARAMS
    assert counted.modules["Sequential.2"].backward_flops == BY_HAND["2"][1]


def test_gradients_taken_inside_a_forward_are_backward_work() -> None:
    """A gradient penalty: autograd.grad runs inside the module's forward; its work is backward."""

    class Penalised(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(IN, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.requires_grad_(True)
            y = self.inner(x)
            (grad,) = torch.autograd.grad(y.sum(), x, create_graph=True)
            return y + grad.sum()

    with fb.count() as counted:
        Penalised()(torch.randn(B, IN))
    row = counted.modules["Penalised"]
    assert row.backward_flops == dots(B * IN, 1)  # dX = dY (5x1) @ W (1x4): one product each, no adds
    assert row.forward_flops == row.flops - row.backward_flops > 0


def test_a_forward_only_table_keeps_one_flops_column_and_a_backward_table_shows_both() -> None:
    model, x = mlp(), torch.randn(B, IN)
    assert "bwd" not in fb.measure(model, x).table()
    table = fb.measure(model, x, backward=True).table()
    header = table.splitlines()[0].split()
    assert header[:5] == ["module", "type", "GFLOPs", "fwd", "bwd"]
    phase_line = next(line for line in table.splitlines() if line.startswith("GFLOPs by phase: "))
    parts = dict(part.split() for part in phase_line.removeprefix("GFLOPs by phase: ").split(", "))
    assert {k: round(float(v) * 1e9) for k, v in parts.items()} == {
        "forward": sum(f for f, _ in BY_HAND.values()), "backward": sum(b for _, b in BY_HAND.values())}
    row = next(line.split() for line in table.splitlines() if line.split()[:2] == ["2", "Linear"])
    assert [round(float(v) * 1e9) for v in row[2:5]] == [sum(BY_HAND["2"]), *BY_HAND["2"]]
