"""The server's messages of a table look-up (numba, ``nogil``): its table rotated by each share and masked.

``rotate_tables(table, x, r, mask, out)``: ``out[i, j] = (table[(j + x[i]) mod N] − r[i]) & mask`` for
``N = len(table)`` a power of two (``2^k`` entries, ``k <= 8`` in :mod:`aiompc.protocols.nonlinear.lookup`);
``table`` holds the entries reduced mod ``2^l_out`` (``mask = 2^l_out − 1``), ``x`` the server's shares below
``N``, ``r`` its fresh masks.  The rotation is two contiguous copies of the table per row (``j < N − x`` and
the wrapped rest), so each row is a sequential write of ``N`` values with one subtraction each.
Cost: ``N`` loads, subtractions and stores per row; the table stays in L1.
"""

from __future__ import annotations

import numpy as np

from aiompc.kernels.jit import kernel

__all__ = ["rotate_tables"]


@kernel()
def rotate_tables(table: np.ndarray, x: np.ndarray, r: np.ndarray, mask: np.uint64, out: np.ndarray) -> None:  # pragma: no cover
    """In place: ``out[i, j] = (table[(j + x[i]) & (N − 1)] − r[i]) & mask``.

    ``table``: ``(N,)`` uint64, ``N`` a power of two; ``x``, ``r``: ``(n,)`` uint64 (``x`` is reduced mod ``N``
    here); ``out``: ``(n, N)`` uint64.
    """
    size = table.shape[0]
    for i in range(x.shape[0]):
        s = np.int64(x[i] & np.uint64(size - 1))
        ri = r[i]
        o = out[i]
        head = size - s
        for j in range(head):
            o[j] = (table[s + j] - ri) & mask
        for j in range(s):
            o[head + j] = (table[j] - ri) & mask
