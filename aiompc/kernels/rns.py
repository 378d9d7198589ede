"""RNS multiply-accumulate of ciphertexts by plaintexts in NTT form (numba, ``nogil``), primes below ``2**30``.

``mac_into(x, w, primes, out)``: ``out[c, o, l] = Σ_j x[c, j, l] · w[o, j, l] mod primes[l]`` pointwise over
the ``N`` evaluation points (``mac_add_into``: the same sum added to ``out`` in place) — the hot loop of every HE linear layer.  Residues are below ``2**30`` so a
product is below ``2**60`` and sixteen of them sum in a ``uint64``; each block of sixteen products is
reduced once, without a hardware division: the float64 estimate of ``⌊acc/p⌋`` is off by at most one
(for ``p > 2**13``; smaller primes, which only tests use, take ``%``), and ``acc − q·p`` (exact in
wrapping arithmetic) is corrected by a conditional add and a conditional subtract.

Elementwise modular arithmetic on residues ``a, b < p < 2**30`` as compiled ufuncs (one pass, no
temporaries, broadcasting over a column of primes): :func:`add_mod`, :func:`sub_mod`, :func:`neg_mod`,
:func:`mul_mod` (the product is below ``2**60``; the quotient is estimated in float64, off by at most one
for ``p > 2**13``, and corrected; smaller primes take ``%``), and :func:`rem` (any ``uint64`` mod ``p``).

Loop order of :func:`mac_into`: per output ``o`` and prime ``l``, the coefficient axis is cut into blocks small enough that
the two accumulators (``c0``, ``c1``) stay in L1; within a block the inputs ``j`` stream through, each
weight row read once for both components.
"""

from __future__ import annotations

import numpy as np

from aiompc.kernels.jit import kernel, ufunc_kernel

__all__ = ["mac_into", "mac_add_into", "scale_round_pow2_into", "LAZY_PRODUCTS", "add_mod", "sub_mod", "neg_mod", "mul_mod", "rem"]

LAZY_PRODUCTS = 16  # products (< 2**60) summed before one reduction: 16·2**60 + 2**30 < 2**64
_BLOCK = 512  # coefficients per block
_OUTS = 4  # outputs accumulated together: each input row is read once per 4 outputs; 4·2·512·8 B = 32 KiB


@kernel(inline="always")
def _reduce64(acc: np.uint64, p: np.uint64, pinv: np.float64) -> np.uint64:  # pragma: no cover
    """``acc mod p`` for any uint64 ``acc`` and ``2**13 < p < 2**30``, branch-free.

    The float64 quotient has relative error below ``2**-51``, so for ``acc/p < 2**51`` it is within one of
    ``⌊acc/p⌋``; ``acc − q·p`` is exact in wrapping arithmetic and one conditional add and one conditional
    subtract bring it into ``[0, p)``.
    """
    q = np.uint64(np.float64(acc) * pinv)
    r = np.int64(acc - q * p)
    pp = np.int64(p)
    r = r + pp if r < 0 else r
    r = r - pp if r >= pp else r
    return np.uint64(r)


@kernel()
def _mac(x: np.ndarray, w: np.ndarray, primes: np.ndarray, out: np.ndarray, accumulate: bool) -> None:  # pragma: no cover
    """The loop of :func:`mac_into` (``accumulate`` False) and :func:`mac_add_into` (True: the reduced sum is
    added to ``out`` mod ``p``, ``out`` holding residues below ``p``)."""
    n_c, n_j, n_l, n = x.shape
    n_o = w.shape[0]
    acc = np.empty((_OUTS, n_c, _BLOCK), dtype=np.uint64)
    for o0 in range(0, n_o, _OUTS):
        no = min(_OUTS, n_o - o0)
        for l in range(n_l):
            p = np.uint64(primes[l])
            pinv = 1.0 / np.float64(p)
            small = p < np.uint64(1 << 14)  # tiny test primes: plain division (the float estimate needs p > 2**13)
            for b0 in range(0, n, _BLOCK):
                m = min(n, b0 + _BLOCK) - b0
                acc[:] = 0
                for j0 in range(0, n_j, LAZY_PRODUCTS):
                    for j in range(j0, min(n_j, j0 + LAZY_PRODUCTS)):
                        for c in range(n_c):
                            xr = x[c, j, l, b0 : b0 + m]
                            for oo in range(no):
                                wr = w[o0 + oo, j, l, b0 : b0 + m]
                                a = acc[oo, c]
                                for i in range(m):
                                    a[i] += np.uint64(np.uint32(xr[i])) * np.uint64(np.uint32(wr[i]))
                    for oo in range(no):
                        for c in range(n_c):
                            a = acc[oo, c]
                            if small:
                                for i in range(m):
                                    a[i] = a[i] % p
                            else:
                                for i in range(m):
                                    a[i] = _reduce64(a[i], p, pinv)
                for oo in range(no):
                    for c in range(n_c):
                        if accumulate:
                            dst = out[c, o0 + oo, l, b0 : b0 + m]
                            for i in range(m):
                                s = dst[i] + acc[oo, c, i]
                                dst[i] = s - p if s >= p else s
                        else:
                            out[c, o0 + oo, l, b0 : b0 + m] = acc[oo, c, :m]


