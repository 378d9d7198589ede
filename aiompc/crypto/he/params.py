"""HE parameter sets: ring degree, RNS primes, plaintext modulus ``t = 2**l``, error width.

A :class:`HEParams` is immutable and validated at construction against the HE-standard 128-bit table
for a ternary secret (``N -> max log2 q``: 1024→27, 2048→54, 4096→109, 8192→218, 16384→438,
32768→881).  A parameter set that falls short raises :class:`~aiompc.errors.InsecureParameters`
naming the number that is off.  Whether a set can *decrypt* what a given server computation produces
is a separate question, answered by :mod:`aiompc.crypto.he.noise`.

Derived integers (``q``, ``Δ = ⌊q/t⌋``, ``ρ = q mod t``) are exact Python integers; per-prime tables
live in :mod:`~aiompc.crypto.he.rns` and :mod:`~aiompc.crypto.he.ntt` and are cached per prime tuple.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field

from aiompc.errors import InsecureParameters, ParameterError

from .primes import MAX_PRIME_BITS, is_prime, ntt_primes_below

__all__ = [
    "SECURITY_TABLE",
    "MIN_N",
    "MAX_N",
    "SIGMA",
    "HEParams",
    "STATISTICAL_SECURITY",
    "FAILURE_BITS",
    "MAX_PLAIN_BITS",
    "CHEETAH_RING_DEGREE",
    "CHEETAH_PLAIN_BITS",
    "max_modulus_bits",
]

#: Max ``log2 q`` for 128-bit classical security with a uniform ternary secret (HE standard).
SECURITY_TABLE: dict[int, int] = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
MIN_N, MAX_N = 1024, 32768
#: Standard deviation of the (rounded, 6σ-clipped) Gaussian error, as assumed by the table.
SIGMA = 3.2
#: Statistical security of masking and flooding, in bits (DESIGN.md).
STATISTICAL_SECURITY = 40
#: Decryption may fail with probability at most ``2**-FAILURE_BITS`` per ciphertext.
FAILURE_BITS = 40
#: Widest plaintext ring ``t = 2**l`` the HE core supports.
MAX_PLAIN_BITS = 60
#: Cheetah's published parameters: ring degree and fixed-point ring width.
CHEETAH_RING_DEGREE = 4096
CHEETAH_PLAIN_BITS = 37
KEY_PLAIN_BITS = 1
"""The ``l`` of :attr:`HEParams.key_params` (any fixed value would do: keys do not depend on ``t``)."""
AUX_PRIME_COUNT = 3  # exact products of a c1 (< 2**62) by the secret need > 2·N·2**62 < 2**80


def max_modulus_bits(n: int) -> int:
    """Largest ``log2 q`` allowed at ring degree ``n`` (128-bit security); raises for unknown ``n``."""
    if n not in SECURITY_TABLE:
        raise InsecureParameters(f"ring degree N = {n} is not one of {sorted(SECURITY_TABLE)}")
    return SECURITY_TABLE[n]


@dataclass(frozen=True)
class HEParams:
    """One RLWE/BFV parameter set with coefficient encoding and ``t = 2**plain_bits``.

    Attributes:
        n: ring degree ``N`` (power of two, 1024..32768); plaintexts and ciphertext components are
            polynomials of ``Z[X]/(X^N + 1)``.
        primes: the RNS primes, each ``≡ 1 (mod 2N)``, below ``2**30``, distinct; ``q`` is their
            product and ``q.bit_length()`` must not exceed the 128-bit table entry for ``N``.
        plain_bits: ``l`` with ``t = 2**l``, ``1 <= l <= 60``.
        sigma: error standard deviation (3.2; the table assumes it, smaller is rejected).

    The secret is uniform ternary.  All checks run in ``__post_init__``; a violation raises
    :class:`InsecureParameters` (security) or ``ValueError`` (malformed input).
    """

    n: int
    primes: tuple[int, ...]
    plain_bits: int
    sigma: float = SIGMA
    aux_primes: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "primes", tuple(int(p) for p in self.primes))
        n, primes = self.n, self.primes
        if not isinstance(n, int) or n < 2 or n & (n - 1):
            raise ParameterError(f"ring degree must be a power of two, got {n!r}")
        if not MIN_N <= n <= MAX_N:
            raise InsecureParameters(
                f"ring degree N = {n} is outside {MIN_N}..{MAX_N}: the 128-bit table starts at {MIN_N}"
            )
        if not 1 <= self.plain_bits <= MAX_PLAIN_BITS:
            raise ParameterError(f"plaintext bits l must be in 1..{MAX_PLAIN_BITS}, got {self.plain_bits}")
        if not primes:
            raise ParameterError("at least one RNS prime is required")
        if len(set(primes)) != len(primes):
            raise ParameterError(f"RNS primes must be distinct: {primes}")
        for p in primes:
            if p >= 1 << MAX_PRIME_BITS:
                raise ParameterError(f"prime {p} has {p.bit_length()} bits; the NTT needs primes below 2**{MAX_PRIME_BITS}")
            if (p - 1) % (2 * n):
                raise ParameterError(f"prime {p} is not ≡ 1 (mod 2N = {2 * n})")
            if not is_prime(p):
                raise ParameterError(f"{p} is not prime")
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) or not math.isfinite(self.sigma):
            raise InsecureParameters(f"error width σ must be a finite number, got {self.sigma!r}")
        if self.sigma < SIGMA:
            raise InsecureParameters(f"error width σ = {self.sigma} is below {SIGMA}, which the security table assumes")
        bits = self.q.bit_length()
        limit = SECURITY_TABLE[n]
        if bits > limit:
            raise InsecureParameters(
                f"log2 q = {self.log2_q:.2f} ({bits} bits) exceeds {limit}, the 128-bit maximum for N = {n}: "
                f"use fewer or smaller primes, or N = {2 * n}"
            )
        object.__setattr__(self, "aux_primes", _aux_primes(n, primes))

    # ------------------------------------------------------------------ derived integers

    @property
    def t(self) -> int:
        """Plaintext modulus ``2**l``."""
        return 1 << self.plain_bits

    @property
    def levels(self) -> int:
        """Number of RNS primes (the top level)."""
        return len(self.primes)

    @functools.cached_property
    def q(self) -> int:
        """Ciphertext modulus at the top level (product of all primes)."""
        return math.prod(self.primes)

    def modulus(self, level: int | None = None) -> int:
        """Product of the first ``level`` primes (all if ``None``)."""
        level = self.levels if level is None else level
        if not 1 <= level <= self.levels:
            raise ParameterError(f"level must be in 1..{self.levels}, got {level}")
        return math.prod(self.primes[:level])

    @property
    def log2_q(self) -> float:
        """``log2 q`` as a float."""
        return _log2(self.q)

    @property
    def delta(self) -> int:
        """``Δ = ⌊q/t⌋`` (informational: encoding uses ``round(q·m/t)``, never ``Δ·m``)."""
        return self.q // self.t

    @property
    def rho(self) -> int:
        """``ρ = q mod t``; ``ρ = 1`` when the primes were chosen with ``q ≡ 1 (mod t)``."""
        return self.q % self.t

    @property
    def error_bound(self) -> int:
        """Largest ``|e|`` of one fresh error coefficient: the rounded Gaussian is clipped at ``6σ``."""
        return math.floor(6 * self.sigma + 0.5)

    @functools.cached_property
    def fingerprint(self) -> bytes:
        """8 bytes identifying ``(N, primes, l, σ)``, carried in serialized headers."""
        desc = f"aiompc-he/v1/{self.n}/{','.join(map(str, self.primes))}/{self.plain_bits}/{self.sigma!r}"
        return hashlib.sha256(desc.encode()).digest()[:8]

    @property
    def key_params(self) -> "HEParams":
        """The parameter set the *keys* of ``self`` are made, sent and cached under: the same ring, primes and
        σ with ``t`` fixed to ``2**KEY_PLAIN_BITS``.  No key depends on ``t`` (the secret is ternary, a public
        key is ``(−a·s + e, a)``, a Galois key ``−a·s + e + g_i·σ_g(s)``; ``t`` only enters encoding and
        decryption), so every ``l`` over the same primes shares one secret, one public key and one set of
        Galois keys; their fingerprint (:attr:`key_fingerprint`) identifies ``(N, primes, σ)``."""
        return _key_params(self.n, self.primes, self.sigma)

    @property
    def key_fingerprint(self) -> bytes:
        """8 bytes identifying ``(N, primes, σ)``: what a key depends on (:attr:`key_params`)."""
        return self.key_params.fingerprint

    def with_plain_bits(self, plain_bits: int) -> "HEParams":
        """The same ring, primes and error width with ``t = 2**plain_bits`` (e.g. the precision a client
        that drops low output bits decrypts at)."""
        return self if plain_bits == self.plain_bits else HEParams(self.n, self.primes, plain_bits, self.sigma)

    def describe(self) -> str:
        """One line: ``N=4096 log2q=108.9 (4 primes of 27..28 bits) t=2^37 rho=...``."""
        sizes = sorted(p.bit_length() for p in self.primes)
        return (
            f"N={self.n} log2q={self.log2_q:.1f} ({self.levels} primes of {sizes[0]}..{sizes[-1]} bits) "
            f"t=2^{self.plain_bits} rho={'1' if self.rho == 1 else f'2^{_log2(self.rho):.1f}'}"
        )


def _log2(x: int) -> float:
    if x <= 0:
        return float("-inf")
    b = x.bit_length()
    if b <= 53:
        return math.log2(x)
    return b - 53 + math.log2(x >> (b - 53))


@functools.lru_cache(maxsize=1024)
def _key_params(n: int, primes: tuple[int, ...], sigma: float) -> HEParams:
    return HEParams(n, primes, KEY_PLAIN_BITS, sigma)


@functools.cache
def _aux_primes(n: int, primes: tuple[int, ...]) -> tuple[int, ...]:
    """Three primes ``≡ 1 (mod 2N)`` just below ``2**30`` outside ``primes``, for exact ``c1·s`` products."""
    out: list[int] = []
    for p in ntt_primes_below(n, 1 << MAX_PRIME_BITS):
        if p not in primes:
            out.append(p)
            if len(out) == AUX_PRIME_COUNT:
                return tuple(out)
    raise ParameterError(f"not enough auxiliary primes for N = {n}")  # pragma: no cover
