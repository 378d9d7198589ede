"""Gilboa's OT multiplication of a client matrix by a server matrix: shares of ``X @ Y`` mod ``2^l``.

Inputs: the client's ``X`` ``(G, R, K)`` and the server's ``Y`` ``(G, K, C)``, integers mod ``2^l`` (each party
passes only its own).  Output: additive shares mod ``2^l`` of ``X @ Y``, ``(G, R, C)`` uint64.

With ``x_i`` the bits of ``X``, ``X @ Y = Σ_i 2^i · Σ_k x_i[.., k] · Y[k, :]``.  For every bit ``i`` one correlated
OT per element of ``X`` (:func:`~aiompc.protocols.ot.correlated_ot`, the server as sender): the client's choice is
``x_i``, the server's correlation the row ``Y[k, :]`` mod ``2^(l - i)`` (``2^i`` times it needs only the low
``l - i`` bits), so the client receives ``u + x_i·Y[k, :]`` and the server keeps ``-u``.  Both sum over ``k`` and
over the bits with weights ``2^i``.  The ``l`` bit positions run concurrently (labels ``f"{label}/b{i}"``): one
round trip in all.

Cost (matching :func:`aiompc.protocols.linear.matmul.ot_cross_bits`): ``l·G·R·K`` COTs of the session's engine;
the client sends ``l·G·R·K`` choice bits, the server ``G·R·K·C·Σ_i (l - i) = G·R·K·C·l(l+1)/2`` bits, plus
frames.  Privacy: the correlated OT hides the choices from the server and the unchosen pads from the client; the
client's outputs are uniform given its view (each is masked by a fresh pad).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.protocols.ot import correlated_ot
from aiompc.ring import check_width, reduce

__all__ = ["cross_ot", "gilboa_product"]


async def gilboa_product(party: Party, label: str, *, l: int, shape: tuple[int, int, int, int],
                         x: np.ndarray | None = None, y: np.ndarray | None = None) -> np.ndarray:
    """Shares mod ``2^l`` of ``X @ Y`` for ``shape = (G, R, K, C)`` (see the module docstring); the client passes
    ``x`` ``(G, R, K)``, the server ``y`` ``(G, K, C)``."""
    check_width(l)
    g, r, k, c = shape
    if min(shape) < 1:
        raise InputError(f"{label}: the product needs positive dimensions, got {shape}")
    n = g * r * k
    if party.is_client:
        if x is None or y is not None or np.shape(x) != (g, r, k):
            raise InputError(f"{label}: the client passes X of shape {(g, r, k)} only")
        xv = reduce(np.asarray(x), l).reshape(n)

        async def bit(i: int) -> np.ndarray:
            choice = ((xv >> np.uint64(i)) & np.uint64(1)).astype(np.uint8)
            got = await correlated_ot(party, f"{label}/b{i}", sender="server", bits=l - i, choices=choice)
            return got.reshape(g, r, k, c).sum(axis=2, dtype=np.uint64) << np.uint64(i)
    else:
        if y is None or x is not None or np.shape(y) != (g, k, c):
            raise InputError(f"{label}: the server passes Y of shape {(g, k, c)} only")
        yv = reduce(np.asarray(y), l)
        rows = np.broadcast_to(yv[:, None, :, :], (g, r, k, c)).reshape(n, c)

        async def bit(i: int) -> np.ndarray:
            corr = rows & np.uint64((1 << (l - i)) - 1)
            pad = await correlated_ot(party, f"{label}/b{i}", sender="server", bits=l - i, correlation=corr)
            return (np.uint64(0) - pad.reshape(g, r, k, c).sum(axis=2, dtype=np.uint64)) << np.uint64(i)

    parts = await asyncio.gather(*(bit(i) for i in range(l)))
    total = np.zeros((g, r, c), dtype=np.uint64)
    for p in parts:  # l partial sums (a loop over the bit positions, each whole-array)
        total += p
    return reduce(total, l)


async def cross_ot(party: Party, label: str, plan: Any, x: np.ndarray | None = None,
                   y: np.ndarray | None = None) -> np.ndarray:
    """A cross term of :func:`aiompc.protocols.linear.matmul.matmul_shared` by OT: ``plan`` is its
    :class:`~aiompc.protocols.linear.matmul.CrossPlan` (``shape`` and ``l`` are read); the runner signature of
    :data:`aiompc.protocols.products.CROSS_METHODS`."""
    s = plan.shape
    return await gilboa_product(party, label, l=plan.l, shape=(s.groups, s.rows, s.inner, s.cols), x=x, y=y)
