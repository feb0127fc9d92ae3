"""The HTML report in headless Chromium: what a reviewer sees. Rows, charts built only for opened
tests, widths proportional to the chosen metric, colors by change against the baseline, and names
that never run as code. Screenshots are kept as artifacts (tmp_path), never compared."""

from __future__ import annotations

import pytest
from html_views import XSS_KEY, XSS_MODULE, XSS_REASON, XSS_TYPE, sample_view

from pytest_flopbudget.reporting import html as html_report

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# the stylesheet's colors, as getComputedStyle reports them
GREW, GREW_INSIDE, SAME, NEW = "rgb(198, 40, 40)", "rgb(243, 165, 165)", "rgb(144, 164, 200)", "rgb(123, 31, 162)"
GRAYS = ("rgb(207, 207, 207)", "rgb(189, 189, 189)")
ROW = 22  # px per tree level

BLOCKS = """
const section = document.querySelector(`details[data-key="${CSS.escape(arguments[0])}"]`);
const chart = section.querySelector('.chart');
if (!chart) return null;
const origin = chart.getBoundingClientRect();
const out = {width: chart.clientWidth, blocks: {}};
for (const block of chart.querySelectorAll('.block')) {
  const r = block.getBoundingClientRect();
  out.blocks[block.getAttribute('data-name')] = {
    left: r.left - origin.left, top: r.top - origin.top, width: r.width, status: block.getAttribute('data-status'),
    color: getComputedStyle(block).backgroundColor, overflow: block.classList.contains('overflow'),
    text: block.textContent};
}
return out;
"""


@pytest.fixture(scope="module")
def report_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    html_report.write(path, sample_view())
    return path


@pytest.fixture
def page(open_page, report_path, tmp_path):
    driver = open_page(report_path)
    yield driver
    driver.save_screenshot(str(tmp_path / "report.png"))  # an artifact to look at, not an assertion


def chart(driver, key):
    return driver.execute_script(BLOCKS, key)


def section(driver, key):
    return driver.execute_script('return document.querySelector(`details[data-key="${CSS.escape(arguments[0])}"]`)', key)


def open_section(driver, key):
    """Click a test's summary line, as a reader does, and wait for its section to be built (the
    browser reports the toggle after the click)."""
    from selenium.webdriver.support.ui import WebDriverWait

    details = section(driver, key)
    details.find_element("css selector", "summary").click()
    WebDriverWait(driver, 5).until(lambda _: details.get_attribute("data-rendered") == "1")
    return details


def choose_metric(driver, metric):
    driver.execute_script(f"document.querySelector('#metric input[value={metric}]').click()")


def near(a, b):
    return abs(a - b) <= 1


def test_the_table_shows_the_terminals_cells_for_every_test(page):
    rows = page.execute_script(
        "return [...document.querySelectorAll('#summary tbody tr')].map(tr => [...tr.cells].map(td => td.textContent))")
    header = page.execute_script("return [...document.querySelectorAll('#summary th')].map(th => th.textContent)")
    # no test has memory: the peak memory column is left out, the others are the terminal's
    assert header == ["test", "GFLOPs", "GMACs", "params", "budget", "change", "verdict"]
    assert rows == [list(t.cells[:4] + t.cells[5:]) for t in sample_view().tests]
    failing = page.execute_script(
        "return [...document.querySelectorAll('#summary tbody tr.failing')].map(tr => tr.getAttribute('data-key'))")
    assert failing == [t.key for t in sample_view().tests if t.failing]


def test_regressed_and_over_budget_tests_open_first_and_only_opened_tests_have_a_chart(page):
    order = page.execute_script("return [...document.querySelectorAll('#tests > details')].map(d => [d.getAttribute('data-key'), d.open, d.querySelectorAll('.chart').length])")
    assert order == [
        ["tests/test_a.py::test_grew", True, 1], [XSS_KEY, True, 1],
        ["tests/test_a.py::test_ok", False, 0], ["tests/test_b.py::test_deeper", False, 0],
        ["tests/test_c.py::test_unmeasured", False, 0],
    ]
    open_section(page, "tests/test_a.py::test_ok")
    assert page.execute_script("return document.querySelectorAll('#tests .chart').length") == 3
    # a test that measured nothing says so instead of drawing
    assert open_section(page, "tests/test_c.py::test_unmeasured").text.endswith("no module tree: this test measured nothing")
    assert page.execute_script("return document.querySelectorAll('#tests .chart').length") == 3


