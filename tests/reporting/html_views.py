"""Report views written out by hand for the HTML tests: small trees whose widths, colors and
statuses can be worked out on paper, and names that try to become markup."""

from __future__ import annotations

from pytest_flopbudget.reporting.html_model import HEADER, ModuleView, ReportView, TestView, TreeView

M = ModuleView
# test ids and names that would run code if the page ever parsed them as markup
XSS_KEY = 'tests/test_x.py::test_x[<img src=x onerror="window.__xss=1">]'
XSS_MODULE = "</script><script>window.__xss=2</script>"
XSS_TYPE = '<img src=x onerror="window.__xss=3">'
XSS_REASON = "grew: <b onmouseover=window.__xss=4>bold</b> & \u2028line\u2029 <!-- -->"

# one regressed test: enc.0 grew (a leaf of the baseline: its own work), enc grew only through it,
# enc.1 and head are unchanged; params differ from flops so that the metric switch moves widths
GREW = TreeView(
    modules=(M("", "Net", 1000, 500, 100), M("enc", "Encoder", 600, 300, 20), M("enc.0", "Linear", 300, 150, 10),
             M("enc.1", "Linear", 300, 150, 10), M("head", "Linear", 400, 200, 80)),
    baseline=(M("", "Net", 800, 400, 100), M("enc", "Encoder", 400, 200, 20), M("enc.0", "Linear", 100, 50, 10),
              M("enc.1", "Linear", 300, 150, 10), M("head", "Linear", 400, 200, 80)),
    baseline_depth=2,
)
# tied weights: head shares emb's 60 parameters, so the children's params (60 + 30 + 60) exceed
# the model's 100 unique ones; head is drawn in the 10 that are left, marked as overflowing
SHARED = TreeView(
    modules=(M("", "LM", 90, 45, 100), M("emb", "Embedding", 0, 0, 60), M("blocks", "Sequential", 60, 30, 30),
             M("head", "Linear", 30, 15, 60)),
    baseline=(M("", "LM", 90, 45, 100), M("emb", "Embedding", 0, 0, 60), M("blocks", "Sequential", 60, 30, 30),
              M("head", "Linear", 30, 15, 60)),
    baseline_depth=1,
)
# the baseline records one level: enc.0 (depth 2) is below it, extra (depth 1) is new, gone was removed
DEEPER = TreeView(
    modules=(M("", "Net", 100, 50, 10), M("enc", "Encoder", 70, 35, 5), M("enc.0", "Linear", 70, 35, 5),
             M("extra", "Linear", 30, 15, 5)),
    baseline=(M("", "Net", 90, 45, 10), M("enc", "Encoder", 70, 35, 5), M("gone", "ReLU", 20, 20, 0)),
    baseline_depth=1,
)
XSS = TreeView(modules=(M("", XSS_TYPE, 10, 5, 2), M(XSS_MODULE, XSS_TYPE, 10, 5, 2)))


def cells(key: str, gflops: str, verdict: str, change: str = "=") -> tuple[str, ...]:
    return (key, gflops, gflops, "100", "-", "50.0%", change, verdict)


def sample_view() -> ReportView:
    tests = (
        TestView("tests/test_a.py::test_grew", cells("tests/test_a.py::test_grew", "0.00000100", "REGRESSED", "+25.0% flops"),
                 ("regressed",), failing=True, open=True, flops=1000, macs=500, params=100, budget_used=0.5,
                 reasons=("flops regressed: 1,000 vs baseline 800 (+25.0%)",), tree=GREW),
        TestView("tests/test_a.py::test_ok", cells("tests/test_a.py::test_ok", "0.0000000900", "ok"), ("ok",), failing=False,
                 open=False, flops=90, macs=45, params=100, budget_used=0.9, tree=SHARED),
        TestView("tests/test_b.py::test_deeper", cells("tests/test_b.py::test_deeper", "0.000000100", "improved", "+11.1% flops"),
                 ("improved",), failing=False, open=False, flops=100, macs=50, params=10, budget_used=0.2, tree=DEEPER),
        TestView(XSS_KEY, cells(XSS_KEY, "0.0000000100", "OVER BUDGET", "new"), ("over budget",), failing=True, open=True,
                 flops=10, macs=5, params=2, budget_used=2.0, reasons=(XSS_REASON,), tree=XSS),
        TestView("tests/test_c.py::test_unmeasured", ("tests/test_c.py::test_unmeasured", "-", "-", "-", "-", "-", "-",
                                                      "UNMEASURED"), ("unmeasured",), failing=True, open=False),
    )
    return ReportView("flop report <script>window.__xss=5</script>", tests, ("device meta",),
                      "flopbudget: 1 ok, 1 over budget, 1 regressed, 1 improved",
                      ("accept these changes: pytest --flop-update-baseline",), ("tests/test_gone.py::test_old",), HEADER)


def page_json(page: str) -> dict:
    """The data a written page carries, read back as the page's script reads it."""
    import json

    start = page.index('<script type="application/json" id="flopbudget-data">')
    start = page.index(">", start) + 1
    return json.loads(page[start:page.index("</script>", start)])


def baseline_rows(tree: dict) -> dict[str, list]:
    """A page's baseline modules, rebuilt from the measured ones and the differences, as the page does."""
    encoded = tree["baseline"]
    rows = {row[0]: row for row in tree["modules"] if row[0] not in encoded["absent"]}
    rows.update({row[0]: row for row in encoded["differs"]})
    return rows
