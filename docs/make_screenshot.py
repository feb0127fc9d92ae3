"""Regenerate docs/report.png, the README's picture of the HTML report.

Runs example_project with its deliberate regression (FLOPBUDGET_DEMO_REGRESSION=1 widens the GPT's
MLP), writes the report with ``--flop-report=...html``, opens it in headless Chromium, points at
the first grown MLP of the first regressed test, and saves the screenshot. Needs Debian's
``chromium`` and ``chromium-driver`` and selenium (the test extra)::

    python docs/make_screenshot.py            # writes docs/report.png
    python docs/make_screenshot.py --html out.html --png out.png

tests/reporting/test_html_example.py checks what this page shows (the grown MLP highlighted).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WINDOW = (1280, 1130)
# the module the screenshot points at: the first layer of the first block's MLP, which the demo widens
POINT_AT = "blocks.0.mlp.0"


def write_report(path: Path) -> subprocess.CompletedProcess[str]:
    """`FLOPBUDGET_DEMO_REGRESSION=1 pytest example_project --flop-report=PATH`, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FLOPBUDGET_"))}
    env["FLOPBUDGET_DEMO_REGRESSION"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "example_project", "-p", "no:cacheprovider", "-q", f"--flop-report={path}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    if not path.exists():
        raise RuntimeError(f"the example project wrote no report:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    return result


def start_browser(width: int = WINDOW[0], height: int = WINDOW[1]) -> Any:
    """Headless Debian chromium through its chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}", "--force-device-scale-factor=1", "--hide-scrollbars"):
        options.add_argument(argument)
    options.binary_location = str(shutil.which("chromium") or shutil.which("chromium-browser"))
    return webdriver.Chrome(service=Service(str(shutil.which("chromedriver"))), options=options)


def screenshot(driver: Any, html: Path, png: Path) -> None:
    """The table and the first regressed test's chart, the pointer on its grown MLP."""
    from selenium.webdriver.common.action_chains import ActionChains

    driver.get(html.resolve().as_uri())
    first = driver.execute_script("return document.querySelector('#tests > details[open]')")
    target = driver.execute_script(f"return arguments[0].querySelector('.block[data-name=\"{POINT_AT}\"]')", first)
    ActionChains(driver).move_to_element(target).perform()
    png.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(png))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, help="keep the report here (default: a temporary file)")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "report.png")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        html = args.html or Path(tmp) / "report.html"
        write_report(html)
        driver = start_browser()
        try:
            screenshot(driver, html, args.png)
        finally:
            driver.quit()
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
