"""The OT engine: the one interface through which protocols obtain random correlated OTs (COTs).

One engine per session lives in ``party.state["ot_engine"]`` (:func:`get_engine`), of the kind named by
``party.options.get("ot", DEFAULT_ENGINE)`` in the table :data:`aiompc.protocols.ot.engines.ENGINES`.  It serves both directions (server as OT sender, client as OT
sender); each direction has its own setup (base OTs) and its own global correlation Δ.

**What an engine gives** (:meth:`OTEngine.cots`, called by both parties with the same ``label``, ``n``
and ``sender``): the sender gets :class:`SenderCOTs` — 128-bit blocks ``q_i`` and one ``Δ``, its two
messages being ``q_i`` and ``q_i ⊕ Δ`` — and the receiver gets :class:`ReceiverCOTs` — uniform choice
bits ``b_i`` and ``t_i = q_i ⊕ b_i·Δ``.  Both get the same ``tweaks``, distinct for every COT of the
session, to key the correlation-robust hash that derandomisation applies.

**Pooling** (:class:`PooledEngine`): COTs are generated in batches (on demand, or ahead of time with
:meth:`OTEngine.precompute`) and buffered; the receiver of a direction drives generation and
allocation.  Calls on different labels may run concurrently and in a different order on the two
sides, so the receiver picks the range of pool indices each call consumes and announces it in one
small message on the call's own ``label`` (phase "online"); the sender waits until its pool holds
that range.  Generation messages travel on ``ot/<kind>/<sender>`` (and ``.../base``, ``.../mark``) in
phase "offline", so channel statistics keep COT generation (offline) and derandomisation (online)
apart.  Labels starting with ``ot/`` are reserved for engines.

**Work budget** (:class:`WorkBudget`): the receiver drives generation, so a hostile receiver could ask the
sender to run extension after extension (a few bytes each, seconds of CPU and ~170 MB each for silent
OT).  The sender therefore counts the COTs its *own* calls ask for in each direction (its demand, from its
own copy of the plan) and runs a generation step only while what it has delivered is below
``2 × demand + min_batch`` (an honest receiver's lookahead is far less); a request beyond that waits
:attr:`WorkBudget.grace` seconds for the demand to catch up (costing no CPU), then fails with
:class:`~aiompc.errors.LimitExceeded`.  In all, a receiver can make the sender generate at most twice what
the session needs plus one extension.  An engine's own admission rules wait the same way
(:meth:`WorkBudget.wait_for`): the silent engine admits a main-set extension only once this side's demand
calls for it, and an honest receiver may ask a step before this side's matching call.

**Plugging in another engine** (e.g. silent OT): subclass :class:`PooledEngine`, implement
:meth:`PooledEngine.open_receiver` / :meth:`PooledEngine.open_sender` returning a
:class:`COTReceiverSource` / :class:`COTSenderSource` (a batch generator for one side of one
direction), and add a row to :data:`aiompc.protocols.ot.engines.ENGINES`.  The flavours in :mod:`aiompc.protocols.ot.flavours` never change.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from aiompc.channel import Channel
from aiompc.errors import InputError, LimitExceeded, ProtocolError, TransportClosed
from aiompc.party import Party, Role

__all__ = [
    "WorkBudget",
    "SenderCOTs",
    "ReceiverCOTs",
    "OTEngine",
    "PooledEngine",
    "COTReceiverSource",
    "COTSenderSource",
]

_ROLES: tuple[Role, Role] = ("server", "client")


def _check_role(sender: object) -> Role:
    if sender not in _ROLES:
        raise InputError(f"sender must be 'server' or 'client', got {sender!r}")
    return sender  # type: ignore[return-value]


def _tweaks(sender: Role, start: int, n: int) -> np.ndarray:
    """Session-unique hash tweaks: the pool index, with the direction in bit 63."""
    direction = np.uint64(0 if sender == "server" else 1 << 63)
    return np.arange(start, start + n, dtype=np.uint64) | direction


@dataclass(frozen=True)
class SenderCOTs:
    """The sender's half of ``n`` random COTs: messages ``m0 = q[i]`` and ``m1 = q[i] ⊕ delta``.

    ``q``: ``(n, 2)`` ``uint64`` 128-bit blocks; ``delta``: ``(2,)`` ``uint64``, the direction's global Δ;
    ``tweaks``: ``(n,)`` ``uint64``, session-unique, shared with the receiver.
    """

    q: np.ndarray
    delta: np.ndarray
    tweaks: np.ndarray

    def __len__(self) -> int:
        return int(self.q.shape[0])

    def m1(self) -> np.ndarray:
        """The second messages ``q ⊕ Δ``."""
        return self.q ^ self.delta


@dataclass(frozen=True)
class ReceiverCOTs:
    """The receiver's half of ``n`` random COTs: uniform ``choices`` and ``t = q ⊕ choices·Δ``.

    ``choices``: ``(n,)`` ``uint8`` 0/1; ``t``: ``(n, 2)`` ``uint64``; ``tweaks`` as for :class:`SenderCOTs`.
    """

    choices: np.ndarray
    t: np.ndarray
    tweaks: np.ndarray

    def __len__(self) -> int:
        return int(self.t.shape[0])


class OTEngine(ABC):
    """Produces random COTs in both directions for one session; see the module docstring."""

    kind: ClassVar[str] = ""

    def __init__(self, party: Party) -> None:
        self.party = party

    @abstractmethod
    async def cots(self, label: str, n: int, *, sender: Role) -> SenderCOTs | ReceiverCOTs:
        """``n`` fresh random COTs with ``sender`` as OT sender; both parties call it with the same arguments."""

    @abstractmethod
    async def precompute(self, n: int, *, sender: Role) -> None:
        """Generate at least ``n`` more COTs in this direction now and buffer them (both parties call it)."""

    def expect(self, n: int) -> None:
        """A hint from the caller that decided the session's work up front: it expects to draw about ``n``
        COTs in each direction.  An engine may size its batches by it (the silent engine skips the small
        bootstrap extensions when ``n`` is large); the default ignores it.  No message is sent, and both
        parties must pass the same value (derive it from public data, as :mod:`aiompc.nn.secure` does from the
        graph and the batch): the receiver of a direction sizes its batches by it and the sender checks the
        receiver's requests against its own copy.  A receiver acting on a larger hint than the sender's
        gets the large batches it asks for only where the sender's own demand calls for them; a request
        the sender's demand never calls for is refused with :class:`~aiompc.errors.LimitExceeded` after
        :attr:`WorkBudget.grace` seconds, and the session fails."""

    async def sender_cots(self, label: str, n: int, *, sender: Role) -> SenderCOTs:
        """:meth:`cots` on the sending side (checks that this party is ``sender``)."""
        if self.party.role != _check_role(sender):
            raise InputError(f"{self.party.role} is not the OT sender on {label!r}")
        out = await self.cots(label, n, sender=sender)
        assert isinstance(out, SenderCOTs)
        return out

    async def receiver_cots(self, label: str, n: int, *, sender: Role) -> ReceiverCOTs:
        """:meth:`cots` on the receiving side (checks that this party is not ``sender``)."""
        if self.party.role == _check_role(sender):
            raise InputError(f"{self.party.role} is the OT sender on {label!r}, not the receiver")
        out = await self.cots(label, n, sender=sender)
        assert isinstance(out, ReceiverCOTs)
        return out


# --------------------------------------------------------------------------- batch sources


class COTReceiverSource(ABC):
    """The receiver's side of one direction's batch generator (runs the generation protocol)."""

    unit: ClassVar[int] = 1  # batch sizes are multiples of this

    @abstractmethod
    async def generate(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch of ``n`` COTs: ``(choices (n,) uint8, t (n, 2) uint64)``; batches are generated in order."""