def test_widths_follow_the_metric_and_colors_the_change(page):
    drawn = chart(page, "tests/test_a.py::test_grew")
    width, blocks = drawn["width"], drawn["blocks"]
    assert width > 600
    # flops: the model 1000, enc 600 (enc.0 300, enc.1 300), head 400
    expected = {"": (0, 1000, 0), "enc": (0, 600, 1), "enc.0": (0, 300, 2), "enc.1": (300, 300, 2), "head": (600, 400, 1)}
    for name, (left, value, depth) in expected.items():
        block = blocks[name]
        assert near(block["left"], left / 1000 * width) and near(block["width"], value / 1000 * width), name
        assert near(block["top"], depth * ROW), name
    # enc.0 grew 100 -> 300 (a leaf of the baseline: its own work); enc and the model only through it
    assert {n: (b["status"], b["color"]) for n, b in blocks.items()} == {
        "": ("grew-inside", GREW_INSIDE), "enc": ("grew-inside", GREW_INSIDE), "enc.0": ("grew", GREW),
        "enc.1": ("same", SAME), "head": ("same", SAME)}

    choose_metric(page, "params")
    drawn = chart(page, "tests/test_a.py::test_grew")
    blocks = drawn["blocks"]
    # params: the model 100, enc 20 (10 + 10), head 80; nothing changed against the baseline
    for name, (left, value) in {"enc": (0, 20), "enc.0": (0, 10), "enc.1": (10, 10), "head": (20, 80)}.items():
        assert near(blocks[name]["left"], left / 100 * width) and near(blocks[name]["width"], value / 100 * width), name
    assert {b["status"] for b in blocks.values()} == {"same"}
    choose_metric(page, "flops")
    assert chart(page, "tests/test_a.py::test_grew")["blocks"]["enc.0"]["status"] == "grew"


def test_shared_parameters_are_drawn_under_their_first_owner_and_the_overflow_is_marked(page):
    open_section(page, "tests/test_a.py::test_ok")
    choose_metric(page, "params")
    drawn = chart(page, "tests/test_a.py::test_ok")
    width, blocks = drawn["width"], drawn["blocks"]
    # emb 60 and blocks 30 of the model's 100; head's 60 (emb's, tied) get the 10 left, marked
    assert near(blocks["emb"]["width"], 0.6 * width) and not blocks["emb"]["overflow"]
    assert near(blocks["blocks"]["left"], 0.6 * width) and near(blocks["blocks"]["width"], 0.3 * width)
    assert blocks["head"]["overflow"] and near(blocks["head"]["left"], 0.9 * width)
    assert near(blocks["head"]["width"], 0.1 * width)
    choose_metric(page, "flops")
    blocks = chart(page, "tests/test_a.py::test_ok")["blocks"]
    # flops: emb does none (not drawn), blocks 60 and head 30 of 90, nothing overflows
    assert "emb" not in blocks and not blocks["head"]["overflow"]
    assert near(blocks["head"]["width"], 30 / 90 * width)


def test_modules_below_the_baselines_depth_are_not_in_baseline_and_new_ones_are_new(page):
    open_section(page, "tests/test_b.py::test_deeper")
    blocks = chart(page, "tests/test_b.py::test_deeper")["blocks"]
    assert blocks["enc.0"]["status"] == "absent" and blocks["enc.0"]["color"] in GRAYS
    assert (blocks["extra"]["status"], blocks["extra"]["color"]) == ("new", NEW)
    assert blocks["enc"]["status"] == "same"
    # the model grew from 90 to 100 through a new module: not its own work
    assert blocks[""]["status"] == "grew-inside"
    assert "in the baseline, no longer measured: gone" in section(page, "tests/test_b.py::test_deeper").text


def test_hover_and_click_describe_a_module(page):
    from selenium.webdriver.common.action_chains import ActionChains

    target = page.execute_script("return document.querySelector('.chart .block[data-name=\"enc\"]')")
    ActionChains(page).move_to_element(target).perform()
    lines = page.execute_script("return [...document.getElementById('tooltip').children].map(d => d.textContent)")
    assert lines == ["enc (Encoder)", "flops: 600 FLOPs inclusive, 0 FLOPs own, 60.0% of the model",
                     "baseline: 400 FLOPs (+50.0%), grew inside (a module below it grew)"]
    target.click()
    # opened: enc fills the width, the model above it as a bar, and its numbers pinned below
    drawn = chart(page, "tests/test_a.py::test_grew")
    assert near(drawn["blocks"]["enc"]["width"], drawn["width"]) and near(drawn["blocks"]["enc.0"]["width"], drawn["width"] / 2)
    info = page.execute_script("""const info = document.querySelector('details[data-key="tests/test_a.py::test_grew"] .info');
        return [info.getAttribute('data-name'), [...info.querySelectorAll('tr')].map(tr => [...tr.cells].map(c => c.textContent))]""")
    assert info[0] == "enc"
    assert info[1][1] == ["FLOPs", "600 FLOPs", "0 FLOPs", "400 FLOPs", "+50.0%", "grew inside (a module below it grew)"]
    assert info[1][3] == ["params", "20", "0", "20", "=", "unchanged"]
    crumbs = page.execute_script("return document.querySelector('details[data-key=\"tests/test_a.py::test_grew\"] .crumbs').textContent")
    assert crumbs == "model \u203a enc"


