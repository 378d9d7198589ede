"""Negacyclic number-theoretic transform over several RNS primes, vectorised with numpy.

``NTT(n, primes).forward(a)`` maps coefficient-form residues ``a[..., i, :]`` (mod ``primes[i]``,
shape ``(..., len(primes), n)``) to evaluation form: entry ``k`` is ``a(ψ_i^(2·brv(k)+1)) mod p_i``
with ``ψ_i`` the canonical primitive ``2n``-th root of unity and ``brv`` the ``log2 n``-bit reversal.
In that domain negacyclic products (in ``Z_p[X]/(X^n+1)``) are pointwise products.
``inverse`` undoes ``forward`` exactly.  Outputs are fully reduced (``< p``).

Algorithm: Cooley–Tukey (forward) and Gentleman–Sande (inverse) with the ``ψ`` twist merged into the
twiddles (Longa–Naehrig), Harvey's lazy butterflies (values kept in ``[0, 4p)`` resp. ``[0, 2p)``) and
Shoup multiplication by precomputed twiddles ``w' = ⌊w·2^32/p⌋`` — valid because ``p < 2**30``, so
``4p < 2**32`` and every product fits in ``uint64``.  Each butterfly stage is ten numpy operations on
half the data; there is a Python loop over the ``log2 n`` stages and over cache-sized blocks, never
over coefficients.

Memory layout: the stages with a long butterfly span (``t >= B``, ``B ≈ √n``) work on the natural
layout, whose inner runs are ``t`` long; for the last stages the block is transposed to ``(B, n/B)`` so
that their inner runs are ``n/B`` long instead of ``t < B`` (short inner loops are what makes a plain
numpy radix-2 NTT slow).  Work is split into blocks of about 64 K coefficients so the working set
stays in the L2 cache.

Cost: ``10·(n/2)·log2 n`` elementwise uint64 operations per polynomial and prime, plus two transposes
and a final reduction; see ``benchmarks/he_micro.py`` for measured times.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from .primes import MAX_PRIME_BITS, primitive_root_2n

__all__ = ["NTT", "get_ntt", "bit_reverse"]

_BLOCK_ELEMS = 1 << 16  # coefficients per working block (≈ 512 KiB of uint64)
_U32 = np.uint64(32)


def bit_reverse(n: int) -> np.ndarray:
    """The permutation ``k -> brv(k)`` on ``log2 n`` bits, as an ``int64`` array."""
    bits = n.bit_length() - 1
    idx = np.arange(n, dtype=np.int64)
    rev = np.zeros(n, dtype=np.int64)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    return rev


def _powers(base: int, n: int, p: int) -> np.ndarray:
    """``base**j mod p`` for ``j < n`` (vectorised doubling)."""
    out = np.ones(n, dtype=np.uint64)
    filled, step = 1, base % p
    pp = np.uint64(p)
    while filled < n:
        take = min(filled, n - filled)
        out[filled : filled + take] = out[:take] * np.uint64(step) % pp
        filled += take
        step = step * step % p
    return out


@functools.lru_cache(maxsize=256)
def _prime_tables(n: int, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Per-prime tables: ψ^brv(k), its Shoup companion, ψ^-brv(k), companion, n^-1 and its companion."""
    if p >= 1 << MAX_PRIME_BITS:
        raise ValueError(f"NTT primes must be below 2**{MAX_PRIME_BITS}, got {p}")
    psi = primitive_root_2n(p, n)
    rev = bit_reverse(n)
    fwd = _powers(psi, n, p)[rev]
    inv = _powers(pow(psi, -1, p), n, p)[rev]
    pp = np.uint64(p)
    fwd_s = (fwd << _U32) // pp
    inv_s = (inv << _U32) // pp
    n_inv = pow(n, -1, p)
    return fwd, fwd_s, inv, inv_s, n_inv, (n_inv << 32) // p


