"""``aiompc demo --web [--port P] [--server ws://HOST:PORT/PATH]``: start the browser demo and wait.

Prints the page's address (``http://127.0.0.1:P/``) and where the model server is, then serves until
interrupted (Ctrl-C).  Without ``--server`` the bundled digits model is served in-process.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import aiompc
from aiompc.errors import InputError
from aiompc.nn.modes import Mode, mode_named
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.web.app import WebDemo
from aiompc.nn.web.pixels import sample_digits
from aiompc.nn.web.reference import PlaintextReference
from aiompc.nn.zoo import DIGITS_ONNX, digits_data, digits_model
from aiompc.session import parse_url

__all__ = ["build_demo", "serve_web_demo", "run_web_demo", "DEFAULT_PORT"]

DEFAULT_PORT = 8021


def build_demo(server_url: str | None = None, mode: Mode | str = "quantized") -> WebDemo:
    """The demo app for the bundled digits model; ``server_url`` (``ws://`` or ``tcp://``) or ``None``
    for an in-process model server running ``mode``.  Raises :class:`InputError` for another kind of URL
    or a mode that does not run the quantized program (the page compares with that program)."""
    if server_url is not None and parse_url(server_url).scheme not in ("ws", "tcp"):
        raise InputError(f"--server takes a ws:// (or tcp://) URL, got {server_url!r}")
    mode = mode_named(mode)
    if mode.program != "quantized":
        raise InputError(f"the browser demo runs the quantized digits model; mode {mode.name!r} runs the "
                         f"{mode.program} program (use --mode quantized or cheetah-int)")
    data = digits_data()
    reference = PlaintextReference(load_onnx(DIGITS_ONNX), digits_model(data=data))
    return WebDemo(reference, sample_digits(data), server_url, mode=mode)


async def serve_web_demo(port: int, server_url: str | None, mode: Mode | str,
                         ready: Callable[[WebDemo], None]) -> None:
    """Start the demo on ``127.0.0.1:port``, call ``ready(demo)``, and serve until cancelled."""
    demo = build_demo(server_url, mode)
    async with demo:
        await demo.start(port)
        ready(demo)
        await asyncio.Event().wait()


def run_web_demo(port: int | None = None, server_url: str | None = None, mode: Mode | str = "quantized") -> int:
    """The command: print the address, serve until interrupted (``port`` ``None``: :data:`DEFAULT_PORT`)."""

    def ready(demo: WebDemo) -> None:
        where = f"a model server in this process at {demo.server_url}" if demo.local_server else \
            f"the model server at {demo.server_url}"
        print(f"aiompc demo --web: open {demo.url} in a browser (client party here, {where}); Ctrl-C to stop",
              flush=True)

    aiompc.run(serve_web_demo(DEFAULT_PORT if port is None else port, server_url, mode, ready))
    return 0
