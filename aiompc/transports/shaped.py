"""Link emulation: a wrapper that gives any transport a bandwidth and a one-way latency.

Model (per direction; each endpoint shapes the messages *it* sends, so wrap both ends)::

    start_i    = max(t_send_i, busy_until)            # the link is busy with earlier messages
    busy_until = start_i + wire_bytes_i / bandwidth    # serialisation onto the link
    deliver_i  = busy_until + one_way_latency          # propagation

where ``wire_bytes_i`` is the payload plus the inner transport's framing overhead.  ``send`` returns at
``busy_until`` (a sender is held for its message's queueing and serialisation, as by a NIC, never
for the propagation delay), and a background pump hands message *i* to the inner transport no
earlier than ``deliver_i``.  Because ``deliver_i`` is non-decreasing and the pump is one FIFO task,
pipelined messages keep their order and each still gets its full latency: many messages can be in
flight at once.  Delivery can only be later than modelled (a slow inner transport adds to it),
never earlier.  Timing uses :func:`time.perf_counter` and re-sleeps until the deadline has really
passed, so coarse event-loop timers (uvloop rounds to milliseconds) cannot deliver early.

Presets follow the paper's network settings: :data:`LAN` = 3 Gbit/s with 0.3 ms RTT and :data:`WAN` =
400 Mbit/s with 40 ms RTT (one-way latency is half the RTT).
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from typing import Literal

from aiompc.errors import InputError, MessageTooLarge, TransportClosed, TransportError
from aiompc.transports.base import Direction, Transport

__all__ = ["LinkProfile", "LAN", "WAN", "PROFILES", "ShapedTransport", "shape", "shaped_pair"]


@dataclass(frozen=True)
class LinkProfile:
    """A link: ``bandwidth_bytes_per_s`` (bytes/s) and ``one_way_latency_s`` (seconds)."""

    bandwidth_bytes_per_s: float
    one_way_latency_s: float

    def __post_init__(self) -> None:
        if not self.bandwidth_bytes_per_s > 0:
            raise InputError(f"bandwidth must be positive bytes/s, got {self.bandwidth_bytes_per_s}")
        if not self.one_way_latency_s >= 0:
            raise InputError(f"one-way latency must be >= 0 s, got {self.one_way_latency_s}")

    def transfer_time(self, wire_bytes: int) -> float:
        """Seconds from the first bit sent to the last bit delivered on an idle link."""
        return wire_bytes / self.bandwidth_bytes_per_s + self.one_way_latency_s


LAN = LinkProfile(3e9 / 8, 0.15e-3)
"""3 Gbit/s, 0.15 ms one-way (0.3 ms RTT)."""
WAN = LinkProfile(400e6 / 8, 20e-3)
"""400 Mbit/s, 20 ms one-way (40 ms RTT)."""
PROFILES: dict[str, LinkProfile] = {"lan": LAN, "wan": WAN}

async def _sleep_until(deadline: float) -> None:
    """Sleep until ``time.perf_counter() >= deadline`` (never wakes early, whatever the loop's timer)."""
    while (remaining := deadline - time.perf_counter()) > 0:
        await asyncio.sleep(remaining)


class ShapedTransport(Transport):
    """Wrap ``inner`` so that what this endpoint sends crosses an emulated link.

    ``recv``, ``overhead`` and ``max_message_size`` delegate to ``inner``.  A message that is not
    ``bytes`` is copied once (the pump sends it later; the caller may reuse its buffer when ``send``
    returns).  Close with :meth:`close`, which delivers what is still in flight first.
    """

    def __init__(self, inner: Transport, bandwidth_bytes_per_s: float, one_way_latency_s: float) -> None:
        self.inner = inner
        self.link = LinkProfile(float(bandwidth_bytes_per_s), float(one_way_latency_s))
        self._busy_until = 0.0  # perf_counter time at which the link finishes serialising
        self._queue: collections.deque[tuple[float, bytes] | None] = collections.deque()  # None: close
        self._pump: asyncio.Task[None] | None = None
        self._error: TransportError | None = None  # first failure of the inner transport's send
        self._closed = False

    # --------------------------------------------------------------- delegation

    @property
    def max_message_size(self) -> int:
        return self.inner.max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int) -> None:
        self.inner.max_message_size = value

    @property
    def closed(self) -> bool:
        return self._closed or self.inner.closed

    def overhead(self, size: int, direction: Direction) -> int:
        return self.inner.overhead(size, direction)

    # --------------------------------------------------------------- shaping

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        self._check_usable()
        size = memoryview(data).nbytes
        if size > self.max_message_size:
            raise MessageTooLarge(
                f"message of {size} bytes exceeds the limit of {self.max_message_size} bytes; "
                "split it or raise max_message_size on both sides"
            )
        payload = bytes(data)  # no copy for bytes; anything else is copied, the pump sends it later
        wire_bytes = size + self.inner.overhead(size, "send")
        start = max(time.perf_counter(), self._busy_until)
        self._busy_until = start + wire_bytes / self.link.bandwidth_bytes_per_s
        self._enqueue((self._busy_until + self.link.one_way_latency_s, payload))
        await _sleep_until(self._busy_until)
        self._check_usable()

    def _check_usable(self) -> None:
        if self._error is not None:
            raise TransportClosed(f"shaped: the inner transport failed: {self._error}") from self._error
        if self.closed:
            raise TransportClosed("shaped: this transport is closed")

    def _enqueue(self, item: tuple[float, bytes] | None) -> None:
        self._queue.append(item)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._run_pump())

    async def _run_pump(self) -> None:
        """Hand queued messages to ``inner`` at their delivery times, in order, until the queue is empty."""
        while self._queue:
            item = self._queue.popleft()
            if item is None:  # close() was called: everything before it has been delivered
                await self.inner.close()
                return
            deliver_at, payload = item
            await _sleep_until(deliver_at)
            if self._error is not None:
                continue  # the link is down: what is still in flight is lost, as on a real network
            try:
                await self.inner.send(payload)
            except TransportError as exc:
                self._error = exc

    async def recv(self) -> bytes:
        if self._closed:
            raise TransportClosed("shaped: this transport is closed")
        return await self.inner.recv()

    async def close(self) -> None:
        """Deliver the messages still in flight (at their modelled times), then close ``inner``."""
        if not self._closed:
            self._closed = True
            self._enqueue(None)
        assert self._pump is not None
        try:
            await asyncio.shield(self._pump)
        except asyncio.CancelledError:
            await self.inner.close()  # hurry: close now instead of waiting for the flush
            raise


def shape(transport: Transport, link: Literal["lan", "wan"] | LinkProfile | None) -> Transport:
    """``transport`` behind the preset ``"lan"``/``"wan"`` link (or a :class:`LinkProfile`); ``None`` = as is."""
    if link is None:
        return transport
    profile = link if isinstance(link, LinkProfile) else PROFILES.get(link)
    if profile is None:
        raise InputError(f"unknown link profile {link!r}; use 'lan', 'wan', None or a LinkProfile")
    return ShapedTransport(transport, profile.bandwidth_bytes_per_s, profile.one_way_latency_s)


def shaped_pair(
    a: Transport, b: Transport, link: Literal["lan", "wan"] | LinkProfile | None
) -> tuple[Transport, Transport]:
    """Shape both ends of a connected pair, so each direction crosses its own emulated link."""
    return shape(a, link), shape(b, link)
