"""Labelled sub-channels multiplexed over one transport, with exact per-label accounting.

Every message on the transport is one frame: ``u16 label length | label (UTF-8) | payload``.  A reader
task dispatches incoming frames to per-label queues, so concurrent coroutines (tiles, layers) that use
distinct labels are matched by label, never by arrival order; messages on one label stay in order.
Labels must be derived deterministically on both sides (for example ``f"conv3/tile{i}"``).

Accounting is done here, on exactly what is handed to the transport: the frame (label header included)
plus the transport's own framing overhead (``Transport.overhead``).  Per label and per direction we
count bytes and messages, and *rounds*: the number of maximal runs of same-direction messages on the
label (a change of direction starts a new round; both parties count the same number).  Each label
belongs to a *phase* (``"online"`` or ``"offline"``, e.g. OT precomputation) so reports keep them apart.
"""

from __future__ import annotations

import asyncio
import struct
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Literal

from aiompc import wire
from aiompc.errors import InputError, ProtocolError, TransportClosed
from aiompc.transports.base import Transport

__all__ = ["Channel", "SubChannel", "LabelStats", "Stats", "Phase"]

Phase = Literal["online", "offline"]
_HEADER = struct.Struct("<H")
MAX_LABEL_BYTES = 1024


@dataclass
class LabelStats:
    """Counters of one label, from this party's point of view."""

    phase: str = "online"
    bytes_sent: int = 0
    bytes_recv: int = 0
    msgs_sent: int = 0
    msgs_recv: int = 0
    rounds: int = 0
    last_dir: str = ""

    def record(self, direction: str, nbytes: int) -> None:
        if direction == "send":
            self.bytes_sent += nbytes
            self.msgs_sent += 1
        else:
            self.bytes_recv += nbytes
            self.msgs_recv += 1
        if direction != self.last_dir:
            self.rounds += 1
            self.last_dir = direction

    def __sub__(self, other: "LabelStats") -> "LabelStats":
        return LabelStats(
            self.phase,
            self.bytes_sent - other.bytes_sent,
            self.bytes_recv - other.bytes_recv,
            self.msgs_sent - other.msgs_sent,
            self.msgs_recv - other.msgs_recv,
            self.rounds - other.rounds,
            self.last_dir,
        )


@dataclass
class Stats:
    """A snapshot of per-label statistics; subtract two snapshots to get the cost of what ran between."""

    labels: dict[str, LabelStats] = field(default_factory=dict)

    def __sub__(self, other: "Stats") -> "Stats":
        out: dict[str, LabelStats] = {}
        for name, st in self.labels.items():
            diff = st - other.labels[name] if name in other.labels else replace(st)
            if diff.msgs_sent or diff.msgs_recv:
                out[name] = diff
        return Stats(out)

    def select(self, prefix: str = "", phase: str | None = None) -> "Stats":
        """Labels equal to ``prefix`` or starting with ``prefix + "/"`` (all if empty), optionally one phase."""
        keep = {
            k: v
            for k, v in self.labels.items()
            if (not prefix or k == prefix or k.startswith(prefix + "/")) and (phase is None or v.phase == phase)
        }
        return Stats(keep)

    @property
    def bytes_sent(self) -> int:
        return sum(s.bytes_sent for s in self.labels.values())

    @property
    def bytes_recv(self) -> int:
        return sum(s.bytes_recv for s in self.labels.values())

    @property
    def messages(self) -> int:
        return sum(s.msgs_sent + s.msgs_recv for s in self.labels.values())

    @property
    def rounds(self) -> int:
        """Sum of per-label rounds: exact for labels used one after another, an upper bound for concurrent ones."""
        return sum(s.rounds for s in self.labels.values())

    def total(self) -> dict[str, int]:
        """Totals as a plain dict (bytes each way, messages, rounds, and the offline part)."""
        off = self.select(phase="offline")
        return {
            "bytes_sent": self.bytes_sent,
            "bytes_recv": self.bytes_recv,
            "messages": self.messages,
            "rounds": self.rounds,
            "offline_bytes": off.bytes_sent + off.bytes_recv,
        }

    def table(self, depth: int | None = None) -> str:
        """A readable Markdown table; with ``depth``, labels are grouped by their first ``depth`` parts."""
        groups: dict[str, list[LabelStats]] = defaultdict(list)
        for name, st in self.labels.items():
            key = "/".join(name.split("/")[:depth]) if depth else name
            groups[key].append(st)
        rows = ["| label | phase | sent | received | messages | rounds |", "|---|---|---:|---:|---:|---:|"]
        for key in sorted(groups):
            sts = groups[key]
            phases = ",".join(sorted({s.phase for s in sts}))
            rows.append(
                f"| {key} | {phases} | {_human(sum(s.bytes_sent for s in sts))} | "
                f"{_human(sum(s.bytes_recv for s in sts))} | {sum(s.msgs_sent + s.msgs_recv for s in sts)} | "
                f"{sum(s.rounds for s in sts)} |"
            )
        rows.append(
            f"| **total** | | {_human(self.bytes_sent)} | {_human(self.bytes_recv)} | {self.messages} | {self.rounds} |"
        )
        return "\n".join(rows)


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


