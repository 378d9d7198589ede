"""The web demo's app without a browser: its HTTP answers and its events over a real WebSocket on 127.0.0.1.

The browser test (``test_web.py``) drives the page; this one checks the events themselves: every layer
reported in order with bytes from the channel statistics, the secure prediction against the plaintext
integer program computed here independently, and every error case of the issue.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from aiompc.errors import InputError
from aiompc.nn.interpret import run_int
from aiompc.nn.node_protocols import protocol_of
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.web.app import WebDemo
from aiompc.nn.web.command import build_demo
from aiompc.nn.web.pixels import parse_pixels, sample_digits
from aiompc.nn.web.reference import PlaintextReference
from aiompc.nn.zoo import DIGITS_ONNX, DigitsData, digits_data, digits_model
from web_helpers import closed_port_url, dying_server


@pytest.fixture(scope="module")
def data() -> DigitsData:
    return digits_data()


@pytest.fixture(scope="module")
def reference(data: DigitsData) -> PlaintextReference:
    return PlaintextReference(load_onnx(DIGITS_ONNX), digits_model(data=data))


def make_demo(reference: PlaintextReference, data: DigitsData, server_url: str | None = None) -> WebDemo:
    return WebDemo(reference, sample_digits(data), server_url)


async def events_until(ws: ClientConnection, *types: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Events received until (and including) the first one whose type is in ``types``."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not out or out[-1]["type"] not in types:
            out.append(json.loads(await ws.recv()))
    return out


def events_url(demo: WebDemo) -> str:
    return f"ws://127.0.0.1:{demo.port}/events"


# ------------------------------------------------------------------ pixels


def test_parse_pixels_accepts_64_values_or_8_rows_in_0_1(data: DigitsData) -> None:
    x = data.x_test[5]
    assert np.array_equal(parse_pixels(x.reshape(-1).tolist()), x[None])
    assert np.array_equal(parse_pixels(x.reshape(8, 8).tolist()), x[None])


@pytest.mark.parametrize("bad, words", [
    ([0.0] * 64, "empty"), ([0.5] * 63, "64 pixel values"), ("pixels", "64 pixel values"),
    ([0.5] * 63 + [1.5], "[0, 1]"), ([0.5] * 63 + [-0.1], "[0, 1]"), ([0.5] * 63 + [float("nan")], "finite"),
    ([0.5] * 63 + [True], "finite"), ([0.5] * 63 + ["1"], "finite"), (None, "64 pixel values"),
])
def test_parse_pixels_rejects_bad_input_with_an_input_error(bad: Any, words: str) -> None:
    with pytest.raises(InputError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_pixels(bad)


def test_samples_are_one_test_image_per_class(data: DigitsData) -> None:
    samples = sample_digits(data)
    assert [s["label"] for s in samples] == list(range(10))
    for s in samples:
        assert data.y_test[s["index"]] == s["label"]
        assert np.array_equal(np.asarray(s["pixels"]), data.x_test[s["index"]].reshape(-1))


def test_the_command_takes_only_ws_or_tcp_model_servers() -> None:
    with pytest.raises(InputError, match="ws://"):
        build_demo("tls://127.0.0.1:9/x")
    with pytest.raises(InputError, match="scheme"):
        build_demo("http://127.0.0.1:9/")
    with pytest.raises(InputError, match="quantized program|fixed-point"):
        build_demo(None, "cheetah")


# ------------------------------------------------------------------ HTTP


async def test_the_page_is_served_over_plain_http(reference: PlaintextReference, data: DigitsData) -> None:
    async with make_demo(reference, data) as demo:
        await demo.start()

        def get(path: str) -> tuple[int, str, str]:
            try:
                with urllib.request.urlopen(demo.url.rstrip("/") + path, timeout=10) as r:
                    return r.status, r.headers["Content-Type"], r.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, "", ""

        status, ctype, body = await asyncio.to_thread(get, "/")
        assert status == 200 and ctype.startswith("text/html") and 'id="canvas"' in body and "/app.js" in body
        status, ctype, body = await asyncio.to_thread(get, "/app.js")
        assert status == 200 and ctype.startswith("text/javascript") and "/events" in body
        status, ctype, _ = await asyncio.to_thread(get, "/style.css")
        assert status == 200 and ctype.startswith("text/css")
        assert (await asyncio.to_thread(get, "/nope"))[0] == 404


async def test_only_the_apps_own_page_may_open_the_events_socket(reference: PlaintextReference, data: DigitsData) -> None:
    async with make_demo(reference, data) as demo:
        await demo.start()
        with pytest.raises(InvalidStatus) as refused:
            async with connect(events_url(demo), origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        async with connect(events_url(demo), origin=f"http://127.0.0.1:{demo.port}") as ws:  # type: ignore[arg-type]
            assert (await events_until(ws, "hello"))[0]["type"] == "hello"


# ------------------------------------------------------------------ inference


async def test_a_sample_is_classified_privately_with_every_layer_reported(
    reference: PlaintextReference, data: DigitsData,
) -> None:
    graph = reference.graph
    async with make_demo(reference, data) as demo:
        await demo.start()
        assert demo.local_server and demo.server_url.startswith("ws://127.0.0.1:")
        async with connect(events_url(demo)) as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello" and hello["local_server"] is True
            sample = hello["samples"][3]
            await ws.send(json.dumps({"type": "classify", "pixels": sample["pixels"]}))
            evs = await events_until(ws, "result", "error")
    started, layers, result = evs[0], evs[1:-1], evs[-1]
    assert result["type"] == "result", result
    names = [n.name for n in graph.nodes] + ["output"]
    assert started["type"] == "started" and [s["name"] for s in started["steps"]] == names
    assert [ev["name"] for ev in layers] == names and [ev["index"] for ev in layers] == list(range(len(names)))
    assert all(ev["count"] == len(names) for ev in layers)
    kinds = [protocol_of(n).kind for n in graph.nodes] + ["reveal"]  # the engine's one table
    assert [s["kind"] for s in started["steps"]] == [ev["kind"] for ev in layers] == kinds
    assert [ev["protocol"] for ev in layers][:2] == ["HE conv", "OT requantize"]
    # the plaintext integer program, computed here from the pixels the app says it classified
    x = np.asarray(result["pixels"], dtype=np.float64).reshape(1, 1, 8, 8)
    assert np.array_equal(x.reshape(-1), data.x_test[sample["index"]].reshape(-1))
    xq = graph.quantize_input(x)
    ref = run_int(graph, xq).reshape(-1)
    assert result["input_int"] == xq.reshape(-1).tolist()
    assert result["prediction"] == int(np.argmax(ref)) == sample["label"]
    assert np.allclose(result["logits"], graph.dequantize_output(ref[None]).reshape(-1))
    assert result["plaintext"]["bit_exact"] is True and result["plaintext"]["int_logits"] == ref.tolist()
    assert abs(sum(result["probabilities"]) - 1) < 1e-9 and abs(sum(result["plaintext"]["probabilities"]) - 1) < 1e-9
    # bytes come from the channel: HE layers move ciphertexts both ways, local ones nothing, totals only grow
    by_op = {ev["name"]: ev for ev in layers}
    for node in graph.nodes:
        ev = by_op[node.name]
        moved = ev["bytes_c2s"] + ev["bytes_s2c"]
        assert (moved == 0) if node.op == "flatten" else (ev["bytes_c2s"] > 0 and ev["bytes_s2c"] > 0), ev
    totals = [ev["total"]["bytes_c2s"] + ev["total"]["bytes_s2c"] for ev in layers]
    assert totals == sorted(totals)
    saw = result["server_saw"]
    assert saw["bytes_received"] == layers[-1]["total"]["bytes_c2s"]
    assert saw["bytes_sent"] == layers[-1]["total"]["bytes_s2c"]
    per_layer = sum(ev["bytes_c2s"] + ev["bytes_s2c"] for ev in layers)
    last = layers[-1]["total"]
    assert per_layer + last["offline_bytes"] + last["setup_bytes"] == saw["bytes_received"] + saw["bytes_sent"]
    assert last["offline_bytes"] > 0 and last["setup_bytes"] > 0
    assert saw["samples"] == 1 and saw["seconds"] > 0 and saw["rounds"] > 0


async def test_bad_input_gets_a_clear_error_and_the_app_keeps_serving(
    reference: PlaintextReference, data: DigitsData,
) -> None:
    async with make_demo(reference, data) as demo:
        await demo.start()
        async with connect(events_url(demo)) as ws:
            await events_until(ws, "hello")
            await ws.send(json.dumps({"type": "classify", "pixels": [0] * 64}))
            (err,) = await events_until(ws, "error")
            assert err["kind"] == "input" and "empty" in err["message"]
            await ws.send(json.dumps({"type": "classify", "pixels": [0.5] * 10}))
            (err,) = await events_until(ws, "error")
            assert err["kind"] == "input" and "64" in err["message"]
            await ws.send("not json")
            (err,) = await events_until(ws, "error")
            assert err["kind"] == "input" and "JSON" in err["message"]
            await ws.send(json.dumps({"type": "classify", "pixels": data.x_test[0].reshape(-1).tolist()}))
            evs = await events_until(ws, "result", "error")
            assert evs[-1]["type"] == "result"


async def test_a_second_request_while_one_runs_is_refused(reference: PlaintextReference, data: DigitsData) -> None:
    async with make_demo(reference, data) as demo:
        await demo.start()
        async with connect(events_url(demo)) as ws:
            await events_until(ws, "hello")
            request = json.dumps({"type": "classify", "pixels": data.x_test[1].reshape(-1).tolist()})
            await ws.send(request)
            await ws.send(request)
            evs = await events_until(ws, "result")
    errors = [ev for ev in evs if ev["type"] == "error"]
    assert len(errors) == 1 and errors[0]["kind"] == "busy" and "already running" in errors[0]["message"]
    assert sum(ev["type"] == "started" for ev in evs) == 1


async def test_an_unreachable_server_is_reported(reference: PlaintextReference, data: DigitsData) -> None:
    url = closed_port_url()
    async with make_demo(reference, data, url) as demo:
        await demo.start()
        assert not demo.local_server
        async with connect(events_url(demo)) as ws:
            hello = await events_until(ws, "hello")
            assert hello[0]["server"] == url
            await ws.send(json.dumps({"type": "classify", "pixels": data.x_test[2].reshape(-1).tolist()}))
            (err,) = await events_until(ws, "error")
    assert err["kind"] == "unreachable" and url in err["message"]


async def test_a_server_dying_mid_inference_is_reported(reference: PlaintextReference, data: DigitsData) -> None:
    server = await dying_server(reference.graph)
    async with server, make_demo(reference, data, server.url) as demo:
        await demo.start()
        async with connect(events_url(demo)) as ws:
            await events_until(ws, "hello")
            await ws.send(json.dumps({"type": "classify", "pixels": data.x_test[2].reshape(-1).tolist()}))
            evs = await events_until(ws, "error", "result")
    err = evs[-1]
    assert err["type"] == "error" and err["kind"] == "server-died", err
    first = reference.graph.nodes[0].name
    assert [ev["name"] for ev in evs if ev["type"] == "layer"] == [first]
    assert reference.graph.nodes[1].name in err["message"] and "closed the connection" in err["message"]


# ------------------------------------------------------------------ the command


def test_the_command_serves_the_page_until_interrupted() -> None:
    """``aiompc demo --web --port 0`` prints the page's address, serves it, and exits 130 on Ctrl-C."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "aiompc.cli", "demo", "--web", "--port", "0"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        url = next(w for w in line.split() if w.startswith("http://127.0.0.1:"))
        assert "a model server in this process at ws://127.0.0.1:" in line
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and 'id="classify"' in r.read().decode()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_port_and_server_without_web_are_refused() -> None:
    proc = subprocess.run([sys.executable, "-m", "aiompc.cli", "demo", "--server", "ws://127.0.0.1:9/aiompc"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "InputError" in proc.stderr and "--web" in proc.stderr
