"""Negacyclic NTT / inverse NTT kernels (numba, ``nogil``) for RNS primes below ``2**30``.

Pure kernels: they take the data and precomputed per-prime tables and transform in place.  The tables
(twiddles in bit-reversed order with the ``ψ`` twist merged in, Longa–Naehrig, and their Shoup companions
``w' = ⌊w·2**32/p⌋``) are built by :mod:`aiompc.crypto.he.ntt`, which is the public interface.

Algorithm: Cooley–Tukey (forward) and Gentleman–Sande (inverse) radix-2 butterflies with Harvey's lazy
reduction (forward values kept in ``[0, 4p)``, inverse in ``[0, 2p)``) and Shoup multiplication by
the precomputed twiddles.  ``p < 2**30`` keeps ``4p < 2**32``: the working copy of a polynomial is
``uint32`` and the only 64-bit operation per butterfly is the high half of ``y·w'``.  Each polynomial
is copied into a ``uint32`` scratch row (16 KiB for ``n = 4096``: it stays in L1), transformed there
stage by stage (the inner loop of a stage runs over the contiguous run of ``t`` coefficients that share
a twiddle; LLVM vectorises it), fully reduced and written back, so one call reads and writes each
``uint64`` residue once.  Measured ≈ 21 µs per ``n = 4096`` polynomial and prime (``benchmarks/kernels.py``).

Also here, because they share the reduction helper: :func:`reduce_signed_into` (signed integers → residues)
and the fused variants :func:`ntt_forward_signed` and :func:`ntt_forward_sparse_centered`.

Layout: ``a`` is ``(rows, k, n)`` ``uint64`` (C-contiguous), ``a[r, i]`` a polynomial modulo
``p[i]``; every (row, prime) pair is an independent transform.
"""

from __future__ import annotations

import numpy as np

from aiompc.kernels.jit import kernel

__all__ = [
    "ntt_forward_inplace",
    "ntt_inverse_inplace",
    "ntt_forward_signed",
    "ntt_forward_sparse_centered",
    "reduce_signed_into",
]


@kernel(inline="always")
def _mod_signed(v: np.int64, p: np.int64, pinv: np.float64) -> np.int64:  # pragma: no cover - compiled
    """``v mod p`` in ``[0, p)`` for any int64 ``v`` and ``p < 2**30``, without a hardware division.

    The float64 quotient estimate is within 2 of ``⌊v/p⌋`` (relative error ≤ 3·2**-53 on ``|v/p| < 2**52``);
    ``v − q·p`` is then exact in wrapping int64 arithmetic and the loops fix the estimate.
    """
    q = np.int64(np.floor(np.float64(v) * pinv))
    r = v - q * p
    while r < 0:
        r += p
    while r >= p:
        r -= p
    return r