class WorkBudget:
    """The sender's budget for one direction: COTs its own calls asked for (``demand``) and delivered.

    :meth:`admit` lets a receiver-driven generation step run only while ``delivered + need <=
    margin·demand + slack``; otherwise it waits up to :attr:`grace` seconds for this side's demand to grow
    (an honest receiver is at most a protocol step ahead) and then raises :class:`LimitExceeded`."""

    margin: ClassVar[int] = 2
    grace: ClassVar[float] = 30.0

    def __init__(self, slack: int) -> None:
        self.slack = slack
        self.demand = 0
        self.delivered = 0
        self._changed = asyncio.Event()

    def add(self, n: int) -> None:
        """This side's protocol asks for ``n`` more COTs in this direction."""
        self.demand += n
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def allowance(self) -> int:
        """COTs the receiver may still have generated for this side."""
        return self.margin * self.demand + self.slack - self.delivered

    async def admit(self, need: int, what: str) -> None:
        """Return once ``need`` more COTs fit the budget; :class:`LimitExceeded` after :attr:`grace` seconds."""
        await self.wait_for(lambda: self.allowance >= need, f"{what} ({need} COTs)")

    async def wait_for(self, fits: Callable[[], bool], what: str) -> None:
        """Return once ``fits()`` holds, re-checking it each time this side's demand grows; if it still does
        not after :attr:`grace` seconds (no CPU is spent waiting), raise :class:`LimitExceeded` naming
        ``what`` the peer asked for.  ``fits`` must depend only on this budget and this side's own state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        while not fits():
            left = deadline - loop.time()
            try:
                if left <= 0:
                    raise TimeoutError
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                raise LimitExceeded(
                    f"the peer asked for {what} beyond this session's need: {self.delivered} COTs delivered for "
                    f"{self.demand} requested by the protocol (budget {self.margin}x + {self.slack}) after waiting "
                    f"{self.grace:g} s for this side to catch up; it misbehaves"
                ) from None


class COTSenderSource(ABC):
    """The sender's side of one direction's batch generator; ``delta`` is the direction's Δ."""

    delta: np.ndarray

    @abstractmethod
    async def generate(self, budget: WorkBudget) -> np.ndarray:
        """The ``(n, 2)`` ``uint64`` blocks ``q`` of the receiver's next batch (in the receiver's order).

        Before computing anything for the receiver's request, await ``budget.admit(...)`` with what the
        request will produce (or the least that an honest request needs), so that a receiver cannot make
        this side generate more than the session needs."""


