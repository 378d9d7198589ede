"""Negacyclic number-theoretic transform over several RNS primes (tables here, loops in a numba kernel).

``NTT(n, primes).forward(a)`` maps coefficient-form residues ``a[..., i, :]`` (mod ``primes[i]``,
shape ``(..., len(primes), n)``) to evaluation form: entry ``k`` is ``a(ψ_i^(2·brv(k)+1)) mod p_i``
with ``ψ_i`` the canonical primitive ``2n``-th root of unity and ``brv`` the ``log2 n``-bit reversal.
In that domain negacyclic products (in ``Z_p[X]/(X^n+1)``) are pointwise products.
``inverse`` undoes ``forward`` exactly.  Inputs must be residues ``< p`` (else :class:`InputError`);
outputs are fully reduced (``< p``).

This module builds the per-prime tables (twiddles ``ψ^brv(j)`` with the ``ψ`` twist merged in,
Longa–Naehrig, and Shoup companions ``⌊w·2**32/p⌋``, valid because ``p < 2**30``); the butterflies
run in :mod:`aiompc.kernels.ntt` (Harvey's lazy Cooley–Tukey / Gentleman–Sande, compiled, releasing the
GIL, so two executor threads transform on two cores).

Cost: ``(n/2)·log2 n`` butterflies per polynomial and prime.  Measured on the 2-core development
machine (``benchmarks/he_micro.py``, ``--ntt-only``): ≈ 20 µs per ``n = 4096`` polynomial and prime
(the numpy version this replaced took ≈ 150 µs in the same run).
"""

from __future__ import annotations

import functools

import numpy as np

from aiompc.errors import InputError, ParameterError
from aiompc.kernels.ntt import (
    ntt_forward_inplace,
    ntt_forward_signed,
    ntt_forward_sparse_centered,
    ntt_inverse_inplace,
)

from .primes import MAX_PRIME_BITS, powers_mod, primitive_root_2n

__all__ = ["NTT", "get_ntt", "bit_reverse"]


def bit_reverse(n: int) -> np.ndarray:
    """The permutation ``k -> brv(k)`` on ``log2 n`` bits, as an ``int64`` array."""
    bits = n.bit_length() - 1
    idx = np.arange(n, dtype=np.int64)
    rev = np.zeros(n, dtype=np.int64)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    return rev


