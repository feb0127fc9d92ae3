"""The HTML report: one self-contained page, readable offline as a CI artifact.

The page is a fixed skeleton, its stylesheet and script (html_page.css, html_page.js, next to this
module) and the report's data inlined as JSON; the script builds the table and, when a test is
opened, its chart. Names in the data (test ids, module and class names, messages) never become
markup: the JSON is escaped for a script element, the script writes text nodes only, and the
page's Content-Security-Policy runs no script but its own and fetches nothing.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_flopbudget.reporting.html_model import ReportView, TestView

# characters that end or confuse a <script> element's text, or a JavaScript string, escaped as JSON
# escapes (JSON.parse reads them back unchanged)
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                                  "\u2029": "\\u2029"})
DATA_ID = "flopbudget-data"


@lru_cache(maxsize=None)
def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def script_json(data: Any) -> str:
    """JSON safe to inline in a <script> element: no '</script>', '<!--', U+2028/2029 or '&' left."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_SCRIPT_ESCAPES)


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def _test_data(test: TestView) -> dict[str, Any]:
    """A test's data for the page; the baseline's modules are written as their differences from
    the measured ones (most are equal), which halves a large suite's page."""
    data = test.to_dict()
    tree = data["tree"]
    if tree is not None and tree["baseline"] is not None:
        measured = {row[0]: row for row in tree["modules"]}
        baseline = {row[0]: row for row in tree["baseline"]}
        tree["baseline"] = {
            "differs": [row for name, row in baseline.items() if measured.get(name) != row],
            "absent": [name for name in measured if name not in baseline],
        }
    return data


def page_data(view: ReportView) -> dict[str, Any]:
    """The JSON the page's script reads."""
    data = {**view.to_dict(tests=False), "tests": [_test_data(t) for t in view.tests]}
    return data


def render(view: ReportView) -> str:
    """The page as one string."""
    style, script = _asset("html_page.css"), _asset("html_page.js")
    policy = (f"default-src 'none'; style-src '{_sha256(style)}'; script-src '{_sha256(script)}'; "
              "img-src data:; base-uri 'none'; form-action 'none'")
    title = html.escape(view.title)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{html.escape(policy)}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{title}</title>\n<style>{style}</style>\n</head>\n<body>\n"
        "<noscript>This report draws its table and charts with JavaScript; the data is in the page's "
        "flopbudget-data element.</noscript>\n"
        f"<main id=\"report\"></main>\n"
        f"<script type=\"application/json\" id=\"{DATA_ID}\">{script_json(page_data(view))}</script>\n"
        f"<script>{script}</script>\n</body>\n</html>\n"
    )


def write(path: Path, view: ReportView) -> None:
    """Write the page (replacing any file there), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(view), encoding="utf-8")


__all__ = ["page_data", "render", "script_json", "write"]
