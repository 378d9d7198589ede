"""Automorphisms ``X -> X^g`` of ``Z_q[X]/(X^N+1)`` on BFV ciphertexts, and the Galois keys that switch back.

Applying ``σ_g`` (``g`` odd) to both components of a ciphertext of ``m`` under ``s`` gives a ciphertext of
``σ_g(m)`` under ``σ_g(s)``; a *Galois key* for ``g`` switches it back to ``s``.  The keys use the RNS gadget:
digit ``i`` of a value ``c mod q`` is its residue ``[c]_{p_i}``, lifted to ``(-p_i/2, p_i/2]``, and
``Σ_i [c]_{p_i}·g_i ≡ c (mod q)`` with ``g_i = (q/p_i)·[(q/p_i)^-1]_{p_i}`` (``≡ 1 mod p_i``, ``≡ 0 mod p_j``).

Key for ``g`` (made by the client from its secret key, CSPRNG only): for every digit ``i``
``k_i = (−a_i·s + e_i + g_i·σ_g(s), a_i)`` with ``a_i`` expanded from one 32-byte seed per key set and
``e_i`` fresh rounded Gaussians.  Wire size: ``E·L·N·⌈log2 q⌉`` bits (``E`` elements, ``L`` primes) plus the
seed: exactly a seeded-ciphertext batch of ``E·L`` polynomials (:mod:`~.serialize`, kind 1), so the format,
its fingerprint and its checks are shared.

Key switching of ``σ_g(ct) = (c0', c1')``: ``(c0' + Σ_i d_i·k_i[0], Σ_i d_i·k_i[1])`` with ``d_i`` the digits of
``c1'``.  The phase gains ``Σ_i d_i·e_i`` (bounded in :mod:`~.packing`).  Cost per ciphertext: ``L`` inverse
and ``L²`` forward NTTs plus ``2·L²`` pointwise products, in compiled passes (:mod:`aiompc.kernels.keyswitch`);
the automorphism itself is a permutation of the evaluation points.

Why not hybrid key switching (keys at ``Q·P`` with a special prime ``P``, so that the switch adds only
``E/P`` plus a rounding term and could be flooded instead of needing fresh ``c1``'s, :mod:`~.packing`)?  It was
built and measured (2026-12-05, branch ``s3-pack``, commit 054525a): with the 128-bit table capping
``log2(Q·P)`` at 109 for ``N = 4096`` and the quantized layers' ``log2 Q ≈ 82–88``, ``P`` has 21–27 bits, so the
digits must be about ``P``-sized (``D = 4–5`` digits of a base-``2^w`` gadget over the whole ``Q``) for the
noise to stay floodable; a switch then costs ``L + D·(L+1) + 2·(L+1) ≈ 27`` NTTs against ``L + L² = 12`` here
(``L = 3``), and a key ``D`` polynomials at ``Q·P`` (1.7–2.1× the bytes).  Measured per packed output
ciphertext at ``N = 4096``, the hybrid switch (1.05–1.65 ms) was no cheaper than this switch plus the per-result
re-randomisation it replaces (1.44 ms before the compiled passes, 0.92 ms with them), and the larger keys made
the planner pack less.  BENCHMARKS.md has the figures.

All functions work on coefficient-form residues ``(..., L, N)`` and are vectorised over the batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, ProtocolError

from .bfv import Ciphertext, SeededCiphertext
from .keys import SecretKey, expand_uniform
from .ntt import bit_reverse, get_ntt
from .primes import powers_mod, primitive_root_2n
from .params import HEParams
from .rns import get_basis, mod_add, mod_mul, mod_neg, reduce_signed
from aiompc.kernels.keyswitch import digits_into, permute_into, switch_finish_into
from aiompc.kernels.rns import mac_into

__all__ = [
    "automorphism_map",
    "ntt_automorphism_map",
    "monomial_ntt",
    "apply_automorphism",
    "GaloisKeys",
    "GaloisKeyRing",
    "galois_keys",
    "key_switch_automorphism",
]



@functools.lru_cache(maxsize=64)
def automorphism_map(n: int, g: int) -> tuple[np.ndarray, np.ndarray]:
    """``(source, negate)`` with ``σ_g(a)[j] = ±a[source[j]]`` (minus where ``negate[j]``), ``g`` odd.

    ``X^i -> X^(g·i mod 2N)``, and ``X^(k)`` for ``N <= k < 2N`` is ``−X^(k−N)``.
    """
    if n < 2 or n & (n - 1):
        raise InputError(f"ring degree must be a power of two, got {n}")
    if g % 2 == 0:
        raise InputError(f"Galois elements are odd, got {g}")
    i = np.arange(n, dtype=np.int64)
    k = (i * (g % (2 * n))) % (2 * n)
    dest = k % n
    source = np.empty(n, dtype=np.int64)
    negate = np.empty(n, dtype=bool)
    source[dest] = i
    negate[dest] = k >= n
    source.setflags(write=False)
    negate.setflags(write=False)
    return source, negate


@functools.lru_cache(maxsize=64)
def ntt_automorphism_map(n: int, g: int) -> np.ndarray:
    """``perm`` with ``NTT(σ_g(a))[k] = NTT(a)[perm[k]]``: in the evaluation domain an automorphism is a
    permutation (entry ``k`` is ``a(ψ^(2·brv(k)+1))`` and ``σ_g(a)(ψ^e) = a(ψ^(g·e))``), no sign, no arithmetic."""
    if g % 2 == 0:
        raise InputError(f"Galois elements are odd, got {g}")
    rev = bit_reverse(n)
    e = (2 * rev + 1) * (g % (2 * n)) % (2 * n)
    perm = rev[(e - 1) // 2]
    perm.setflags(write=False)
    return perm


def monomial_ntt(params: HEParams, exponents: np.ndarray) -> np.ndarray:
    """``NTT(X^e)`` for each exponent (any integers; ``X^(e + 2N) = X^e``), shape ``(len(e), L, N)``: entry ``k``
    of prime ``i`` is ``ψ_i^(e·(2·brv(k)+1))``, gathered from a table of the ``2N`` powers of each ``ψ_i``."""
    table = _root_powers(params.n, params.primes)  # (L, 2N)
    rev = bit_reverse(params.n)
    e = np.asarray(exponents, dtype=np.int64).reshape(-1, 1) % (2 * params.n)
    idx = e * (2 * rev + 1)[None, :] % (2 * params.n)  # (K, N)
    return np.ascontiguousarray(table[:, idx].transpose(1, 0, 2))


@functools.lru_cache(maxsize=16)
def _root_powers(n: int, primes: tuple[int, ...]) -> np.ndarray:
    out = np.stack([powers_mod(primitive_root_2n(p, n), 2 * n, p) for p in primes])
    out.setflags(write=False)
    return out


def apply_automorphism(x: np.ndarray, g: int, col: np.ndarray) -> np.ndarray:
    """``σ_g`` on coefficient-form residues ``x`` (``(..., L, N)``, primes ``col`` of shape ``(L, 1)``)."""
    source, negate = automorphism_map(x.shape[-1], g)
    y = x[..., source]
    return np.where(negate, mod_neg(y, col), y)


def _permute_signed(s: np.ndarray, g: int) -> np.ndarray:
    """``σ_g`` on a signed integer polynomial ``s`` (``(N,)`` int64)."""
    source, negate = automorphism_map(s.shape[-1], g)
    y = s[source].astype(np.int64)
    return np.where(negate, -y, y)


@dataclass(frozen=True, eq=False)
class GaloisKeys:
    """Galois keys for ``elements`` at the top level of ``params``.

    ``k0``: ``(E, L, L, N)`` coefficient-form residues (element, digit, prime, coefficient) of
    ``−a·s + e + g_i·σ_g(s)``; the ``a`` of element ``e`` and digit ``i`` is row ``e·L + i`` of
    ``expand_uniform(seed, E·L)``.
    """

    params: HEParams
    elements: tuple[int, ...]
    k0: np.ndarray = field(repr=False)
    seed: bytes = field(repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        L, n = self.params.levels, self.params.n
        if self.k0.shape != (len(self.elements), L, L, n):
            raise InputError(f"Galois key of shape {self.k0.shape}, expected {(len(self.elements), L, L, n)}")
        if len(set(self.elements)) != len(self.elements):
            raise InputError(f"Galois elements must be distinct: {self.elements}")

    def switching_key(self, g: int) -> np.ndarray:
        """NTT-form key for ``g``: ``(2, L_digits, L, N)`` (component, digit, prime, coefficient; cached,
        contiguous: the weight operand of :func:`~aiompc.kernels.rns.mac_into`)."""
        if g not in self.elements:
            raise InputError(f"no Galois key for element {g} (have {self.elements})")
        if not self._cache:
            p = self.params
            E, L = len(self.elements), p.levels
            ntt = get_ntt(p.n, p.primes)
            a_hat = expand_uniform(p, self.seed, E * L, L).reshape(E, L, L, p.n)
            k0_hat = ntt.forward(self.k0)
            for e, el in enumerate(self.elements):
                key = np.ascontiguousarray(np.stack([k0_hat[e], a_hat[e]]))  # (2, digit, L, N)
                key.setflags(write=False)
                self._cache[el] = key
        return self._cache[g]

    @property
    def wire_bytes(self) -> int:
        """Bytes of :meth:`to_bytes` (without computing it)."""
        from .serialize import seeded_size

        return seeded_size(self.params, len(self.elements) * self.params.levels)

    def to_bytes(self) -> bytes:
        """Wire form: a seeded-ciphertext batch of ``E·L`` polynomials (elements are agreed, not sent)."""
        E, L, n = len(self.elements), self.params.levels, self.params.n
        return SeededCiphertext(self.params, self.k0.reshape(E * L, L, n), self.seed).to_bytes()

    @classmethod
    def from_bytes(cls, params: HEParams, elements: tuple[int, ...], data: bytes | memoryview) -> GaloisKeys:
        """Parse :meth:`to_bytes` for the agreed ``elements``; raises :class:`ProtocolError` if malformed."""
        up = SeededCiphertext.from_bytes(params, data)
        E, L = len(elements), params.levels
        if up.level != L or up.batch != E * L:
            raise ProtocolError(f"Galois keys carry {up.batch} polynomials at level {up.level}, expected {E * L} at {L}")
        return cls(params, tuple(elements), up.c0.reshape(E, L, L, params.n), up.seed)


@dataclass(frozen=True, eq=False)
class GaloisKeyRing:
    """Galois keys for several elements gathered from separately sent :class:`GaloisKeys` (same ring, primes
    and σ as ``params``; the parts may carry another ``t``, e.g. :attr:`HEParams.key_params`: keys do not
    depend on it)."""

    params: HEParams
    parts: tuple[GaloisKeys, ...]

    def __post_init__(self) -> None:
        for part in self.parts:
            if part.params.key_fingerprint != self.params.key_fingerprint:
                raise InputError("Galois keys of a ring must share the ring's primes")

    @property
    def elements(self) -> tuple[int, ...]:
        return tuple(g for part in self.parts for g in part.elements)

    def switching_key(self, g: int) -> np.ndarray:
        """NTT-form key for ``g`` from the part that holds it."""
        for part in self.parts:
            if g in part.elements:
                return part.switching_key(g)
        raise InputError(f"no Galois key for element {g} (have {self.elements})")


def galois_keys(sk: SecretKey, elements: tuple[int, ...] | list[int], prg: PRG) -> GaloisKeys:
    """Client: Galois keys for ``elements`` from ``sk`` (fresh seed and errors from ``prg``).

    Cost: ``E·L`` inverse and ``E`` forward NTT batches of ``L`` primes, ``E·L·N`` Gaussian samples."""
    params = sk.params
    elements = tuple(int(g) % (2 * params.n) for g in elements)
    E, L, n = len(elements), params.levels, params.n
    basis = get_basis(params.primes)
    ntt = get_ntt(n, params.primes)
    seed = prg.seed()
    a_hat = expand_uniform(params, seed, E * L, L).reshape(E, L, L, n)
    s_hat = sk.ntt()
    k0 = np.empty((E, L, L, n), dtype=np.uint64)
    for e, g in enumerate(elements):
        err = reduce_signed(prg.gaussian(params.sigma, (L, n)), basis)  # (digit, L, N)
        s_g = _permute_signed(sk.s.astype(np.int64), g)
        for i, p in enumerate(params.primes):  # g_i·σ_g(s): σ_g(s) mod p_i in prime i, 0 elsewhere
            err[i, i] = mod_add(err[i, i], (s_g % p).astype(np.uint64), np.uint64(p))
        a_s = ntt.inverse(mod_mul(a_hat[e], s_hat, basis.col))
        k0[e] = mod_add(err, mod_neg(a_s, basis.col), basis.col)
    k0.setflags(write=False)
    return GaloisKeys(params, elements, k0, seed)


def key_switch_automorphism(ct: Ciphertext, g: int, keys: GaloisKeys | GaloisKeyRing,
                            add: np.ndarray | None = None) -> Ciphertext:
    """``σ_g(ct)`` switched back to the original key: an NTT-form ciphertext of ``σ_g(m)``, plus the NTT-form
    ciphertext data ``add`` (``(2, B, L, N)``, the packing tree's other term) when given.

    ``ct`` must be at the top level (coefficient-form input is transformed first).  Works in the evaluation
    domain: the automorphism is a permutation (:func:`~aiompc.kernels.keyswitch.permute_into`); the digits of
    ``σ_g(c1)`` need it in coefficient form (``L`` inverse NTTs), are lifted and reduced into every prime in one
    compiled pass (:func:`~aiompc.kernels.keyswitch.digits_into`) and transformed (``L²`` forward NTTs: the
    diagonal ones recompute ``σ_g(c1)``'s own transform, cheaper than ``L`` separate sub-basis calls); then
    ``2·L²`` pointwise products (:func:`~aiompc.kernels.rns.mac_into`) and one fused pass adding ``σ_g(c0)`` and
    ``add``.  Adds ``Σ_i d_i·e_i`` to the noise (digits ``|d_i| <= p_i/2``).
    """
    params = ct.params
    if keys.params.key_fingerprint != params.key_fingerprint:  # keys do not depend on t (HEParams.key_params)
        raise InputError("Galois keys and ciphertext use different parameters")
    if ct.level != params.levels:
        raise InputError(f"key switching needs the top level {params.levels}, got {ct.level}")
    g %= 2 * params.n
    key = keys.switching_key(g)
    basis = ct.basis
    n, primes = params.n, basis.primes
    prime_row = np.ascontiguousarray(basis.col.reshape(-1))
    src = np.ascontiguousarray(ct.to_ntt().data)
    data = np.empty_like(src)  # (2, B, L, N)
    permute_into(src.reshape(-1, n), ntt_automorphism_map(n, g), data.reshape(-1, n))
    B, L = data.shape[1], basis.size
    ntt = get_ntt(n, primes)
    c1 = ntt.inverse(data[1])
    d_hat = np.empty((B, L, L, n), dtype=np.uint64)  # (ciphertext, digit, prime, coefficient)
    digits_into(c1, prime_row, d_hat)
    ntt.forward_inplace(d_hat)
    out = np.empty((B, 2, L, n), dtype=np.uint64)
    mac_into(d_hat, key, prime_row, out)  # Σ_i d_i·k_i, compiled
    res = np.empty((2, B, L, n), dtype=np.uint64)
    x = res if add is None else np.ascontiguousarray(add, dtype=np.uint64)
    if x.shape != res.shape:
        raise InputError(f"the ciphertext to add has shape {x.shape}, expected {res.shape}")
    switch_finish_into(out, np.ascontiguousarray(data[0]), x, add is not None, prime_row, res)
    return Ciphertext(params, res, True)
