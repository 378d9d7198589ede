"""In-memory transport: a connected pair of endpoints in one event loop (the test harness's wire).

Messages are copied into ``bytes`` on send, so a sender may reuse its buffer.  No framing: the
overhead is zero.  Closing either end wakes the peer's pending ``recv`` with :class:`TransportClosed`.
"""

from __future__ import annotations

import asyncio

from aiompc.errors import MessageTooLarge, TransportClosed
from aiompc.transports.base import DEFAULT_MAX_MESSAGE_SIZE, Transport

__all__ = ["MemoryTransport", "memory_pair"]

_EOF = object()


class MemoryTransport(Transport):
    """One end of an in-memory pair; create pairs with :func:`memory_pair`."""

    def __init__(self, inbox: asyncio.Queue, max_message_size: int) -> None:
        self._inbox = inbox
        self._peer: MemoryTransport | None = None
        self._closed = False
        self._eof = False
        self.max_message_size = max_message_size

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self._peer is None or self._peer._closed:
            raise TransportClosed("memory transport is closed")
        if len(data) > self.max_message_size:
            raise MessageTooLarge(
                f"message of {len(data)} bytes exceeds the limit of {self.max_message_size} bytes"
            )
        self._peer._inbox.put_nowait(bytes(data))

    async def recv(self) -> bytes:
        if self._eof:
            raise TransportClosed("memory transport: peer closed the connection")
        if self._closed:
            raise TransportClosed("memory transport is closed")
        item = await self._inbox.get()
        if item is _EOF:
            self._eof = True
            self._closed = True
            raise TransportClosed("memory transport: peer closed the connection")
        if len(item) > self.max_message_size:  # as a network transport does, refuse and hang up
            await self.close()
            raise MessageTooLarge(
                f"peer sent a {len(item)}-byte message, above this transport's limit of "
                f"{self.max_message_size} bytes; the connection is closed"
            )
        return item

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.put_nowait(_EOF)  # wake our own pending recv
        if self._peer is not None:
            self._peer._inbox.put_nowait(_EOF)


def memory_pair(max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected in-memory transports."""
    a = MemoryTransport(asyncio.Queue(), max_message_size)
    b = MemoryTransport(asyncio.Queue(), max_message_size)
    a._peer, b._peer = b, a
    return a, b
