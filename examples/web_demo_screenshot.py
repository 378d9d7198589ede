"""Take the README's screenshot of ``aiompc demo --web``: start the demo, draw a 7 on the canvas in headless
Chromium, classify it privately, and save the page as a PNG (default ``examples/web_demo.png``).

Needs Debian's Chromium (``apt-get install chromium``) and Playwright (``pip install -e '.[test]'``)::

    python examples/web_demo_screenshot.py [--out examples/web_demo.png] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SEVEN = [(0.25, 0.18), (0.75, 0.18), (0.42, 0.85)]  # canvas fractions: the top bar, then the diagonal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "web_demo.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    demo = subprocess.Popen([sys.executable, "-m", "aiompc.cli", "demo", "--web", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = demo.stdout.readline()  # type: ignore[union-attr]
        url = next(w for w in line.split() if w.startswith("http://"))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]")
            box = page.locator("#canvas").bounding_box()
            points = [(box["x"] + u * box["width"], box["y"] + v * box["height"]) for u, v in SEVEN]
            page.mouse.move(*points[0])
            page.mouse.down()
            for p in points[1:]:
                page.mouse.move(*p, steps=10)
            page.mouse.up()
            page.click("#classify")
            page.wait_for_function("window.aiompcDemo.lastResult !== null || window.aiompcDemo.lastError !== null",
                                   timeout=120_000)
            page.screenshot(path=str(args.out), full_page=True)
            print(f"prediction {page.inner_text('#prediction')}; screenshot written to {args.out}")
            browser.close()
    finally:
        demo.terminate()
        demo.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
