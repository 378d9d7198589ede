"""Kernels of the OT derandomisation (numba, ``nogil``): COT keys, the hash's tweak blocks, 1-out-of-N masking.

The correlation-robust hash ``H(x, (w, j)) = π(π(x) ⊕ (w, j)) ⊕ π(x)`` of :mod:`aiompc.crypto.hashing`
runs its two AES passes in OpenSSL; these kernels do the work around them without numpy temporaries:

* :func:`cot_keys` — a COT sender's keys for the receiver's corrections ``d``: ``K_0 = q ⊕ d·Δ`` (rows
  ``0 .. n-1`` of ``out``) and ``K_1 = K_0 ⊕ Δ`` (rows ``n .. 2n-1``), so both are hashed in one AES call;
* :func:`tweak_blocks` — ``out[i·nb + j] = px[i] ⊕ (index[i], first[i] + j)`` (the AES input of the
  hash's second pass, ``nb`` output blocks per input);
* :func:`feed_forward` — ``y[i·nb + j] ^= px[i]`` (the hash's final XOR, in place);
* :func:`one_of_n_mask` / :func:`one_of_n_unmask` — the sender's masked 1-out-of-N messages and the
  receiver's unmasked choice from the keys' pad bytes (the layout of
  :func:`aiompc.protocols.ot.flavours.one_of_n_ot`: message ``x`` is masked, for every choice bit ``t``,
  by lane ``drop_bit(x, t)`` of the pad stream of key ``K_t^{x_t}``; the caller views the pad bytes as
  little-endian lanes of 1, 2, 4 or 8 bytes, so a lane is one load).

Blocks are ``(n, 2)`` uint64 rows ``(lo, hi)``; pad streams are rows of bytes (``16·nb`` per key).
Cost: one pass over the inputs and outputs each; the 1-of-N kernels read ``m`` lanes per message value.
"""

from __future__ import annotations

import numpy as np

from aiompc.kernels.jit import kernel

__all__ = ["cot_keys", "cot_keys_paired", "one_of_n_offsets", "tweak_blocks", "feed_forward", "one_of_n_mask", "one_of_n_unmask", "widths_mask", "widths_unmask"]


