"""The OT flavours the non-linear protocols use, all derived from the engine's random COTs.

Conventions (the fixed contract of CONTRIBUTING.md): both parties call a flavour with the same
``label`` and ``sender`` (the Role acting as OT sender); arguments of the other role are ``None``.
Values are ``uint64`` below ``2^bits`` (``1 <= bits <= 64``), choice bits ``uint8`` 0/1; every
array has ``n >= 1`` instances along axis 0 (``n = 0`` gives empty results).  Each call consumes fresh
COTs from :func:`~protocols.ot.engine.get_engine` (offline phase); its own messages travel on
``label`` (online phase), always in one round trip, whatever ``n``: the receiver sends all of its
messages, then the sender answers.

Derandomisation of a random COT ``(q, Δ) / (b, t = q ⊕ b·Δ)`` into a chosen choice ``c``: the receiver
sends ``d = c ⊕ b`` (1 bit); the sender's key for message ``j`` is ``K_j = q ⊕ (d ⊕ j)·Δ``, so the
receiver holds ``K_c = t`` and nothing about ``K_{1−c}``.  Keys become ``l``-bit pads through the
tweakable correlation-robust hash (:mod:`protocols.ot.pads`).  Bytes per instance on top of the COTs
(measured in ``benchmarks/ot.py``; frame headers extra):

============================  ====================  ==================================
flavour                       receiver → sender     sender → receiver
============================  ====================  ==================================
chosen_ot (k values of l b)   1 bit                 2·k·l bits
correlated_ot (k values)      1 bit                 k·l bits
one_of_n_ot (N = 2^m)         m bits                N·k·l bits
random_ot                     —                     —
bit_triples                   —                     —        (2 random OTs of 1 bit per triple)
============================  ====================  ==================================

Each call also sends one allocation message of about a dozen bytes per chunk of
:data:`CHUNK_COTS` COTs (which pool range it uses).  COTs per instance: 1 (``m`` for 1-of-N).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from aiompc.channel import SubChannel
from aiompc.errors import InputError, ProtocolError
from aiompc.party import Party, Role
from aiompc.wire import Packed
from protocols.ot.engine import ReceiverCOTs, SenderCOTs, get_engine
from protocols.ot.pads import lane_dtype, pad_lanes, pads, pads_at, value_mask

__all__ = ["chosen_ot", "correlated_ot", "one_of_n_ot", "random_ot", "bit_triples", "CHUNK_COTS"]

CHUNK_COTS = 1 << 20  # COTs per allocation: bounds the memory of one step whatever n is


# --------------------------------------------------------------------------- argument checks


def _check_common(party: Party, sender: Role, bits: int) -> bool:
    """Validate ``sender`` and ``bits``; True if this party is the sender."""
    if sender not in ("server", "client"):
        raise InputError(f"sender must be 'server' or 'client', got {sender!r}")
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 64:
        raise InputError(f"bits must be an integer in 1..64, got {bits!r}")
    return party.role == sender


def _values(x: Any, bits: int, name: str) -> np.ndarray:
    """``x`` as a ``uint64`` array of values below ``2^bits`` (InputError otherwise)."""
    if x is None:
        raise InputError(f"the OT sender must pass {name}")
    a = np.asarray(x)
    if a.dtype.kind not in "ui":
        raise InputError(f"{name} must be an integer array, got dtype {a.dtype}")
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise InputError(f"{name} must be non-negative (values mod 2^{bits}); reduce them first")
    a = a.astype(np.uint64, copy=False)
    if a.ndim not in (1, 2):
        raise InputError(f"{name} must have shape (n,) or (n, k), got {a.shape}")
    if bits < 64 and a.size and int(a.max()) >> bits:
        raise InputError(f"{name} has a value >= 2^{bits}; reduce it mod 2^{bits} first")
    return a


def _choices(c: Any, limit: int = 2) -> np.ndarray:
    """Receiver choices as a 1-D ``int64`` array of values below ``limit``."""
    if c is None:
        raise InputError("the OT receiver must pass choices")
    a = np.asarray(c)
    if a.ndim != 1 or a.dtype.kind not in "uib":
        raise InputError(f"choices must be a 1-D integer array, got {a.dtype} of shape {a.shape}")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= limit):
        raise InputError(f"choices must lie in 0..{limit - 1}")
    return a


def _chunks(n: int, cots_per_instance: int) -> list[slice]:
    step = max(1, CHUNK_COTS // cots_per_instance)
    return [slice(lo, min(n, lo + step)) for lo in range(0, n, step)]


def _as_2d(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1)


async def _recv_array(sub: SubChannel, shape0: int, what: str, ndim: tuple[int, ...] = (1, 2)) -> np.ndarray:
    arr = await sub.recv()
    if not isinstance(arr, np.ndarray) or arr.ndim not in ndim or arr.shape[0] != shape0:
        raise ProtocolError(f"{what} on {sub.label!r}: malformed or of the wrong length")
    return arr


async def _recv_bits(sub: SubChannel, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = await sub.recv()
    if not isinstance(arr, np.ndarray) or arr.shape != shape or (arr.size and arr.max() > 1):
        raise ProtocolError(f"{what} on {sub.label!r}: expected {shape} bits")
    return arr.astype(np.uint8)


def _keys(cots: SenderCOTs, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sender keys ``K_0 = q ⊕ d·Δ`` and ``K_1 = K_0 ⊕ Δ`` for the receiver's corrections ``d``."""
    k0 = cots.q ^ (d.astype(np.uint64)[:, None] * cots.delta)
    return k0, k0 ^ cots.delta


