"""The fixture's count() block on meta finds the test's own model and optimizer (issue 24).

A meta block guards the objects its code can name, searched from the frame that entered the
block; through the fixture that frame is the test function, below the fixture's generator and
contextlib. A test that zeroes the gradients first would otherwise clear the real ones.
"""

from __future__ import annotations

from plugin_project import Project

STEP = """
def _steady():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.BatchNorm1d(4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(3, 8)).sum().backward()
    optimizer.step()
    return model, optimizer


def _tensors(model, optimizer):
    state = [v for s in optimizer.state.values() for v in s.values()]
    return [*model.parameters(), *(p.grad for p in model.parameters()), *model.buffers(), *state]


def test_step(flop_budget):
    model, optimizer = _steady()
    before = [t.clone() for t in _tensors(model, optimizer)]
    with flop_budget.count() as counted:
        optimizer.zero_grad()
        model(torch.zeros(3, 8)).sum().backward()
        optimizer.step()
    assert counted.flops > 0
    if str(flop_budget.device) != "meta":
        return  # on cpu the step trains the model for real
    after = _tensors(model, optimizer)
    assert [type(t) in (torch.Tensor, torch.nn.Parameter) for t in after] == [True] * len(before)
    assert [torch.equal(a, b) for a, b in zip(after, before)] == [True] * len(before)
"""


def test_a_meta_block_in_a_test_leaves_the_test_s_model_and_optimizer(project: Project) -> None:
    project.write("test_step.py", STEP)
    project.run("--flop-device=meta", "--flop-update-baseline").assert_outcomes(passed=1)
    on_meta = project.load()["entries"]["test_step.py::test_step"]["flops"]
    project.run("--flop-device=cpu", "--flop-update-baseline").assert_outcomes(passed=1)
    assert on_meta == project.load()["entries"]["test_step.py::test_step"]["flops"] > 0