@kernel()
def cot_keys(q: np.ndarray, d: np.ndarray, delta: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``out[i] = q[i] ⊕ d[i]·Δ`` and ``out[n + i] = out[i] ⊕ Δ``.

    ``q``: ``(n, 2)`` uint64; ``d``: ``(n,)`` uint8 0/1; ``delta``: ``(2,)`` uint64; ``out``: ``(2n, 2)`` uint64.
    """
    n = q.shape[0]
    d0 = delta[0]
    d1 = delta[1]
    for i in range(n):
        a = q[i, 0]
        b = q[i, 1]
        if d[i]:
            a ^= d0
            b ^= d1
        out[i, 0] = a
        out[i, 1] = b
        out[n + i, 0] = a ^ d0
        out[n + i, 1] = b ^ d1


@kernel()
def tweak_blocks(px: np.ndarray, index: np.ndarray, first: np.ndarray, nb: int, out: np.ndarray) -> None:  # pragma: no cover
    """``out[i·nb + j] = px[i] ⊕ (index[i], first[i] + j)`` for ``j < nb``.

    ``px``: ``(n, 2)`` uint64; ``index``, ``first``: ``(n,)`` uint64; ``out``: ``(n·nb, 2)`` uint64.
    """
    for i in range(px.shape[0]):
        lo = px[i, 0] ^ index[i]
        hi = px[i, 1]
        f = first[i]
        for j in range(nb):
            out[i * nb + j, 0] = lo
            out[i * nb + j, 1] = hi ^ (f + np.uint64(j))


@kernel()
def feed_forward(y: np.ndarray, px: np.ndarray, nb: int) -> None:  # pragma: no cover
    """In place: ``y[i·nb + j] ^= px[i]`` (``y``: ``(n·nb, 2)``, ``px``: ``(n, 2)``, uint64)."""
    for i in range(px.shape[0]):
        a = px[i, 0]
        b = px[i, 1]
        for j in range(nb):
            y[i * nb + j, 0] ^= a
            y[i * nb + j, 1] ^= b


@kernel()
def cot_keys_paired(q: np.ndarray, d: np.ndarray, delta: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``out[2i] = q[i] ⊕ d[i]·Δ`` and ``out[2i + 1] = out[2i] ⊕ Δ``: :func:`cot_keys` with the two keys of a COT in
    adjacent rows (so the pads of one 1-out-of-N instance are one contiguous stretch of the hash output).

    ``q``: ``(n, 2)`` uint64; ``d``: ``(n,)`` uint8 0/1; ``delta``: ``(2,)`` uint64; ``out``: ``(2n, 2)`` uint64.
    """
    d0 = delta[0]
    d1 = delta[1]
    for i in range(q.shape[0]):
        a = q[i, 0]
        b = q[i, 1]
        if d[i]:
            a ^= d0
            b ^= d1
        out[2 * i, 0] = a
        out[2 * i, 1] = b
        out[2 * i + 1, 0] = a ^ d0
        out[2 * i + 1, 1] = b ^ d1


def one_of_n_offsets(n_choices: int, m: int, per: int, row_lanes: int) -> np.ndarray:
    """``(m, N·per)`` int64 lane offsets of :func:`one_of_n_mask`: value ``x·per + p``'s pad for choice bit ``t`` is
    lane ``drop_bit(x, t)·per + p`` of key ``K_t^{x_t}``, whose row is ``2t + x_t`` of an instance's ``2m`` rows of
    ``row_lanes`` lanes each (numpy, tiny; the same for every instance)."""
    x = np.arange(n_choices, dtype=np.int64)[None, :]
    t = np.arange(m, dtype=np.int64)[:, None]
    side = (x >> t) & 1
    dropped = (x & ((1 << t) - 1)) | ((x >> (t + 1)) << t)
    lane = (2 * t + side) * row_lanes + dropped * per
    return (lane[:, :, None] + np.arange(per, dtype=np.int64)[None, None, :]).reshape(m, n_choices * per)


@kernel()
def one_of_n_mask(msgs: np.ndarray, pads: np.ndarray, offsets: np.ndarray, mask: np.uint64, out: np.ndarray) -> None:  # pragma: no cover
    """The sender's masked messages: ``out[i, v] = (msgs[i, v] ⊕ XOR_t pads[i, offsets[t, v]]) & mask``.

    ``msgs``, ``out``: ``(n, N·per)`` uint64 (value ``v = x·per + p`` is lane ``p`` of message ``x``); ``pads``:
    ``(n, 2m·lanes)`` of the lane dtype (uint8/16/32/64): instance ``i``'s pad streams of ``K_0^0, K_0^1, K_1^0,
    …, K_{m-1}^1`` one after the other (keys from :func:`cot_keys_paired`), viewed as little-endian lanes;
    ``offsets``: ``(m, N·per)`` from :func:`one_of_n_offsets`.  An instance's pads and the offsets stay in L1.
    Cost: ``m`` lane loads and XORs per value.
    """
    m = offsets.shape[0]
    for i in range(msgs.shape[0]):
        row = pads[i]
        for v in range(msgs.shape[1]):
            acc = msgs[i, v]
            for t in range(m):
                acc ^= np.uint64(row[offsets[t, v]])
            out[i, v] = acc & mask


@kernel()
def one_of_n_unmask(
    y: np.ndarray, pad: np.ndarray, lane: np.ndarray, choices: np.ndarray, m: int, per: int, mask: np.uint64,
    out: np.ndarray,
) -> None:  # pragma: no cover
    """The receiver's messages: ``out[i, p] = (y[i, c_i·per + p] ⊕ XOR_t pad[i·m + t, lane[i·m + t] + p]) & mask``.

    ``y``: ``(n, N·per)`` uint64; ``pad``: ``(n·m, lanes)`` of the lane dtype (the hashed blocks holding each
    key's lanes); ``lane``: ``(n·m,)`` int64, the position of lane ``drop_bit(c_i, t)·per`` within its row;
    ``choices``: ``(n,)`` int64; ``out``: ``(n, per)`` uint64.
    """
    for i in range(y.shape[0]):
        c = choices[i]
        for p in range(per):
            acc = y[i, c * per + p]
            for t in range(m):
                acc ^= np.uint64(pad[i * m + t, lane[i * m + t] + p])
            out[i, p] = acc & mask


@kernel()
def widths_mask(
    hashed: np.ndarray, corr: np.ndarray, masks: np.ndarray, x: np.ndarray, y: np.ndarray
) -> None:  # pragma: no cover
    """The sender's side of correlated OTs of several widths, from the hashes of its two keys per COT.

    ``hashed``: ``(2·n·m, 2)`` uint64, the hash blocks of ``K_0`` of COT ``r = i·m + j`` at row ``r`` and of ``K_1``
    at row ``n·m + r`` (a pad is the low bits of word 0, see :mod:`aiompc.protocols.ot.pads`); ``corr``: ``(n, m)``
    uint64; ``masks``: ``(m,)`` uint64, ``2^widths[j] − 1``.  Writes ``x[i, j] = pad(K_0) & masks[j]`` (the sender's
    output, ``(n, m)``) and ``y[j, i] = (pad(K_1) − x[i, j] − corr[i, j]) & masks[j]`` (its message, ``(m, n)``:
    one contiguous row per column).
    """
    n, m = corr.shape
    top = n * m
    for i in range(n):
        for j in range(m):
            r = i * m + j
            mk = masks[j]
            a = hashed[r, 0] & mk
            x[i, j] = a
            y[j, i] = (hashed[top + r, 0] - a - corr[i, j]) & mk


@kernel()
def widths_unmask(
    hashed: np.ndarray, choices: np.ndarray, y: np.ndarray, masks: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover
    """The receiver's side: ``out[i, j] = (pad(t) − c[i, j]·y[j, i]) & masks[j]`` with ``pad(t)`` the low bits of
    word 0 of ``hashed[i·m + j]``.  ``hashed``: ``(n·m, 2)`` uint64; ``choices``: ``(n, m)`` uint8 0/1; ``y``:
    ``(m, n)`` uint64 (the sender's columns); ``masks``: ``(m,)``; ``out``: ``(n, m)`` uint64.
    """
    n, m = out.shape
    for i in range(n):
        for j in range(m):
            v = hashed[i * m + j, 0]
            if choices[i, j]:
                v -= y[j, i]
            out[i, j] = v & masks[j]
