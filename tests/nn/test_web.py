"""The browser demo in a real browser: headless Chromium opens the page of ``aiompc demo --web``, picks a
sample or draws a digit on the canvas, clicks "Classify privately", and the prediction must equal the
plaintext model's prediction for the exact pixels the page sent (computed here with
:mod:`aiompc.nn.interpret`); the progress view must have listed every layer.

Chromium is Debian's ``chromium`` (``.ci/run`` installs it), driven by Playwright (the ``test`` extras).
Without a browser the tests are skipped with the reason, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from aiompc.nn.interpret import predict
from aiompc.nn.ir import QGraph
from aiompc.nn.zoo import digits_data, digits_model
from web_helpers import LoopThread, closed_port_url, dying_server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
RESULT_TIMEOUT_MS = 120_000

# A hand-drawn 7 and 4 as strokes in canvas fractions (x, y): top bar, then the diagonal / an open 4.
SEVEN = [[(0.25, 0.18), (0.75, 0.18), (0.42, 0.85)]]
FOUR = [[(0.6, 0.85), (0.6, 0.15), (0.22, 0.6), (0.78, 0.6)]]


def _no_browser(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; in CI the browser test must run (.ci/run installs chromium and the test extras)")
    pytest.skip(f"{reason} (apt-get install -y chromium chromium-driver; pip install -e '.[test]')")


def chromium_path() -> str:
    """Debian's Chromium, or skip (fail in CI)."""
    for candidate in (os.environ.get("AIOMPC_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    _no_browser("no Chromium executable found")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium driven by Playwright (a fresh profile: Playwright makes one per launch)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("the Python package playwright is not installed")
    path = chromium_path()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def graph() -> QGraph:
    return digits_model()


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    """``aiompc demo --web --port 0`` as a user starts it (its own process, a model server in-process)."""
    err = tempfile.TemporaryFile("w+")  # never a pipe nobody reads: a full pipe would stall the app
    proc = subprocess.Popen([sys.executable, "-m", "aiompc.cli", "demo", "--web", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=err, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        try:
            line = lines.get(timeout=120)
        except queue.Empty:
            pytest.fail("aiompc demo --web printed nothing in 120 s")
        words = [w for w in line.split() if w.startswith("http://127.0.0.1:")]
        if not words:
            err.seek(0)
            pytest.fail(f"no page address in {line!r}; stderr: {err.read()}")
        yield words[0]
    finally:
        proc.terminate()
        proc.wait(30)
        err.close()


def open_page(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1600, "height": 950})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    return page


def draw(page: Any, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw ``strokes`` on the canvas with the mouse (press, move in small steps, release)."""
    box = page.locator("#canvas").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + u * box["width"], box["y"] + v * box["height"]) for u, v in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for p in points[1:]:
            page.mouse.move(*p, steps=10)
        page.mouse.up()


def wait_for_outcome(page: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    page.wait_for_function("window.aiompcDemo.lastResult !== null || window.aiompcDemo.lastError !== null",
                           timeout=RESULT_TIMEOUT_MS)
    return page.evaluate("window.aiompcDemo.lastResult"), page.evaluate("window.aiompcDemo.lastError")


def check_secure_equals_plaintext(page: Any, graph: QGraph) -> tuple[np.ndarray, int]:
    """The prediction the page shows equals the plaintext prediction of the pixels it sent; every layer was
    listed and completed.  Returns the pixels and the prediction."""
    result, error = wait_for_outcome(page)
    assert error is None and result is not None, error
    sent = page.evaluate("window.aiompcDemo.lastSent")
    shown = json.loads(page.get_attribute("#result", "data-pixels"))
    assert sent == shown == result["pixels"], "the app classified other pixels than the page sent"
    x = np.asarray(sent, dtype=np.float64).reshape(1, 1, 8, 8)
    expected = int(predict(graph, x)[0])  # the plaintext integer program, computed here
    assert int(page.inner_text("#prediction")) == expected == result["prediction"]
    assert int(page.get_attribute("#result", "data-prediction")) == expected
    rows = page.locator("#layers tbody tr")
    names = [n.name for n in graph.nodes] + ["output"]
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.name)") == names
    assert rows.evaluate_all("rs => rs.map(r => r.className)") == ["done"] * len(names)
    assert page.inner_text("#progress-text").startswith(f"done: {len(names)} / {len(names)} steps")
    assert "never your pixels" in page.inner_text("#server-saw")
    assert page.js_errors == []
    return x, expected


def test_a_sample_digit_is_classified_privately_in_the_browser(browser: Any, demo_url: str, graph: QGraph) -> None:
    page = open_page(browser, demo_url)
    page.click("#classify")  # empty canvas
    assert "canvas is empty" in page.inner_text("#message")
    page.click(".sample[data-label='3']")
    page.click("#classify")
    page.click("#classify")  # a second click while the first runs
    assert "already running" in page.inner_text("#message")
    x, prediction = check_secure_equals_plaintext(page, graph)
    data = digits_data()
    index = int(page.get_attribute(".sample[data-label='3']", "title").split("#")[1].split(",")[0])
    assert np.array_equal(x.reshape(-1), data.x_test[index].reshape(-1)) and data.y_test[index] == 3
    assert prediction == 3
    assert page.evaluate("window.aiompcDemo.lastResult.plaintext.bit_exact") is True
    page.close()


def test_a_digit_drawn_on_the_canvas_is_classified_privately(
    browser: Any, demo_url: str, graph: QGraph, tmp_path: Path,
) -> None:
    page = open_page(browser, demo_url)
    predictions = []
    for strokes in (SEVEN, FOUR):
        page.click("#clear")
        draw(page, strokes)
        preview = page.evaluate("window.aiompcDemo.pixels")
        assert preview and any(preview) and all(round(v * 16) == v * 16 for v in preview)  # 0..16 ink per cell
        page.click("#classify")
        _, prediction = check_secure_equals_plaintext(page, graph)
        predictions.append(prediction)
    assert predictions == [7, 4]  # the downsampling gives the model what it was trained on
    page.screenshot(path=str(tmp_path / "web_demo.png"), full_page=True)
    page.close()


def test_an_unreachable_or_dying_model_server_is_reported_in_the_page(browser: Any, graph: QGraph) -> None:
    from aiompc.nn.web.command import build_demo

    loop = LoopThread()
    try:
        server = loop.run(dying_server(graph))
        for url, words in ((closed_port_url(), "Model server unreachable"), (server.url, "The model server went away")):
            demo = build_demo(url)
            loop.run(demo.start())
            try:
                page = open_page(browser, demo.url)
                page.click(".sample[data-label='5']")
                page.click("#classify")
                result, error = wait_for_outcome(page)
                assert result is None and error is not None
                message = page.inner_text("#message")
                assert message.startswith(words) and url in message, message
                assert page.get_attribute("#message", "data-kind") == "error"
                page.close()
            finally:
                loop.run(demo.close())
        loop.run(server.close())
    finally:
        loop.close()


def test_the_screenshot_example_runs(browser: Any, tmp_path: Path) -> None:
    """``examples/web_demo_screenshot.py`` (which took the README's picture) still draws, classifies and saves."""
    out = tmp_path / "shot.png"
    proc = subprocess.run([sys.executable, "examples/web_demo_screenshot.py", "--out", str(out), "--chromium",
                           chromium_path()], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("prediction 7;") and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
