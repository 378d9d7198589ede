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

What a peer can make this side hold is bounded (:class:`Limits`), because the peer may be hostile:

* received messages nobody has read yet are charged to their label and to the session (payload plus
  :attr:`Limits.message_cost` bookkeeping bytes each); above :attr:`Limits.max_label_bytes` on one
  label or :attr:`Limits.max_buffered_bytes` in all, the reader stops reading the transport
  (back-pressure: the transport pauses the socket and the peer's ``send`` waits);
* if reading stays stopped while a receiver waits on a label that has nothing queued, the peer has
  filled the buffer with messages this side does not read: :class:`~aiompc.errors.LimitExceeded`
  closes the session (after :attr:`Limits.stall_timeout` seconds of grace);
* at most :attr:`Limits.max_pending_labels` labels may hold unread messages (an unknown-label flood is a
  :class:`~aiompc.errors.LimitExceeded`);
* a :class:`Gate` (set before a handshake) admits only the listed labels, with a small frame limit;
* with :attr:`Limits.idle_timeout`, a ``recv`` fails with :class:`~aiompc.errors.PeerTimeout` once the
  peer has sent nothing at all for that long (any label counts, so concurrent tiles keep it alive);
* :meth:`SubChannel.recv` decodes with a budget of :attr:`Limits.max_decoded_bytes` and decodes
  messages of :data:`OFFLOOP_DECODE_BYTES` or more in a thread, so a big decode never stalls the loop.
"""

from __future__ import annotations

import asyncio
import functools
import struct
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Literal

from aiompc import wire
from aiompc.errors import AiompcError, InputError, LimitExceeded, PeerTimeout, ProtocolError, TransportClosed
from aiompc.transports.base import Transport

__all__ = ["Channel", "SubChannel", "LabelStats", "Stats", "Phase", "Limits", "Gate", "show"]

Phase = Literal["online", "offline"]
_HEADER = struct.Struct("<H")
MAX_LABEL_BYTES = 1024
OFFLOOP_DECODE_BYTES = 1 << 20
"""Messages at least this long are decoded in a worker thread, off the event loop."""


def show(text: object, limit: int = 64) -> str:
    """A peer-supplied value made safe for a log line or an error message: escaped and truncated."""
    s = text if isinstance(text, str) else repr(text)
    cut = s[:limit]
    return repr(cut) + ("…" if len(s) > limit else "")


@dataclass(frozen=True)
class Limits:
    """What a peer can make one :class:`Channel` hold or wait for (see the module docstring).

    The defaults are far above what an honest session of the shipped models needs (measured peaks are
    recorded in ``SECURITY.md``) and bound a hostile peer's effect to a few hundred MiB per session."""

    max_buffered_bytes: int = 256 << 20
    max_label_bytes: int = 128 << 20
    max_pending_labels: int = 4096
    max_decoded_bytes: int = 256 << 20
    idle_timeout: float | None = None
    stall_timeout: float = 5.0
    message_cost: int = 256

    def __post_init__(self) -> None:
        for name in ("max_buffered_bytes", "max_label_bytes", "max_pending_labels", "max_decoded_bytes"):
            if getattr(self, name) < 1:
                raise InputError(f"Limits.{name} must be positive")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise InputError("Limits.idle_timeout must be positive or None")


@dataclass(frozen=True)
class Gate:
    """Before a handshake: only messages on ``labels``, each frame at most ``max_frame`` bytes."""

    labels: frozenset[str]
    max_frame: int


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
    max_recv: int = 0
    """The largest payload received on this label (bytes; sizing a server's limits from an honest run)."""

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
            self.max_recv,
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

    def __init__(self, transport: Transport, *, limits: Limits | None = None, gate: Gate | None = None) -> None:
        self.transport = transport
        self.limits = limits or Limits()
        self.gate = gate
        self._labels: dict[str, LabelStats] = {}
        self._queues: dict[str, asyncio.Queue[bytes]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._send_lock = asyncio.Lock()
        self._closed = False
        # bounded receiving (see Limits)
        self._buffered = 0
        self._label_buffered: dict[str, int] = defaultdict(int)
        self._full_labels: set[str] = set()
        self._pending: set[str] = set()  # labels with unread messages
        self._waiting: dict[str, int] = defaultdict(int)  # receivers waiting per label
        self._room: asyncio.Event | None = None
        self._last_rx: float | None = None
        self.peak_buffered = 0
        """The most bytes (as charged) ever held unread: for tests and for sizing limits."""
        self.peak_pending_labels = 0
        self.peak_message = 0
        """The longest payload received."""

    def configure(self, limits: Limits | None = None, *, gate: Gate | None = None) -> None:
        """Replace the limits and the gate (``gate=None`` opens it: after a successful handshake)."""
        if limits is not None:
            self.limits = limits
        self.gate = gate
        self._touch()
        if self._room is not None:
            self._room.set()

    @property
    def buffered_bytes(self) -> int:
        """Bytes (as charged) received and not yet read."""
        return self._buffered

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

    async def close(self, *, abort: bool = False, error: BaseException | None = None) -> None:
        """Close the transport (``abort``: drop it at once, for a peer that broke the protocol) and stop
        the reader (idempotent).  ``error``: why (e.g. a background task of this party failed); this
        party's pending and later receives raise it (typed as :class:`TransportClosed` unless it is an
        aiompc error), and the peer's raise :class:`TransportClosed` at once."""
        if error is not None and self._error is None:
            self._error = error
        self._closed = True
        await (self.transport.abort() if abort else self.transport.close())
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def error(self) -> BaseException | None:
        """Why the channel stopped (a transport error, a limit, or the ``error`` given to :meth:`close`);
        ``None`` while it runs."""
        return self._error

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
        item = q.get_nowait() if not q.empty() else await self._wait(label, q)
        if item is None:  # reader stopped
            q.put_nowait(None)
            raise self._wrap_error()
        self._release(label, q, len(item))
        return item

    async def _wait(self, label: str, q: asyncio.Queue[bytes]) -> bytes:
        """The next item of an empty queue, within the idle timeout."""
        self._waiting[label] += 1
        if self._room is not None:
            self._room.set()  # a paused reader re-checks for a stall
        try:
            idle = self.limits.idle_timeout
            if idle is None:
                return await q.get()
            loop = asyncio.get_running_loop()
            while True:
                last = self._last_rx if self._last_rx is not None else loop.time()
                remaining = last + idle - loop.time()
                if remaining <= 0:
                    raise PeerTimeout(
                        f"the peer sent nothing for {idle:g} s (idle timeout); the session is closed"
                    )
                try:
                    return await asyncio.wait_for(q.get(), remaining)
                except TimeoutError:
                    continue
        finally:
            self._waiting[label] -= 1
            if not self._waiting[label]:
                del self._waiting[label]

    def _touch(self) -> None:
        try:
            self._last_rx = asyncio.get_running_loop().time()
        except RuntimeError:
            self._last_rx = None

    def _charge(self, label: str, nbytes: int) -> None:
        cost = nbytes + self.limits.message_cost
        self._buffered += cost
        self._label_buffered[label] += cost
        if self._label_buffered[label] > self.limits.max_label_bytes:
            self._full_labels.add(label)
        self._pending.add(label)
        self.peak_buffered = max(self.peak_buffered, self._buffered)
        self.peak_message = max(self.peak_message, nbytes)
        self.peak_pending_labels = max(self.peak_pending_labels, len(self._pending))

    def _release(self, label: str, q: asyncio.Queue[bytes], nbytes: int) -> None:
        cost = nbytes + self.limits.message_cost
        self._buffered -= cost
        self._label_buffered[label] -= cost
        if self._label_buffered[label] <= self.limits.max_label_bytes:
            self._full_labels.discard(label)
        if q.empty():
            self._pending.discard(label)
            self._label_buffered.pop(label, None)
        if self._room is not None and not self._over():
            self._room.set()

    def _over(self) -> bool:
        return self._buffered > self.limits.max_buffered_bytes or bool(self._full_labels)

    def _stalled(self) -> bool:
        """A receiver waits on an empty label while reading is stopped: only the peer can end this."""
        return any(n > 0 and self._queues[lab].empty() for lab, n in self._waiting.items() if lab in self._queues)

    async def _wait_for_room(self) -> None:
        """Back-pressure: stop reading while too much is unread; a stall past the grace is the peer's fault."""
        assert self._room is not None
        loop = asyncio.get_running_loop()
        stalled_since: float | None = None
        while self._over():
            if self._stalled():
                stalled_since = loop.time() if stalled_since is None else stalled_since
                if loop.time() - stalled_since >= self.limits.stall_timeout:
                    raise LimitExceeded(
                        f"the peer sent {self._buffered} bytes that this side has not asked for (limits: "
                        f"{self.limits.max_buffered_bytes} per session, {self.limits.max_label_bytes} per label) "
                        "while this side waits for another message; the session is closed"
                    )
                wait = max(0.0, stalled_since + self.limits.stall_timeout - loop.time())
            else:
                stalled_since, wait = None, self.limits.stall_timeout
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), wait)
            except TimeoutError:
                pass

    def _admit(self, label: str, frame_size: int) -> None:
        """Refuse a frame the peer had no business sending (before the handshake, or a label flood)."""
        gate = self.gate
        if gate is not None:
            if label not in gate.labels:
                raise LimitExceeded(
                    f"the peer sent a message on label {show(label)} before the handshake; only "
                    f"{', '.join(sorted(gate.labels))} is accepted then"
                )
            if frame_size > gate.max_frame:
                raise LimitExceeded(
                    f"the peer sent a {frame_size}-byte handshake message; at most {gate.max_frame} bytes are accepted"
                )
        if label not in self._pending and len(self._pending) >= self.limits.max_pending_labels:
            raise LimitExceeded(
                f"the peer sent messages on more than {self.limits.max_pending_labels} labels that this side has "
                "not read; the session is closed"
            )

    def _wrap_error(self) -> BaseException:
        err = self._error
        if isinstance(err, AiompcError):  # keep the type: MessageTooLarge, LimitExceeded, PeerTimeout, ...
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
        self._room = asyncio.Event()
        if self._last_rx is None:
            self._touch()
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._over():
                    await self._wait_for_room()
                frame = await self.transport.recv()
                self._last_rx = loop.time()
                if len(frame) < 2:
                    raise ProtocolError("channel frame shorter than its header")
                (n,) = _HEADER.unpack_from(frame)
                if n > MAX_LABEL_BYTES or len(frame) < 2 + n:
                    raise ProtocolError("channel frame with a bad label length")
                try:
                    label = frame[2 : 2 + n].decode()
                except UnicodeDecodeError:
                    raise ProtocolError("channel frame label is not UTF-8") from None
                self._admit(label, len(frame))
                self._stat(label).record("recv", len(frame) + self.transport.overhead(len(frame), "recv"))
                payload = memoryview(frame)[2 + n :]
                st = self._labels[label]
                st.max_recv = max(st.max_recv, len(payload))
                self._charge(label, len(payload))
                self._queue(label).put_nowait(payload)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            self._error = self._error or TransportClosed("channel closed")
            raise
        except BaseException as exc:  # noqa: BLE001 - delivered to every waiting receiver
            if self._error is None:  # a close(error=...) that aborted the transport keeps its cause
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
        """Receive and decode the next message on this label (within the channel's decode budget;
        a long message is decoded in a worker thread)."""
        data = await self.channel._recv(self.label)
        budget = self.channel.limits.max_decoded_bytes
        if len(data) < OFFLOOP_DECODE_BYTES:
            return wire.decode(data, max_decoded=budget)
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(wire.decode, data, max_decoded=budget))

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
