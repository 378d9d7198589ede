"""Key material: the client's ternary secret key and its seeded public key (an encryption of zero).

The client owns :class:`SecretKey`.  The only key the server ever holds is a :class:`PublicKey`,
``(b, a) = (−a·s + e, a)`` with ``a`` expanded from a 32-byte seed, sent once per session
(``N·⌈log2 q⌉`` bits plus the seed).  The server uses it for one thing: re-randomising a result
ciphertext (adding ``u·(b, a) + (e0, e1)`` with fresh small ``u, e0, e1``), so that the ``c1`` it returns
is a fresh RLWE sample instead of a function of its weights; see :mod:`aiompc.crypto.he.result`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import numpy as np

from aiompc.crypto.prg import PRG
from aiompc.errors import InputError

from .ntt import get_ntt
from .params import HEParams
from .rns import get_basis, mod_add, mod_mul, mod_neg, reduce_signed
from .serialize import dump_public_key, load_public_key

__all__ = ["SecretKey", "PublicKey", "keygen", "public_key", "expand_uniform"]


def expand_uniform(params: HEParams, seed: bytes, batch: int, level: int | None = None) -> np.ndarray:
    """The uniform polynomials ``â`` of a seeded ciphertext batch, directly in NTT form.

    Shape ``(batch, level, N)``; row ``[b, i]`` is uniform mod ``primes[i]``.  Sampling order (part of
    the wire format): ``PRG(seed)``, then for each prime in order, ``batch·N`` values by
    :meth:`PRG.uniform_mod` (rejection sampling, unbiased).  The expansion at a lower level is a
    prefix of the expansion at a higher one.  Uniform in the NTT domain is uniform in the
    coefficient domain (the NTT is a bijection), and sampling there saves one transform per side.
    """
    level = params.levels if level is None else level
    if len(seed) != 32:
        raise InputError(f"a ciphertext seed is 32 bytes, got {len(seed)}")
    prg = PRG(seed)
    out = np.empty((batch, level, params.n), dtype=np.uint64)
    for i, p in enumerate(params.primes[:level]):
        out[:, i, :] = prg.uniform_mod(p, (batch, params.n))
    return out


@dataclass(frozen=True, eq=False)
class SecretKey:
    """A uniform ternary secret ``s ∈ {−1, 0, 1}^N`` (``int8``), with cached NTT forms per level."""

    params: HEParams
    s: np.ndarray = field(repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __repr__(self) -> str:  # never show key material
        return f"SecretKey(<secret>, N={self.params.n})"

    def at(self, params: HEParams) -> SecretKey:
        """The same secret for ``params`` (another ``t`` over the same ring, primes and σ: a key does not depend
        on ``t``, :attr:`HEParams.key_params`); shares the cached NTT forms, and is itself cached (one object per
        ``params``).  :class:`InputError` if ``params``
        has other primes."""
        return _rebound(self, params, lambda: SecretKey(params, self.s))

    def ntt(self, level: int | None = None) -> np.ndarray:
        """``ŝ`` for the first ``level`` primes, shape ``(level, N)``."""
        level = self.params.levels if level is None else level
        key = ("q", level)
        if key not in self._cache:
            primes = self.params.primes[:level]
            self._cache[key] = get_ntt(self.params.n, primes).forward_signed(self.s)
        return self._cache[key]

    def aux_ntt(self) -> np.ndarray:
        """``ŝ`` in the auxiliary basis used for exact ``c1·s`` products, shape ``(3, N)``."""
        key = ("aux",)
        if key not in self._cache:
            primes = self.params.aux_primes
            self._cache[key] = get_ntt(self.params.n, primes).forward_signed(self.s)
        return self._cache[key]


@dataclass(frozen=True, eq=False)
class PublicKey:
    """``(b, a)`` with ``b = −a·s + e`` (coefficient form, ``(L, N)``) and ``a`` expanded from ``seed``."""

    params: HEParams
    b: np.ndarray = field(repr=False)
    seed: bytes = field(repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def level(self) -> int:
        return self.b.shape[0]

    def at(self, params: HEParams) -> PublicKey:
        """The same public key for ``params`` (another ``t`` over the same primes, see :meth:`SecretKey.at`)."""
        return _rebound(self, params, lambda: PublicKey(params, self.b, self.seed))

    def ntt_pair(self, level: int) -> np.ndarray:
        """``(b̂, â)`` reduced to the first ``level`` primes, NTT form, shape ``(2, level, N)``."""
        if not 1 <= level <= self.level:
            raise InputError(f"public key has {self.level} primes, level {level} requested")
        if level not in self._cache:
            primes = self.params.primes[:level]
            b_hat = get_ntt(self.params.n, primes).forward(self.b[:level])
            a_hat = expand_uniform(self.params, self.seed, 1, level)[0]
            self._cache[level] = np.stack([b_hat, a_hat])
        return self._cache[level]

    def to_bytes(self) -> bytes:
        """Bit-packed wire form (see :mod:`aiompc.crypto.he.serialize`)."""
        return dump_public_key(self.params, self.b, self.seed)

    @classmethod
    def from_bytes(cls, params: HEParams, data: bytes | memoryview) -> PublicKey:
        """Parse :meth:`to_bytes` output; raises :class:`~aiompc.errors.ProtocolError` if malformed."""
        return cls(params, *load_public_key(params, data))


_K = TypeVar("_K", bound=Any)
"""A key type with ``params`` and a ``_cache`` (:class:`SecretKey`, :class:`PublicKey`)."""


def _rebound(key: _K, params: HEParams, make: Callable[[], _K]) -> _K:
    """``key`` for ``params`` (same primes, another ``t``): ``key`` itself, or the object ``make`` builds, made once
    and cached in ``key``'s cache, which it shares (the NTT forms depend on the primes only)."""
    if params == key.params:
        return key
    _same_key(key.params, params)
    out = key._cache.get(("at", params))
    if out is None:
        out = key._cache[("at", params)] = make()
        object.__setattr__(out, "_cache", key._cache)
    return out


def _same_key(have: HEParams, want: HEParams) -> None:
    if have.key_fingerprint != want.key_fingerprint:
        raise InputError(f"a key for {have.describe()} cannot serve {want.describe()}: other ring, primes or σ")


def keygen(params: HEParams, prg: PRG) -> SecretKey:
    """A fresh uniform ternary secret key from ``prg``."""
    s = prg.ternary(params.n).astype(np.int8)
    s.setflags(write=False)
    return SecretKey(params, s)


def public_key(sk: SecretKey, prg: PRG) -> PublicKey:
    """A seeded public key: ``b = −a·s + e`` with ``a = expand_uniform(seed)``, fresh ``seed`` and ``e``."""
    params = sk.params
    basis = get_basis(params.primes)
    ntt = get_ntt(params.n, params.primes)
    seed = prg.seed()
    a_hat = expand_uniform(params, seed, 1, params.levels)[0]
    e = prg.gaussian(params.sigma, params.n)
    a_s = ntt.inverse(mod_mul(a_hat, sk.ntt(), basis.col))
    b = mod_add(mod_neg(a_s, basis.col), reduce_signed(e, basis), basis.col)
    b.setflags(write=False)
    return PublicKey(params, b, seed)