class _ReceiverPool:
    """Receiver side of a direction: generates batches and allocates consecutive index ranges."""

    def __init__(self, source: COTReceiverSource, min_batch: int, max_batch: int) -> None:
        self.source = source
        self.min_batch = min_batch
        self.max_batch = max_batch
        self.lock = asyncio.Lock()
        self.generated = 0  # index one past the last generated COT
        self.next = 0  # first index not yet allocated
        self._choices: list[np.ndarray] = []
        self._t: list[np.ndarray] = []

    def _round(self, n: int) -> int:
        unit = self.source.unit
        return -(-n // unit) * unit

    async def _generate(self, n: int, minimum: int) -> None:
        """Generate ``n`` or more COTs, in batches of ``minimum``..``max_batch`` (lock held)."""
        remaining = n
        while remaining > 0:
            size = self._round(min(max(remaining, minimum), self.max_batch))
            choices, t = await self.source.generate(size)
            self._choices.append(choices)
            self._t.append(t)
            self.generated += size
            remaining -= size

    async def grow(self, n: int) -> int:
        """Generate ``n`` (rounded up to the batch unit) more COTs; returns the new end index."""
        async with self.lock:
            await self._generate(n, self.source.unit)
            return self.generated

    async def take(self, n: int) -> tuple[int, np.ndarray, np.ndarray]:
        """Allocate the next ``n`` COTs: ``(start index, choices, t)``, generating more if needed."""
        async with self.lock:
            if self.generated - self.next < n:
                await self._generate(n - (self.generated - self.next), self.min_batch)
            start = self.next
            self.next += n
            choices, t = _pop_front(self._choices, n), _pop_front(self._t, n)
            return start, choices, t


def _pop_front(pieces: list[np.ndarray], n: int) -> np.ndarray:
    """Remove and return the first ``n`` rows of the concatenation of ``pieces`` (in place)."""
    out, need = [], n
    while need:
        head = pieces[0]
        if head.shape[0] <= need:
            out.append(pieces.pop(0))
            need -= head.shape[0]
        else:
            out.append(head[:need])
            pieces[0] = head[need:]
            need = 0
    return out[0] if len(out) == 1 else np.concatenate(out)


@dataclass
class _Batch:
    """A batch on the sender side: its first pool index, blocks, which COTs were taken, how many remain."""

    start: int
    q: np.ndarray
    taken: np.ndarray
    remaining: int


class _SenderPool:
    """Sender side of a direction: a background task receives the receiver's batches in order.

    If that task fails, nobody may be waiting on it (this party may be waiting for a message the peer
    cannot send before the extension it asked for arrives): it closes the party's channel with its
    error, so both parties fail at once with typed errors instead of waiting for each other (a peer
    beyond the :class:`WorkBudget` gets its :class:`~aiompc.errors.LimitExceeded` this way)."""

    def __init__(self, source: COTSenderSource, budget: WorkBudget, channel: Channel | None = None) -> None:
        self.source = source
        self.budget = budget
        self.channel = channel
        self.delta = source.delta
        self.end = 0
        self._batches: list[_Batch] = []
        self._changed = asyncio.Event()
        self._error: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._pump(), name="aiompc-ot-pump")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _pump(self) -> None:
        try:
            while True:
                q = await self.source.generate(self.budget)
                self._batches.append(_Batch(self.end, q, np.zeros(q.shape[0], dtype=bool), q.shape[0]))
                self.end += q.shape[0]
                self.budget.delivered = self.end
                self._notify()
        except asyncio.CancelledError:
            self._error = TransportClosed("the OT engine stopped (session closed)")
            self._notify()
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter
            self._error = exc
            self._notify()
            if self.channel is not None and not isinstance(exc, TransportClosed):  # (closed: both know)
                await self.channel.close(abort=True, error=exc)

    async def wait_until(self, end: int) -> None:
        """Wait until every COT below index ``end`` has been received."""
        while self.end < end:
            if self._error is not None:
                err = self._error
                if isinstance(err, (TransportClosed, ProtocolError)):
                    raise type(err)(str(err))
                raise ProtocolError(f"OT extension failed: {err!r}")
            await self._changed.wait()

    async def take(self, start: int, n: int) -> np.ndarray:
        """The blocks ``q`` of COTs ``start .. start+n-1`` (each range may be taken once)."""
        await self.wait_until(start + n)
        lo, hi = start, start + n
        pieces = []  # (batch, first, stop) relative to the batch
        for batch in self._batches:
            a, b = max(lo, batch.start) - batch.start, min(hi, batch.start + batch.q.shape[0]) - batch.start
            if a < b:
                pieces.append((batch, a, b))
        if sum(b - a for _, a, b in pieces) != n or any(batch.taken[a:b].any() for batch, a, b in pieces):
            raise ProtocolError(f"the peer allocated COTs {lo}..{hi - 1}, some of them already used; it misbehaves")
        parts = []
        for batch, a, b in pieces:
            batch.taken[a:b] = True
            batch.remaining -= b - a
            parts.append(batch.q[a:b])
        self._batches = [bt for bt in self._batches if bt.remaining]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class PooledEngine(OTEngine):
    """A buffering engine over per-direction batch sources (see the module docstring).

    ``min_batch`` is the smallest batch generated on demand (small calls then draw from the buffer);
    ``max_batch`` bounds one batch, so memory stays bounded however many COTs a call asks for.
    """

    min_batch: ClassVar[int] = 1 << 13
    max_batch: ClassVar[int] = 1 << 20

    def __init__(self, party: Party) -> None:
        super().__init__(party)
        self._receivers: dict[Role, _ReceiverPool] = {}
        self._senders: dict[Role, _SenderPool] = {}
        self._open_locks = {role: asyncio.Lock() for role in _ROLES}
        self.budgets = {role: WorkBudget(self.min_batch) for role in _ROLES}
        """Per direction, the COTs this party's own calls asked for as sender (see :class:`WorkBudget`)."""

    def label(self, sender: Role, *parts: str) -> str:
        """The engine's own label ``ot/<kind>/<sender>[/parts]`` for generation messages (phase offline)."""
        return "/".join(("ot", self.kind, sender, *parts))

    @abstractmethod
    async def open_receiver(self, sender: Role) -> COTReceiverSource:
        """Set up this party's receiver side of direction ``sender`` (e.g. run the base OTs)."""

    @abstractmethod
    async def open_sender(self, sender: Role) -> COTSenderSource:
        """Set up this party's sender side of direction ``sender`` (e.g. run the base OTs)."""

    async def _receiver_pool(self, sender: Role) -> _ReceiverPool:
        async with self._open_locks[sender]:
            pool = self._receivers.get(sender)
            if pool is None:
                source = await self.open_receiver(sender)
                pool = self._receivers[sender] = _ReceiverPool(source, self.min_batch, self.max_batch)
            return pool

    async def _sender_pool(self, sender: Role) -> _SenderPool:
        async with self._open_locks[sender]:
            pool = self._senders.get(sender)
            if pool is None:
                pool = self._senders[sender] = _SenderPool(await self.open_sender(sender), self.budgets[sender],
                                                           self.party.channel)
            return pool

    async def cots(self, label: str, n: int, *, sender: Role) -> SenderCOTs | ReceiverCOTs:
        _check_role(sender)
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise InputError(f"the number of COTs must be a non-negative integer, got {n!r}")
        n = int(n)
        if label.startswith("ot/"):
            raise InputError(f"labels starting with 'ot/' are reserved for OT engines, got {label!r}")
        sub = self.party.sub(label)
        if self.party.role == sender:
            self.budgets[sender].add(n)
            spool = await self._sender_pool(sender)
            if n == 0:
                return SenderCOTs(np.zeros((0, 2), np.uint64), spool.delta, np.zeros(0, np.uint64))
            msg = await sub.recv()
            if not (isinstance(msg, list) and len(msg) == 2 and all(isinstance(v, int) for v in msg)):
                raise ProtocolError(f"malformed COT allocation on {label!r}")
            start, count = msg
            if count != n:
                raise ProtocolError(f"COT count mismatch on {label!r}: this side asks for {n}, the peer for {count}")
            if start < 0:
                raise ProtocolError(f"negative COT index on {label!r}")
            q = await spool.take(start, n)
            return SenderCOTs(q, spool.delta, _tweaks(sender, start, n))
        rpool = await self._receiver_pool(sender)
        if n == 0:
            return ReceiverCOTs(np.zeros(0, np.uint8), np.zeros((0, 2), np.uint64), np.zeros(0, np.uint64))
        start, choices, t = await rpool.take(n)
        await sub.send([start, n])
        return ReceiverCOTs(choices, t, _tweaks(sender, start, n))

    async def precompute(self, n: int, *, sender: Role) -> None:
        _check_role(sender)
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise InputError(f"the number of COTs to precompute must be a non-negative integer, got {n!r}")
        sub = self.party.sub(self.label(sender, "mark"), phase="offline")
        if self.party.role == sender:
            self.budgets[sender].add(int(n))
            spool = await self._sender_pool(sender)
            end = await sub.recv()
            if not isinstance(end, int) or end < 0:
                raise ProtocolError("malformed OT precompute mark")
            await spool.wait_until(end)
        else:
            rpool = await self._receiver_pool(sender)
            await sub.send(await rpool.grow(int(n)))

    def buffered(self, sender: Role) -> int:
        """COTs generated and not yet allocated in direction ``sender`` (known exactly on the receiver side;
        on the sender side, received and not yet taken)."""
        if self.party.role == sender:
            spool = self._senders.get(sender)
            return sum(bt.remaining for bt in spool._batches) if spool else 0
        rpool = self._receivers.get(sender)
        return rpool.generated - rpool.next if rpool else 0
