"""The IKNP OT engine (``party.options["ot"] = "iknp"``; the default engine is silent OT, :mod:`aiompc.protocols.ot.silent`).

Setup of a direction (once per session, on the first call): 128 Chou–Orlandi base OTs in the reverse
direction on label ``ot/iknp/<sender>/base`` (phase offline, 32·129 bytes).  Each batch is one message
R→S on ``ot/iknp/<sender>``: the raw 128 × n bit matrix U (16·n bytes, no header: n = len/16).  The
math is :mod:`aiompc.protocols.ot.iknp`; pooling and allocation are :class:`~aiompc.protocols.ot.engine.PooledEngine`'s.
"""

from __future__ import annotations

import numpy as np

from aiompc.channel import SubChannel
from aiompc.errors import ProtocolError
from aiompc.party import Party, Role
from aiompc.protocols.ot import base
from aiompc.protocols.ot.engine import COTReceiverSource, COTSenderSource, PooledEngine, WorkBudget
from aiompc.protocols.ot.iknp import BATCH_UNIT, KAPPA, IKNPReceiver, IKNPSender

__all__ = ["IKNPEngine"]


class _Receiver(COTReceiverSource):
    unit = BATCH_UNIT

    def __init__(self, party: Party, sub: SubChannel, iknp: IKNPReceiver) -> None:
        self.party, self.sub, self.iknp = party, sub, iknp

    async def generate(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        choices, t, u = await self.party.compute(self.iknp.extend, n)
        await self.sub.send_bytes(memoryview(u))
        return choices, t


class _Sender(COTSenderSource):
    def __init__(self, party: Party, sub: SubChannel, iknp: IKNPSender) -> None:
        self.party, self.sub, self.iknp = party, sub, iknp
        self.delta = iknp.delta

    async def generate(self, budget: WorkBudget) -> np.ndarray:
        data = await self.sub.recv_bytes()
        if not data or len(data) % (16 * BATCH_UNIT):
            raise ProtocolError(f"IKNP batch of {len(data)} bytes is not a multiple of {16 * BATCH_UNIT}")
        await budget.admit(len(data) // 16, "an IKNP batch")
        u = np.frombuffer(data, dtype=np.uint8).reshape(KAPPA, len(data) // KAPPA)
        return await self.party.compute(self.iknp.extend, u)


class IKNPEngine(PooledEngine):
    """Semi-honest IKNP OT extension over Chou–Orlandi base OTs: 16 bytes of offline traffic per COT."""

    kind = "iknp"

    async def open_receiver(self, sender: Role) -> COTReceiverSource:
        base_sub = self.party.sub(self.label(sender, "base"), phase="offline")
        pairs = await base.send(self.party, base_sub, KAPPA)
        iknp = IKNPReceiver(pairs, self.party.rng.fork())
        return _Receiver(self.party, self.party.sub(self.label(sender), phase="offline"), iknp)

    async def open_sender(self, sender: Role) -> COTSenderSource:
        base_sub = self.party.sub(self.label(sender, "base"), phase="offline")
        delta_bits = self.party.rng.bits(KAPPA)
        keys = await base.receive(self.party, base_sub, delta_bits)
        iknp = IKNPSender(delta_bits, keys)
        return _Sender(self.party, self.party.sub(self.label(sender), phase="offline"), iknp)
