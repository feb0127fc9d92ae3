"""bench/speed.py's plumbing (no timings): its doc sections are replaced in place, and its
"memory off" variant counts the same work as measure() with the tracker unplugged."""

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import speed  # noqa: E402


def test_write_section_replaces_between_markers_and_keeps_the_rest(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Title\n\nbefore\n")
    speed.write_section(str(doc), "cpu", "| a |\n|---|\n| 1 |", 9)
    first = doc.read_text()
    assert first.startswith("# Title\n\nbefore\n")
    assert "## Speed against the peers and the empty-mode floor (bench/speed.py)" in first
    assert "medians of 9 paired repeats" in first and "| 1 |" in first
    doc.write_text(first + "\nafter\n")
    speed.write_section(str(doc), "cpu", "| a |\n|---|\n| 2 |", 7)
    second = doc.read_text()
    assert "| 1 |" not in second and "| 2 |" in second and "medians of 7 paired repeats" in second
    assert second.count("<!-- speed:cpu:begin -->") == 1 and second.endswith("\nafter\n")


def test_memory_off_variant_counts_the_same_flops_and_sees_no_allocation():
    import pytest_flopbudget as fb

    model, x = torch.nn.Linear(4, 3), torch.ones(2, 4)
    unplugged = speed.ours_without_memory()(model, x)
    measured = fb.measure(model, x)
    # weight 12 + bias 3 floats, input 8 floats: live at entry either way
    entry = (12 + 3 + 8) * 4
    assert unplugged.memory.at_entry == measured.memory.at_entry == entry
    # the (2x3) output is allocated by an op: only the tracker fed by the dispatch mode sees it
    assert measured.memory.peak == entry + 2 * 3 * 4
    assert unplugged.memory.peak == entry
    # (2x4) @ (4x3): 24 multiply-adds, plus the bias: 6
    assert unplugged.macs == measured.macs == 2 * 4 * 3 + 2 * 3
    assert unplugged.flops == measured.flops


def test_speed_parts_layers_run_and_render_their_steps():
    import speed_parts

    model, x = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).eval(), torch.ones(2, 4)
    before = [b.clone() for b in model.buffers()]
    layers = speed_parts.variants(model, x)
    assert list(layers)[0] == "floor" and list(layers)[5] == "measure()"
    for run in layers.values():
        run()
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers()))
    table = speed_parts.render({"title": "tiny", "forward_s": 0.001,
                                "ratio": {"floor": 1.2, "tracker": 1.0, "session, memory off": 1.5, "read": 0.1}})
    # a step is the difference to the row above; the standalone parts get none
    assert "| tracker | 1.00x | -0.20x |" in table and "| session, memory off | 1.50x | +0.50x |" in table
    assert "| read | 0.10x |  |" in table