class Channel:
    """Multiplexes labelled sub-channels over one :class:`Transport` and accounts every byte."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._labels: dict[str, LabelStats] = {}
        self._queues: dict[str, asyncio.Queue[bytes]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._send_lock = asyncio.Lock()
        self._closed = False

    # -- public API -------------------------------------------------------------------------------

    def sub(self, label: str, *, phase: Phase = "online") -> "SubChannel":
        """The sub-channel for ``label`` (created on first use; the same object afterwards)."""
        if len(label.encode()) > MAX_LABEL_BYTES:
            raise InputError(f"label longer than {MAX_LABEL_BYTES} bytes")
        self._stat(label).phase = phase  # the reader may have created it first, as "online"
        self._ensure_reader()
        return SubChannel(self, label)

    def stats(self) -> Stats:
        """A snapshot (deep copy) of the statistics so far."""
        return Stats({k: replace(v) for k, v in self._labels.items() if v.msgs_sent or v.msgs_recv})

    async def close(self) -> None:
        """Close the transport and stop the reader (idempotent)."""
        self._closed = True
        await self.transport.close()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    # -- sending and receiving ----------------------------------------------------------------------

    async def _send(self, label: str, payload: bytes | bytearray | memoryview) -> None:
        self._ensure_reader()  # read while we send, or two parties sending big messages could both stall
        lab = label.encode()
        frame = b"".join((_HEADER.pack(len(lab)), lab, payload))
        async with self._send_lock:
            await self.transport.send(frame)
        self._stat(label).record("send", len(frame) + self.transport.overhead(len(frame), "send"))

    async def _recv(self, label: str) -> bytes:
        self._ensure_reader()
        if self._reader is None:  # closed before anything was read
            raise TransportClosed("channel closed")
        q = self._queue(label)
        if q.empty() and self._error is not None:
            raise self._wrap_error()
        item = await q.get()
        if item is None:  # reader stopped
            q.put_nowait(None)
            raise self._wrap_error()
        return item

    def _wrap_error(self) -> BaseException:
        err = self._error
        if isinstance(err, (TransportClosed, ProtocolError)):
            return type(err)(str(err))
        return TransportClosed(f"channel closed: {err!r}")

    def _stat(self, label: str) -> LabelStats:
        st = self._labels.get(label)
        if st is None:
            st = self._labels[label] = LabelStats()
        return st

    def _queue(self, label: str) -> asyncio.Queue[bytes]:
        q = self._queues.get(label)
        if q is None:
            q = self._queues[label] = asyncio.Queue()
            if self._error is not None:
                q.put_nowait(None)  # type: ignore[arg-type]
        return q

    def _ensure_reader(self) -> None:
        if self._reader is None and not self._closed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not in a coroutine yet: the first send or recv starts it
                return
            self._reader = loop.create_task(self._read_loop(), name="aiompc-channel-reader")

    async def _read_loop(self) -> None:
        try:
            while True:
                frame = await self.transport.recv()
                if len(frame) < 2:
                    raise ProtocolError("channel frame shorter than its header")
                (n,) = _HEADER.unpack_from(frame)
                if n > MAX_LABEL_BYTES or len(frame) < 2 + n:
                    raise ProtocolError("channel frame with a bad label length")
                try:
                    label = frame[2 : 2 + n].decode()
                except UnicodeDecodeError:
                    raise ProtocolError("channel frame label is not UTF-8") from None
                self._stat(label).record("recv", len(frame) + self.transport.overhead(len(frame), "recv"))
                self._queue(label).put_nowait(memoryview(frame)[2 + n :])  # type: ignore[arg-type]
        except asyncio.CancelledError:
            self._error = self._error or TransportClosed("channel closed")
            raise
        except BaseException as exc:  # noqa: BLE001 - delivered to every waiting receiver
            self._error = exc
        finally:
            if self._error is None:
                self._error = TransportClosed("channel closed")
            for q in self._queues.values():
                q.put_nowait(None)  # type: ignore[arg-type]


class SubChannel:
    """One label of a :class:`Channel`: ordered messages, matched by label on both sides."""

    __slots__ = ("channel", "label")

    def __init__(self, channel: Channel, label: str) -> None:
        self.channel = channel
        self.label = label

    def sub(self, suffix: str | int) -> "SubChannel":
        """A child label ``f"{label}/{suffix}"`` in the same phase."""
        return self.channel.sub(f"{self.label}/{suffix}", phase=self.phase)  # type: ignore[arg-type]

    @property
    def phase(self) -> str:
        return self.channel._stat(self.label).phase

    async def send(self, obj: Any) -> None:
        """Encode ``obj`` with :func:`aiompc.wire.encode` and send it."""
        await self.channel._send(self.label, wire.encode(obj))

    async def recv(self) -> Any:
        """Receive and decode the next message on this label."""
        return wire.decode(await self.channel._recv(self.label))

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        await self.channel._send(self.label, data)

    async def recv_bytes(self) -> bytes:
        return bytes(await self.channel._recv(self.label))

    async def exchange(self, obj: Any) -> Any:
        """Send ``obj`` and receive the peer's message (both parties call this symmetrically)."""
        await self.send(obj)
        return await self.recv()

    def stats(self) -> Stats:
        """Statistics of this label and its children."""
        return self.channel.stats().select(self.label)


def merge(stats: Iterable[Stats]) -> Stats:
    """Union of disjoint snapshots."""
    out: dict[str, LabelStats] = {}
    for s in stats:
        out.update(s.labels)
    return Stats(out)
