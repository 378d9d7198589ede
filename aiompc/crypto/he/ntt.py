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
stays in the L2 cache; each thread keeps its own block workspace with every stage's operand views
precomputed, so a stage costs exactly its ten ufunc calls.

Cost: ``10·(n/2)·log2 n`` elementwise uint64 operations per polynomial and prime, plus two transposes,
a final reduction and two copies.  Measured on the 2-core development machine: ≈ 4.2 ns per butterfly
(≈ 0.42 ns per element-operation, the speed of numpy's unfused uint64 ufunc loops out of L2), i.e.
≈ 45 µs (n = 2048), ≈ 105 µs (n = 4096), ≈ 225 µs (n = 8192) per polynomial and prime, amortised
over a batch; see ``benchmarks/he_micro.py``.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from aiompc.errors import ParameterError
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
        raise ParameterError(f"NTT primes must be below 2**{MAX_PRIME_BITS}, got {p}")
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
            raise ParameterError(f"NTT length must be a power of two >= 4, got {n}")
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
        self._tls = threading.local()  # per-thread workspaces (scratch arrays are not shared)

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
        return self._apply(a, inverse=False)

    def inverse(self, a: np.ndarray) -> np.ndarray:
        """Evaluation form → coefficient form, the exact inverse of :meth:`forward`."""
        return self._apply(a, inverse=True)

    # ------------------------------------------------------------------ driver

    def _apply(self, a: np.ndarray, inverse: bool) -> np.ndarray:
        k, n = len(self.primes), self.n
        a = np.asarray(a)
        if a.ndim < 2 or a.shape[-2:] != (k, n):
            raise ParameterError(f"expected an array of shape (..., {k}, {n}), got {a.shape}")
        lead = a.shape[:-2]
        flat = a.reshape(-1, k, n)
        out = np.empty(flat.shape, dtype=np.uint64)
        rows = max(1, _BLOCK_ELEMS // n)  # (batch, prime) rows per block
        bstep, kstep = (rows // k, k) if rows >= k else (1, rows)
        for b0 in range(0, flat.shape[0], bstep):
            for i0 in range(0, k, kstep):
                src = flat[b0 : b0 + bstep, i0 : i0 + kstep]
                ws = self._workspace(src.shape[0], i0, i0 + src.shape[1])
                np.copyto(ws.a, src, casting="unsafe")
                ws.run_inverse() if inverse else ws.run_forward()
                out[b0 : b0 + bstep, i0 : i0 + kstep] = ws.a
        return out.reshape(*lead, k, n)

    def _workspace(self, rows: int, i0: int, i1: int) -> _Workspace:
        """This thread's scratch space and precomputed stage views for one block shape."""
        cache: dict[tuple[int, int, int], _Workspace] = self._tls.__dict__.setdefault("cache", {})
        key = (rows, i0, i1)
        ws = cache.get(key)
        if ws is None:
            if len(cache) >= 8:
                cache.clear()
            ws = cache[key] = _Workspace(self, rows, i0, i1)
        return ws


class _Workspace:
    """Scratch arrays of one block ``(rows, kk, n)`` and, per stage, the operand views of its butterflies.

    Data enters and leaves in ``a``; the stages with short spans run on the transposed copy in ``b``.
    Precomputing every view keeps the per-stage Python work to the ten ufunc calls.
    """

    def __init__(self, ntt: NTT, rows: int, i0: int, i1: int) -> None:
        n, split, cols = ntt.n, ntt._split, ntt._cols
        kk = i1 - i0
        self.shape = (rows, kk, n)
        self.a = np.empty(self.shape, dtype=np.uint64)
        self.b = np.empty(self.shape, dtype=np.uint64)
        half_q = np.empty((rows, kk, n // 2), dtype=np.uint64)
        half_t = np.empty_like(half_q)
        p = ntt._p[i0:i1]
        self.pc = p.reshape(-1, 1)
        self.p2c = self.pc + self.pc
        self.n_inv = ntt._n_inv[i0:i1].reshape(-1, 1)
        self.n_inv_s = ntt._n_inv_s[i0:i1].reshape(-1, 1)
        # transposes between the natural (cols, split) and the (split, cols) layout of each row
        natural, transposed = (rows, kk, cols, split), (rows, kk, split, cols)
        self.to_t = (self.b.reshape(transposed), self.a.reshape(natural).transpose(0, 1, 3, 2))
        self.from_t = (self.a.reshape(natural), self.b.reshape(transposed).transpose(0, 1, 3, 2))
        self.fwd_natural, self.fwd_transposed = self._plan(ntt._fwd_stages, ntt, i0, i1, half_q, half_t)
        inv_nat, inv_tr = self._plan(ntt._inv_stages, ntt, i0, i1, half_q, half_t)
        self.inv_natural, self.inv_transposed = inv_nat[::-1], inv_tr[::-1]

    def _plan(
        self, stages: list[tuple[int, np.ndarray, np.ndarray]], ntt: NTT, i0: int, i1: int,
        half_q: np.ndarray, half_t: np.ndarray,
    ) -> tuple[list[tuple[np.ndarray, ...]], list[tuple[np.ndarray, ...]]]:
        """Operand tuples ``(x, y, q, tt, w, w', p, 2p)`` of the natural-layout and transposed stages."""
        rows, kk, n = self.shape
        natural: list[tuple[np.ndarray, ...]] = []
        transposed: list[tuple[np.ndarray, ...]] = []
        for t, w, ws in stages:
            x: np.ndarray
            y: np.ndarray
            pc: np.ndarray
            if t >= ntt._split:  # natural layout: (rows, kk, blocks, 2, t)
                v = self.a.reshape(rows, kk, n // (2 * t), 2, t)
                x, y = v[:, :, :, 0, :], v[:, :, :, 1, :]
                pc = self.pc.reshape(kk, 1, 1)
            else:  # transposed layout: (rows, kk, groups, 2, t, cols)
                v = self.b.reshape(rows, kk, ntt._split // (2 * t), 2, t, ntt._cols)
                x, y = v[:, :, :, 0], v[:, :, :, 1]
                pc = self.pc.reshape(kk, 1, 1, 1)
            op = (x, y, half_q.reshape(x.shape), half_t.reshape(x.shape), w[i0:i1], ws[i0:i1], pc, pc + pc)
            (natural if t >= ntt._split else transposed).append(op)
        return natural, transposed

    def run_forward(self) -> None:
        """Cooley–Tukey stages on ``a`` (in place): inputs ``< p``, outputs ``< p``."""
        sub, mn, mul, shr, add = np.subtract, np.minimum, np.multiply, np.right_shift, np.add
        for group, transpose_after in ((self.fwd_natural, self.to_t), (self.fwd_transposed, self.from_t)):
            for x, y, q, tt, w, ws, pc, p2 in group:
                sub(x, p2, out=q)  # x <- x mod 2p: [0, 4p) -> [0, 2p)
                mn(x, q, out=x)
                mul(y, ws, out=q)  # tt <- y·w mod p in [0, 2p) (Shoup)
                shr(q, _U32, out=q)
                mul(q, pc, out=q)
                mul(y, w, out=tt)
                sub(tt, q, out=tt)
                sub(x, tt, out=y)  # (x, y) <- (x + tt, x - tt + 2p), both in [0, 4p)
                add(y, p2, out=y)
                add(x, tt, out=x)
            dst, src = transpose_after
            dst[...] = src
        a, b = self.a, self.b
        sub(a, self.p2c, out=b)  # [0, 4p) -> [0, p)
        mn(a, b, out=a)
        sub(a, self.pc, out=b)
        mn(a, b, out=a)

    def run_inverse(self) -> None:
        """Gentleman–Sande stages on ``a`` (in place), then the factor ``n^-1``: inputs and outputs ``< p``."""
        sub, mn, mul, shr, add = np.subtract, np.minimum, np.multiply, np.right_shift, np.add
        for transpose_before, group in ((self.to_t, self.inv_transposed), (self.from_t, self.inv_natural)):
            dst, src = transpose_before
            dst[...] = src
            for x, y, q, tt, w, ws, pc, p2 in group:
                sub(x, y, out=tt)  # tt <- x - y + 2p in (0, 4p)
                add(tt, p2, out=tt)
                add(x, y, out=x)  # x <- (x + y) mod 2p
                sub(x, p2, out=q)
                mn(x, q, out=x)
                mul(tt, ws, out=q)  # y <- tt·w mod p in [0, 2p) (Shoup)
                shr(q, _U32, out=q)
                mul(q, pc, out=q)
                mul(tt, w, out=y)
                sub(y, q, out=y)
        a, b = self.a, self.b
        mul(a, self.n_inv_s, out=b)  # a <- a·n^-1 mod p (Shoup, [0, 2p)), then [0, p)
        shr(b, _U32, out=b)
        mul(b, self.pc, out=b)
        mul(a, self.n_inv, out=a)
        sub(a, b, out=a)
        sub(a, self.pc, out=b)
        mn(a, b, out=a)


@functools.lru_cache(maxsize=64)
def get_ntt(n: int, primes: tuple[int, ...]) -> NTT:
    """The cached :class:`NTT` for ``(n, primes)``."""
    return NTT(n, tuple(primes))
