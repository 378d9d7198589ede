"""TCP transport: length-prefixed frames over an asyncio TCP (optionally TLS) connection.

Wire format of one message, identical in both directions::

    frame = length (8 bytes, big-endian unsigned) || payload (length bytes)

so :meth:`TcpTransport.overhead` is exactly :data:`FRAME_OVERHEAD` = 8 bytes per message (TLS record
overhead, when ``ssl`` is used, lies below this layer and is not counted).

Receiving is an :class:`asyncio.BufferedProtocol` rather than a ``StreamReader``: ``readexactly`` grows
a bytearray by repeated reallocation and then copies the payload out of it, which caps 64 MiB
messages well below the 375 MB/s a 3 Gbit/s LAN needs.  Here the kernel writes small frames into a
reusable 256 KiB scratch buffer, and a payload of 64 KiB or more straight into a payload buffer that
is allocated (or grown) only *after* the announced length was checked against ``max_message_size``;
the one remaining copy turns it into the ``bytes`` that ``recv`` returns.  The payload buffer is
kept for the connection's next large message, up to 64 MiB: touching fresh memory costs a page
fault per 4 KiB, several times the cost of the copy itself, so reuse roughly doubles the throughput
of large messages.  (Larger payloads get a buffer of their own, released after the copy.)

* ``send`` of ``bytes`` copies nothing in Python (the header and payload are written separately; a
  small message is coalesced into one write, so one segment).  Other buffers are copied once, so
  the caller may reuse them when ``send`` returns.  A send lock keeps concurrent senders' frames
  whole; ``send`` waits while more than 4 MiB is queued for the socket.
* Received messages queue up to 16 MiB before the socket is paused (the peer's ``send`` then waits).
* A length above ``max_message_size`` raises :class:`MessageTooLarge` and aborts the connection (the
  byte stream cannot be resynchronised after such a header).  EOF at a frame boundary is a clean
  close; EOF inside a header or payload, and resets, are :class:`TransportClosed` stating how many
  bytes arrived.  Messages that arrived before the failure are still delivered first.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl as ssl_module
import struct
from typing import Callable, cast

from aiompc.errors import InputError, MessageTooLarge, TransportClosed, TransportError
from aiompc.transports.base import (DEFAULT_MAX_MESSAGE_SIZE, Direction, Handler, Server, Transport, cancel_handlers,
                                    run_handler)

__all__ = ["TcpTransport", "TcpServer", "connect", "serve", "FRAME_OVERHEAD"]

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!Q")
FRAME_OVERHEAD = _HEADER.size
"""Bytes of framing per message: the 8-byte big-endian length prefix."""

_MAX_ENCODABLE = (1 << 64) - 1
_SCRATCH = 256 * 1024  # reusable receive buffer for headers and small frames
_DIRECT = 64 * 1024  # payloads at least this large are received straight into a payload buffer
_REUSE_UP_TO = 64 * 1024 * 1024  # a payload buffer up to this size is kept for the next message
_COALESCE_BELOW = 64 * 1024  # payloads below this are sent in one write with their header
_WRITE_HIGH_WATER = 4 * 1024 * 1024  # send() waits while more than this is queued for the socket
_RECV_HIGH_WATER = 16 * 1024 * 1024  # pause reading while this much is received but not recv()'d
_RECV_LOW_WATER = 4 * 1024 * 1024  # ... and resume below this
_CLOSE_TIMEOUT = 10.0  # seconds to flush queued data on close() before aborting


def _check_limit(max_message_size: int) -> int:
    if not 0 <= max_message_size <= _MAX_ENCODABLE:
        raise InputError(f"max_message_size must be in [0, 2**64), got {max_message_size}")
    return int(max_message_size)


def _fresh(error: TransportError) -> TransportError:
    """A new exception of the same type and message (so repeated raises don't chain tracebacks)."""
    return type(error)(str(error))


class _FrameProtocol(asyncio.BufferedProtocol):
    """The framing state machine of one connection: parses frames in, applies flow control both ways."""

    def __init__(self, max_message_size: int, on_connected: Callable[["_FrameProtocol"], None] | None = None) -> None:
        self.max_message_size = max_message_size
        self._on_connected = on_connected
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closing_locally = False
        # receiving
        self._scratch = bytearray(_SCRATCH)
        self._scratch_view = memoryview(self._scratch)
        self._fill = 0  # unparsed bytes at the start of the scratch buffer
        self._payload_view: memoryview | None = None  # where a large payload is being received
        self._payload_got = 0
        self._reusable: bytearray | None = None  # the last payload buffer, if at most _REUSE_UP_TO
        self._inbox: collections.deque[bytes] = collections.deque()
        self._inbox_bytes = 0
        self._reading_paused = False
        self._recv_waiter: asyncio.Future[None] | None = None
        self._error: TransportError | None = None  # raised by recv once the inbox is empty
        # sending
        self._writing_paused = False
        self._drain_waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    # ---------------------------------------------------------------- connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
        if self._on_connected is not None:
            self._on_connected(self)

    def eof_received(self) -> bool:
        return False  # no half-open connections: let the transport close, connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._error is None:
            self._error = self._lost_reason(exc)
        self._payload_view = self._reusable = None
        self._wake_receiver()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        if not self.lost.done():
            self.lost.set_result(None)

    def _lost_reason(self, exc: Exception | None) -> TransportClosed:
        if self.closing_locally:
            return TransportClosed("tcp: this transport was closed")
        if exc is not None:
            return TransportClosed(f"tcp: the connection broke: {exc!r}")
        if self._payload_view is not None:
            return TransportClosed(
                f"tcp: the peer vanished in the middle of a {len(self._payload_view)}-byte message "
                f"({self._payload_got} bytes arrived)"
            )
        if self._fill >= FRAME_OVERHEAD:
            (size,) = _HEADER.unpack_from(self._scratch)
            return TransportClosed(
                f"tcp: the peer vanished in the middle of a {size}-byte message "
                f"({self._fill - FRAME_OVERHEAD} bytes arrived)"
            )
        if self._fill:
            return TransportClosed(f"tcp: the peer vanished in the middle of a frame header ({self._fill} of 8 bytes)")
        return TransportClosed("tcp: the peer closed the connection")

    # ---------------------------------------------------------------- receiving

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._payload_view is not None:
            return self._payload_view[self._payload_got :]
        return self._scratch_view[self._fill :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._payload_view is not None:
            self._payload_got += nbytes
            if self._payload_got == len(self._payload_view):
                payload, self._payload_view = self._payload_view, None
                self._deliver(payload.tobytes())
                payload.release()
            return
        self._fill += nbytes
        self._parse_scratch()

    def _parse_scratch(self) -> None:
        """Deliver every whole frame in the scratch buffer; start a direct receive for a large one."""
        view, fill, pos = self._scratch_view, self._fill, 0
        while fill - pos >= FRAME_OVERHEAD:
            (size,) = _HEADER.unpack_from(view, pos)
            if size > self.max_message_size:
                self._refuse(size)
                return
            start, end = pos + FRAME_OVERHEAD, pos + FRAME_OVERHEAD + size
            if end <= fill:
                self._deliver(view[start:end].tobytes())
                pos = end
            elif size >= _DIRECT:  # allocate only now that the announced size passed the check
                self._payload_view = self._payload_buffer(size)
                self._payload_got = fill - start
                self._payload_view[: self._payload_got] = view[start:fill]
                pos = fill
                break
            else:
                break  # a small frame's tail is still on the way; it fits the scratch buffer
        rest = fill - pos
        if pos and rest:
            self._scratch[:rest] = view[pos:fill].tobytes()  # move the partial frame to the front
        self._fill = rest

    def _payload_buffer(self, size: int) -> memoryview:
        """A ``size``-byte view to receive a payload into: the kept buffer, grown if needed."""
        if size > _REUSE_UP_TO:
            return memoryview(bytearray(size))
        if self._reusable is None or len(self._reusable) < size:
            self._reusable = None  # free the old one first
            self._reusable = bytearray(size)
        return memoryview(self._reusable)[:size]

    def _refuse(self, size: int) -> None:
        self._error = MessageTooLarge(
            f"tcp: the peer announced a {size}-byte message, above this transport's limit of "
            f"{self.max_message_size} bytes; the connection is closed (raise max_message_size if "
            "the peer is trusted and such messages are expected)"
        )
        self._fill = 0
        assert self.transport is not None
        self.transport.abort()

    def _deliver(self, message: bytes) -> None:
        self._inbox.append(message)
        self._inbox_bytes += len(message)
        self._wake_receiver()
        if self._inbox_bytes > _RECV_HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _wake_receiver(self) -> None:
        if self._recv_waiter is not None and not self._recv_waiter.done():
            self._recv_waiter.set_result(None)

    async def next_message(self) -> bytes:
        """The next received message; the terminal error once the connection ended and all were read."""
        while not self._inbox:
            if self._error is not None:
                error = self._error
                if isinstance(error, MessageTooLarge):  # reported once; afterwards it is just closed
                    self._error = TransportClosed("tcp: the connection was closed after an oversized message")
                raise _fresh(error)
            self._recv_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._recv_waiter
            finally:
                self._recv_waiter = None
        message = self._inbox.popleft()
        self._inbox_bytes -= len(message)
        if self._reading_paused and self._inbox_bytes <= _RECV_LOW_WATER and not self.lost.done():
            self._reading_paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        return message

    # ---------------------------------------------------------------- sending

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)

    def check_writable(self) -> None:
        if self.lost.done():
            raise _fresh(self._error or TransportClosed("tcp: the connection is closed"))

    async def drain(self) -> None:
        """Wait while the socket's write queue is above the high-water mark."""
        while self._writing_paused and not self.lost.done():
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                self._drain_waiters.remove(waiter)
        self.check_writable()


class TcpTransport(Transport):
    """One end of a framed TCP (or TLS) connection; obtain it from :func:`connect` or :func:`serve`."""

    def __init__(self, protocol: _FrameProtocol) -> None:
        assert protocol.transport is not None, "the connection is not established"
        self._protocol = protocol
        self._transport = protocol.transport
        self._send_lock = asyncio.Lock()
        self._recv_lock = asyncio.Lock()
        self._closed = False

    @property
    def max_message_size(self) -> int:
        return self._protocol.max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int) -> None:
        self._protocol.max_message_size = _check_limit(value)

    @property
    def closed(self) -> bool:
        return self._closed or self._protocol.lost.done()

    @property
    def peer(self) -> tuple[str, int] | None:
        """The peer's ``(host, port)`` as reported by the socket."""
        peer = self._transport.get_extra_info("peername")
        return (peer[0], peer[1]) if peer else None

    def overhead(self, size: int, direction: Direction) -> int:
        """The 8-byte length prefix, in either direction."""
        return FRAME_OVERHEAD

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        size = memoryview(data).nbytes
        if size > self.max_message_size:
            raise MessageTooLarge(
                f"message of {size} bytes exceeds this transport's limit of {self.max_message_size} "
                "bytes; split it or raise max_message_size on both sides"
            )
        payload = data if type(data) is bytes else bytes(data)  # the event loop may keep a reference
        async with self._send_lock:
            if self._closed:
                raise TransportClosed("tcp: this transport was closed")
            self._protocol.check_writable()
            if size < _COALESCE_BELOW:
                self._transport.write(_HEADER.pack(size) + payload)
            else:
                self._transport.write(_HEADER.pack(size))
                self._transport.write(memoryview(payload))  # a view: a partial send never copies the rest twice
            await self._protocol.drain()

    async def recv(self) -> bytes:
        async with self._recv_lock:
            if self._closed:
                raise TransportClosed("tcp: this transport was closed")
            return await self._protocol.next_message()

    async def close(self) -> None:
        """Flush what is queued (at most 10 s, then abort) and close the socket; idempotent."""
        if not self._closed:
            self._closed = True
            self._protocol.closing_locally = not self._protocol.lost.done()
            self._transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._protocol.lost), _CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            self._transport.abort()
            await self._protocol.lost


    async def abort(self) -> None:
        """Drop the connection now (nothing queued is flushed)."""
        if not self._closed:
            self._closed = True
            self._protocol.closing_locally = not self._protocol.lost.done()
        self._transport.abort()
        await self._protocol.lost


