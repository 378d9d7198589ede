"""Gadget decomposition for hybrid key switching (numba, ``nogil``): RNS residues → balanced base-``2^w`` digits.

:func:`decompose_into` takes a polynomial batch mod ``Q = p_0·…·p_{L−1}`` in RNS form (residues below
``2**30``), recovers each coefficient's integer ``x ∈ [0, Q)`` (Garner's mixed-radix form
``x = v_0 + p_0·(v_1 + p_1·(v_2 + …))``, evaluated by Horner on 32-bit limbs held in ``int64``), and splits it
into ``D`` *balanced* digits of ``w`` bits: ``x = Σ_k d_k·2^(w·k)`` with ``|d_k| <= 2^(w−1)`` whenever
``Q < 2^(w·D − 1)`` (the caller's condition: the top chunk is then below ``2^(w−1)`` and absorbs the last
carry).  Each digit is written as its residues modulo every prime of the output basis (the key-switching basis
``Q·P``), ready for the forward NTT.

All arithmetic is in ``int64``: limbs below ``2**32`` times primes below ``2**30`` plus a carry stay below
``2**63``; Garner products of two residues stay below ``2**60``.  Cost per coefficient: ``L²/2`` modular
products, ``L²`` limb products and ``D·M`` reductions (``M`` output primes).

:func:`moddown_into` is the evaluation-domain end of ``ModDown`` (divide by the special prime ``P`` with
rounding): ``(u − r̂)·P^(-1) mod p_j`` per prime of ``Q``, fused with adding the switched ciphertext's ``c0``.
"""

from __future__ import annotations

import numpy as np

from aiompc.kernels.jit import kernel

__all__ = ["decompose_into", "moddown_into", "butterfly_into", "permute_into"]


@kernel(inline="always")
def _mulmod(x: np.uint64, y: np.uint64, p: np.uint64, inv: np.float64) -> np.uint64:  # pragma: no cover - compiled
    """``x·y mod p`` for residues below ``p < 2**30`` (float64 quotient estimate, ``%`` for tiny test primes)."""
    z = np.int64(x * y)  # below 2**60: signed conversions are single instructions, unsigned ones are not
    pp = np.int64(p)
    if pp < (1 << 14):
        return np.uint64(z % pp)
    q = np.int64(np.float64(z) * inv)
    r = z - q * pp
    r = r + pp if r < 0 else r
    r = r - pp if r >= pp else r
    return np.uint64(r)