# --------------------------------------------------------------------------- chosen-message 1-of-2 OT


async def chosen_ot(
    party: Party,
    label: str,
    *,
    sender: Role,
    bits: int,
    messages: tuple[np.ndarray, np.ndarray] | None = None,
    choices: np.ndarray | None = None,
) -> np.ndarray | None:
    """1-of-2 OT of ``bits``-bit messages.

    Sender passes ``messages = (m0, m1)``, each ``(n,)`` or ``(n, k)`` ``uint64`` below ``2^bits``, and gets
    ``None``; the receiver passes ``choices`` ``(n,)`` 0/1 and gets ``m_{c_i}[i]`` (shape of ``m0``).
    Cost: n COTs; receiver sends n bits, sender ``2·n·k·bits`` bits; one round trip.
    """
    is_sender = _check_common(party, sender, bits)
    engine = get_engine(party)
    sub = party.sub(label)
    if is_sender:
        if messages is None or len(messages) != 2:
            raise InputError("the OT sender must pass messages=(m0, m1)")
        m0, m1 = _values(messages[0], bits, "m0"), _values(messages[1], bits, "m1")
        if m0.shape != m1.shape:
            raise InputError(f"m0 and m1 differ in shape: {m0.shape} vs {m1.shape}")
        n = m0.shape[0]
        for sl in _chunks(n, 1):
            cots = await engine.sender_cots(label, sl.stop - sl.start, sender=sender)
            d = await _recv_bits(sub, (len(cots),), "choice corrections")
            y = await party.compute(_chosen_sender, cots, d, _as_2d(m0[sl]), _as_2d(m1[sl]), bits)
            await sub.send([Packed(y[0].reshape(m0[sl].shape), bits), Packed(y[1].reshape(m0[sl].shape), bits)])
        return None
    c = _choices(choices)
    n = c.shape[0]
    pending = []
    for sl in _chunks(n, 1):
        cots = await engine.receiver_cots(label, sl.stop - sl.start, sender=sender)
        await sub.send(Packed(c[sl].astype(np.uint8) ^ cots.choices, 1))
        pending.append((sl, cots))
    parts = []
    for sl, cots in pending:
        msg = await sub.recv()
        if not (isinstance(msg, list) and len(msg) == 2):
            raise ProtocolError(f"malformed chosen-OT reply on {label!r}")
        y0, y1 = (np.asarray(v) for v in msg)
        if y0.shape != y1.shape or y0.ndim not in (1, 2) or y0.shape[0] != len(cots):
            raise ProtocolError(f"chosen-OT reply on {label!r} has the wrong shape")
        parts.append(await party.compute(_chosen_receiver, cots, c[sl], y0, y1, bits))
    if not parts:
        return np.zeros(0, dtype=np.uint64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _chosen_sender(cots: SenderCOTs, d: np.ndarray, m0: np.ndarray, m1: np.ndarray, bits: int) -> np.ndarray:
    k0, k1 = _keys(cots, d)
    width = m0.shape[1]
    return np.stack([m0 ^ pads(k0, cots.tweaks, width, bits), m1 ^ pads(k1, cots.tweaks, width, bits)])


def _chosen_receiver(cots: ReceiverCOTs, c: np.ndarray, y0: np.ndarray, y1: np.ndarray, bits: int) -> np.ndarray:
    shape = y0.shape
    y0, y1 = _as_2d(y0), _as_2d(y1)
    sel = np.where(c.astype(bool)[:, None], y1, y0)
    return (sel ^ pads(cots.t, cots.tweaks, y0.shape[1], bits)).reshape(shape)


# --------------------------------------------------------------------------- additive correlated OT


async def correlated_ot(
    party: Party,
    label: str,
    *,
    sender: Role,
    bits: int,
    correlation: np.ndarray | None = None,
    choices: np.ndarray | None = None,
) -> np.ndarray:
    """Correlated OT with an additive ``bits``-bit correlation.

    Sender passes ``correlation`` Δ_i (``(n,)`` or ``(n, k)``) and gets ``x``, uniform mod ``2^bits``;
    the receiver passes ``choices`` ``(n,)`` 0/1 and gets ``x + c_i·Δ_i mod 2^bits`` (shape of Δ).  So
    ``(−x, x + c·Δ)`` is an additive sharing of ``c·Δ`` mod ``2^bits``.
    Cost: n COTs; receiver sends n bits, sender ``n·k·bits`` bits; one round trip.
    """
    is_sender = _check_common(party, sender, bits)
    engine = get_engine(party)
    sub = party.sub(label)
    if is_sender:
        corr = _values(correlation, bits, "correlation")
        n = corr.shape[0]
        outs = []
        for sl in _chunks(n, 1):
            cots = await engine.sender_cots(label, sl.stop - sl.start, sender=sender)
            d = await _recv_bits(sub, (len(cots),), "choice corrections")
            x, y = await party.compute(_correlated_sender, cots, d, _as_2d(corr[sl]), bits)
            await sub.send(Packed(y.reshape(corr[sl].shape), bits))
            outs.append(x.reshape(corr[sl].shape))
        return _concat(outs, corr.shape)
    c = _choices(choices)
    pending = []
    for sl in _chunks(c.shape[0], 1):
        cots = await engine.receiver_cots(label, sl.stop - sl.start, sender=sender)
        await sub.send(Packed(c[sl].astype(np.uint8) ^ cots.choices, 1))
        pending.append((sl, cots))
    outs = []
    for sl, cots in pending:
        y = await _recv_array(sub, len(cots), "correlated-OT reply")
        outs.append(await party.compute(_correlated_receiver, cots, c[sl], y, bits))
    return _concat(outs, (0,))


def _concat(parts: list[np.ndarray], empty_shape: tuple[int, ...]) -> np.ndarray:
    if not parts:
        return np.zeros(empty_shape, dtype=np.uint64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _correlated_sender(
    cots: SenderCOTs, d: np.ndarray, corr: np.ndarray, bits: int
) -> tuple[np.ndarray, np.ndarray]:
    k0, k1 = _keys(cots, d)
    width = corr.shape[1]
    x = pads(k0, cots.tweaks, width, bits)
    y = (pads(k1, cots.tweaks, width, bits) - x - corr) & value_mask(bits)
    return x, y


def _correlated_receiver(cots: ReceiverCOTs, c: np.ndarray, y: np.ndarray, bits: int) -> np.ndarray:
    shape = y.shape
    y = _as_2d(y).astype(np.uint64)
    pad = pads(cots.t, cots.tweaks, y.shape[1], bits)
    return ((pad - c.astype(np.uint64)[:, None] * y) & value_mask(bits)).reshape(shape)


# --------------------------------------------------------------------------- 1-out-of-N OT


def _log2_ceil(n_choices: int) -> int:
    return max(1, (int(n_choices) - 1).bit_length())


async def one_of_n_ot(
    party: Party,
    label: str,
    *,
    sender: Role,
    bits: int,
    n_choices: int,
    messages: np.ndarray | None = None,
    choices: np.ndarray | None = None,
) -> np.ndarray | None:
    """1-out-of-N OT of ``bits``-bit messages, ``2 <= N = n_choices <= 256``, from ``m = ⌈log2 N⌉`` COTs.

    Sender passes ``messages`` ``(n, N)`` or ``(n, N, k)`` and gets ``None``; the receiver passes
    ``choices`` ``(n,)`` below N and gets ``messages[i, choices[i]]`` (shape ``(n,)`` or ``(n, k)``).

    Construction (Naor–Pinkas style): with COT keys ``K_{i,t}^0, K_{i,t}^1`` for ``t < m``, message ``x``
    is masked by ``⊕_t pad(K_{i,t}^{x_t})[x without bit t]`` (one lane of the key's pad stream, used for
    no other message); the receiver holds exactly the keys of the bits of its choice, and every other
    message has a lane of a key it lacks.
    Cost: ``n·m`` COTs; receiver sends ``n·m`` bits, sender ``n·N·k·bits`` bits; one round trip.
    """
    is_sender = _check_common(party, sender, bits)
    if not isinstance(n_choices, (int, np.integer)) or not 2 <= n_choices <= 256:
        raise InputError(f"n_choices must be an integer in 2..256, got {n_choices!r}")
    N, m = int(n_choices), _log2_ceil(n_choices)
    engine = get_engine(party)
    sub = party.sub(label)
    if is_sender:
        msgs = np.asarray(messages) if messages is not None else None
        if msgs is None or msgs.ndim not in (2, 3) or msgs.shape[1] != N:
            raise InputError(f"the OT sender must pass messages of shape (n, {N}) or (n, {N}, k)")
        flat = _values(msgs.reshape(msgs.shape[0], -1), bits, "messages")
        n = flat.shape[0]
        for sl in _chunks(n, N * m):
            cnt = sl.stop - sl.start
            cots = await engine.sender_cots(label, cnt * m, sender=sender)
            d = await _recv_bits(sub, (cnt * m,), "choice corrections")
            y = await party.compute(_one_of_n_sender, cots, d, flat[sl], N, m, bits)
            await sub.send(Packed(y.reshape((cnt,) + msgs.shape[1:]), bits))
        return None
    c = _choices(choices, N)
    n = c.shape[0]
    cbits = ((c[:, None] >> np.arange(m)) & 1).astype(np.uint8)  # (n, m), bit t of the choice
    pending = []
    for sl in _chunks(n, N * m):
        cnt = sl.stop - sl.start
        cots = await engine.receiver_cots(label, cnt * m, sender=sender)
        await sub.send(Packed(cbits[sl].reshape(-1) ^ cots.choices, 1))
        pending.append((sl, cots))
    outs = []
    for sl, cots in pending:
        y = await _recv_array(sub, sl.stop - sl.start, "1-of-N reply", ndim=(2, 3))
        if y.shape[1] != N:
            raise ProtocolError(f"1-of-N reply on {label!r} has {y.shape[1]} messages per instance, expected {N}")
        outs.append(await party.compute(_one_of_n_receiver, cots, c[sl], y, m, bits))
    return _concat(outs, (0,))


def _drop_bit(x: np.ndarray | int, t: int) -> np.ndarray | int:
    """``x`` with bit ``t`` removed (the lane of message ``x`` in the pad stream of a key for bit ``t``)."""
    return (x & ((1 << t) - 1)) | ((x >> (t + 1)) << t)


def _one_of_n_sender(cots: SenderCOTs, d: np.ndarray, msgs: np.ndarray, N: int, m: int, bits: int) -> np.ndarray:
    """Masked messages ``(n, N·k)``: message ``x`` XOR lane ``drop_bit(x, t)`` of key ``K_t^{x_t}`` for every t.

    Each key pads only the ``2^(m-1)`` messages whose bit ``t`` it matches, so its stream has
    ``2^(m-1)·k`` lanes; in the ``(n, hi, b, lo, k)`` view of the messages (``x = hi·2^(t+1) + b·2^t + lo``)
    the lanes of ``K_t^b`` line up with ``[:, :, b]``: plain XORs, no selects.
    """
    n, width = msgs.shape
    per, full = width // N, 1 << m
    k0, k1 = _keys(cots, d)
    k0, k1, tweaks = k0.reshape(n, m, 2), k1.reshape(n, m, 2), cots.tweaks.reshape(n, m)
    out = np.zeros((n, full * per), dtype=lane_dtype(bits))  # narrow lanes: XOR is all we do here
    out[:, :width] = msgs
    half = (full // 2) * per
    for t in range(m):
        view = out.reshape(n, full >> (t + 1), 2, 1 << t, per)
        tw = tweaks[:, t].copy()
        for b, keys in ((0, k0), (1, k1)):
            lanes = pad_lanes(np.ascontiguousarray(keys[:, t]), tw, half, bits)
            view[:, :, b] ^= lanes.reshape(n, full >> (t + 1), 1 << t, per)
    result = out[:, :width].astype(np.uint64)
    if bits < 64:
        result &= value_mask(bits)
    return result


def _one_of_n_receiver(cots: ReceiverCOTs, c: np.ndarray, y: np.ndarray, m: int, bits: int) -> np.ndarray:
    """``y[i, c_i]`` XOR lane ``drop_bit(c_i, t)`` of the receiver's key ``t``, for every t: ``(n,)`` or ``(n, k)``."""
    n, N = y.shape[0], y.shape[1]
    per = int(np.prod(y.shape[2:], dtype=np.int64))
    t_blocks, tweaks = cots.t.reshape(n, m, 2), cots.tweaks.reshape(n, m)
    out = y.reshape(n, N, per)[np.arange(n), c].astype(np.uint64)
    for t in range(m):
        first = _drop_bit(c, t) * per
        out ^= pads_at(np.ascontiguousarray(t_blocks[:, t]), tweaks[:, t].copy(), first, per, bits)
    return out.reshape((n,) + y.shape[2:])


# --------------------------------------------------------------------------- random OT and bit triples


async def random_ot(party: Party, label: str, *, sender: Role, n: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random OTs of ``bits``-bit messages, no messages of their own (besides the allocation).

    Sender gets ``(m0, m1)``, each ``(n,)`` uniform below ``2^bits``; receiver gets ``(c, m_c)`` with
    ``c`` ``(n,)`` uniform ``uint8`` bits.  Cost: n COTs.
    """
    is_sender = _check_common(party, sender, bits)
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(f"n must be a non-negative integer, got {n!r}")
    engine = get_engine(party)
    first, second = [], []
    for sl in _chunks(int(n), 1):
        cnt = sl.stop - sl.start
        if is_sender:
            s = await engine.sender_cots(label, cnt, sender=sender)
            a, b = await party.compute(_random_sender, s, bits)
        else:
            r = await engine.receiver_cots(label, cnt, sender=sender)
            a = r.choices
            b = await party.compute(_random_receiver, r, bits)
        first.append(a)
        second.append(b)
    empty = (0,)
    if not is_sender:
        return (np.concatenate(first) if first else np.zeros(empty, np.uint8)), _concat(second, empty)
    return _concat(first, empty), _concat(second, empty)


def _random_sender(cots: SenderCOTs, bits: int) -> tuple[np.ndarray, np.ndarray]:
    return pads(cots.q, cots.tweaks, 1, bits)[:, 0], pads(cots.m1(), cots.tweaks, 1, bits)[:, 0]


def _random_receiver(cots: ReceiverCOTs, bits: int) -> np.ndarray:
    return pads(cots.t, cots.tweaks, 1, bits)[:, 0]


async def bit_triples(party: Party, label: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` Boolean Beaver triples: each party gets ``(a, b, c)`` ``uint8`` XOR-shares with
    ``(a_S ⊕ a_C) ∧ (b_S ⊕ b_C) = c_S ⊕ c_C``.

    Two random 1-bit OTs per triple, one in each direction (labels ``label/s`` and ``label/c``).  A
    random OT gives the sender ``(u0, u1)`` and the receiver ``(e, u_e)``, and ``u0 ⊕ u_e = e·(u0 ⊕ u1)``:
    so with ``a_P = u0 ⊕ u1`` for the sender P and ``b_{P'} = e`` for the receiver P', ``u0`` and
    ``u_e`` share ``a_P·b_{P'}``.  Each party adds its own ``a_P·b_P`` to its shares of the two cross terms.
    Cost: 2n COTs, no derandomisation messages.
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(f"n must be a non-negative integer, got {n!r}")
    mine, theirs = await asyncio.gather(
        random_ot(party, f"{label}/{party.role[0]}", sender=party.role, n=int(n), bits=1),
        random_ot(party, f"{label}/{party.peer_role[0]}", sender=party.peer_role, n=int(n), bits=1),
    )
    u0, u1 = mine
    b, v = theirs
    a = (u0 ^ u1).astype(np.uint8)
    c = ((a & b) ^ u0 ^ v).astype(np.uint8)
    return a, b.astype(np.uint8), c
