"""Plaintext references and cached key material for the HE-core tests (test data only)."""

from __future__ import annotations

import functools

import numpy as np

from aiompc.crypto.he import HEParams, PublicKey, SecretKey, cheetah_params, keygen, public_key
from aiompc.crypto.he.primes import ntt_primes_below
from aiompc.crypto.prg import PRG


def _as_u64(x: np.ndarray) -> np.ndarray:
    """Integers as uint64, negative values in two's complement (i.e. mod 2**64)."""
    x = np.asarray(x)
    return x.astype(np.int64).view(np.uint64) if x.dtype.kind == "i" else x.astype(np.uint64)


def negacyclic_mod_2k(a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    """Schoolbook product of ``a`` and ``b`` in ``Z_{2^bits}[X]/(X^N+1)`` (``bits <= 64``).

    Wrapping uint64 arithmetic is exact mod ``2**64`` and hence mod ``2**bits``.  One numpy
    operation per non-zero coefficient of ``b`` (so sparse weights are cheap).
    """
    a, b = _as_u64(a), _as_u64(b)
    n = a.shape[-1]
    out = np.zeros(n, dtype=np.uint64)
    for j in np.flatnonzero(b):
        r = np.roll(a, j) * b[j]
        r[:j] = np.uint64(0) - r[:j]
        out += r
    return out & np.uint64((1 << bits) - 1) if bits < 64 else out


def negacyclic_int(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact signed negacyclic product over the integers (``int64``; caller keeps it from overflowing)."""
    a = np.asarray(a, dtype=np.int64)
    out = np.zeros(a.shape[-1], dtype=np.int64)
    for j in np.flatnonzero(b):
        r = np.roll(a, j) * np.int64(b[j])
        r[:j] = -r[:j]
        out += r
    return out


def negacyclic_mod_p(a: np.ndarray, b: np.ndarray, p: int) -> np.ndarray:
    """Schoolbook product in ``Z_p[X]/(X^N+1)`` with Python-object exactness for any ``p < 2**31``."""
    a = np.asarray(a, dtype=np.uint64) % np.uint64(p)
    b = np.asarray(b, dtype=np.uint64) % np.uint64(p)
    n = a.shape[-1]
    out = np.zeros(n, dtype=np.uint64)
    pp = np.uint64(p)
    for j in np.flatnonzero(b):
        r = np.roll(a, j) * b[j] % pp
        r[:j] = (pp - r[:j]) % pp
        out = (out + r) % pp
    return out


def small_primes(n: int, count: int, bound: int = 1 << 30) -> tuple[int, ...]:
    return tuple(p for _, p in zip(range(count), ntt_primes_below(n, bound)))


@functools.cache
def params_for(n: int, bits: int, l: int) -> HEParams:
    """Params at ring degree ``n`` with about ``bits`` of modulus split into ≤30-bit primes."""
    count = -(-bits // 29)
    per = bits / count
    return HEParams(n, small_primes(n, count, int(2**per)), l)


@functools.cache
def cheetah(l: int = 37) -> HEParams:
    return cheetah_params(l)


@functools.cache
def keys(params: HEParams, seed: int = 1) -> tuple[SecretKey, PublicKey]:
    prg = PRG(seed.to_bytes(2, "little") * 16)
    sk = keygen(params, prg)
    return sk, public_key(sk, prg)


def prg(seed: int) -> PRG:
    return PRG(seed.to_bytes(4, "little") * 8)
