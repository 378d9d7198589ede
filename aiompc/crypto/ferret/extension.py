"""One direction of the Ferret COT extension, sans I/O: the sender's and the receiver's state machines.

Each side keeps a *reserve* of random COTs in the engine's convention (sender: keys ``K`` with LSB 0
and ``Δ`` with LSB 1; receiver: ``M = K ⊕ b·Δ``, choice bit ``b`` = LSB of ``M``).  One extension with a
parameter set ``p`` (both sides use the same, chosen by the receiver, see :meth:`FerretSchedule.choose`):

1. the receiver asks for set ``p`` (:meth:`FerretReceiver.choose`; the protocol layer sends its name);
2. the sender (:meth:`FerretSender.respond`) draws ``t`` GGM roots and a fresh 16-byte seed for the
   public local code, runs :func:`~aiompc.crypto.ferret.spcot.mpcot_send` on reserve COTs
   ``k .. k + t·h - 1`` and returns the message ``seed ‖ pads ‖ corrections``
   (``16 + 16·t·(2h + 1)`` bytes);
3. both sides finish locally: the receiver runs :func:`~aiompc.crypto.ferret.spcot.mpcot_receive`;
   each side applies the LPN code to reserve COTs ``0 .. k - 1`` (the secret ``u``) and XORs the
   multi-point COT output into it: ``y = A·u ⊕ v`` (sender), ``A·M_u ⊕ w`` (receiver);
4. the first ``R`` outputs (``R`` = the schedule's largest ``reserved``) become the new reserve; the
   old reserve's unconsumed tail and ``y[R:]`` are handed out, in this order, as *pieces*.

Both sides produce the pieces in the same order, so position ``i`` of the handed-out stream is one
correlated OT ``(K_i, Δ) / (b_i, M_i)``.  Net gain per extension: ``n - reserved`` COTs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiompc.crypto.ferret.blocks import lsb
from aiompc.crypto.ferret.lpn import LocalLinearCode
from aiompc.crypto.ferret.params import BOOTSTRAP, MAIN, FerretParams
from aiompc.crypto.ferret.spcot import MpcotMessage, mpcot_receive, mpcot_send
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, ParameterError, ProtocolError

__all__ = ["FerretSchedule", "PUBLISHED_SCHEDULE", "FerretSender", "FerretReceiver", "SEED_BYTES"]

SEED_BYTES = 16
_ONE = np.uint64(1)


@dataclass(frozen=True)
class FerretSchedule:
    """Which parameter set each extension uses.

    The first extension of a direction uses ``bootstrap`` (its reserve comes from IKNP).  Later ones
    use ``main`` once demand has proven large — a single request of more than ``bootstrap.gain`` COTs,
    or more than ``2·bootstrap.gain`` handed out so far in this direction — and ``bootstrap`` before
    that, so a session that needs few COTs never computes a main-size extension, while a long stream of
    small requests pays the bootstrap set's higher cost per COT at most twice (ski rental).  A session
    that knows its demand up front (``expected`` COTs in this direction, a hint handed down by the
    caller) skips the renting: if ``expected > 2·bootstrap.gain`` every extension after the first is
    ``main`` (with the published sets a bootstrap extension costs 385,792 bytes for 602,019 COTs, a
    main one 559,456 bytes for 10,001,981, so renting twice costs more than buying).  The reserve kept
    after every extension is ``reserve = max(bootstrap.reserved, main.reserved)``.
    """

    bootstrap: FerretParams = BOOTSTRAP
    main: FerretParams = MAIN

    def __post_init__(self) -> None:
        if self.bootstrap.name == self.main.name and self.bootstrap != self.main:
            raise ParameterError("the two parameter sets of a Ferret schedule need distinct names")
        for p in (self.bootstrap, self.main):
            if p.n < self.reserve:
                raise ParameterError(
                    f"Ferret set {p.name!r} outputs {p.n} COTs, fewer than the {self.reserve} the schedule reserves"
                )

    @property
    def reserve(self) -> int:
        """COTs kept back after every extension for the next one."""
        return max(self.bootstrap.reserved, self.main.reserved)

    @property
    def initial(self) -> int:
        """COTs the bootstrap (base OT + IKNP) must provide before the first extension."""
        return self.bootstrap.reserved

    def by_name(self, name: object) -> FerretParams:
        """The set called ``name``; :class:`ProtocolError` for anything else (a peer's request)."""
        for p in (self.bootstrap, self.main):
            if name == p.name:
                return p
        raise ProtocolError(f"the peer asked for an unknown Ferret parameter set {name!r}")

    def choose(self, first: bool, request: int, handed_out: int, expected: int = 0) -> FerretParams:
        """The set for the next extension, given the pending ``request`` size, the COTs handed out so far
        and the COTs the session ``expected`` to use in this direction (0: unknown)."""
        if first:
            return self.bootstrap
        gain = self.bootstrap.gain
        large = request > gain or handed_out > 2 * gain or expected > 2 * gain
        return self.main if large else self.bootstrap


PUBLISHED_SCHEDULE = FerretSchedule()


def _message_bytes(p: FerretParams) -> int:
    return SEED_BYTES + p.message_bytes


class _Side:
    def __init__(self, schedule: FerretSchedule, reserve: np.ndarray, nonce_base: int) -> None:
        if reserve.ndim != 2 or reserve.shape[1] != 2 or reserve.dtype != np.uint64:
            raise InputError(f"the initial reserve must be (n, 2) uint64 blocks, got {reserve.dtype} {reserve.shape}")
        if reserve.shape[0] < schedule.initial:
            raise InputError(f"the first extension needs {schedule.initial} reserved COTs, got {reserve.shape[0]}")
        self.schedule = schedule
        self.reserve = np.ascontiguousarray(reserve)
        self.nonce_base = nonce_base
        self.history: list[str] = []  # names of the sets used, in order
        self.handed_out = 0  # COTs handed out as pieces so far

    @property
    def extensions(self) -> int:
        """Extensions run so far."""
        return len(self.history)

    @property
    def first(self) -> bool:
        return self.extensions == 0

    def _nonce(self) -> int:
        return self.nonce_base + self.extensions

    def _split(self, p: FerretParams, y: np.ndarray) -> list[np.ndarray]:
        """Refill the reserve from ``y`` and return the handed-out pieces."""
        keep = self.schedule.reserve
        leftover = self.reserve[p.reserved :]
        self.reserve = y[:keep].copy()  # a copy, so the handed-out part alone keeps y alive
        self.history.append(p.name)
        pieces = [piece for piece in (leftover, y[keep:]) if piece.shape[0]]
        self.handed_out += sum(piece.shape[0] for piece in pieces)
        return pieces


class FerretSender(_Side):
    """The COT sender's side of one direction.

    Args:
        schedule: the parameter sets (the same on both sides).
        delta: ``(2,)`` uint64 global ``Δ`` with LSB 1.
        keys: ``(m, 2)`` initial reserve keys with LSB 0, ``m >= schedule.initial`` (from IKNP).
        rng: this side's PRG (GGM roots and code seeds); used only by this object.
        nonce_base: makes hash tweaks unique across directions (``extensions`` is added to it).
    """

    def __init__(self, schedule: FerretSchedule, delta: np.ndarray, keys: np.ndarray, rng: PRG, nonce_base: int = 0) -> None:
        super().__init__(schedule, keys, nonce_base)
        if delta.shape != (2,) or not int(delta[0]) & 1:
            raise InputError("Δ must be a (2,) uint64 block with least significant bit 1")
        if (self.reserve[:, 0] & _ONE).any():
            raise InputError("reserved keys must have least significant bit 0 (clear it before handing them over)")
        self.delta = np.array(delta, dtype=np.uint64)
        self.rng = rng
        self._pending: tuple[FerretParams, LocalLinearCode, np.ndarray] | None = None

    def respond(self, p: FerretParams) -> bytes:
        """Step 2 for set ``p``: the message to send (``16 + 16·t·(2h + 1)`` bytes). Cost: ``2n`` AES blocks."""
        if self._pending is not None:
            raise InputError("finish() the previous extension before starting another")
        seed = self.rng.random_bytes(SEED_BYTES)
        roots = self.rng.words((p.t, 2))
        tree_keys = self.reserve[p.k : p.reserved]
        v, msg = mpcot_send(self.delta, roots, tree_keys, p.log_bin, self._nonce())
        self._pending = (p, LocalLinearCode(seed, p.k, p.d), v)
        return seed + msg.to_array().tobytes()

    def finish(self) -> list[np.ndarray]:
        """Steps 3–4: the LPN step in place, then the handed-out key pieces. Cost: ``d·n`` gathers."""
        if self._pending is None:
            raise InputError("respond() before finish()")
        p, code, y = self._pending
        self._pending = None
        code.encode_into(self.reserve[: p.k], y)
        return self._split(p, y)


class FerretReceiver(_Side):
    """The COT receiver's side of one direction.

    Args:
        schedule: the parameter sets (the same on both sides).
        macs: ``(m, 2)`` initial reserve MACs ``K ⊕ b·Δ`` whose LSB is the choice bit ``b``.
        nonce_base: as for :class:`FerretSender` (the same value on both sides of a direction).
    """

    def __init__(self, schedule: FerretSchedule, macs: np.ndarray, nonce_base: int = 0) -> None:
        super().__init__(schedule, macs, nonce_base)
        self.expected = 0  # COTs the session expects to use in this direction (a hint; 0: unknown)

    def choose(self, request: int) -> FerretParams:
        """The set of the next extension, given that a batch of ``request`` COTs is wanted now."""
        return self.schedule.choose(self.first, request, self.handed_out, self.expected)

    def absorb(self, p: FerretParams, message: bytes | bytearray | memoryview) -> list[np.ndarray]:
        """Steps 3–4 for set ``p`` and the sender's message: the handed-out MAC pieces (choice bit = LSB).

        Raises :class:`ProtocolError` if the message has the wrong size.
        """
        want = _message_bytes(p)
        if len(message) != want:
            raise ProtocolError(f"Ferret extension message of {len(message)} bytes, expected {want} for set {p.name!r}")
        raw = memoryview(message)
        code = LocalLinearCode(bytes(raw[:SEED_BYTES]), p.k, p.d)
        blocks = np.frombuffer(raw[SEED_BYTES:], dtype="<u8").astype(np.uint64).reshape(-1, 2)
        msg = MpcotMessage.from_array(blocks, p.t, p.log_bin)
        w, _ = mpcot_receive(self.reserve[p.k : p.reserved], msg, p.log_bin, self._nonce())
        code.encode_into(self.reserve[: p.k], w)
        return self._split(p, w)

    @staticmethod
    def choices(macs: np.ndarray) -> np.ndarray:
        """The choice bits of MACs in this convention (their LSBs), ``uint8`` 0/1."""
        return lsb(macs)
