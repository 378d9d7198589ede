"""The OT flavours the non-linear protocols use, all derived from the engine's random COTs.

Conventions (the fixed contract of CONTRIBUTING.md): both parties call a flavour with the same
``label`` and ``sender`` (the Role acting as OT sender); arguments of the other role are ``None``.
Values are ``uint64`` below ``2^bits`` (``1 <= bits <= 64``), choice bits ``uint8`` 0/1; every
array has ``n >= 1`` instances along axis 0 (``n = 0`` gives empty results).  Each call consumes fresh
COTs from :func:`~aiompc.protocols.ot.engines.get_engine` (offline phase); its own messages travel on
``label`` (online phase), always in one round trip, whatever ``n``: the receiver sends all of its
messages, then the sender answers.

Derandomisation of a random COT ``(q, Δ) / (b, t = q ⊕ b·Δ)`` into a chosen choice ``c``: the receiver
sends ``d = c ⊕ b`` (1 bit); the sender's key for message ``j`` is ``K_j = q ⊕ (d ⊕ j)·Δ``, so the
receiver holds ``K_c = t`` and nothing about ``K_{1−c}``.  Keys become ``l``-bit pads through the
tweakable correlation-robust hash (:mod:`aiompc.protocols.ot.pads`).  Bytes per instance on top of the COTs
(measured in ``benchmarks/ot.py``; frame headers extra):

============================  ====================  ==================================
flavour                       receiver → sender     sender → receiver
============================  ====================  ==================================
chosen_ot (k values of l b)   1 bit                 2·k·l bits
correlated_ot (k values)      1 bit                 k·l bits
correlated_ot_widths (m COTs) m bits                Σ_j widths[j] bits
one_of_n_ot (m = ⌈log2 N⌉)    m bits                N·k·l bits
random_ot                     —                     —
bit_triples                   —                     —        (2 random OTs of 1 bit per triple)
============================  ====================  ==================================

COTs per instance: 1 (``m`` for 1-of-N).  Large calls are cut into chunks of ``CHUNK_COTS``
instances (``CHUNK_COTS / N`` for 1-of-N) to bound memory; each chunk also sends one allocation
message of about a dozen bytes plus the label (which pool range of COTs it uses).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import numpy as np

from aiompc.errors import InputError, ProtocolError
from aiompc.party import Party, Role
from aiompc.wire import Packed, encode, expect
from aiompc.protocols.ot.engine import ReceiverCOTs, SenderCOTs
from aiompc.protocols.ot.engines import get_engine
from aiompc.crypto.hashing import HashScratch, tccr_expand
from aiompc.kernels.ot import (
    cot_keys,
    cot_keys_paired,
    one_of_n_mask,
    one_of_n_offsets,
    one_of_n_unmask,
    widths_mask,
    widths_unmask,
)
from aiompc.protocols.ot.pads import lane_bytes, lane_dtype, pads, value_mask

__all__ = ["chosen_ot", "correlated_ot", "correlated_ot_widths", "one_of_n_ot", "random_ot", "bit_triples",
           "CHUNK_COTS"]

CHUNK_COTS = 1 << 20  # instances (or 1-of-N messages) per chunk: bounds the memory of one step whatever n is
MASK_PIECE_BLOCKS = 1 << 15
"""Hash output blocks (512 KiB) per piece of the 1-of-N sender's masking: the AES input and output of a piece stay
in the L2 cache (OpenSSL's ECB runs ≈ 8 GB/s there, ≈ 1 GB/s on buffers of hundreds of MB); the bytes do not
depend on it."""
WIDTHS_PIECE_COTS = 1 << 14
"""COTs per piece of :func:`correlated_ot_widths` (each hashed twice by the sender: 512 KiB of AES output)."""


# --------------------------------------------------------------------------- argument checks


def _check_common(party: Party, sender: Role, bits: int) -> bool:
    """Validate ``sender`` and ``bits``; True if this party is the sender."""
    if sender not in ("server", "client"):
        raise InputError(f"sender must be 'server' or 'client', got {sender!r}")
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 64:
        raise InputError(f"bits must be an integer in 1..64, got {bits!r}")
    return party.role == sender


def _values(x: Any, bits: int, name: str, ndims: tuple[int, ...] = (1, 2)) -> np.ndarray:
    """``x`` as a ``uint64`` array of values below ``2^bits`` (InputError otherwise)."""
    if x is None:
        raise InputError(f"the OT sender must pass {name}")
    a = np.asarray(x)
    if a.dtype.kind not in "ui":
        raise InputError(f"{name} must be an integer array, got dtype {a.dtype}")
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise InputError(f"{name} must be non-negative (values mod 2^{bits}); reduce them first")
    if a.ndim not in ndims:
        raise InputError(f"{name} must have {' or '.join(f'{d} dimensions' for d in ndims)}, got shape {a.shape}")
    # range check on the caller's dtype (a narrow dtype below 2^bits needs none), before widening
    if bits < 8 * a.dtype.itemsize and a.size and int(a.max()) >> bits:
        raise InputError(f"{name} has a value >= 2^{bits}; reduce it mod 2^{bits} first")
    return a.astype(np.uint64, copy=False)


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


def _as_2d(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:], dtype=np.int64)))  # (no -1: a may be empty)


def _concat(parts: list[np.ndarray], empty_shape: tuple[int, ...], dtype: Any = np.uint64) -> np.ndarray:
    if not parts:
        return np.zeros(empty_shape, dtype=dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _reply(msg: Any, count: int, n: int, ndims: tuple[int, ...], what: str) -> list[np.ndarray]:
    """Check that the sender's reply is ``count`` arrays with ``n`` rows and ``ndims`` dimensions."""
    arrays = msg if isinstance(msg, list) else [msg]
    if len(arrays) != count or not all(
        isinstance(a, np.ndarray) and a.ndim in ndims and a.shape[0] == n and a.shape == arrays[0].shape
        for a in arrays
    ):
        raise ProtocolError(f"malformed {what} reply from the OT sender")
    return arrays


# --------------------------------------------------------------------------- the two sides of a derandomisation

Finish = Callable[[ReceiverCOTs, slice, Any], np.ndarray]
Answer = Callable[[SenderCOTs, np.ndarray, slice], tuple[Any, Any]]


def _chunks(n: int, cost: int) -> list[slice]:
    """Instance ranges of at most ``CHUNK_COTS // cost`` instances (``cost``: COTs or values per instance)."""
    step = max(1, CHUNK_COTS // cost)
    return [slice(lo, min(n, lo + step)) for lo in range(0, n, step)]


async def _receiver_side(
    party: Party, label: str, sender: Role, bits_of_choice: np.ndarray, chunks: list[slice], finish: Finish
) -> list[np.ndarray]:
    """Receiver: per chunk, take COTs and send ``d = choice bits ⊕ COT choices``; then, per chunk, run
    ``finish(cots, chunk, sender's reply)`` in the executor.  ``bits_of_choice``: ``(n, m)`` ``uint8``."""
    engine, sub = get_engine(party), party.sub(label)
    m = bits_of_choice.shape[1]
    pending = []
    for sl in chunks:
        cots = await engine.receiver_cots(label, (sl.stop - sl.start) * m, sender=sender)
        await sub.send(Packed(bits_of_choice[sl].reshape(-1) ^ cots.choices, 1))
        pending.append((sl, cots))
    return [await party.compute(finish, cots, sl, await sub.recv()) for sl, cots in pending]


async def _sender_side(party: Party, label: str, sender: Role, m: int, chunks: list[slice], answer: Answer) -> list[Any]:
    """Sender: per chunk, take ``m`` COTs per instance, receive the corrections ``d`` and send the message
    of ``answer(cots, d, chunk) -> (message, local output)`` (run and encoded in the executor); returns the outputs."""
    engine, sub = get_engine(party), party.sub(label)
    outs = []
    for sl in chunks:
        cots = await engine.sender_cots(label, (sl.stop - sl.start) * m, sender=sender)
        d = expect(await sub.recv(), (len(cots),), 1, f"the choice corrections on {label!r}")
        data, out = await party.compute(_answer_encoded, answer, cots, d.astype(np.uint8), sl)
        await sub.send_bytes(data)  # the bytes ``sub.send(message)`` would send, encoded off the event loop
        outs.append(out)
    return outs


def _answer_encoded(answer: Answer, cots: SenderCOTs, d: np.ndarray, sl: slice) -> tuple[bytes, Any]:
    """``answer(...)`` with its message already encoded (:func:`aiompc.wire.encode`: bit packing is the
    largest step of a big reply, so it runs in the executor with the masking, not on the event loop)."""
    msg, out = answer(cots, d, sl)
    return encode(msg), out


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
    Sender message: ``m_j ⊕ pad(K_j)``, ``j = 0, 1``.
    Cost: n COTs; receiver sends n bits, sender ``2·n·k·bits`` bits; one round trip.
    """
    if _check_common(party, sender, bits):
        if messages is None or len(messages) != 2:
            raise InputError("the OT sender must pass messages=(m0, m1)")
        m0, m1 = _values(messages[0], bits, "m0"), _values(messages[1], bits, "m1")
        if m0.shape != m1.shape:
            raise InputError(f"m0 and m1 differ in shape: {m0.shape} vs {m1.shape}")

        def answer(cots: SenderCOTs, d: np.ndarray, sl: slice) -> tuple[Any, None]:
            y0, y1 = _chosen_mask(cots, d, m0[sl], m1[sl], bits)
            return [Packed(y0, bits), Packed(y1, bits)], None

        await _sender_side(party, label, sender, 1, _chunks(m0.shape[0], 1), answer)
        return None

    c = _choices(choices)

    def finish(cots: ReceiverCOTs, sl: slice, msg: Any) -> np.ndarray:
        y0, y1 = _reply(msg, 2, len(cots), (1, 2), "chosen-OT")
        return _chosen_unmask(cots, c[sl], y0, y1, bits)

    parts = await _receiver_side(party, label, sender, c[:, None].astype(np.uint8), _chunks(c.shape[0], 1), finish)
    return _concat(parts, (0,))


def _chosen_mask(
    cots: SenderCOTs, d: np.ndarray, m0: np.ndarray, m1: np.ndarray, bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """The sender's ciphertexts ``m_j ⊕ pad(K_j)`` (shape of ``m0``)."""
    k0, k1 = _keys(cots, d)
    a0, a1 = _as_2d(m0), _as_2d(m1)
    y0 = a0 ^ pads(k0, cots.tweaks, a0.shape[1], bits)
    y1 = a1 ^ pads(k1, cots.tweaks, a1.shape[1], bits)
    return y0.reshape(m0.shape), y1.reshape(m0.shape)


def _chosen_unmask(cots: ReceiverCOTs, c: np.ndarray, y0: np.ndarray, y1: np.ndarray, bits: int) -> np.ndarray:
    """The receiver's message ``y_c ⊕ pad(t)`` (shape of ``y0``)."""
    sel = np.where(np.asarray(c).astype(bool)[:, None], _as_2d(y1), _as_2d(y0)).astype(np.uint64)
    out = (sel ^ pads(cots.t, cots.tweaks, sel.shape[1], bits)) & value_mask(bits)
    return out.reshape(y0.shape)


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
    Sender: ``x = pad(K_0)``, message ``y = pad(K_1) − x − Δ``; receiver: ``pad(t) − c·y``.
    Cost: n COTs; receiver sends n bits, sender ``n·k·bits`` bits; one round trip.
    """
    is_sender = _check_common(party, sender, bits)
    mask = value_mask(bits)
    if is_sender:
        corr = _values(correlation, bits, "correlation")

        def answer(cots: SenderCOTs, d: np.ndarray, sl: slice) -> tuple[Any, np.ndarray]:
            k0, k1 = _keys(cots, d)
            cs = _as_2d(corr[sl])
            x = pads(k0, cots.tweaks, cs.shape[1], bits)
            y = (pads(k1, cots.tweaks, cs.shape[1], bits) - x - cs) & mask
            return Packed(y.reshape(corr[sl].shape), bits), x.reshape(corr[sl].shape)

        outs = await _sender_side(party, label, sender, 1, _chunks(corr.shape[0], 1), answer)
        return _concat(outs, corr.shape)

    c = _choices(choices)

    def finish(cots: ReceiverCOTs, sl: slice, msg: Any) -> np.ndarray:
        (y,) = _reply(msg, 1, len(cots), (1, 2), "correlated-OT")
        y2 = _as_2d(y).astype(np.uint64)
        pad = pads(cots.t, cots.tweaks, y2.shape[1], bits)
        return ((pad - c[sl].astype(np.uint64)[:, None] * y2) & mask).reshape(y.shape)

    parts = await _receiver_side(party, label, sender, c[:, None].astype(np.uint8), _chunks(c.shape[0], 1), finish)
    return _concat(parts, (0,))


# --------------------------------------------------------------------------- correlated OTs of several widths


def _widths(widths: Any) -> tuple[int, ...]:
    """``widths`` as a non-empty tuple of integers in 1..64 (InputError otherwise)."""
    try:
        ws = tuple(int(w) for w in widths)
    except TypeError:
        raise InputError(f"widths must be a sequence of integers, got {widths!r}") from None
    if not ws or any(not 1 <= w <= 64 for w in ws):
        raise InputError(f"widths must be a non-empty sequence of integers in 1..64, got {widths!r}")
    return ws


async def correlated_ot_widths(
    party: Party,
    label: str,
    *,
    sender: Role,
    widths: tuple[int, ...],
    correlation: np.ndarray | None = None,
    choices: np.ndarray | None = None,
) -> np.ndarray:
    """``m = len(widths)`` additive correlated OTs per instance, the ``j``-th with a ``widths[j]``-bit correlation.

    Sender passes ``correlation`` ``(n, m)`` (column ``j`` below ``2^widths[j]``) and gets ``x`` ``(n, m)``,
    column ``j`` uniform mod ``2^widths[j]``; the receiver passes ``choices`` ``(n, m)`` 0/1 and gets
    ``x + c·Δ`` (column ``j`` mod ``2^widths[j]``).  It is :func:`correlated_ot` with a width per column in one
    round trip: Gilboa's product of shares (:mod:`aiompc.protocols.nonlinear.multiply`) needs the correlation
    of bit ``i`` only mod ``2^(l−i)``, so its ``l`` COTs per element carry ``l, l−1, …, 1`` bits.
    Pads are hashed at the widest width and each column keeps its low bits; the sender's message is one
    bit-packed array per column.
    Cost: ``n·m`` COTs; receiver sends ``n·m`` bits, sender ``n·Σ_j widths[j]`` bits; one round trip.
    """
    is_sender = _check_common(party, sender, max(_widths(widths)))
    ws = _widths(widths)
    m = len(ws)
    masks = np.array([(1 << w) - 1 for w in ws], dtype=np.uint64)
    if is_sender:
        corr = _values(correlation, 64, "correlation", ndims=(2,))
        if corr.shape[1] != m or (corr.size and bool(np.any(corr > masks[None, :]))):
            raise InputError(f"correlation must have shape (n, {m}), column j below 2^widths[j]; got {corr.shape}")

        def answer(cots: SenderCOTs, d: np.ndarray, sl: slice) -> tuple[Any, np.ndarray]:
            x, y = _widths_mask(cots, d, corr[sl], masks)
            return [Packed(y[j], w) for j, w in enumerate(ws)], x

        outs = await _sender_side(party, label, sender, m, _chunks(corr.shape[0], m), answer)
        return _concat(outs, (0, m))

    if choices is None:
        raise InputError("the OT receiver must pass choices")
    c = np.asarray(choices)
    if c.ndim != 2 or c.shape[1] != m or c.dtype.kind not in "uib" or (c.size and int(c.max()) > 1) or (
        c.size and int(c.min()) < 0
    ):
        raise InputError(f"choices must be an (n, {m}) array of 0/1 values, got {c.dtype} of shape {c.shape}")
    c = c.astype(np.uint8)

    def finish(cots: ReceiverCOTs, sl: slice, msg: Any) -> np.ndarray:
        rows = sl.stop - sl.start
        ys = _reply(msg, m, rows, (1,), "correlated-OT-widths")
        return _widths_unmask(cots, c[sl], np.stack([a.astype(np.uint64) for a in ys]), masks)

    parts = await _receiver_side(party, label, sender, c, _chunks(c.shape[0], m), finish)
    return _concat(parts, (0, m))


def _widths_mask(cots: SenderCOTs, d: np.ndarray, corr: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sender's outputs ``x`` ``(n, m)`` and message columns ``y`` ``(m, n)`` of :func:`correlated_ot_widths`:
    ``x = pad(K_0)``, ``y = pad(K_1) − x − Δ``, column ``j`` mod ``2^widths[j]``.  Pads are lane 0 of each key's
    hash at the widest width reduced to the column's width, i.e. the low bits of the hash's word 0.  Per piece of
    :data:`WIDTHS_PIECE_COTS` COTs (cache-sized AES buffers): both keys in one hash call, then one compiled pass
    (:func:`~aiompc.kernels.ot.widths_mask`)."""
    n, m = corr.shape
    x = np.empty((n, m), np.uint64)
    y = np.empty((m, n), np.uint64)
    scratch = HashScratch()
    step = max(1, WIDTHS_PIECE_COTS // m)  # instances per piece
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        rows = (hi - lo) * m
        keys = np.empty((2 * rows, 2), np.uint64)
        cot_keys(cots.q[lo * m : hi * m], d[lo * m : hi * m], cots.delta, keys)
        tw = cots.tweaks[lo * m : hi * m]
        hashed = tccr_expand(keys, np.concatenate([tw, tw]), 1, scratch=scratch).reshape(2 * rows, 2)
        widths_mask(hashed, corr[lo:hi], masks, x[lo:hi], y[:, lo:hi])
    return x, y


def _widths_unmask(cots: ReceiverCOTs, c: np.ndarray, y: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The receiver's ``(pad(t) − c·y) & masks`` ``(n, m)`` for choices ``c`` ``(n, m)`` and the sender's columns
    ``y`` ``(m, n)``, hashed per piece (:func:`~aiompc.kernels.ot.widths_unmask`)."""
    n, m = c.shape
    out = np.empty((n, m), np.uint64)
    scratch = HashScratch()
    step = max(1, WIDTHS_PIECE_COTS // m)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        hashed = tccr_expand(cots.t[lo * m : hi * m], cots.tweaks[lo * m : hi * m], 1, scratch=scratch)
        widths_unmask(hashed.reshape(-1, 2), c[lo:hi], y[:, lo:hi], masks, out[lo:hi])
    return out


# --------------------------------------------------------------------------- 1-out-of-N OT


def _drop_bit(x: Any, t: Any) -> Any:
    """``x`` with bit ``t`` removed: the lane of message ``x`` in the pad stream of a key for bit ``t``."""
    return (x & ((1 << t) - 1)) | ((x >> (t + 1)) << t)


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
    N, m = int(n_choices), (int(n_choices) - 1).bit_length()
    if is_sender:
        msgs = _values(messages, bits, "messages", ndims=(2, 3))
        if msgs.shape[1] != N:
            raise InputError(f"messages must have shape (n, {N}) or (n, {N}, k), got {msgs.shape}")
        flat = _as_2d(msgs)

        def answer(cots: SenderCOTs, d: np.ndarray, sl: slice) -> tuple[Any, None]:
            y = _one_of_n_mask(cots, d, flat[sl], N, m, bits)
            return Packed(y.reshape(msgs[sl].shape), bits), None

        await _sender_side(party, label, sender, m, _chunks(msgs.shape[0], N), answer)
        return None

    c = _choices(choices, N)

    def finish(cots: ReceiverCOTs, sl: slice, msg: Any) -> np.ndarray:
        (y,) = _reply(msg, 1, len(cots) // m, (2, 3), "1-of-N")
        if y.shape[1] != N:
            raise ProtocolError(f"1-of-N reply with {y.shape[1]} messages per instance, expected {N}")
        return _one_of_n_unmask(cots, c[sl], y, m, bits)

    cbits = ((c[:, None] >> np.arange(m)) & 1).astype(np.uint8)  # (n, m): bit t of each choice
    parts = await _receiver_side(party, label, sender, cbits, _chunks(c.shape[0], N), finish)
    return _concat(parts, (0,))


def _one_of_n_mask(cots: SenderCOTs, d: np.ndarray, msgs: np.ndarray, N: int, m: int, bits: int) -> np.ndarray:
    """Masked messages ``(n, N·k)``: message ``x`` XOR lane ``drop_bit(x, t)`` of key ``K_t^{x_t}`` for every t.

    Each key pads only the ``2^(m-1)`` messages whose bit ``t`` it matches, so its stream has
    ``2^(m-1)·k`` lanes.  Per piece of instances (:data:`MASK_PIECE_BLOCKS` hash blocks, cache-sized) both keys
    of every COT are hashed in one call, in adjacent rows (:func:`~aiompc.kernels.ot.cot_keys_paired`), so an
    instance's pads are one contiguous stretch, and the masking runs in one compiled pass
    (:func:`~aiompc.kernels.ot.one_of_n_mask`) with lane offsets computed once (the same bytes whatever the
    row order: each pad depends only on its key and tweak).
    """
    n, width = msgs.shape
    per = width // N
    lb = lane_bytes(bits)
    nblocks = -(-((1 << m) // 2) * per * lb // 16)
    offsets = one_of_n_offsets(N, m, per, 16 * nblocks // lb)
    msgs = np.ascontiguousarray(msgs)
    out = np.empty((n, width), np.uint64)
    scratch = HashScratch()
    step = max(1, MASK_PIECE_BLOCKS // (2 * m * nblocks))  # instances per piece
    for lo in range(0, n, step):  # pieces small enough that the hash's buffers stay in cache
        hi = min(n, lo + step)
        rows = (hi - lo) * m  # COT t of instance i is row i·m + t
        keys = np.empty((2 * rows, 2), np.uint64)
        cot_keys_paired(cots.q[lo * m : hi * m], d[lo * m : hi * m], cots.delta, keys)  # K_r^0, K_r^1 adjacent
        tw = np.repeat(cots.tweaks[lo * m : hi * m], 2)
        raw = tccr_expand(keys, tw, nblocks, scratch=scratch).reshape(hi - lo, 2 * m * 2 * nblocks)
        one_of_n_mask(msgs[lo:hi], raw.view(lane_dtype(bits)), offsets, value_mask(bits), out[lo:hi])
    return out


def _one_of_n_unmask(cots: ReceiverCOTs, c: np.ndarray, y: np.ndarray, m: int, bits: int) -> np.ndarray:
    """``y[i, c_i]`` XOR lane ``drop_bit(c_i, t)`` of the receiver's key ``t``, for every t: ``(n,)`` or ``(n, k)``.

    Hashes only the blocks that hold those lanes, then one compiled pass (:func:`~aiompc.kernels.ot.one_of_n_unmask`),
    per piece of instances with cache-sized hash buffers.
    """
    n, N = y.shape[0], y.shape[1]
    per = int(np.prod(y.shape[2:], dtype=np.int64))
    lb = lane_bytes(bits)
    nblocks = -(-(16 - lb + per * lb) // 16)  # enough whatever the offset inside the first block
    out = np.empty((n, per), np.uint64)
    flat = np.ascontiguousarray(y.reshape(n, N * per), dtype=np.uint64)
    bit_pos = np.arange(m)[None, :]
    scratch = HashScratch()
    step = max(1, MASK_PIECE_BLOCKS // (m * nblocks))  # instances per piece (cache-sized hash buffers)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        ch = c[lo:hi]
        offset = (_drop_bit(ch[:, None], bit_pos) * (per * lb)).reshape(-1)  # ((hi-lo)·m,) byte offsets
        raw = tccr_expand(cots.t[lo * m : hi * m], cots.tweaks[lo * m : hi * m], nblocks, first=offset // 16,
                          scratch=scratch).reshape((hi - lo) * m, 2 * nblocks)
        lanes = (offset % 16) // lb  # lanes are lb-aligned in the stream, so within the first hashed block too
        one_of_n_unmask(flat[lo:hi], raw.view(lane_dtype(bits)), lanes, ch.astype(np.int64), m, per,
                        value_mask(bits), out[lo:hi])
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
            a, b = await party.compute(_random_messages, s, bits)
        else:
            r = await engine.receiver_cots(label, cnt, sender=sender)
            a, b = r.choices, await party.compute(_random_chosen, r, bits)
        first.append(a)
        second.append(b)
    return _concat(first, (0,), np.uint64 if is_sender else np.uint8), _concat(second, (0,))


def _random_messages(cots: SenderCOTs, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The sender's ``(pad(q), pad(q ⊕ Δ))``."""
    return pads(cots.q, cots.tweaks, 1, bits)[:, 0], pads(cots.m1(), cots.tweaks, 1, bits)[:, 0]


def _random_chosen(cots: ReceiverCOTs, bits: int) -> np.ndarray:
    """The receiver's ``pad(t)``."""
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
