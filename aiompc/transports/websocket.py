"""WebSocket transport over the ``websockets`` (>= 14) ``websockets.asyncio`` API.

Each message is one binary frame (RFC 6455 §5.2), or, above :data:`FRAGMENT_SIZE` (1 MiB), a
binary frame and continuation frames of 1 MiB each: ``websockets`` buffers, unmasks and copies every
frame whole, and 1 MiB fragments move 64 MiB messages about four times faster than one 64 MiB frame
(and bound the receive queue, 16 frames, to 16 MiB).  Compression is off (no permessage-deflate, so
the bytes counted are the bytes sent), proxies are never used, and the library's ``max_size`` is set
to this transport's ``max_message_size``: a frame that would take the message past it is refused from
its header, before its payload is read (close code 1009).

Keepalive pings are off by default: a ping's pong queues behind whatever the peer is sending, so
with a timeout a long transfer over a slow link would be killed, and pings are bytes the channel's
accounting does not see.  Dead peers still surface as :class:`TransportClosed` through TCP.

Frame overhead (:func:`frame_overhead`): 2 header bytes, plus 2 extended-length bytes when the payload
is 126..65535 bytes or 8 when it is >= 65536, plus a 4-byte masking key on client→server frames.
A message's overhead (:func:`message_overhead`) is the sum over its fragments; the receive direction
assumes the peer fragments the same way, which every :class:`WebSocketTransport` does.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl as ssl_module
import urllib.parse
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as _ws_connect
from websockets.asyncio.server import Server as _WsServer
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as _ws_serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from aiompc.errors import AiompcError, InputError, MessageTooLarge, ProtocolError, TransportClosed, TransportError
from aiompc.transports.base import (DEFAULT_MAX_MESSAGE_SIZE, Direction, Handler, Server, Transport, cancel_handlers,
                                    run_handler)

__all__ = ["WebSocketTransport", "WebSocketServer", "connect", "serve", "frame_overhead", "message_overhead", "FRAGMENT_SIZE"]

logger = logging.getLogger(__name__)

_OPEN_TIMEOUT = 30.0  # seconds for the TCP, TLS and HTTP upgrade handshakes
_CLOSE_TIMEOUT = 10.0  # seconds to wait for the peer's close frame
_WRITE_LIMIT = 4 * 1024 * 1024  # send() waits for the socket once this much is queued
FRAGMENT_SIZE = 1 << 20
"""Messages longer than this go out as fragments of exactly this many bytes (the last one shorter)."""


def frame_overhead(size: int, *, masked: bool) -> int:
    """Exact RFC 6455 header bytes of one unfragmented frame carrying ``size`` payload bytes."""
    extended = 0 if size < 126 else 2 if size < 65536 else 8
    return 2 + extended + (4 if masked else 0)


def message_overhead(size: int, *, masked: bool) -> int:
    """Exact header bytes of a ``size``-byte message as this transport frames it.

    Up to :data:`FRAGMENT_SIZE` bytes: one frame.  Longer: ``ceil(size / FRAGMENT_SIZE)`` data frames
    and the empty final continuation frame with which ``websockets`` ends a fragmented message.
    """
    if size <= FRAGMENT_SIZE:
        return frame_overhead(size, masked=masked)
    full, last = divmod(size, FRAGMENT_SIZE)
    headers = full * frame_overhead(FRAGMENT_SIZE, masked=masked)
    if last:
        headers += frame_overhead(last, masked=masked)
    return headers + frame_overhead(0, masked=masked)  # the empty final frame


def _byte_view(data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    """``data`` as a flat byte buffer (``websockets`` frames ``len(data)``, so itemsize must be 1)."""
    if isinstance(data, (bytes, bytearray)):
        return data
    view = memoryview(data)
    if view.c_contiguous:
        return view.cast("B") if (view.format != "B" or view.ndim != 1) else view
    return view.tobytes()


class WebSocketTransport(Transport):
    """One end of a WebSocket connection; obtain it from :func:`connect` or :func:`serve`."""

    def __init__(
        self,
        connection: ClientConnection | ServerConnection,
        *,
        client: bool,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._conn = connection
        self._client = client
        self._max_message_size = max_message_size
        self._send_lock = asyncio.Lock()
        self._recv_lock = asyncio.Lock()
        self._closed = False
        self._closed_locally = False
        self._end: str = "ws: the peer closed the connection"  # why, once the connection has ended

    @property
    def closed(self) -> bool:
        return self._closed or self._conn.close_code is not None

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        return self._max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int) -> None:
        """Also the limit ``websockets`` checks on each incoming frame header (so lowering it takes effect
        for the next frame, before its payload is read)."""
        if value < 0:
            raise InputError(f"max_message_size must be >= 0, got {value}")
        self._max_message_size = int(value)
        protocol = getattr(self._conn, "protocol", None)
        if protocol is not None and hasattr(protocol, "max_message_size"):
            protocol.max_message_size = int(value)

    @property
    def peer(self) -> tuple[str, int] | None:
        addr = self._conn.remote_address
        return (str(addr[0]), int(addr[1])) if addr else None

    def overhead(self, size: int, direction: Direction) -> int:
        """Header bytes of the message's frames; the client's frames carry a 4-byte mask, the server's not."""
        masked = self._client == (direction == "send")
        return message_overhead(size, masked=masked)

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        payload = _byte_view(data)  # websockets copies it into the frame before send() returns
        size = len(payload)
        if size > self.max_message_size:
            raise MessageTooLarge(
                f"message of {size} bytes exceeds this transport's limit of {self.max_message_size} "
                "bytes; split it or raise max_message_size on both sides"
            )
        async with self._send_lock:
            if self._closed:
                raise TransportClosed(self._reason())
            try:
                if size <= FRAGMENT_SIZE:
                    await self._conn.send(payload)
                else:
                    view = memoryview(payload)
                    await self._conn.send(view[i : i + FRAGMENT_SIZE] for i in range(0, size, FRAGMENT_SIZE))
            except ConnectionClosed as exc:
                raise self._ended(self._translate(exc)) from exc

    async def recv(self) -> bytes:
        async with self._recv_lock:
            if self._closed:
                raise TransportClosed(self._reason())
            try:
                message = await self._conn.recv()
            except ConnectionClosed as exc:
                raise self._ended(self._translate(exc)) from exc
            if isinstance(message, str):
                error = self._ended(ProtocolError("ws: the peer sent a text frame; this transport carries binary frames only"))
                await self._conn.close(CloseCode.UNSUPPORTED_DATA, "binary frames only")
                raise error
            return message

    def _mark_closed(self) -> None:
        """Record, once, that this side ends the transport (locally, unless the peer's close came first)."""
        if not self._closed:
            self._closed = True
            self._closed_locally = self._conn.close_code is None
            if self._closed_locally:
                self._end = "ws: this transport was closed"

    async def close(self) -> None:
        """Send a close frame (code 1000) and wait for the peer's, at most ``10 s``; idempotent."""
        self._mark_closed()
        await self._conn.close()

    async def abort(self) -> None:
        """Drop the TCP connection now, without the closing handshake (the peer may not be reading)."""
        self._mark_closed()
        self._conn.transport.abort()
        try:
            await asyncio.wait_for(asyncio.shield(self._conn.wait_closed()), _CLOSE_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionClosed):
            pass

    def _reason(self) -> str:
        return self._end

    def _ended(self, error: AiompcError) -> AiompcError:
        """Mark the transport closed by ``error``; later calls raise :class:`TransportClosed` saying so."""
        if not self._closed:
            self._closed = True
            self._end = f"ws: the connection is closed ({error})"
        return error

    def _translate(self, exc: ConnectionClosed) -> TransportError:
        """Map ``websockets``' close reasons onto our error types (1009 = message too big)."""
        too_big = CloseCode.MESSAGE_TOO_BIG
        if exc.rcvd is not None and exc.rcvd.code == too_big and exc.rcvd_then_sent in (True, None):
            return MessageTooLarge(
                "ws: the peer refused one of our messages as larger than its max_message_size; "
                "the connection is closed (raise the limit on the peer)"
            )
        if exc.sent is not None and exc.sent.code == too_big:
            return MessageTooLarge(
                f"ws: the peer sent a message above this transport's limit of {self.max_message_size} "
                "bytes; the connection is closed (raise max_message_size if such messages are expected)"
            )
        if self._closed_locally:
            return TransportClosed(self._reason())
        return TransportClosed(f"ws: the connection is closed ({exc})")


