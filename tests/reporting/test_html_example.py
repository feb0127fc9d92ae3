"""The README's picture: example_project's deliberate regression (FLOPBUDGET_DEMO_REGRESSION=1
widens the GPT's MLP) written as an HTML report by docs/make_screenshot.py, and what a reviewer
sees in it: the regressed tests open, and in their charts the MLP's layers, and only they, grew."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCKS, GREW, SAME = 6, "rgb(198, 40, 40)", "rgb(144, 164, 200)"  # the example GPT's depth; the page's colors


def screenshot_script():
    spec = importlib.util.spec_from_file_location("make_screenshot", ROOT / "docs" / "make_screenshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo(browser, tmp_path_factory):
    """The page the screenshot script writes (the browser first: without one, skip before the run)."""
    path = tmp_path_factory.mktemp("demo") / "report.html"
    screenshot_script().write_report(path)
    return path


@pytest.mark.slow  # the whole example project (its 7B decoder on meta, training steps): 15 s on a quiet machine
def test_the_demo_regression_shows_the_grown_mlp(demo, open_page, tmp_path):
    page = open_page(demo)
    rows = page.execute_script("return [...document.querySelectorAll('#summary tbody tr')].map(tr => "
                               "[tr.getAttribute('data-key'), tr.classList.contains('failing')])")
    failing = sorted(key for key, fails in rows if fails)
    assert len(rows) == 12 and failing == sorted(
        ["tests/test_language.py::test_gpt_adamw_step_fits",
         "tests/test_language.py::test_gpt_forward[128]", "tests/test_language.py::test_gpt_forward[512]",
         "tests/test_language.py::test_gpt_forward[1024]", "tests/test_language.py::test_gpt_training_step",
         "tests/test_language.py::test_gpt_full_training_step", "tests/test_language.py::test_gpt_generate"])
    opened = page.execute_script("return [...document.querySelectorAll('#tests > details')].filter(d => d.open)"
                                 ".map(d => [d.getAttribute('data-key'), d.querySelectorAll('.chart').length])")
    assert sorted(key for key, _ in opened) == failing and all(charts == 1 for _, charts in opened)
    assert page.execute_script("return document.querySelectorAll('.chart').length") == len(failing)

    blocks = page.execute_script("""
        const chart = document.querySelector('details[data-key="tests/test_language.py::test_gpt_forward[128]"] .chart');
        return Object.fromEntries([...chart.querySelectorAll('.block')].map(b => [b.getAttribute('data-name'),
            [b.getAttribute('data-status'), getComputedStyle(b).backgroundColor]]));""")
    # the MLP's layers (two Linear and the GELU between them) grew in every block, and nothing else did
    grown = {name for name, (status, _) in blocks.items() if status == "grew"}
    assert grown == {f"blocks.{i}.mlp.{j}" for i in range(BLOCKS) for j in range(3) if f"blocks.{i}.mlp.{j}" in blocks}
    assert {f"blocks.{i}.mlp.0" for i in range(BLOCKS)} <= grown
    assert all(blocks[name][1] == GREW for name in grown)
    # the MLP, its block, and the model grew through them; attention and the head did not change
    for i in range(BLOCKS):
        assert blocks[f"blocks.{i}.mlp"][0] == "grew-inside" and blocks[f"blocks.{i}"][0] == "grew-inside"
        assert blocks[f"blocks.{i}.attn"] == ["same", SAME]
    assert blocks["lm_head"] == ["same", SAME]
    screenshot_script().screenshot(page, demo, tmp_path / "report.png")  # an artifact, as the README shows it
