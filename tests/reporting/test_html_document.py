"""The HTML report as a document: self-contained, its data escaped for a script element and read
back unchanged, the view model built from a real measurement; no browser needed."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import pytest
from html_views import XSS_KEY, XSS_MODULE, XSS_REASON, XSS_TYPE, sample_view

from pytest_flopbudget.reporting import html as html_report
from pytest_flopbudget.reporting.html_model import bytes_text, tree_of_measurement, view_of_measurement


class Elements(HTMLParser):
    """Every start tag with its attributes, and each script element's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._script: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._text)))
            self._script = None


def parse(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def page() -> str:
    return html_report.render(sample_view())


def test_the_data_reads_back_unchanged_from_its_script_element(page):
    parsed = parse(page)
    data = [text for attrs, text in parsed.scripts if attrs.get("type") == "application/json"]
    assert len(data) == 1
    # an HTML parser ends a script element at the first "</script": the data must be whole here
    assert json.loads(data[0]) == json.loads(json.dumps(html_report.page_data(sample_view())))
    tests = json.loads(data[0])["tests"]
    assert tests[3]["key"] == XSS_KEY
    assert tests[3]["reasons"] == [XSS_REASON]
    assert tests[3]["tree"]["modules"][1][:2] == [XSS_MODULE, XSS_TYPE]


def test_names_never_reach_the_markup(page):
    parsed = parse(page)
    # two script elements (the data and the page's own code), no other element a name could add
    assert [attrs.get("type") for attrs, _ in parsed.scripts] == ["application/json", None]
    assert not any(tag in ("img", "b", "iframe", "object", "embed") for tag, _ in parsed.tags)
    assert not any(name.startswith("on") for _, attrs in parsed.tags for name in attrs)
    data = next(text for attrs, text in parsed.scripts if attrs.get("type") == "application/json")
    for raw in ("<img", "<b ", "</script", "<!--", "&", "\u2028", "\u2029"):
        assert raw not in data
    assert "<img" not in page and "<b " not in page
    # the title is escaped text
    assert "<title>flop report &lt;script&gt;window.__xss=5&lt;/script&gt;</title>" in page


def test_script_json_escapes_what_ends_or_breaks_a_script():
    text = html_report.script_json({"a": "</script><!--&\u2028\u2029>"})
    assert text == '{"a":"\\u003c/script\\u003e\\u003c!--\\u0026\\u2028\\u2029\\u003e"}'
    assert json.loads(text) == {"a": "</script><!--&\u2028\u2029>"}
    with pytest.raises(ValueError):  # JSON has no infinity: the model never puts one there
        html_report.script_json({"a": float("inf")})


def test_the_page_is_self_contained_and_runs_only_its_own_script(page):
    parsed = parse(page)
    # nothing fetched: no element with a source or a link to load
    assert not any(attrs.get("src") or (tag == "link") for tag, attrs in parsed.tags)
    assert not re.search(r"https?://", page)
    policy = next(attrs["content"] for tag, attrs in parsed.tags if attrs.get("http-equiv") == "Content-Security-Policy")
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    # the policy allows exactly the page's own script and stylesheet, by their hashes
    script = next(text for attrs, text in parsed.scripts if attrs.get("type") is None)
    style = page[page.index("<style>") + 7:page.index("</style>")]
    digest = lambda text: "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"  # noqa: E731
    assert directives["script-src"] == digest(script)
    assert directives["style-src"] == digest(style)


def test_the_baseline_is_written_as_its_differences_and_reads_back_whole():
    view = sample_view()
    for test, data in zip(view.tests, html_report.page_data(view)["tests"]):
        if test.tree is None or test.tree.baseline is None:
            continue
        encoded = data["tree"]["baseline"]
        measured = [m.to_list() for m in test.tree.modules]
        # what the page's script does: the measured rows not absent, then the rows that differ
        rebuilt = {row[0]: row for row in measured if row[0] not in encoded["absent"]}
        rebuilt.update({row[0]: row for row in encoded["differs"]})
        assert rebuilt == {m.name: m.to_list() for m in test.tree.baseline}
    grew = html_report.page_data(view)["tests"][0]["tree"]["baseline"]
    # of five modules, three changed (the root, enc, enc.0); none is absent from the baseline
    assert [row[0] for row in grew["differs"]] == ["", "enc", "enc.0"] and grew["absent"] == []


def test_bytes_read_in_powers_of_1024():
    assert [bytes_text(n) for n in (None, 0, 512, 1536, 3 * 2**20 + 2**19, 13 * 2**30)] == [
        "-", "0 B", "512 B", "1.5 KiB", "3.5 MiB", "13 GiB"]


def test_a_measurement_becomes_a_tree_in_module_order_with_its_own_numbers():
    torch = pytest.importorskip("torch")
    import pytest_flopbudget as fb

    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Sequential(torch.nn.Linear(4, 2)))
    measured = fb.measure(model, torch.zeros(3, 8))
    rows = tree_of_measurement(measured)
    assert [r.name for r in rows] == ["", "0", "1", "2", "2.0"]
    # Linear(8, 4) on 3 rows: 3*4 dot products of length 8 (8 multiplies, 7 adds) + 3*4 bias adds;
    # MACs as ptflops counts them: 8 per dot product and 1 per bias
    assert (rows[1].type, rows[1].flops, rows[1].macs, rows[1].params) == ("Linear", 3 * 4 * 16, 3 * 4 * 9, 8 * 4 + 4)
    assert (rows[4].flops, rows[4].params) == (3 * 2 * 8, 4 * 2 + 2)
    # the root: both linears and the ReLU (one per element)
    assert (rows[0].type, rows[0].flops, rows[0].params) == ("Sequential", 3 * 4 * 16 + 3 * 4 + 3 * 2 * 8, 46)
    view = view_of_measurement("pkg:model", measured)
    assert view.tests[0].open and view.tests[0].tree is not None and view.tests[0].tree.baseline is None
    assert view.tests[0].cells[:2] == ("pkg:model", "0.000000252") and view.tests[0].cells[3] == "46"


def test_write_replaces_the_file_and_makes_its_folder(tmp_path):
    path = tmp_path / "out" / "report.html"
    path.parent.mkdir()
    path.write_text("old")
    html_report.write(path, sample_view())
    assert path.read_text(encoding="utf-8") == html_report.render(sample_view())
