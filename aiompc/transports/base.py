"""The transport interface shared by every implementation.

A :class:`Transport` moves whole byte messages in order and reliably:

* ``await send(data)`` — queue one message; safe to call from concurrent tasks (messages are never
  interleaved).  The caller may reuse ``data`` as soon as ``send`` returns.  Raises
  :class:`MessageTooLarge` above :attr:`max_message_size` (nothing is sent and the transport stays
  usable) and :class:`TransportClosed` once either side has closed.
* ``await recv()`` — the next whole message as ``bytes``; :class:`TransportClosed` at EOF or when the
  peer vanishes (also mid-message), :class:`MessageTooLarge` when the peer announces a frame above the
  limit (refused before anything is allocated, and the connection is closed), :class:`ProtocolError`
  on malformed framing.  Concurrent ``recv`` calls are served one whole message each.
* ``await close()`` — idempotent; our own pending ``recv`` and the peer's pending and later ``recv``
  raise :class:`TransportClosed`.  Once a ``recv`` has seen the peer's EOF, :attr:`closed` is true
  and ``send`` raises :class:`TransportClosed`.
* ``overhead(size, direction)`` — the framing bytes the implementation adds around a message of
  ``size`` payload bytes sent (``"send"``) or received (``"recv"``) by this endpoint.  The channel
  counts ``size + overhead`` per message, so its statistics equal the bytes that cross the wire.

Network transports (:mod:`aiompc.transports.tcp`, :mod:`aiompc.transports.websocket`) also offer ``serve(handler,
...)`` returning a :class:`Server`: ``handler(transport)`` runs once per accepted connection, a failing
handler is logged and never disturbs the other connections, and the transport is closed when the
handler returns.  Failing to connect raises :class:`TransportError`.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import Awaitable, Callable, Literal

__all__ = ["Transport", "Server", "Handler", "DEFAULT_MAX_MESSAGE_SIZE", "Direction", "run_handler", "cancel_handlers"]

DEFAULT_MAX_MESSAGE_SIZE = 1 << 30  # 1 GiB
Direction = Literal["send", "recv"]


class Transport(abc.ABC):
    """Abstract reliable, ordered, message-oriented byte transport."""

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE

    @abc.abstractmethod
    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send one whole message."""

    @abc.abstractmethod
    async def recv(self) -> bytes:
        """Receive the next whole message."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection (idempotent)."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """True once :meth:`close` was called or the connection broke."""

    def overhead(self, size: int, direction: Direction) -> int:
        """Framing bytes added around a ``size``-byte message in ``direction`` (0 by default)."""
        return 0

    async def abort(self) -> None:
        """Close at once, dropping what is queued either way (for a peer that broke the protocol);
        by default the same as :meth:`close`."""
        await self.close()

    @property
    def peer(self) -> tuple[str, int] | None:
        """The peer's ``(host, port)`` where the transport knows it (for logs); ``None`` otherwise."""
        return None

    async def __aenter__(self) -> "Transport":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


Handler = Callable[[Transport], Awaitable[None]]
"""Per-connection coroutine function run by a server: ``await handler(transport)``."""


class Server(abc.ABC):
    """A listening network endpoint that runs a :data:`Handler` per accepted connection."""

    host: str
    """The address the server is bound to."""

    @property
    @abc.abstractmethod
    def port(self) -> int:
        """The actual bound port (useful after binding port 0)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop accepting, close every open connection and wait for the handlers to finish."""

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def cancel_handlers(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel the running per-connection handler ``tasks`` and wait for them (a server's :meth:`Server.close`)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def run_handler(handler: Handler, transport: Transport, logger: logging.Logger) -> None:
    """Run ``handler(transport)``, log (never raise) its failure, and always close the transport.

    A handler's exception is reported through ``logger`` and swallowed so that one failing connection
    cannot disturb a server's other connections.  Cancellation propagates.
    """
    try:
        await handler(transport)
    except Exception:  # noqa: BLE001 - one broken connection must not take the server down
        logger.exception("connection handler failed; closing this connection only")
    finally:
        await transport.close()