def _connection_options(max_message_size: int) -> dict[str, Any]:
    if max_message_size < 0:
        raise InputError(f"max_message_size must be >= 0, got {max_message_size}")
    return dict(
        compression=None,
        max_size=max_message_size,
        ping_interval=None,
        ping_timeout=None,
        close_timeout=_CLOSE_TIMEOUT,
        write_limit=_WRITE_LIMIT,
    )


async def connect(
    url: str,
    *,
    ssl: ssl_module.SSLContext | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    timeout: float | None = _OPEN_TIMEOUT,
) -> WebSocketTransport:
    """Open a WebSocket to ``url`` (``ws://host:port/path``, or ``wss://`` with ``ssl``).

    Raises :class:`InputError` for a malformed URL and :class:`TransportError` when the connection,
    the TLS handshake or the HTTP upgrade fails (for example a wrong path, answered with HTTP 404).
    """
    try:
        connection = await _ws_connect(
            url, ssl=ssl, proxy=None, open_timeout=timeout, **_connection_options(max_message_size)
        )
    except InvalidURI as exc:
        raise InputError(f"ws: {url!r} is not a ws:// or wss:// URL: {exc}") from exc
    except InvalidHandshake as exc:
        raise TransportError(f"ws: the server at {url} refused the WebSocket upgrade: {exc}") from exc
    except (OSError, asyncio.TimeoutError) as exc:
        raise TransportError(f"ws: cannot connect to {url}: {exc!r}; is the server running?") from exc
    return WebSocketTransport(connection, client=True, max_message_size=max_message_size)


