"""The transport interface shared by every implementation.

A :class:`Transport` moves whole byte messages in order and reliably:

* ``await send(data)`` — queue one message; safe to call from concurrent tasks (messages are never
  interleaved).  Raises :class:`MessageTooLarge` above :attr:`max_message_size` and
  :class:`TransportClosed` once either side has closed.
* ``await recv()`` — the next whole message as ``bytes``; :class:`TransportClosed` at EOF or when the
  peer vanishes (also mid-message), :class:`MessageTooLarge` when the peer announces a frame above the
  limit (refused before anything is allocated), :class:`ProtocolError` on malformed framing.
* ``await close()`` — idempotent; the peer's pending and later ``recv`` raise :class:`TransportClosed`.
* ``overhead(size, direction)`` — the framing bytes the implementation adds around a message of
  ``size`` payload bytes sent (``"send"``) or received (``"recv"``) by this endpoint.  The channel
  counts ``size + overhead`` per message, so its statistics equal the bytes that cross the wire.
"""

from __future__ import annotations

import abc
from typing import Literal

__all__ = ["Transport", "DEFAULT_MAX_MESSAGE_SIZE", "Direction"]

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

    async def __aenter__(self) -> "Transport":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