def test_filter_and_sort_the_table(page):
    keys = "return [...document.querySelectorAll('#summary tbody tr')].filter(tr => !tr.classList.contains('hidden')).map(tr => tr.getAttribute('data-key'))"
    page.find_element("id", "filter").send_keys("regressed")
    assert page.execute_script(keys) == ["tests/test_a.py::test_grew"]
    page.find_element("id", "filter").clear()
    page.execute_script("document.getElementById('filter').dispatchEvent(new Event('input'))")
    page.execute_script("document.querySelectorAll('#summary th button')[1].click()")  # GFLOPs, ascending
    # by flops: 10, 90, 100, 1000; the test that measured nothing last
    assert page.execute_script(keys) == [XSS_KEY, "tests/test_a.py::test_ok", "tests/test_b.py::test_deeper",
                                         "tests/test_a.py::test_grew", "tests/test_c.py::test_unmeasured"]


def test_names_show_as_text_and_run_nothing(page):
    from selenium.webdriver.common.action_chains import ActionChains

    xss = section(page, XSS_KEY)
    block = page.execute_script("return arguments[0].querySelectorAll('.chart .block')[1]", xss)
    ActionChains(page).move_to_element(block).perform()  # the tooltip writes its name and class
    tooltip = page.execute_script("return document.getElementById('tooltip').firstChild.textContent")
    block.click()  # the chart is drawn again and the module described below it
    shown = page.execute_script("""const [xss, key] = arguments;
        return {xss: window.__xss === undefined ? null : window.__xss, images: document.images.length,
                title: document.title, scripts: document.scripts.length,
                key: xss.querySelector('summary .key').textContent,
                cell: document.querySelector(`#summary tr[data-key="${CSS.escape(key)}"] td`).textContent,
                names: [...xss.querySelectorAll('.chart .block')].map(b => b.getAttribute('data-name')),
                info: xss.querySelector('.info').firstChild.textContent,
                reason: xss.querySelector('.reasons li').textContent}""", xss, XSS_KEY)
    assert shown == {
        "xss": None, "images": 0, "title": "flop report <script>window.__xss=5</script>", "scripts": 2,
        "key": XSS_KEY, "cell": XSS_KEY, "names": ["", XSS_MODULE], "reason": XSS_REASON,
        "info": f"{XSS_MODULE} ({XSS_TYPE})",
    }
    assert tooltip == f"{XSS_MODULE} ({XSS_TYPE})"


def test_memory_is_a_metric_when_tracked(open_page, tmp_path):
    from pytest_flopbudget.reporting.html_model import HEADER, ModuleView, ReportView, TestView, TreeView, bytes_text

    # the root holds the whole peak (weights and inputs too); its modules what their code allocated
    tree = TreeView((ModuleView("", "Net", 100, 50, 10, 4096), ModuleView("a", "Linear", 60, 30, 6, 1024),
                     ModuleView("b", "Linear", 40, 20, 4, 3072)))
    test = TestView("t.py::test_m", ("t.py::test_m", "0.000000100", "0.0000000500", "10", bytes_text(4096), "-", "new", "new"),
                    ("new",), failing=False, open=True, flops=100, macs=50, params=10, peak_memory=4096, tree=tree)
    path = tmp_path / "memory.html"
    from pytest_flopbudget.reporting import html as html_report

    html_report.write(path, ReportView("memory", (test,), header=HEADER))
    page = open_page(path)
    header = page.execute_script("return [...document.querySelectorAll('#summary th')].map(th => th.textContent)")
    assert header[4] == "peak memory"
    assert page.execute_script("return document.querySelector('#summary tbody td:nth-child(5)').textContent") == "4 KiB"
    choose_metric(page, "memory")
    drawn = chart(page, "t.py::test_m")
    width, blocks = drawn["width"], drawn["blocks"]
    assert near(blocks["a"]["width"], width / 4) and near(blocks["b"]["left"], width / 4)
    assert near(blocks["b"]["width"], 3 * width / 4)
    info = page.execute_script("return [...document.querySelectorAll('.info tr')].map(tr => tr.cells[0].textContent)")
    assert info == ["metric", "FLOPs", "MACs", "params", "memory at the peak"]
    page.save_screenshot(str(tmp_path / "memory.png"))