@kernel()
def mac_into(x: np.ndarray, w: np.ndarray, primes: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``out[c, o, l] = Σ_j x[c, j, l]·w[o, j, l] mod primes[l]``.

    ``x``: ``(C, J, L, N)`` uint64 residues; ``w``: ``(O, J, L, N)`` uint64 residues; ``primes``: ``(L,)``
    uint64; ``out``: ``(C, O, L, N)`` uint64, fully reduced.
    """
    _mac(x, w, primes, out, False)


@kernel()
def mac_add_into(x: np.ndarray, w: np.ndarray, primes: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``out[c, o, l] = (out[c, o, l] + Σ_j x[c, j, l]·w[o, j, l]) mod primes[l]``: :func:`mac_into` accumulating
    in place (``out`` may be a strided view, e.g. a row range of a layer's accumulator; its residues must be
    below ``primes[l]``).  Same shapes and work as :func:`mac_into`, plus one add per output residue."""
    _mac(x, w, primes, out, True)


_U64x3 = ["uint64(uint64, uint64, uint64)"]


@ufunc_kernel(_U64x3)
def add_mod(a: np.uint64, b: np.uint64, p: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """``(a + b) mod p`` for residues ``a, b < p``."""
    s = a + b
    return s - p if s >= p else s


@ufunc_kernel(_U64x3)
def sub_mod(a: np.uint64, b: np.uint64, p: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """``(a − b) mod p`` for residues ``a, b < p``."""
    s = a + (p - b)
    return s - p if s >= p else s


@ufunc_kernel(["uint64(uint64, uint64)"])
def neg_mod(a: np.uint64, p: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """``−a mod p`` for a residue ``a < p``."""
    return p - a if a != 0 else a


@ufunc_kernel(_U64x3)
def mul_mod(a: np.uint64, b: np.uint64, p: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """``a·b mod p`` for residues ``a, b < p < 2**30``."""
    x = a * b
    if p < np.uint64(1 << 14):
        return x % p
    q = np.uint64(np.float64(x) * (1.0 / np.float64(p)))
    r = np.int64(x - q * p)
    pp = np.int64(p)
    r = r + pp if r < 0 else r
    r = r - pp if r >= pp else r
    return np.uint64(r)


@ufunc_kernel(["uint64(uint64, uint64)"])
def rem(x: np.uint64, p: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """``x mod p`` for any uint64 ``x`` and ``p < 2**30`` (``x % p`` without a hardware division)."""
    if p < np.uint64(1 << 14):
        return x % p
    return _reduce64(x, p, 1.0 / np.float64(p))


@kernel(inline="always")
def _mulmod_small(a: np.uint64, b: np.uint64, p: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """``a·b mod p`` for residues below ``p < 2**30`` (float64 estimate; ``%`` for tiny test primes)."""
    x = a * b
    if p < np.uint64(1 << 14):
        return x % p
    return _reduce64(x, p, 1.0 / np.float64(p))


@kernel()
def scale_round_pow2_into(x: np.ndarray, qhat_inv: np.ndarray, whole: np.ndarray, frac: np.ndarray,
                          primes: np.ndarray, bits: int, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[r, c] = round(2**bits · X / q) mod 2**bits`` of the integer ``X`` with residues ``x[r, :, c]``.

    ``y_l = x_l·(q/p_l)^-1 mod p_l``; the integer parts ``Σ y_l·whole[l]`` wrap in uint64 and the fractional
    parts ``Σ y_l·frac[l]`` are summed in float64 in prime order, then rounded (``⌊f + 1/2⌋``): the arithmetic
    of :func:`aiompc.crypto.he.rns.scale_round_pow2`'s numpy form, in one pass.  ``x``: ``(R, L, N)`` uint64;
    ``qhat_inv``/``whole``: ``(L,)`` uint64; ``frac``: ``(L,)`` float64; ``out``: ``(R, N)`` uint64.
    """
    rows, n_l, n = x.shape
    mask = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    for r in range(rows):
        dst = out[r]
        for c in range(n):
            acc = np.uint64(0)
            f = 0.0
            for l in range(n_l):
                p = np.uint64(primes[l])
                y = _mulmod_small(x[r, l, c], np.uint64(qhat_inv[l]), p)
                acc += y * np.uint64(whole[l])
                f += np.float64(y) * frac[l]  # 0.0 + a == a: the same sum as numpy's, in prime order
            acc += np.uint64(np.floor(f + 0.5))
            dst[c] = acc & mask
