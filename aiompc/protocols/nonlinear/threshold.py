"""Comparisons of a shared value against public thresholds: XOR shares of ``[z >= T_j]``.

``z = z_S + z_C mod 2^k`` is read as an *unsigned* ``k``-bit value and every ``T_j`` is public (one
integer, or one per element; ``k`` may also differ per element, ``1 <= k <= 62``).  ``T <= 0`` gives 1 and
``T >= 2^k`` gives 0 without any comparison.  With ``K = 2^(k−1)``, ``a = z_S mod K``, ``b = z_C mod K``
(the low ``k−1`` bits) and ``c1 = [a + b >= K]`` (the carry into the top bit):

* ``msb(z) = msb(z_S) ⊕ msb(z_C) ⊕ c1``, so ``[z >= K]`` costs nothing beyond ``c1``;
* ``ℓ = [z mod K >= τ]`` for ``τ = T mod K``: ``z mod K = a + b − K·c1`` and the three indicators
  ``[a + b >= τ] ⊇ [a + b >= K] ⊇ [a + b >= τ + K]`` are nested, so ``ℓ`` is their XOR.  The first and the
  last differ by ``K > b``: one of them is a constant the server knows (``[a >= τ]``), so
  ``ℓ = [(τ − 1 − a) mod K < b] ⊕ c1 ⊕ [a >= τ]`` — one comparison of ``b`` against a server value;
* ``[z >= T] = msb(z) ∧ ℓ`` for ``T >= K`` and ``msb(z) ∨ ℓ`` for ``T < K``: one AND.

All comparisons have the client's ``b`` as the receiver's operand, so they run as ONE millionaire on
``max(k) − 1`` bits (narrower operands are zero-padded) with fanout ``1 + #{j: T_j ≠ K somewhere}``: the
receiver's digit choices (and so the OTs) are shared, the leaf messages carry one more ``(lt, eq)`` pair
per threshold.

**A window of ``2^j`` values** (``{T} = {K, K + 2^j}``, ``1 <= j <= k − 2``, one ``k`` for all elements: the
clip of a ``j``-bit output whose lower bound sits at ``K``): ``[z >= K + 2^j] = msb(z) ∧ ¬[z mod K < 2^j]``
and, with ``a_h = a >> j``, ``b_h = b >> j`` (``k − 1 − j`` bits) and ``c_j`` the carry of the low ``j`` bits,
``[z mod K < 2^j] = [a_h + b_h + c_j ≡ 0] = c_j·[¬a_h = b_h] ⊕ (1 ⊕ c_j)·[¬a_h + 1 = b_h]``.  The comparison
behind ``c1`` (server operand ``¬a``) split at ``j`` gives ``c_j`` (its low run) and ``[¬a_h = b_h]`` (its
high run's ``eq``); ``[¬a_h + 1 = b_h]`` is one *equality row* on the same OTs (one more message bit per high
digit, ``eq``-only operators).  So the window costs a fanout-1 millionaire with one equality row and two
ANDs instead of a fanout-2 millionaire and one AND: e.g. ``k = 10, j = 4``, silent OT: ≈ 85 bits instead of
≈ 109.

Cost per element: that millionaire (:mod:`aiompc.protocols.nonlinear.millionaire`; e.g. ``k = 8``, two
thresholds one of which is ``K``: fanout 2 on 7 bits, 71 bits of leaves and 2 ANDs with ``m = 4``) plus
one AND (4 bits, one bit triple) per threshold not at ``K``.  Rounds: the millionaire's, plus one exchange
if any threshold is not at ``K``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.protocols.nonlinear.boolean import and_
from aiompc.protocols.nonlinear.millionaire import CompareTask, compare_batch, compare_batch_eq, choose_digit_bits

__all__ = ["compare_thresholds", "window_bits"]

MAX_K = 62


async def compare_thresholds(
    party: Party,
    label: str,
    z: np.ndarray,
    *,
    k: int | np.ndarray,
    thresholds: Sequence[int | np.ndarray],
    digit_bits: int | None = None,
) -> np.ndarray:
    """XOR shares (``uint8``, shape ``(len(thresholds), *z.shape)``) of ``[z >= T_j]``, ``z`` unsigned mod ``2^k``.

    Each party passes its share of ``z`` (``uint64``, any shape).  ``k``: the ring width, one integer or
    an integer array broadcastable to ``z`` (per element), ``1..62``.  ``thresholds``: public integers or
    ``int64`` arrays broadcastable to ``z``, any value (``<= 0``: always true, ``>= 2^k``: always false).
    ``digit_bits``: the millionaire's digit size, ``None`` to pick it by
    :func:`~aiompc.protocols.nonlinear.millionaire.choose_digit_bits`.  Cost: see the module docstring.
    """
    zs = np.asarray(z, dtype=np.uint64)
    shape = zs.shape
    n = zs.size
    j = window_bits(k, thresholds)
    if j is not None and n:
        return await _compare_window(party, label, zs, int(k), j, thresholds, digit_bits)  # type: ignore[arg-type]
    kk = np.broadcast_to(np.asarray(k, dtype=np.int64), shape).reshape(-1)
    if not thresholds:
        raise InputError("compare_thresholds needs at least one threshold")
    if n and (int(kk.min()) < 1 or int(kk.max()) > MAX_K):
        raise InputError(f"compare_thresholds: ring widths must lie in 1..{MAX_K}")
    k_max = int(kk.max()) if n else 1
    server = party.is_server
    half = np.int64(1) << (kk - 1)  # K per element
    flat = (zs.reshape(-1).astype(np.int64) & ((np.int64(1) << kk) - 1)) if n else np.zeros(0, np.int64)
    low = flat & (half - 1)
    top = ((flat >> (kk - 1)) & 1).astype(np.uint8)
    ts = [np.broadcast_to(np.asarray(t, dtype=np.int64), shape).reshape(-1) for t in thresholds]
    always = [t <= 0 for t in ts]
    never = [t >= (np.int64(1) << kk) for t in ts]
    compared = [j for j, t in enumerate(ts) if not np.array_equal(t, half)]

    # one (max k − 1)-bit millionaire: row 0 the carry c1 = [K − 1 − a < b], row 1 + i threshold compared[i]
    task = CompareTask(k_max - 1, fanout=1 + len(compared))
    flips = np.zeros((len(compared), n), dtype=np.uint8)
    if server:
        rows = [half - 1 - low]
        for i, j in enumerate(compared):
            tau = np.clip(ts[j], 1, (np.int64(1) << kk) - 1) % half
            rows.append((tau - 1 - low) % half)
            flips[i] = (low >= tau).astype(np.uint8)
        operand = np.stack(rows).astype(np.uint64)
    else:
        operand = low.astype(np.uint64)
    if k_max == 1 or n == 0:  # nothing below the top bit: the carry and every comparison are 0
        res = np.zeros((task.fanout, n), dtype=np.uint8)
    else:
        m = digit_bits if digit_bits is not None else choose_digit_bits(party, [task])
        ((res, _),) = await compare_batch(party, f"{label}/cmp", [task], [operand], sender="server", digit_bits=m)
    c1 = res[0]
    msb = top ^ c1  # each party XORs its own top bit into its share of the carry
    out = np.empty((len(ts), n), dtype=np.uint8)
    for j, t in enumerate(ts):
        out[j] = msb
    if compared:
        ell = res[1:] ^ c1[None, :] ^ (flips if server else np.uint8(0))
        # AND for T >= K, a ∨ b = ¬(¬a ∧ ¬b) for T < K: the server negates both inputs and the output
        below = np.stack([ts[j] < half for j in compared]).astype(np.uint8)
        neg = below if server else np.zeros_like(below)
        x = np.ascontiguousarray(np.broadcast_to(msb[None, :], ell.shape) ^ neg)
        z_and = await and_(party, f"{label}/and", x, ell ^ neg)
        out[compared] = z_and ^ neg
    for j in range(len(ts)):  # public constants: the server holds the bit, the client 0
        out[j] = np.where(always[j], np.uint8(1 if server else 0), np.where(never[j], np.uint8(0), out[j]))
    return out.reshape((len(ts), *shape))


def window_bits(k: int | np.ndarray, thresholds: Sequence[int | np.ndarray]) -> int | None:
    """``j`` when the thresholds are ``K`` and ``K + 2^j`` (either order; ``1 <= j <= k − 2``, ``K = 2^(k−1)``)
    with one ``k`` for all elements, else ``None``."""
    if np.ndim(k) or len(thresholds) != 2 or any(np.ndim(t) for t in thresholds):
        return None
    k = int(k)
    if not 3 <= k <= MAX_K:
        return None
    half = 1 << (k - 1)
    ts = sorted(int(t) for t in thresholds)
    d = ts[1] - half
    if ts[0] != half or d <= 0 or d & (d - 1):
        return None
    j = d.bit_length() - 1
    return j if 1 <= j <= k - 2 else None


async def _compare_window(
    party: Party, label: str, zs: np.ndarray, k: int, j: int, thresholds: Sequence[int | np.ndarray],
    digit_bits: int | None,
) -> np.ndarray:
    """:func:`compare_thresholds` for the thresholds ``K`` and ``K + 2^j`` (see the module docstring)."""
    shape = zs.shape
    half = np.uint64(1 << (k - 1))
    flat = zs.reshape(-1) & np.uint64((1 << k) - 1)
    a = flat & (half - np.uint64(1))
    top = (flat >> np.uint64(k - 1)).astype(np.uint8)
    hb = k - 1 - j
    task = CompareTask(k - 1, split=j, eq_rows=1)
    if party.is_server:
        not_a = half - np.uint64(1) - a  # ¬a on k − 1 bits
        plus = (((not_a >> np.uint64(j)) + np.uint64(1)) & np.uint64((1 << hb) - 1)) << np.uint64(j)
        operand = np.stack([not_a, plus])
    else:
        operand = a
    m = digit_bits if digit_bits is not None else choose_digit_bits(party, [task])
    ((res, low, heq),) = await compare_batch_eq(party, f"{label}/cmp", [task], [operand], sender="server", digit_bits=m)
    assert low is not None and heq is not None
    msb = top ^ res[0]  # [z >= K]
    e1, e2 = heq[0], heq[1]
    inside = e2 ^ await and_(party, f"{label}/and0", low[0], e1 ^ e2)  # [z mod K < 2^j]
    above = msb ^ await and_(party, f"{label}/and1", msb, inside)  # [z >= K + 2^j]
    rows = {1 << (k - 1): msb, (1 << (k - 1)) + (1 << j): above}
    return np.stack([rows[int(t)] for t in thresholds]).reshape((len(thresholds), *shape))
