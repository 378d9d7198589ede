"""NTT-friendly primes: primality, prime search, canonical 2N-th roots of unity.

Every RNS prime ``p`` of the HE core satisfies

* ``p ≡ 1 (mod 2N)``, so ``Z_p`` holds a primitive ``2N``-th root of unity ``ψ`` and the negacyclic
  NTT of length ``N`` exists;
* ``p < 2**MAX_PRIME_BITS = 2**30``, so that lazily reduced butterfly values in ``[0, 4p)`` fit in 32
  bits (Harvey's NTT with 32-bit Shoup multiplication) and a product of two residues is below
  ``2**60``: sixteen products can be summed in a ``uint64`` before one reduction.

The root ``ψ`` is canonical (the smallest primitive ``2N``-th root of unity mod ``p``) because it
defines the NTT domain in which the seeded uniform polynomial of a ciphertext is expanded: both
parties must agree on it.  Nothing here is on a hot path; plain Python integers are used.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
from aiompc.errors import ParameterError

__all__ = [
    "MAX_PRIME_BITS",
    "is_prime",
    "ntt_primes_above",
    "ntt_primes_below",
    "primitive_root_2n",
    "powers_mod",
]

MAX_PRIME_BITS = 30
_MR_BASES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)  # deterministic below 3.3e24


def is_prime(n: int) -> bool:
    """Deterministic Miller–Rabin for ``n < 3.3·10^24`` (all integers this package meets)."""
    if n < 2:
        return False
    for b in _MR_BASES:
        if n % b == 0:
            return n == b
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for b in _MR_BASES:
        x = pow(b, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _check_n(n: int) -> None:
    if n < 2 or n & (n - 1):
        raise ParameterError(f"ring degree must be a power of two, got {n}")


def ntt_primes_below(n: int, bound: int, *, residue: int = 1, modulus: int | None = None) -> Iterator[int]:
    """Primes ``p ≡ 1 (mod 2n)`` with ``p < bound``, in decreasing order.

    With ``modulus`` (a power of two that is a multiple of ``2n``) the primes also satisfy
    ``p ≡ residue (mod modulus)``; ``residue`` must then be ``≡ 1 (mod 2n)``.
    """
    _check_n(n)
    step = modulus if modulus is not None else 2 * n
    if step % (2 * n) or residue % (2 * n) != 1 % (2 * n):
        raise ParameterError("modulus must be a multiple of 2n and residue ≡ 1 (mod 2n)")
    residue %= step
    c = (bound - 1 - residue) // step * step + residue
    while c > 2:
        if is_prime(c):
            yield c
        c -= step


def ntt_primes_above(n: int, bound: int) -> Iterator[int]:
    """Primes ``p ≡ 1 (mod 2n)`` with ``p >= bound``, in increasing order (until ``2**MAX_PRIME_BITS``)."""
    _check_n(n)
    step = 2 * n
    c = max(bound - 1, 0) // step * step + 1
    if c < bound:
        c += step
    while c < 1 << MAX_PRIME_BITS:
        if is_prime(c):
            yield c
        c += step


@functools.cache
def primitive_root_2n(p: int, n: int) -> int:
    """The smallest primitive ``2n``-th root of unity modulo the prime ``p`` (``p ≡ 1 mod 2n``).

    The primitive ``2n``-th roots are the odd powers of any one of them; all ``n`` of them are
    listed (vectorised) and the least is returned, so the result does not depend on a search order.
    """
    _check_n(n)
    if not is_prime(p) or (p - 1) % (2 * n):
        raise ParameterError(f"{p} is not a prime ≡ 1 (mod {2 * n})")
    for g in range(2, p):
        psi = pow(g, (p - 1) // (2 * n), p)
        if pow(psi, n, p) == p - 1:
            break
    else:  # pragma: no cover - a generator always exists
        raise ParameterError(f"no primitive {2 * n}-th root of unity mod {p}")
    # odd powers psi^(2j+1) = psi * (psi^2)^j, j < n
    return int((powers_mod(psi * psi % p, n, p) * np.uint64(psi) % np.uint64(p)).min())


def powers_mod(base: int, n: int, p: int) -> np.ndarray:
    """``base**j mod p`` for ``j < n``, ``uint64`` (``p < 2**32``), by doubling: ``log2 n`` vectorised steps."""
    out = np.ones(n, dtype=np.uint64)
    filled, step = 1, base % p
    pp = np.uint64(p)
    while filled < n:
        take = min(filled, n - filled)
        out[filled : filled + take] = out[:take] * np.uint64(step) % pp
        filled += take
        step = step * step % p
    return out
