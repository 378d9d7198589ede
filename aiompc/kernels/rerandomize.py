"""Fused elementwise steps of a result ciphertext's re-randomisation (numba, ``nogil``), primes below ``2**30``.

:func:`aiompc.crypto.he.result.rerandomize` adds ``u·pk + (e0 + U, e1)`` to a ciphertext batch.  Done with
numpy ufuncs that is a broadcast product, two sums, two reductions of signed samples and a limb-by-limb
reduction of the flooding integers, each a pass over ``(2, B, L, N)`` words with its temporaries; here it is
two passes:

* :func:`add_pk_product_into` — ``data[k, b, l] += pk[k, l] · u_hat[b, l] (mod p_l)`` in place (NTT form);
* :func:`add_noise_into` — ``data[0, b, l] += e0[b] + U[b]``, ``data[1, b, l] += e1[b]`` (mod ``p_l``, coefficient
  form), with ``e0, e1`` signed ``int64`` and the flooding ``U = X − 2**(f−1)`` given by ``X``'s 32-bit limbs
  (least significant first), reduced by Horner's rule (``r·2**32 + limb < 2**62``).

Both give exactly the residues of the numpy steps they replace (``tests/kernels/test_rerandomize.py``).
"""

from __future__ import annotations

import numpy as np

from aiompc.kernels.jit import kernel
from aiompc.kernels.rns import _reduce64

__all__ = ["add_pk_product_into", "add_noise_into"]


@kernel(inline="always")
def _signed_mod(v: np.int64, p: np.int64) -> np.uint64:  # pragma: no cover - compiled
    """``v mod p`` in ``[0, p)`` for any int64 ``v``: one compare for the usual small samples, else ``%``
    (Python semantics in numba: the sign of ``p``)."""
    if -p < v < p:
        return np.uint64(v + p if v < 0 else v)
    return np.uint64(v % p)


@kernel(inline="always")
def _rem62(x: np.uint64, p: np.uint64, pinv: np.float64) -> np.uint64:  # pragma: no cover - compiled
    """``x mod p`` for ``x < 2**62`` (:func:`~aiompc.kernels.rns._reduce64`; tiny primes, tests only, take ``%``)."""
    if p < np.uint64(1 << 14):
        return x % p
    return _reduce64(x, p, pinv)


@kernel(inline="always")
def _mulmod(a: np.uint64, b: np.uint64, p: np.uint64, pinv: np.float64) -> np.uint64:  # pragma: no cover - compiled
    """``a·b mod p`` for ``a, b < p < 2**30`` (the product is below ``2**60``)."""
    return _rem62(a * b, p, pinv)


@kernel()
def add_pk_product_into(data: np.ndarray, pk: np.ndarray, u_hat: np.ndarray, primes: np.ndarray) -> None:  # pragma: no cover
    """``data[k, b, l, i] = (data[k, b, l, i] + pk[k, l, i]·u_hat[b, l, i]) mod primes[l]``.

    ``data``: ``(2, B, L, N)`` uint64 residues (modified in place); ``pk``: ``(2, L, N)``; ``u_hat``: ``(B, L, N)``.
    """
    n_k, n_b, n_l, n = data.shape
    for l in range(n_l):
        p = np.uint64(primes[l])
        pinv = 1.0 / np.float64(p)
        for k in range(n_k):
            w = pk[k, l]
            for b in range(n_b):
                row = data[k, b, l]
                u = u_hat[b, l]
                for i in range(n):
                    s = row[i] + _mulmod(w[i], u[i], p, pinv)
                    row[i] = s - p if s >= p else s


@kernel()
def add_noise_into(data: np.ndarray, e0: np.ndarray, e1: np.ndarray, limbs: np.ndarray, offset: np.ndarray,
                   primes: np.ndarray) -> None:  # pragma: no cover
    """``data[0, b, l] += e0[b] + X[b] − offset`` and ``data[1, b, l] += e1[b]``, all mod ``primes[l]``, in place.

    ``data``: ``(2, B, L, N)`` uint64 residues, coefficient form; ``e0``/``e1``: ``(B, N)`` int64 (any values);
    ``limbs``: ``(n_limbs, B, N)`` uint64 32-bit limbs of the non-negative integers ``X``, least significant
    first (``n_limbs = 0``: no flooding); ``offset``: ``(L,)`` residues ``2**(f−1) mod p_l`` (unused without limbs).
    """
    _, n_b, n_l, n = data.shape
    n_limbs = limbs.shape[0]
    for l in range(n_l):
        p = np.uint64(primes[l])
        ps = np.int64(primes[l])
        pinv = 1.0 / np.float64(p)
        off = np.uint64(offset[l]) if n_limbs else np.uint64(0)
        for b in range(n_b):
            row0 = data[0, b, l]
            row1 = data[1, b, l]
            for i in range(n):
                x = np.uint64(0)
                for j in range(n_limbs - 1, -1, -1):
                    x = _rem62((x << np.uint64(32)) + limbs[j, b, i], p, pinv)
                v = row0[i] + _signed_mod(e0[b, i], ps)  # < 2p
                v = v - p if v >= p else v
                v = v + x + (p - off)  # < 3p
                v = v - p if v >= p else v
                v = v - p if v >= p else v
                row0[i] = v
                w = row1[i] + _signed_mod(e1[b, i], ps)
                row1[i] = w - p if w >= p else w