class WebSocketServer(Server):
    """A listening WebSocket server running ``handler(transport)`` per connection; see :func:`serve`."""

    def __init__(self, handler: Handler, host: str, path: str, max_message_size: int) -> None:
        self._handler = handler
        self.host = host
        self.path = path
        self.max_message_size = max_message_size
        self._server: _WsServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "server is not listening"
        return int(next(iter(self._server.sockets)).getsockname()[1])

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        requested = urllib.parse.urlsplit(request.path).path
        if requested != self.path:
            return connection.respond(http.HTTPStatus.NOT_FOUND, f"no aiompc endpoint at {requested}\n")
        return None

    async def _on_connection(self, connection: ServerConnection) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            transport = WebSocketTransport(connection, client=False, max_message_size=self.max_message_size)
            await run_handler(self._handler, transport, logger)
        finally:
            self._tasks.discard(task)

    async def close(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close(close_connections=False)
        await cancel_handlers(self._tasks)
        await server.wait_closed()


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    path: str = "/",
    ssl: ssl_module.SSLContext | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> WebSocketServer:
    """Listen for WebSocket upgrades to ``path`` on ``host:port`` (``port=0`` picks a free port).

    Upgrades to any other path are refused with HTTP 404.  Every accepted connection becomes a
    :class:`WebSocketTransport` handed to ``await handler(transport)`` in its own task; the transport
    is closed when the handler returns, and a failing handler is logged without disturbing other
    connections.  Raises :class:`TransportError` if binding fails.
    """
    server = WebSocketServer(handler, host, path, max_message_size)
    try:
        server._server = await _ws_serve(
            server._on_connection,
            host,
            port,
            ssl=ssl,
            process_request=server._check_path,
            open_timeout=_OPEN_TIMEOUT,
            **_connection_options(max_message_size),
        )
    except OSError as exc:
        raise TransportError(f"ws: cannot listen on {host}:{port}: {exc}") from exc
    return server
