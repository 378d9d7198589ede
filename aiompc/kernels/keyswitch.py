"""Compiled passes of output packing's key switching (numba, ``nogil``): residues below ``2**30``.

* :func:`permute_into` — an automorphism ``X -> X^g`` in the evaluation domain is a permutation of the ``N``
  evaluation points: ``out[r, k] = x[r, perm[k]]`` row by row (instead of numpy fancy indexing);
* :func:`digits_into` — the RNS gadget digits of a key switch: digit ``i`` of ``c1`` is its residue mod ``p_i``
  lifted to ``(−p_i/2, p_i/2]``, written as residues mod every prime ``p_j`` (``(B, L, L, N)``, ready for the
  forward NTT of all ``L²`` digit–prime pairs);
* :func:`butterfly_into` — one packing-tree butterfly: ``x = a + m·b``, ``y = a − m·b`` with ``m`` the transform
  of ``X^h`` (one pass instead of a product, a sum, a difference and their temporaries);
* :func:`switch_finish_into` — the end of a key switch fused with the tree's sum: ``res = (u0 + c0', u1) + x``.

Modular products use the float64 quotient estimate of :mod:`aiompc.kernels.rns` (off by at most one for
``p > 2**13``, corrected; ``%`` for tiny test primes), with the product (below ``2**60``) held in ``int64`` so
that the conversions are single instructions.  Each pass reads and writes every residue once.
"""

from __future__ import annotations

import numpy as np

from aiompc.kernels.jit import kernel

__all__ = ["permute_into", "digits_into", "butterfly_into", "switch_finish_into"]


@kernel(inline="always")
def _mulmod(x: np.uint64, y: np.uint64, p: np.uint64, inv: np.float64) -> np.uint64:  # pragma: no cover - compiled
    """``x·y mod p`` for residues below ``p < 2**30``."""
    z = np.int64(x * y)
    pp = np.int64(p)
    if pp < (1 << 14):
        return np.uint64(z % pp)
    q = np.int64(np.float64(z) * inv)
    r = z - q * pp
    r = r + pp if r < 0 else r
    r = r - pp if r >= pp else r
    return np.uint64(r)


@kernel()
def permute_into(x: np.ndarray, perm: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[r, k] = x[r, perm[k]]`` for every row ``r`` of ``x`` (``(R, N)``; ``perm``: ``(N,)`` ``int64``)."""
    for r in range(x.shape[0]):
        for k in range(perm.shape[0]):
            out[r, k] = x[r, perm[k]]


@kernel()
def digits_into(c1: np.ndarray, primes: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[b, i, j, c] = lift_i(c1[b, i, c]) mod primes[j]`` with ``lift_i`` the centred lift from ``Z_{p_i}``.

    ``c1``: ``(B, L, N)`` coefficient-form residues; ``primes``: ``(L,)`` ``uint64``; ``out``: ``(B, L, L, N)``."""
    n_b, n_l, n = c1.shape
    for b in range(n_b):
        for i in range(n_l):
            pi = np.int64(primes[i])
            half = pi >> 1
            for j in range(n_l):
                pj = np.int64(primes[j])
                row = out[b, i, j]
                src = c1[b, i]
                for c in range(n):
                    d = np.int64(src[c])
                    if d > half:
                        d -= pi
                    if d < 0:
                        d += pj
                        if d < 0:  # |d| > p_j: only with very unequal primes
                            d = d % pj
                    elif d >= pj:
                        d = d % pj
                    row[c] = np.uint64(d)


@kernel()
def butterfly_into(a: np.ndarray, b: np.ndarray, mono: np.ndarray, primes: np.ndarray, x: np.ndarray,
                   y: np.ndarray) -> None:  # pragma: no cover - compiled
    """``x = a + mono·b``, ``y = a − mono·b`` mod ``primes[j]``.

    ``a``, ``b``, ``x``, ``y``: ``(2, B, L, N)`` residues; ``mono``: ``(L, N)``; ``primes``: ``(L,)`` ``uint64``."""
    n_c, n_b, n_l, n = a.shape
    for c in range(n_c):
        for bb in range(n_b):
            for j in range(n_l):
                p = primes[j]
                inv = 1.0 / np.float64(p)
                for i in range(n):
                    s = _mulmod(b[c, bb, j, i], mono[j, i], p, inv)
                    u = a[c, bb, j, i]
                    t = u + s
                    x[c, bb, j, i] = t - p if t >= p else t
                    y[c, bb, j, i] = u - s if u >= s else u + p - s


@kernel()
def switch_finish_into(u: np.ndarray, c0: np.ndarray, x: np.ndarray, has_x: bool, primes: np.ndarray,
                       res: np.ndarray) -> None:  # pragma: no cover - compiled
    """``res[0, b] = u[b, 0] + c0[b] (+ x[0, b])``, ``res[1, b] = u[b, 1] (+ x[1, b])`` mod ``primes[j]``.

    ``u``: ``(B, 2, L, N)`` (the key-switch products); ``c0``: ``(B, L, N)``; ``x``, ``res``: ``(2, B, L, N)``."""
    n_b, n_l, n = c0.shape
    for b in range(n_b):
        for comp in range(2):
            for j in range(n_l):
                p = primes[j]
                for i in range(n):
                    v = u[b, comp, j, i]
                    if comp == 0:
                        v += c0[b, j, i]
                        v = v - p if v >= p else v
                    if has_x:
                        v += x[comp, b, j, i]
                        v = v - p if v >= p else v
                    res[comp, b, j, i] = v