class NTT:
    """Negacyclic NTT tables for ring degree ``n`` and an RNS basis ``primes`` (each ``≡ 1 mod 2n``).

    Thread-safe: tables are read-only and scratch space is allocated per call.  Get instances through
    :func:`get_ntt` so tables are built once per ``(n, primes)``.
    """

    def __init__(self, n: int, primes: tuple[int, ...]) -> None:
        if n < 4 or n & (n - 1):
            raise ValueError(f"NTT length must be a power of two >= 4, got {n}")
        self.n = n
        self.primes = tuple(int(p) for p in primes)
        logn = n.bit_length() - 1
        self._split = 1 << ((logn + 1) // 2)  # B: stages with t < B run transposed
        self._cols = n // self._split
        tabs = [_prime_tables(n, p) for p in self.primes]
        fwd = np.stack([tb[0] for tb in tabs])
        fwd_s = np.stack([tb[1] for tb in tabs])
        inv = np.stack([tb[2] for tb in tabs])
        inv_s = np.stack([tb[3] for tb in tabs])
        self._p = np.array(self.primes, dtype=np.uint64)
        self._n_inv = np.array([tb[4] for tb in tabs], dtype=np.uint64)
        self._n_inv_s = np.array([tb[5] for tb in tabs], dtype=np.uint64)
        # per stage (t = n/2, n/4, ..., 1): twiddles laid out for the layout the stage runs in
        self._fwd_stages = self._stage_tables(fwd, fwd_s)
        self._inv_stages = self._stage_tables(inv, inv_s)
        for arr in (self._p, self._n_inv, self._n_inv_s):
            arr.setflags(write=False)

    def _stage_tables(self, w: np.ndarray, ws: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        k, n, split, cols = len(self.primes), self.n, self._split, self._cols
        out = []
        t = n // 2
        while t >= 1:
            m = n // (2 * t)  # number of butterfly blocks at this stage
            if t >= split:
                tw, tws = w[:, m : 2 * m, None], ws[:, m : 2 * m, None]  # (k, m, 1)
            else:
                g = split // (2 * t)  # blocks per transposed row group; m = cols*g
                tw = w[:, m : 2 * m].reshape(k, cols, g).transpose(0, 2, 1)[:, :, None, :]
                tws = ws[:, m : 2 * m].reshape(k, cols, g).transpose(0, 2, 1)[:, :, None, :]
            tw, tws = np.ascontiguousarray(tw), np.ascontiguousarray(tws)
            tw.setflags(write=False)
            tws.setflags(write=False)
            out.append((t, tw, tws))
            t //= 2
        return out

    # ------------------------------------------------------------------ public API

    def forward(self, a: np.ndarray) -> np.ndarray:
        """Coefficient form → evaluation form. ``a``: ``(..., k, n)`` residues ``< p`` (any int dtype)."""
        return self._apply(a, self._forward_block)

    def inverse(self, a: np.ndarray) -> np.ndarray:
        """Evaluation form → coefficient form, the exact inverse of :meth:`forward`."""
        return self._apply(a, self._inverse_block)

    # ------------------------------------------------------------------ driver

    def _apply(self, a: np.ndarray, kernel: Callable[[np.ndarray, int, int], np.ndarray]) -> np.ndarray:
        k, n = len(self.primes), self.n
        a = np.asarray(a)
        if a.ndim < 2 or a.shape[-2:] != (k, n):
            raise ValueError(f"expected an array of shape (..., {k}, {n}), got {a.shape}")
        lead = a.shape[:-2]
        flat = a.reshape(-1, k, n)
        out = np.empty(flat.shape, dtype=np.uint64)
        rows = max(1, _BLOCK_ELEMS // n)  # (batch, prime) rows per block
        if rows >= k:
            bstep, kstep = rows // k, k
        else:
            bstep, kstep = 1, rows
        for b0 in range(0, flat.shape[0], bstep):
            for i0 in range(0, k, kstep):
                blk = np.array(flat[b0 : b0 + bstep, i0 : i0 + kstep], dtype=np.uint64, order="C")
                out[b0 : b0 + bstep, i0 : i0 + kstep] = kernel(blk, i0, i0 + blk.shape[1])
        return out.reshape(*lead, k, n)

    def _transpose(self, x: np.ndarray, buf: np.ndarray, back: bool) -> tuple[np.ndarray, np.ndarray]:
        """Write the ``(n/B, B) -> (B, n/B)`` transpose of each row of ``x`` (or back) into ``buf``.

        Returns ``(buf, x)``: the transposed data and the now free buffer.
        """
        b, kk, n = x.shape
        split, cols = self._split, self._cols
        if back:
            buf.reshape(b, kk, cols, split)[...] = x.reshape(b, kk, split, cols).transpose(0, 1, 3, 2)
        else:
            buf.reshape(b, kk, split, cols)[...] = x.reshape(b, kk, cols, split).transpose(0, 1, 3, 2)
        return buf, x

    def _views(self, x: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
        b, kk, n = x.shape
        if t >= self._split:
            v = x.reshape(b, kk, n // (2 * t), 2, t)
            return v[:, :, :, 0, :], v[:, :, :, 1, :], (kk, 1, 1)
        g = self._split // (2 * t)
        v = x.reshape(b, kk, g, 2, t, self._cols)
        return v[:, :, :, 0], v[:, :, :, 1], (kk, 1, 1, 1)

    def _forward_block(self, x: np.ndarray, i0: int, i1: int) -> np.ndarray:
        p = self._p[i0:i1]
        half = np.empty(x.shape[:2] + (self.n // 2,), dtype=np.uint64)
        tmp, tt = half, np.empty_like(half)
        buf = np.empty_like(x)
        transposed = False
        for t, w, ws in self._fwd_stages:
            if t < self._split and not transposed:
                x, buf = self._transpose(x, buf, back=False)
                transposed = True
            X, Y, pshape = self._views(x, t)
            pc = p.reshape(pshape)
            p2 = pc + pc
            q = tmp.reshape(X.shape)
            T = tt.reshape(X.shape)
            wk, wsk = w[i0:i1], ws[i0:i1]
            # X <- X mod 2p (X in [0, 4p) -> [0, 2p))
            np.subtract(X, p2, out=q)
            np.minimum(X, q, out=X)
            # T <- Y·w mod p in [0, 2p) (Shoup)
            np.multiply(Y, wsk, out=q)
            np.right_shift(q, _U32, out=q)
            np.multiply(q, pc, out=q)
            np.multiply(Y, wk, out=T)
            np.subtract(T, q, out=T)
            # (X, Y) <- (X + T, X - T + 2p), both in [0, 4p)
            np.subtract(X, T, out=Y)
            np.add(Y, p2, out=Y)
            np.add(X, T, out=X)
        if transposed:
            x, buf = self._transpose(x, buf, back=True)
        pc = p.reshape(-1, 1)
        np.subtract(x, pc + pc, out=buf)
        np.minimum(x, buf, out=x)
        np.subtract(x, pc, out=buf)
        np.minimum(x, buf, out=x)
        return x

    def _inverse_block(self, x: np.ndarray, i0: int, i1: int) -> np.ndarray:
        p = self._p[i0:i1]
        half = np.empty(x.shape[:2] + (self.n // 2,), dtype=np.uint64)
        tmp, tt = half, np.empty_like(half)
        buf = np.empty_like(x)
        transposed = False
        for t, w, ws in reversed(self._inv_stages):
            if t < self._split and not transposed:
                x, buf = self._transpose(x, buf, back=False)
                transposed = True
            if t >= self._split and transposed:
                x, buf = self._transpose(x, buf, back=True)
                transposed = False
            X, Y, pshape = self._views(x, t)
            pc = p.reshape(pshape)
            p2 = pc + pc
            q = tmp.reshape(X.shape)
            T = tt.reshape(X.shape)
            wk, wsk = w[i0:i1], ws[i0:i1]
            # T <- X - Y + 2p in (0, 4p);  X <- (X + Y) mod 2p
            np.subtract(X, Y, out=T)
            np.add(T, p2, out=T)
            np.add(X, Y, out=X)
            np.subtract(X, p2, out=q)
            np.minimum(X, q, out=X)
            # Y <- T·w mod p in [0, 2p) (Shoup)
            np.multiply(T, wsk, out=q)
            np.right_shift(q, _U32, out=q)
            np.multiply(q, pc, out=q)
            np.multiply(T, wk, out=Y)
            np.subtract(Y, q, out=Y)
        if transposed:
            x, buf = self._transpose(x, buf, back=True)
        # x <- x·n^-1 mod p (Shoup, [0, 2p)), then to [0, p)
        pc = p.reshape(-1, 1)
        ninv = self._n_inv[i0:i1].reshape(-1, 1)
        ninv_s = self._n_inv_s[i0:i1].reshape(-1, 1)
        np.multiply(x, ninv_s, out=buf)
        np.right_shift(buf, _U32, out=buf)
        np.multiply(buf, pc, out=buf)
        np.multiply(x, ninv, out=x)
        np.subtract(x, buf, out=x)
        np.subtract(x, pc, out=buf)
        np.minimum(x, buf, out=x)
        return x


@functools.lru_cache(maxsize=64)
def get_ntt(n: int, primes: tuple[int, ...]) -> NTT:
    """The cached :class:`NTT` for ``(n, primes)``."""
    return NTT(n, tuple(primes))
