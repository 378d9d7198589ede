"""Comparisons of a shared value against public thresholds: XOR shares of ``[z >= T_j]``.

``z = z_S + z_C mod 2^k`` is read as an *unsigned* ``k``-bit value and every ``T_j`` is public,
``1 <= T_j <= 2^k − 1`` (``T <= 0`` and ``T >= 2^k`` are constants the caller knows).  With
``K = 2^(k−1)``, ``a = z_S mod K``, ``b = z_C mod K`` (the low ``k−1`` bits) and ``c1 = [a + b >= K]``
(the carry into the top bit):

* ``msb(z) = msb(z_S) ⊕ msb(z_C) ⊕ c1``, so ``[z >= K]`` costs nothing beyond ``c1``;
* ``ℓ = [z mod K >= τ]`` for ``τ = T mod K ≠ 0``: ``z mod K = a + b − K·c1`` and the three indicators
  ``[a + b >= τ] ⊇ [a + b >= K] ⊇ [a + b >= τ + K]`` are nested, so ``ℓ`` is their XOR.  The first and the
  last differ by ``K > b``: one of them is a constant the server knows (``[a >= τ]``), so
  ``ℓ = [(τ − 1 − a) mod K < b] ⊕ c1 ⊕ [a >= τ]`` — one comparison of ``b`` against a server value;
* ``[z >= T] = msb(z) ∧ ℓ`` for ``T > K`` and ``msb(z) ∨ ℓ`` for ``T < K``: one AND.

All comparisons have the client's ``b`` as the receiver's operand, so they run as ONE ``(k−1)``-bit
millionaire with fanout ``1 + #{T_j ≠ K}``: the receiver's digit choices (and so the OTs) are shared, the
leaf messages carry one more ``(lt, eq)`` pair per threshold.

Cost per element: that millionaire (:mod:`aiompc.protocols.nonlinear.millionaire`; e.g. ``k = 8``, two
thresholds one of which is ``K``: fanout 2 on 7 bits, 71 bits of leaves and 2 ANDs) plus one AND (4 bits,
one bit triple) per threshold ``≠ K``.  Rounds: the millionaire's, plus one exchange if any ``T ≠ K``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.ring import check_width, mask
from aiompc.protocols.nonlinear.boolean import and_
from aiompc.protocols.nonlinear.millionaire import CompareTask, compare_batch, choose_digit_bits

__all__ = ["compare_thresholds", "threshold_cost_tasks"]


def threshold_cost_tasks(k: int, thresholds: Sequence[int]) -> tuple[CompareTask, int]:
    """The millionaire task and the number of extra ANDs of :func:`compare_thresholds` (for cost models)."""
    half = 1 << (k - 1)
    extra = sum(1 for t in set(thresholds) if t != half)
    return CompareTask(k - 1, fanout=1 + extra), extra


async def compare_thresholds(
    party: Party,
    label: str,
    z: np.ndarray,
    *,
    k: int,
    thresholds: Sequence[int],
    digit_bits: int | None = None,
) -> np.ndarray:
    """XOR shares (``uint8``, shape ``(len(thresholds), *z.shape)``) of ``[z >= T_j]``, ``z`` unsigned mod ``2^k``.

    Each party passes its share of ``z`` (``uint64``, any shape); ``thresholds`` are public integers in
    ``[1, 2^k − 1]`` (repeats allowed).  ``digit_bits``: the millionaire's digit size, ``None`` to pick it
    by :func:`~aiompc.protocols.nonlinear.millionaire.choose_digit_bits`.  Cost: see the module docstring.
    """
    k = check_width(k)
    ts = [int(t) for t in thresholds]
    if not ts:
        raise InputError("compare_thresholds needs at least one threshold")
    if any(not 1 <= t < (1 << k) for t in ts):
        raise InputError(f"thresholds must lie in [1, 2^k − 1] for k = {k}, got {ts}")
    zs = np.asarray(z, dtype=np.uint64) & mask(k)
    shape = zs.shape
    flat = zs.reshape(-1)
    server = party.is_server
    half = 1 << (k - 1)
    low_mask = np.uint64(half - 1)
    low = flat & low_mask
    top = ((flat >> np.uint64(k - 1)) & np.uint64(1)).astype(np.uint8)
    distinct = sorted(set(t for t in ts if t != half))
    n = flat.size

    # one (k-1)-bit millionaire: row 0 the carry c1 = [K - 1 - a < b], row 1 + j the threshold tau_j
    task = CompareTask(k - 1, fanout=1 + len(distinct))
    flips = np.zeros((len(distinct), n), dtype=np.uint8)
    if server:
        rows = [(low_mask - low) & low_mask]
        for j, t in enumerate(distinct):
            tau = np.uint64(t % half)
            rows.append((tau - np.uint64(1) - low) & low_mask)
            flips[j] = (low >= tau).astype(np.uint8)
        operand = np.stack(rows)
    else:
        operand = low
    if k == 1:  # nothing below the top bit: the carry and every comparison are 0
        res = np.zeros((task.fanout, n), dtype=np.uint8)
    else:
        m = digit_bits if digit_bits is not None else choose_digit_bits(party, [task])
        ((res, _),) = await compare_batch(party, f"{label}/cmp", [task], [operand], sender="server", digit_bits=m)
    c1 = res[0]
    msb = top ^ c1  # each party XORs its own top bit into its share of the carry
    if distinct:
        ell = res[1:] ^ c1[None, :] ^ (flips if server else np.uint8(0))
        above = np.asarray([t > half for t in distinct])[:, None]  # AND (T > K) or OR (T < K)
        # a ∨ b = ¬(¬a ∧ ¬b): the server negates its shares of both inputs and of the output
        neg = (~above).astype(np.uint8) if server else np.zeros_like(above, dtype=np.uint8)
        x = np.broadcast_to(msb[None, :] ^ neg, ell.shape)
        y = ell ^ neg
        z_and = await and_(party, f"{label}/and", np.ascontiguousarray(x), y)
        results = dict(zip(distinct, z_and ^ neg))
    else:
        results = {}
    out = np.stack([msb if t == half else results[t] for t in ts])
    return out.reshape((len(ts), *shape))