@functools.lru_cache(maxsize=256)
def _prime_tables(n: int, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Per-prime tables (uint32): ψ^brv(k), its Shoup companion, ψ^-brv(k), companion; n^-1 and companion."""
    if p >= 1 << MAX_PRIME_BITS:
        raise ParameterError(f"NTT primes must be below 2**{MAX_PRIME_BITS}, got {p}")
    psi = primitive_root_2n(p, n)
    rev = bit_reverse(n)
    fwd = powers_mod(psi, n, p)[rev]
    inv = powers_mod(pow(psi, -1, p), n, p)[rev]
    pp = np.uint64(p)
    fwd_s = (fwd << np.uint64(32)) // pp
    inv_s = (inv << np.uint64(32)) // pp
    n_inv = pow(n, -1, p)
    u32 = np.uint32
    return fwd.astype(u32), fwd_s.astype(u32), inv.astype(u32), inv_s.astype(u32), n_inv, (n_inv << 32) // p


class NTT:
    """Negacyclic NTT tables for ring degree ``n`` and an RNS basis ``primes`` (each ``≡ 1 mod 2n``).

    Thread-safe: tables are read-only and every call transforms its own copy of the input.  Get
    instances through :func:`get_ntt` so tables are built once per ``(n, primes)``.
    """

    def __init__(self, n: int, primes: tuple[int, ...]) -> None:
        if n < 4 or n & (n - 1):
            raise ParameterError(f"NTT length must be a power of two >= 4, got {n}")
        self.n = n
        self.primes = tuple(int(p) for p in primes)
        tabs = [_prime_tables(n, p) for p in self.primes]
        self._fwd = np.stack([tb[0] for tb in tabs])
        self._fwd_s = np.stack([tb[1] for tb in tabs])
        self._inv = np.stack([tb[2] for tb in tabs])
        self._inv_s = np.stack([tb[3] for tb in tabs])
        self._p = np.array(self.primes, dtype=np.uint64)
        self._n_inv = np.array([tb[4] for tb in tabs], dtype=np.uint64)
        self._n_inv_s = np.array([tb[5] for tb in tabs], dtype=np.uint64)
        for arr in (self._fwd, self._fwd_s, self._inv, self._inv_s, self._p, self._n_inv, self._n_inv_s):
            arr.setflags(write=False)

    def forward(self, a: np.ndarray) -> np.ndarray:
        """Coefficient form → evaluation form. ``a``: ``(..., k, n)`` residues ``< p`` (any int dtype)."""
        out = self._copy_in(a)
        self._transform(out, inverse=False)
        return out

    def forward_inplace(self, a: np.ndarray) -> None:
        """:meth:`forward` into ``a`` itself: a C-contiguous ``uint64`` array ``(..., k, n)`` of residues the
        caller owns (no copy)."""
        self._check_owned(a, "forward_inplace")
        self._transform(a, inverse=False)

    def forward_signed(self, x: np.ndarray) -> np.ndarray:
        """``forward(reduce_signed(x))`` in one pass: signed integers ``(..., n)`` → evaluation form ``(..., k, n)``.

        ``x``: any integers that fit in ``int64`` (e.g. centered weights, ternary or Gaussian samples).
        """
        arr = np.asarray(x)
        if arr.dtype.kind not in "iub" or arr.ndim < 1 or arr.shape[-1] != self.n:
            raise InputError(f"expected integers of shape (..., {self.n}), got {arr.dtype} {arr.shape}")
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) >> 63:
            raise InputError("forward_signed takes values that fit in int64")
        flat = np.ascontiguousarray(arr.reshape(-1, self.n), dtype=np.int64)
        out = np.empty((flat.shape[0], len(self.primes), self.n), dtype=np.uint64)
        ntt_forward_signed(flat, self._fwd, self._fwd_s, self._p, out)
        return out.reshape(*arr.shape[:-1], len(self.primes), self.n)

    def forward_sparse_centered(self, values: np.ndarray, exps: np.ndarray, bits: int,
                                dtype: type[np.unsignedinteger] = np.uint64) -> tuple[np.ndarray, int, int]:
        """NTT form of ``Σ_e lift(values[..., e]) X^exps[e]`` with ``lift`` the centered residue mod ``2**bits``.

        ``values``: integers ``(*batch, E)`` (taken mod ``2**bits``, ``1 <= bits <= 62``); ``exps``: ``E``
        exponents in ``[0, n)`` (a repeated exponent takes its last value, like the assignment
        ``dense[..., exps] = values``; the statistics are those of the dense polynomials).  Returns ``(data (*batch, k, n), max |lift|, most non-zeros in one
        polynomial)``.  The dense polynomials are never built (one pass per polynomial).  ``dtype``: of ``data``,
        ``uint64`` or ``uint32`` (residues are below ``2**30``: half the memory, e.g. for weights kept for a model).
        """
        arr = np.asarray(values)
        e = np.asarray(exps, dtype=np.int64).reshape(-1)
        if arr.dtype.kind not in "iub" or arr.ndim < 1 or arr.shape[-1] != e.size:
            raise InputError(f"expected integers of shape (..., {e.size}), got {arr.dtype} {arr.shape}")
        if not 1 <= bits <= 62:
            raise InputError(f"bits must be in 1..62, got {bits}")
        if e.size and (e.min() < 0 or e.max() >= self.n):
            raise InputError(f"exponents must be in [0, {self.n})")
        uniq, first_from_end = np.unique(e[::-1], return_index=True)
        if uniq.size != e.size:  # a repeated exponent takes its last value, as ``dense[..., exps] = values`` does
            keep = np.sort(e.size - 1 - first_from_end)
            arr, e = arr[..., keep], e[keep]
        words = np.ascontiguousarray(arr.astype(np.int64 if arr.dtype.kind == "i" else np.uint64, copy=False))
        flat = words.view(np.uint64).reshape(-1, e.size)
        if dtype not in (np.uint64, np.uint32):
            raise InputError(f"dtype must be uint64 or uint32, got {dtype}")
        out = np.empty((flat.shape[0], len(self.primes), self.n), dtype=dtype)
        stats = np.zeros(2, dtype=np.int64)
        ntt_forward_sparse_centered(flat, e, bits, self._fwd, self._fwd_s, self._p, out, stats)
        return out.reshape(*arr.shape[:-1], len(self.primes), self.n), int(stats[0]), int(stats[1])

    def inverse(self, a: np.ndarray) -> np.ndarray:
        """Evaluation form → coefficient form, the exact inverse of :meth:`forward`."""
        out = self._copy_in(a)
        self._transform(out, inverse=True)
        return out

    def inverse_inplace(self, a: np.ndarray) -> None:
        """:meth:`inverse` into ``a`` itself: a C-contiguous ``uint64`` array ``(..., k, n)`` of residues the
        caller owns (no copy)."""
        self._check_owned(a, "inverse_inplace")
        self._transform(a, inverse=True)

    def _check_owned(self, a: np.ndarray, what: str) -> None:
        """Raise :class:`InputError` unless ``a`` is a writable C-contiguous ``uint64`` array ``(..., k, n)``."""
        if a.dtype != np.uint64 or not a.flags.c_contiguous or not a.flags.writeable or a.ndim < 2 \
                or a.shape[-2:] != (len(self.primes), self.n):
            raise InputError(f"{what} needs a writable C-contiguous uint64 array (..., {len(self.primes)}, "
                             f"{self.n}), got {a.dtype} {a.shape}")

    def _transform(self, a: np.ndarray, *, inverse: bool) -> None:
        """The forward or inverse NTT of the C-contiguous ``uint64`` array ``a`` ``(..., k, n)``, in place (one
        kernel call); raises :class:`InputError` if a residue is not below its prime."""
        flat = a.reshape(-1, *a.shape[-2:])
        if inverse:
            ok = ntt_inverse_inplace(flat, self._inv, self._inv_s, self._p, self._n_inv, self._n_inv_s)
        else:
            ok = ntt_forward_inplace(flat, self._fwd, self._fwd_s, self._p)
        if not ok:
            raise InputError(f"{'inverse ' if inverse else ''}NTT input is not reduced: every residue must be below "
                             "its prime")

    def _copy_in(self, a: np.ndarray) -> np.ndarray:
        """A fresh C-contiguous ``uint64`` copy of ``a`` after checking its shape (negative values rejected)."""
        k, n = len(self.primes), self.n
        a = np.asarray(a)
        if a.ndim < 2 or a.shape[-2:] != (k, n):
            raise InputError(f"expected an array of shape (..., {k}, {n}), got {a.shape}")
        if a.dtype.kind == "i" and a.size and a.min() < 0:
            raise InputError("NTT input is not reduced: negative residue")
        if a.dtype.kind not in "ui":
            raise InputError(f"NTT input must be integers, got dtype {a.dtype}")
        return np.array(a, dtype=np.uint64, order="C", copy=True)


@functools.lru_cache(maxsize=64)
def get_ntt(n: int, primes: tuple[int, ...]) -> NTT:
    """The cached :class:`NTT` for ``(n, primes)``."""
    return NTT(n, tuple(primes))
