"""Exact table look-up on shares: any function of a ``k``-bit shared value by one 1-out-of-``2^k`` OT.

The server holds a table ``T`` of ``2^k`` integers (the quantized function of a layer — an exponential, a GELU,
a reciprocal square root of a ``k``-bit quantized input — or any table of its own); ``x = x_S + x_C mod 2^k``
is secret-shared.  Per element the server draws a fresh mask ``r`` (CSPRNG) and offers, as the OT's messages,
its table rotated by its share::

    M[j] = T[(j + x_S) mod 2^k] − r  (mod 2^l_out),   j < 2^k

The client chooses ``j = x_C`` and receives ``T[x] − r``; the server's share is ``r``.  The output shares are
``T[x] mod 2^l_out`` exactly: the plaintext reference is the table itself (a signed entry is its two's
complement in ``Z_{2^l_out}``).

Security (semi-honest): the client sees one message per element, uniform because of ``r``, and nothing of
the others (the OT); the server sees only the OT receiver's messages.  The table's entries stay the server's.

Cost per element: ``k`` correlated OTs; the client sends ``k`` bits, the server ``2^k · l_out`` bits; one
round trip.  ``1 <= k <= 8`` (the 1-of-N OT's limit).  E.g. ``k = 4``, ``l_out = 16``: 260 bits per element;
``k = 8``, ``l_out = 16``: 4104 bits — exactness is cheap for narrow inputs only.
"""

from __future__ import annotations

import numpy as np

from aiompc.errors import InputError, ProtocolError
from aiompc.kernels.tables import rotate_tables
from aiompc.party import Party
from aiompc.protocols.ot import one_of_n_ot
from aiompc.ring import check_width, mask

__all__ = ["lookup", "MAX_INPUT_BITS"]

MAX_INPUT_BITS = 8
"""Widest shared input a look-up takes (the 1-out-of-``2^k`` OT has at most 256 messages)."""


def rotated_tables(table: np.ndarray, x_server: np.ndarray, r: np.ndarray, k: int, l_out: int) -> np.ndarray:
    """The server's OT messages ``M[i, j] = T[(j + x_S[i]) mod 2^k] − r[i] mod 2^l_out``, shape ``(n, 2^k)``.

    ``table``: ``(2^k,)`` uint64 entries reduced mod ``2^l_out``; ``x_server``, ``r``: ``(n,)`` uint64.  One compiled
    pass (:func:`~aiompc.kernels.tables.rotate_tables`)."""
    xs = np.ascontiguousarray(x_server, dtype=np.uint64)
    out = np.empty((xs.shape[0], 1 << k), dtype=np.uint64)
    rotate_tables(np.ascontiguousarray(table, dtype=np.uint64), xs, np.ascontiguousarray(r, dtype=np.uint64),
                  mask(l_out), out)
    return out


def _table(table: np.ndarray | None, k: int, l_out: int) -> np.ndarray:
    if table is None:
        raise InputError("lookup: the server passes the table (2^k integers)")
    t = np.asarray(table)
    if t.shape != (1 << k,) or not np.issubdtype(t.dtype, np.integer):
        raise InputError(f"lookup: the table must be {1 << k} integers (k = {k}), got {t.dtype} {t.shape}")
    return t.astype(np.int64).astype(np.uint64) & mask(l_out)  # two's complement of signed entries


async def lookup(party: Party, label: str, x: np.ndarray, *, k: int, l_out: int,
                 table: np.ndarray | None = None) -> np.ndarray:
    """Shares mod ``2^l_out`` of ``table[x]`` for ``x`` shared mod ``2^k`` (module docstring).

    Both parties pass their shares ``x`` (any shape, ``uint64`` below ``2^k``); the server passes ``table``
    (``2^k`` integers, reduced mod ``2^l_out``), the client ``None``.  Returns this party's output shares, the
    shape of ``x``.  Raises :class:`~aiompc.errors.InputError` for a bad width, share or table."""
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_INPUT_BITS:
        raise InputError(f"lookup: k must be an integer in 1..{MAX_INPUT_BITS}, got {k!r}")
    l_out = check_width(l_out)
    xs = np.asarray(x)
    if xs.size and (not np.issubdtype(xs.dtype, np.unsignedinteger) or int(xs.max()) >> k):
        raise InputError(f"lookup: shares must be unsigned integers below 2^{k}")
    flat = xs.astype(np.uint64).reshape(-1)
    if party.is_server:
        t = _table(table, k, l_out)
        r = party.rng.integers(l_out, flat.shape[0])
        if flat.size:
            messages = await party.compute(rotated_tables, t, flat, r, k, l_out)
            await one_of_n_ot(party, label, sender="server", bits=l_out, n_choices=1 << k, messages=messages)
        return r.reshape(xs.shape)
    if table is not None:
        raise InputError("lookup: only the server holds the table; the client passes None")
    if not flat.size:
        return np.zeros(xs.shape, dtype=np.uint64)
    got = await one_of_n_ot(party, label, sender="server", bits=l_out, n_choices=1 << k, choices=flat)
    if got is None or np.asarray(got).shape != flat.shape:
        raise ProtocolError(f"lookup {label!r}: the OT returned {np.asarray(got).shape}, expected {flat.shape}")
    return np.asarray(got, dtype=np.uint64).reshape(xs.shape)