@kernel()
def decompose_into(x: np.ndarray, primes: np.ndarray, garner: np.ndarray, width: int, out_primes: np.ndarray,
                   out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Balanced base-``2^width`` digits of the integers whose residues are ``x``.

    ``x``: ``(B, L, N)`` residues (``uint64``, ``x[b, i] < primes[i]``); ``primes``: ``(L,)`` ``int64``;
    ``garner``: ``(L, L)`` ``int64`` with ``garner[i, j] = p_j^{-1} mod p_i`` for ``j < i``; ``width``: ``1..30``;
    ``out_primes``: ``(M,)`` ``int64``; ``out``: ``(B, D, M, N)`` ``uint64`` — ``out[b, k, m, c] = d_k mod
    out_primes[m]`` for the digits ``d_k`` of coefficient ``c`` of polynomial ``b``.
    """
    n_b, n_l, n = x.shape
    n_d, n_m = out.shape[1], out.shape[2]
    v = np.empty(n_l, dtype=np.int64)
    pinv = np.empty(n_l, dtype=np.float64)
    for i in range(n_l):
        pinv[i] = 1.0 / np.float64(primes[i])
    limbs = np.zeros(n_l + 4, dtype=np.int64)
    digits = np.empty((n_d, n), dtype=np.int64)
    mask32 = np.int64(0xFFFFFFFF)
    base = np.int64(1) << width
    half = np.int64(1) << (width - 1)
    low = base - 1
    for b in range(n_b):
        for c in range(n):
            for i in range(n_l):  # Garner: v_i = (((r_i − v_0)·p_0^{-1} − v_1)·p_1^{-1} − …) mod p_i
                p = primes[i]
                t = np.int64(x[b, i, c])
                for j in range(i):
                    vj = v[j]
                    if vj >= p:
                        vj -= (vj // p) * p
                    t -= vj
                    if t < 0:
                        t += p
                    t = np.int64(_mulmod(np.uint64(t), np.uint64(garner[i, j]), np.uint64(p), pinv[i]))
                v[i] = t
            for k in range(limbs.size):
                limbs[k] = 0
            limbs[0] = v[n_l - 1]
            used = 1
            for i in range(n_l - 2, -1, -1):  # Horner: limbs = limbs·p_i + v_i
                p = primes[i]
                carry = v[i]
                for k in range(used):
                    t = limbs[k] * p + carry
                    limbs[k] = t & mask32
                    carry = t >> 32
                while carry:
                    limbs[used] = carry & mask32
                    carry >>= 32
                    used += 1
            carry = np.int64(0)
            for k in range(n_d):
                bit = k * width
                li = bit >> 5
                off = bit & 31
                chunk = limbs[li] >> off
                if off + width > 32:
                    chunk |= limbs[li + 1] << (32 - off)
                d = (chunk & low) + carry
                if k < n_d - 1 and d >= half:
                    d -= base
                    carry = np.int64(1)
                else:
                    carry = np.int64(0)
                digits[k, c] = d
        for k in range(n_d):  # residues, one contiguous row at a time
            for m in range(n_m):
                pm = out_primes[m]
                row = out[b, k, m]
                for c in range(n):
                    d = digits[k, c]
                    if -pm < d < pm:  # the usual case: one conditional add
                        r = d + pm if d < 0 else d
                    else:
                        r = d % pm
                        if r < 0:
                            r += pm
                    row[c] = np.uint64(r)


@kernel()
def moddown_into(u: np.ndarray, r_hat: np.ndarray, pinv: np.ndarray, primes: np.ndarray, add0: np.ndarray,
                 addx: np.ndarray, has_x: bool, res: np.ndarray) -> None:  # pragma: no cover - compiled
    """The last step of ``ModDown`` in the evaluation domain, fused with adding ``c0'`` (and a ciphertext ``x``):
    ``res[c, b, j] = (u[b, c, j] − r_hat[b, c, j])·pinv[j] + [c = 0]·add0[b, j] + [has_x]·addx[c, b, j] mod p_j``.

    ``u``: ``(B, 2, M, N)`` (the first ``L`` of ``M`` primes are read), ``r_hat``: ``(B, 2, L, N)``, ``pinv``,
    ``primes``: ``(L,)`` ``uint64``; ``add0``: ``(B, L, N)``; ``addx``, ``res``: ``(2, B, L, N)``; residues below
    ``2**30``."""
    n_b, n_c = u.shape[0], u.shape[1]
    n_l, n = r_hat.shape[2], r_hat.shape[3]
    for b in range(n_b):
        for c in range(n_c):
            for j in range(n_l):
                p = primes[j]
                pi = pinv[j]
                inv = 1.0 / np.float64(p)
                for i in range(n):
                    a = u[b, c, j, i] + p - r_hat[b, c, j, i]
                    a = a - p if a >= p else a
                    y = _mulmod(a, pi, p, inv)
                    if c == 0:
                        y += add0[b, j, i]
                        y = y - p if y >= p else y
                    if has_x:
                        y += addx[c, b, j, i]
                        y = y - p if y >= p else y
                    res[c, b, j, i] = y


@kernel()
def butterfly_into(a: np.ndarray, b: np.ndarray, mono: np.ndarray, primes: np.ndarray, x: np.ndarray,
                   y: np.ndarray) -> None:  # pragma: no cover - compiled
    """One packing-tree butterfly in the evaluation domain: ``x = a + mono·b``, ``y = a − mono·b`` mod ``p_j``.

    ``a``, ``b``, ``x``, ``y``: ``(2, B, L, N)`` residues; ``mono``: ``(L, N)`` (the transform of ``X^h``);
    ``primes``: ``(L,)`` ``uint64``."""
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
def permute_into(x: np.ndarray, perm: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[r, k] = x[r, perm[k]]`` for rows ``r`` (an automorphism in the evaluation domain)."""
    for r in range(x.shape[0]):
        for k in range(perm.shape[0]):
            out[r, k] = x[r, perm[k]]
