"""The local web app of ``aiompc demo --web``: the page over HTTP and its events over a WebSocket.

One ``websockets`` server on ``127.0.0.1`` answers plain HTTP ``GET`` requests for the static page
(``/``, ``/app.js``, ``/style.css``, the package data ``aiompc/nn/web/static/``) in its ``process_request`` hook and
upgrades ``/events`` to a WebSocket.  On ``/events`` the page sends ``{"type": "classify", "pixels":
[64 numbers]}`` and receives the events of :mod:`aiompc.nn.web.events`.  One inference runs at a time:
a request while one runs gets a ``busy`` error.

The app is the client party; the model server is ``server_url`` (a ``ws://`` URL) or, when none is
given, a server started in-process on ``ws://127.0.0.1:<free port>/aiompc`` serving the bundled digits
model.  Neither the pixels nor the logits are ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
from importlib import resources
from typing import Any

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from aiompc.errors import InputError, TransportError
from aiompc.nn.modes import Mode
from aiompc.nn.service import serve as serve_model
from aiompc.nn.web import events
from aiompc.nn.web.inference import Progress, classify
from aiompc.nn.web.pixels import parse_pixels
from aiompc.nn.web.reference import PlaintextReference
from aiompc.session import Server as ModelServer

__all__ = ["WebDemo", "STATIC_FILES", "EVENTS_PATH", "MAX_EVENT_SIZE"]

log = logging.getLogger("aiompc.nn.web")

EVENTS_PATH = "/events"
MAX_EVENT_SIZE = 64 * 1024
"""The largest message the page may send (a classify request is about 1 KiB)."""
STATIC_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
"""URL path -> (file in ``aiompc/nn/web/static/``, content type)."""


def _static(name: str) -> bytes:
    return resources.files("aiompc.nn.web").joinpath("static", name).read_bytes()


class WebDemo:
    """The demo app; ``await start()``, then open :attr:`url` in a browser; ``await close()`` at the end.

    ``server_url``: the model server (``ws://host:port/path``); ``None`` starts one in-process serving
    ``reference.graph`` in ``mode``.  ``reference``: the bundled model, for the plaintext comparison.  ``samples``:
    the sample digits offered in the page (:func:`~aiompc.nn.web.pixels.sample_digits`).
    """

    def __init__(self, reference: PlaintextReference, samples: list[dict[str, Any]], server_url: str | None = None,
                 *, mode: Mode | str = "quantized") -> None:
        self.reference = reference
        self.mode = mode
        self.samples = samples
        self.server_url = server_url
        self._model_server: ModelServer | None = None
        self._http: WsServer | None = None
        self._running = False  # one inference at a time, across all pages
        self._host = "127.0.0.1"
        self._files = {path: (_static(name), ctype) for path, (name, ctype) in STATIC_FILES.items()}

    @property
    def local_server(self) -> bool:
        """Whether the model server runs in this process."""
        return self._model_server is not None

    @property
    def port(self) -> int:
        assert self._http is not None, "the app is not started"
        return int(next(iter(self._http.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        """The page's address."""
        return f"http://127.0.0.1:{self.port}/"

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> None:
        """Start the model server (unless ``server_url`` was given) and listen for the page on ``host:port``
        (``port=0``: a free port).  Raises :class:`TransportError` if the port cannot be bound."""
        self._host = host
        if self.server_url is None:
            self._model_server = await serve_model(self.reference.graph, "ws://127.0.0.1:0/aiompc", mode=self.mode)
            self.server_url = self._model_server.url
        try:
            self._http = await serve(self._on_events, host, port, process_request=self._process_request,
                                     max_size=MAX_EVENT_SIZE, compression=None)
        except OSError as exc:
            await self.close()
            raise TransportError(f"cannot listen on {host}:{port}: {exc}") from exc

    async def close(self) -> None:
        """Stop listening, end the page connections and stop the in-process model server."""
        if self._http is not None:
            server, self._http = self._http, None
            server.close()
            await server.wait_closed()
        if self._model_server is not None:
            server_, self._model_server = self._model_server, None
            self.server_url = None  # a restart starts a new one
            await server_.close()

    async def __aenter__(self) -> "WebDemo":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ HTTP

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Serve the static files; let ``/events`` upgrade to a WebSocket; 404 for anything else.

        A browser names the page that opens a WebSocket in ``Origin``: only this app's own page may use
        ``/events`` (403 otherwise), so another site open in the same browser cannot drive the client party."""
        path = request.path.split("?", 1)[0]
        if path == EVENTS_PATH:
            origin = request.headers.get("Origin")
            if origin is not None and origin not in self._origins():
                return connection.respond(http.HTTPStatus.FORBIDDEN, f"origin {origin} may not use {EVENTS_PATH}\n")
            return None
        found = self._files.get(path)
        if found is None:
            return connection.respond(http.HTTPStatus.NOT_FOUND, f"nothing at {path}\n")
        body, ctype = found
        headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))),
                           ("Cache-Control", "no-store"), ("Connection", "close")])
        return Response(200, "OK", headers, body)

    def _origins(self) -> set[str]:
        """The origins of this app's own page."""
        return {f"http://{host}:{self.port}" for host in ("127.0.0.1", "localhost", self._host)}

    # ------------------------------------------------------------------ the page's WebSocket

    async def _on_events(self, ws: ServerConnection) -> None:
        """One page: greet it, then run its classify requests (one at a time across all pages)."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def writer() -> None:
            while (event := await queue.get()) is not None:
                await ws.send(json.dumps(event))

        writing = asyncio.create_task(writer())
        running: asyncio.Task[None] | None = None
        queue.put_nowait({"type": "hello", "server": self.server_url, "local_server": self.local_server,
                          "samples": self.samples})
        try:
            async for message in ws:
                request = self._parse(message)
                if isinstance(request, dict) and request.get("type") == "error":
                    queue.put_nowait(request)
                elif self._running:
                    queue.put_nowait(events.error_event(
                        "busy", "an inference is already running; wait for its prediction"))
                else:
                    self._running = True
                    running = asyncio.create_task(self._classify(request, queue.put_nowait))
                    running.add_done_callback(self._finished)
        except ConnectionClosed:
            pass
        finally:
            if running is not None and not running.done():
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
            queue.put_nowait(None)
            with contextlib.suppress(ConnectionClosed):
                await writing

    @staticmethod
    def _parse(message: str | bytes) -> dict[str, Any]:
        """A classify request's pixels, or an ``error`` event for anything else."""
        try:
            request = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            return events.error_event("input", "the page sent something that is not JSON")
        if not isinstance(request, dict) or request.get("type") != "classify":
            return events.error_event("input", 'expected {"type": "classify", "pixels": [...]}')
        return {"type": "classify", "pixels": request.get("pixels")}

    def _finished(self, _task: "asyncio.Task[None]") -> None:
        self._running = False

    async def _classify(self, request: dict[str, Any], emit: events.Emit) -> None:
        """Run one inference and emit its events or its error."""
        progress = Progress()
        url = self.server_url or ""
        try:
            x = parse_pixels(request["pixels"])
            await classify(url, x, emit, reference=self.reference, progress=progress)
        except asyncio.CancelledError:
            raise
        except InputError as exc:
            emit(events.describe_error(exc, connected=progress.connected, step=progress.step, url=url))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message in the page
            event = events.describe_error(exc, connected=progress.connected, step=progress.step, url=url)
            log.warning("inference failed: %s: %s", type(exc).__name__, exc)  # never the input or logits
            emit(event)