class TcpServer(Server):
    """A listening TCP server running ``handler(transport)`` per connection; see :func:`serve`."""

    def __init__(self, handler: Handler, host: str, max_message_size: int) -> None:
        self._handler = handler
        self.host = host
        self.max_message_size = _check_limit(max_message_size)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets, "server is not listening"
        return int(self._server.sockets[0].getsockname()[1])

    def _new_protocol(self) -> _FrameProtocol:
        return _FrameProtocol(self.max_message_size, on_connected=self._on_connected)

    def _on_connected(self, protocol: _FrameProtocol) -> None:
        task = asyncio.get_running_loop().create_task(run_handler(self._handler, TcpTransport(protocol), logger))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        await cancel_handlers(self._tasks)
        await server.wait_closed()


async def connect(
    host: str,
    port: int,
    *,
    ssl: ssl_module.SSLContext | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    timeout: float | None = 30.0,
) -> TcpTransport:
    """Open a framed TCP connection (TLS when ``ssl`` is given; ``host`` is the name verified).

    Raises :class:`TransportError` when the connection or the TLS handshake fails or takes longer
    than ``timeout`` seconds.
    """
    limit = _check_limit(max_message_size)
    loop = asyncio.get_running_loop()
    try:
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _FrameProtocol(limit), host, port, ssl=ssl), timeout
        )
    except asyncio.TimeoutError:
        raise TransportError(f"tcp: connecting to {host}:{port} timed out after {timeout} s") from None
    except OSError as exc:  # refused, unreachable, TLS verification failure
        raise TransportError(f"tcp: cannot connect to {host}:{port}: {exc}; is the server running?") from exc
    return TcpTransport(protocol)


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    ssl: ssl_module.SSLContext | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> TcpServer:
    """Listen on ``host:port`` (``port=0`` picks a free port, see :attr:`TcpServer.port`).

    Every accepted connection becomes a :class:`TcpTransport` handed to ``await handler(transport)``
    in its own task; the transport is closed when the handler returns, and a failing handler is
    logged without disturbing other connections.  Raises :class:`TransportError` if binding fails.
    """
    server = TcpServer(handler, host, max_message_size)
    loop = asyncio.get_running_loop()
    try:
        server._server = await loop.create_server(server._new_protocol, host, port, ssl=ssl)
    except OSError as exc:
        raise TransportError(f"tcp: cannot listen on {host}:{port}: {exc}") from exc
    return server