@kernel()
def reduce_signed_into(x: np.ndarray, primes: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[r, i, c] = x[r, c] mod primes[i]`` (in ``[0, p)``) for int64 ``x`` ``(rows, n)`` → uint64 ``(rows, k, n)``."""
    rows, n = x.shape
    k = primes.shape[0]
    for i in range(k):
        p = np.int64(primes[i])
        pinv = 1.0 / np.float64(p)
        for r in range(rows):
            src = x[r]
            dst = out[r, i]
            for c in range(n):
                dst[c] = np.uint64(_mod_signed(src[c], p, pinv))


@kernel()
def _forward_row(x: np.ndarray, tw: np.ndarray, tws: np.ndarray, p: np.uint64) -> None:  # pragma: no cover - compiled
    n = x.shape[0]
    p2 = p + p
    t = n >> 1
    m = 1
    while t >= 1:
        for j in range(m):
            w = np.uint64(tw[m + j])
            ws = np.uint64(tws[m + j])
            base = 2 * j * t
            xs = x[base : base + t]
            ys = x[base + t : base + 2 * t]
            for u in range(t):
                xv = np.uint64(xs[u])
                xv = min(xv, xv - p2)  # [0, 4p) -> [0, 2p) (wraps when xv < 2p, so min keeps xv)
                yv = np.uint64(ys[u])
                q = (yv * ws) >> np.uint64(32)
                tt = (yv * w - q * p) & np.uint64(0xFFFFFFFF)  # y·w mod p in [0, 2p)
                xs[u] = np.uint32(xv + tt)
                ys[u] = np.uint32(xv + p2 - tt)
        m <<= 1
        t >>= 1


@kernel()
def _inverse_row(x: np.ndarray, tw: np.ndarray, tws: np.ndarray, p: np.uint64) -> None:  # pragma: no cover - compiled
    n = x.shape[0]
    p2 = p + p
    t = 1
    m = n >> 1
    while m >= 1:
        for j in range(m):
            w = np.uint64(tw[m + j])
            ws = np.uint64(tws[m + j])
            base = 2 * j * t
            xs = x[base : base + t]
            ys = x[base + t : base + 2 * t]
            for u in range(t):
                xv = np.uint64(xs[u])
                yv = np.uint64(ys[u])
                d = xv + p2 - yv  # (0, 4p)
                s = xv + yv
                s = min(s, s - p2)  # (x + y) mod 2p
                q = (d * ws) >> np.uint64(32)
                xs[u] = np.uint32(s)
                ys[u] = np.uint32((d * w - q * p) & np.uint64(0xFFFFFFFF))
        m >>= 1
        t <<= 1


@kernel(inline="always")
def _load_row(src: np.ndarray, x: np.ndarray) -> np.uint64:  # pragma: no cover - compiled
    """Copy the ``uint64`` residues ``src`` into the ``uint32`` working row ``x``; return their maximum (the
    caller checks it is below the prime before transforming)."""
    top = np.uint64(0)
    for c in range(x.shape[0]):
        v = src[c]
        top = max(top, v)
        x[c] = np.uint32(v)
    return top


@kernel(inline="always")
def _store_reduced(x: np.ndarray, dst: np.ndarray, p: np.uint64) -> None:  # pragma: no cover - compiled
    """Write the working row ``x`` (values in ``[0, 4p)``) to ``dst`` fully reduced to ``[0, p)``, in ``dst``'s
    dtype."""
    p2 = p + p
    for c in range(x.shape[0]):
        v = np.uint64(x[c])
        v = min(v, v - p2)
        dst[c] = dst.dtype.type(min(v, v - p))


@kernel()
def ntt_forward_inplace(a: np.ndarray, tw: np.ndarray, tws: np.ndarray, primes: np.ndarray) -> bool:  # pragma: no cover
    """Forward NTT of every row of ``a`` (``(rows, k, n)`` uint64, residues ``< p``), fully reduced output.

    Returns ``False`` (leaving the offending rows untransformed) if some input is not below its prime.

    ``tw``/``tws``: ``(k, n)`` uint32 twiddles ``ψ^brv(j)`` and Shoup companions; ``primes``: ``(k,)`` uint64.
    """
    rows, k, n = a.shape
    x = np.empty(n, dtype=np.uint32)
    ok = True
    for i in range(k):
        p = np.uint64(primes[i])
        twi = tw[i]
        twsi = tws[i]
        for r in range(rows):
            src = a[r, i]
            if _load_row(src, x) >= p:
                ok = False
                continue
            _forward_row(x, twi, twsi, p)
            _store_reduced(x, src, p)
    return ok


@kernel()
def ntt_inverse_inplace(
    a: np.ndarray, tw: np.ndarray, tws: np.ndarray, primes: np.ndarray, n_inv: np.ndarray, n_inv_s: np.ndarray
) -> bool:  # pragma: no cover
    """Inverse NTT of every row of ``a`` (``(rows, k, n)`` uint64, residues ``< p``), times ``n^-1``, reduced.

    Returns ``False`` (leaving the offending rows untransformed) if some input is not below its prime.

    ``tw``/``tws``: ``(k, n)`` uint32 inverse twiddles ``ψ^-brv(j)`` and companions; ``n_inv``/``n_inv_s``:
    ``(k,)`` uint64 ``n^-1 mod p`` and its Shoup companion.
    """
    rows, k, n = a.shape
    x = np.empty(n, dtype=np.uint32)
    ok = True
    for i in range(k):
        p = np.uint64(primes[i])
        ni = np.uint64(n_inv[i])
        nis = np.uint64(n_inv_s[i])
        twi = tw[i]
        twsi = tws[i]
        for r in range(rows):
            src = a[r, i]
            if _load_row(src, x) >= p:
                ok = False
                continue
            _inverse_row(x, twi, twsi, p)
            for c in range(n):
                v = np.uint64(x[c])
                q = (v * nis) >> np.uint64(32)
                v = (v * ni - q * p) & np.uint64(0xFFFFFFFF)
                src[c] = min(v, v - p)
    return ok


@kernel()
def ntt_forward_signed(
    x: np.ndarray, tw: np.ndarray, tws: np.ndarray, primes: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover
    """Forward NTT of signed integers: ``out[r, i] = NTT_i(x[r] mod p_i)``, fully reduced.

    ``x``: ``(rows, n)`` int64 (any values); ``out``: ``(rows, k, n)`` uint64.  The reduction is fused
    into the copy to the working row, so no ``(rows, k, n)`` temporary of residues is made.
    """
    rows, n = x.shape
    k = primes.shape[0]
    row = np.empty(n, dtype=np.uint32)
    for i in range(k):
        p = np.uint64(primes[i])
        ps = np.int64(primes[i])
        pinv = 1.0 / np.float64(ps)
        twi = tw[i]
        twsi = tws[i]
        for r in range(rows):
            src = x[r]
            for c in range(n):
                row[c] = np.uint32(_mod_signed(src[c], ps, pinv))
            _forward_row(row, twi, twsi, p)
            _store_reduced(row, out[r, i], p)


@kernel()
def ntt_forward_sparse_centered(
    values: np.ndarray, exps: np.ndarray, bits: int, tw: np.ndarray, tws: np.ndarray, primes: np.ndarray,
    out: np.ndarray, stats: np.ndarray,
) -> None:  # pragma: no cover
    """Plaintext polynomials ``Σ_e lift(values[r, e]) X^exps[e]`` in NTT form, with their noise statistics.

    ``lift(v)``: ``v mod 2**bits`` centered into ``(−2**(bits−1), 2**(bits−1)]`` (``bits <= 62``; ``values``
    are uint64 words, two's complement for negative integers).  ``values``: ``(rows, E)``; ``exps``:
    ``(E,)`` distinct exponents in ``[0, n)``; ``out``: ``(rows, k, n)`` uint64 or uint32 (residues ``< 2**30``),
    fully reduced.  ``stats``
    (int64, 2) receives ``max |lift|`` and the largest number of non-zero coefficients in one row.
    No dense ``(rows, n)`` array of coefficients is made.
    """
    rows, n_e = values.shape
    k = primes.shape[0]
    n = out.shape[2]
    t = np.int64(1) << np.int64(bits)
    mask = np.uint64(t - 1)
    half = t >> np.int64(1)
    lifted = np.empty(n_e, dtype=np.int64)
    row = np.empty(n, dtype=np.uint32)
    norm = np.int64(0)
    count = np.int64(0)
    for r in range(rows):
        nonzero = np.int64(0)
        for e in range(n_e):
            u = np.int64(values[r, e] & mask)
            v = u - t if u > half else u
            lifted[e] = v
            norm = max(norm, abs(v))
            nonzero += 1 if v != 0 else 0
        count = max(count, nonzero)
        for i in range(k):
            p = np.uint64(primes[i])
            ps = np.int64(primes[i])
            pinv = 1.0 / np.float64(ps)
            row[:] = 0
            for e in range(n_e):
                row[exps[e]] = np.uint32(_mod_signed(lifted[e], ps, pinv))
            _forward_row(row, tw[i], tws[i], p)
            _store_reduced(row, out[r, i], p)
    stats[0] = norm
    stats[1] = count
