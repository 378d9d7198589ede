"""The silent OT engine (``party.options["ot"] = "silent"``): Ferret-style COT extension over LPN.

Per direction (``sender`` = the COT sender), set up on first use:

* **bootstrap** — 128 Chou–Orlandi base OTs in the reverse direction (``ot/silent/<sender>/base``) and
  one IKNP batch (``ot/silent/<sender>/iknp``, 16 bytes per COT, R→S) give the first
  ``schedule.initial`` reserved COTs (47,709 with the published sets, rounded up to IKNP's 128).  The
  sender chooses its IKNP ``Δ`` with least significant bit 1; both sides then move the LSB of ``q``
  out of the way *locally* (``q' = q`` with LSB cleared, ``t' = t`` with LSB set to the choice bit:
  ``LSB(q) = LSB(t) ⊕ b`` is already known to the receiver, so nothing is sent or revealed), which is
  the convention of :mod:`aiompc.crypto.ferret.spcot`;
* **extensions** on ``ot/silent/<sender>`` — the receiver sends the name of the parameter set (a few
  bytes; the bootstrap set first and while demand is small, the main set once it is large, see
  :class:`~aiompc.crypto.ferret.extension.FerretSchedule`) and the sender answers with one message of
  ``16 + 16·t·(2h + 1)`` bytes (559,456 for the main set, which nets 10,001,981 COTs: 0.45 bit each).

All of this is phase "offline"; the flavours' derandomisation stays on their own (online) labels.  Pooling,
allocation and tweaks are :class:`~aiompc.protocols.ot.engine.PooledEngine`'s: this module only provides the
batch sources.  Memory: about ``16·n`` bytes per side and direction while a main extension runs
(≈ 170 MB) plus the handed-out COTs not yet consumed.  Semi-honest security, 128-bit computational
(``Δ`` has 127 random bits, as in the reference implementation).

Tests may build the engine with a forced small :class:`~aiompc.crypto.ferret.extension.FerretSchedule`
(``SilentEngine(party, schedule=...)`` stored in ``party.state["ot_engine"]`` on both sides); the
session option only ever selects the published sets.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from aiompc.channel import SubChannel
from aiompc.crypto.ferret.extension import PUBLISHED_SCHEDULE, FerretReceiver, FerretSchedule, FerretSender
from aiompc.crypto.ferret.params import FerretParams
from aiompc.errors import ProtocolError
from aiompc.kernels.threads import default_parts
from aiompc.party import Party, Role
from aiompc.protocols.ot import base
from aiompc.protocols.ot.engine import COTReceiverSource, COTSenderSource, PooledEngine, WorkBudget
from aiompc.protocols.ot.iknp import BATCH_UNIT, KAPPA, IKNPReceiver, IKNPSender

__all__ = ["SilentEngine"]

_LSB = np.uint64(1)


def _nonce_base(sender: Role) -> int:
    """Hash-tweak nonces of the two directions never meet (the extension counter is added)."""
    return 0 if sender == "server" else 1 << 40


def _iknp_count(schedule: FerretSchedule) -> int:
    return -(-schedule.initial // BATCH_UNIT) * BATCH_UNIT


class _Receiver(COTReceiverSource):
    """Receiver side of one direction: asks for extensions and hands out their MACs in order."""

    def __init__(self, party: Party, sub: SubChannel, ferret: FerretReceiver) -> None:
        self.party, self.sub, self.ferret = party, sub, ferret
        self.pieces: deque[np.ndarray] = deque()
        self.available = 0

    async def _extend(self, request: int) -> None:
        p = self.ferret.choose(request)
        await self.sub.send(p.name)
        message = await self.sub.recv_bytes()
        pieces = await self.party.compute(self.ferret.absorb, p, message)
        self.pieces.extend(pieces)
        self.available += sum(piece.shape[0] for piece in pieces)

    def _pop(self, n: int) -> np.ndarray:
        out, need = [], n
        while need:
            head = self.pieces[0]
            if head.shape[0] <= need:
                out.append(self.pieces.popleft())
                need -= head.shape[0]
            else:
                out.append(head[:need])
                self.pieces[0] = head[need:]
                need = 0
        self.available -= n
        return out[0] if len(out) == 1 else np.concatenate(out)

    async def generate(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        while self.available < n:
            await self._extend(n)
        t = self._pop(n)
        return FerretReceiver.choices(t), t


class _Sender(COTSenderSource):
    """Sender side of one direction: answers extension requests, then yields the keys piece by piece."""

    def __init__(self, party: Party, sub: SubChannel, ferret: FerretSender, engine: "SilentEngine") -> None:
        self.party, self.sub, self.ferret, self.engine = party, sub, ferret, engine
        self.delta = ferret.delta
        self.pieces: deque[np.ndarray] = deque()

    async def generate(self, budget: WorkBudget) -> np.ndarray:
        while not self.pieces:
            name = await self.sub.recv()
            p = self.ferret.schedule.by_name(name)
            await self._admit(budget, p)
            message = await self.party.compute(self.ferret.respond, p)
            await self.sub.send_bytes(message)
            self.pieces.extend(await self.party.compute(self.ferret.finish))
        return self.pieces.popleft()


    async def _admit(self, budget: WorkBudget, p: FerretParams) -> None:
        """Run the extension ``p`` only once an honest receiver could ask for it: some of this side's demand
        is outstanding, and the main set only where the schedule's own rule (:meth:`FerretSchedule.choose`)
        picks it for a request no larger than the budget's allowance, given what this side's own plan
        expects (:meth:`SilentEngine.expect`).  The receiver may be a protocol step ahead of this side (it
        asks for the main set before this side's matching call has registered its demand), so a request
        that does not fit yet waits for this side's demand to grow, up to :attr:`WorkBudget.grace` seconds
        and without computing anything; then it fails with :class:`~aiompc.errors.LimitExceeded`."""
        schedule, ferret = self.ferret.schedule, self.ferret

        def fits() -> bool:
            if budget.allowance < 1:
                return False
            return p == schedule.bootstrap or p == schedule.choose(ferret.first, budget.allowance, ferret.handed_out,
                                                                   self.engine.expected)

        await budget.wait_for(fits, f"a Ferret extension with the set {p.name!r}")


class SilentEngine(PooledEngine):
    """Ferret silent OT: well under one bit of traffic per random COT once bootstrapped (semi-honest)."""

    kind = "silent"

    def __init__(self, party: Party, *, schedule: FerretSchedule = PUBLISHED_SCHEDULE, parts: int | None = None) -> None:
        super().__init__(party)
        self.schedule = schedule
        self.parts = default_parts() if parts is None else parts  # threads per extension (every core)
        self.expected = 0  # the caller's hint (expect), handed to each direction's Ferret receiver

    def expect(self, n: int) -> None:
        """Every extension after the first uses the main set when ``n`` makes it cheaper than renting
        (:meth:`~aiompc.crypto.ferret.extension.FerretSchedule.choose`): the receiver asks for it and the
        sender admits it (:meth:`_Sender._admit`), so both parties must pass the same ``n``."""
        self.expected = max(0, int(n))
        for rpool in self._receivers.values():
            rpool.source.ferret.expected = self.expected  # type: ignore[attr-defined]

    async def open_receiver(self, sender: Role) -> COTReceiverSource:
        """Bootstrap as COT receiver: base-OT sender, IKNP receiver, then Ferret receiver."""
        pairs = await base.send(self.party, self.party.sub(self.label(sender, "base"), phase="offline"), KAPPA)
        iknp = IKNPReceiver(pairs, self.party.rng.fork())
        choices, t, u = await self.party.compute(iknp.extend, _iknp_count(self.schedule))
        await self.party.sub(self.label(sender, "iknp"), phase="offline").send_bytes(u)
        t[:, 0] = (t[:, 0] & ~_LSB) | choices.astype(np.uint64)  # t' = q' ⊕ b·Δ with LSB(q') = 0
        ferret = FerretReceiver(self.schedule, t, _nonce_base(sender), self.parts)
        ferret.expected = self.expected
        return _Receiver(self.party, self.party.sub(self.label(sender), phase="offline"), ferret)

    async def open_sender(self, sender: Role) -> COTSenderSource:
        """Bootstrap as COT sender: base-OT receiver with LSB(Δ) = 1, IKNP sender, then Ferret sender."""
        delta_bits = self.party.rng.bits(KAPPA)
        delta_bits[0] = 1  # bit 0 of the block is its least significant bit
        keys = await base.receive(self.party, self.party.sub(self.label(sender, "base"), phase="offline"), delta_bits)
        iknp = IKNPSender(delta_bits, keys)
        data = await self.party.sub(self.label(sender, "iknp"), phase="offline").recv_bytes()
        count = _iknp_count(self.schedule)
        if len(data) != 16 * count:
            raise ProtocolError(f"silent OT bootstrap: IKNP batch of {len(data)} bytes, expected {16 * count}")
        u = np.frombuffer(data, dtype=np.uint8).reshape(KAPPA, count // 8)
        q = await self.party.compute(iknp.extend, u)
        q[:, 0] &= ~_LSB
        ferret = FerretSender(self.schedule, iknp.delta, q, self.party.rng.fork(), _nonce_base(sender), self.parts)
        return _Sender(self.party, self.party.sub(self.label(sender), phase="offline"), ferret, self)

    def buffered(self, sender: Role) -> int:
        """COTs generated and not yet allocated, including extension output not yet moved into the pool."""
        count = super().buffered(sender)
        if self.party.role == sender:
            spool = self._senders.get(sender)
            return count + (sum(p.shape[0] for p in spool.source.pieces) if spool else 0)  # type: ignore[attr-defined]
        rpool = self._receivers.get(sender)
        return count + (rpool.source.available if rpool else 0)  # type: ignore[attr-defined]

    def history(self, sender: Role) -> list[str]:
        """Names of the Ferret parameter sets of the extensions run so far in direction ``sender``."""
        if self.party.role == sender:
            spool = self._senders.get(sender)
            return list(spool.source.ferret.history) if spool else []  # type: ignore[attr-defined]
        rpool = self._receivers.get(sender)
        return list(rpool.source.ferret.history) if rpool else []  # type: ignore[attr-defined]
