"""Automorphisms ``X -> X^g`` of ``Z_q[X]/(X^N+1)`` on BFV ciphertexts, and the Galois keys that switch back.

Applying ``σ_g`` (``g`` odd) to both components of a ciphertext of ``m`` under ``s`` gives a ciphertext of
``σ_g(m)`` under ``σ_g(s)``; a *Galois key* for ``g`` switches it back to ``s``.

**Hybrid key switching** (a special prime ``P`` as in Gentry–Halevi–Smart, with a base-``2^w`` digit gadget):
the keys live at modulus ``Q·P`` (``Q = q`` the ciphertext modulus, ``P`` an extra NTT prime, :class:`Gadget`);
the switch works at ``Q·P`` and divides by ``P`` with rounding at the end, so the key errors enter divided by
``P``.

* Gadget: a value ``x ∈ [0, Q)`` is written ``x = Σ_k d_k·2^(w·k)`` with ``D`` balanced digits
  ``|d_k| <= 2^(w−1)`` (:func:`aiompc.kernels.gadget.decompose_into`; ``w·D >= ⌈log2 Q⌉ + 1``).
  ``w`` is at most ``⌊log2 P⌋``, so every digit is below ``P/2``.
* Key for ``g`` (client, CSPRNG only): for each digit ``k``,
  ``k_k = (−a_k·s + e_k + P·2^(w·k)·σ_g(s), a_k) mod Q·P`` with ``a_k`` expanded from one 32-byte seed per key
  set and ``e_k`` fresh rounded Gaussians.  Wire size: ``E·D`` seeded polynomials of ``N·⌈log2 Q·P⌉`` bits plus
  the seed (a seeded-ciphertext batch at the parameters ``Q·P``, :mod:`~.serialize`, kind 1).
* Switch of ``σ_g(ct) = (c0', c1')`` (mod ``Q``): digits ``d_k`` of ``c1'``, ``(u0, u1) = Σ_k d_k·k_k mod Q·P``,
  then ``round(u/P)`` component-wise (``ModDown``: ``(u − [u]_P)·P^(-1)`` in each prime of ``Q``), and
  ``c0'`` added.  Since ``Σ_k d_k·2^(w·k)·P ≡ P·c1' (mod Q·P)``, the phase of ``u`` is
  ``P·c1'·σ_g(s) + E`` with ``E = Σ_k d_k·e_k``, and the result's phase is ``σ_g(phase) + E/P − r0 − r1·s``
  with ``|r0|, |r1| <= 1/2`` per coefficient (the rounding of ``ModDown``).

Security: the keys are RLWE samples at modulus ``Q·P``, so ``Q·P`` must satisfy the 128-bit table for ``N``
(checked: :attr:`Gadget.ext` is an :class:`~.params.HEParams` at ``Q·P``, validated on construction; no
special prime fits when ``log2 Q`` is within 14 bits of the limit, and :func:`gadget_for` raises
:class:`~aiompc.errors.InsecureParameters`).  As with every Galois key, ``σ_g(s)`` is encrypted under ``s``
(the usual circular-security assumption of RLWE key switching).

Noise (what the server's weights may influence; bounded in :func:`aiompc.crypto.he.packing.packing_noise`):
``E/P`` is, given the digits, a sum of ``D·N`` products of a digit (``<= 2^(w−1)``) by an independent key error,
divided by ``P``; ``r1·s`` is, given ``c1``'s (which never involve ``s`` or the key errors), a sum of ``N``
products of a rounding residue by an independent ternary ``s`` coefficient.  Both are sub-Gaussian whatever the
digits are, so the bound needs no assumption on how the weights shape ``c1`` — it can be flooded.

Cost per switched ciphertext: ``L`` inverse NTTs (``c1'`` to coefficients), the digit decomposition (compiled),
``D·(L+1)`` forward NTTs, ``2·D·(L+1)`` pointwise products (:func:`~aiompc.kernels.rns.mac_into`), and
``2·(1 + L)`` NTTs for ``ModDown``; the automorphism itself is a permutation in the evaluation domain.

All functions work on residues ``(..., L, N)`` and are vectorised over the batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, InsecureParameters, ProtocolError
from aiompc.kernels.gadget import decompose_into, moddown_into, permute_into

from .bfv import Ciphertext, SeededCiphertext
from .keys import SecretKey, expand_uniform
from .ntt import bit_reverse, get_ntt
from .primes import primitive_root_2n
from .params import SECURITY_TABLE, HEParams
from .primes import ntt_primes_below
from .rns import get_basis, mod_add, mod_mul, mod_neg, mod_sub, reduce_signed
from aiompc.kernels.rns import mac_into

__all__ = [
    "Gadget",
    "gadget_for",
    "decompose",
    "automorphism_map",
    "ntt_automorphism_map",
    "monomial_ntt",
    "apply_automorphism",
    "GaloisKeys",
    "GaloisKeyRing",
    "galois_keys",
    "key_wire_bytes",
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
    out = np.empty((len(primes), 2 * n), dtype=np.uint64)
    for i, p in enumerate(primes):
        psi = primitive_root_2n(p, n)
        acc = 1
        for j in range(2 * n):  # 2N scalar steps once per (N, prime): table setup, not a hot path
            out[i, j] = acc
            acc = acc * psi % p
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


@dataclass(frozen=True)
class Gadget:
    """The key-switching gadget of a parameter set: special prime ``P`` and ``D`` balanced digits of ``w`` bits.

    ``ext`` is the parameter set at ``Q·P`` (the keys' modulus; validated against the 128-bit table)."""

    params: HEParams
    special: int
    width: int
    digits: int

    @functools.cached_property
    def ext(self) -> HEParams:
        p = self.params
        return HEParams(p.n, (*p.primes, self.special), p.plain_bits, p.sigma)

    @property
    def digit_bound(self) -> int:
        """Largest ``|d_k|``: ``2^(w−1)``."""
        return 1 << (self.width - 1)

    @functools.cached_property
    def _consts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        primes = self.params.primes
        L = len(primes)
        garner = np.zeros((L, L), dtype=np.int64)
        for i in range(L):
            for j in range(i):
                garner[i, j] = pow(primes[j], -1, primes[i])
        ext = np.array(self.ext.primes, dtype=np.int64)
        pinv = np.array([pow(self.special, -1, p) for p in primes], dtype=np.uint64)
        return np.array(primes, dtype=np.int64), garner, ext, pinv


@functools.lru_cache(maxsize=1024)
def gadget_for(params: HEParams) -> Gadget:
    """The gadget of ``params``: the largest NTT prime ``P`` (``≡ 1 mod 2N``, below ``2**30``, not a prime of
    ``q``) with ``log2(q·P)`` within the 128-bit table, ``w = ⌊log2 P⌋`` at most (digits below ``P/2``), and the fewest digits
    ``D`` with ``w·D >= ⌈log2 q⌉ + 1`` (``w`` then lowered to the least width that still covers ``q``).

    Raises :class:`~aiompc.errors.InsecureParameters` when no special prime fits the table (``log2 q`` too
    close to the limit for ``N``): output packing is then unavailable for ``params``."""
    room = SECURITY_TABLE[params.n] - params.q.bit_length()
    bound = min(1 << 30, 1 << max(room, 0))
    special = next((p for p in ntt_primes_below(params.n, bound) if p not in params.primes), None)
    if special is None or room < 1:
        raise InsecureParameters(
            f"no special prime fits: log2 q = {params.log2_q:.1f} leaves {room} bits below the 128-bit limit "
            f"{SECURITY_TABLE[params.n]} for N = {params.n} (an NTT prime needs more than {(2 * params.n).bit_length()})")
    need = params.q.bit_length() + 1
    most = special.bit_length() - 1  # digits <= 2^(w-1) <= 2^(log2 P - 1) < P/2
    if most < 1:
        raise InsecureParameters(f"special prime {special} too small for a digit gadget")
    digits = -(-need // most)
    width = -(-need // digits)
    gadget = Gadget(params, special, width, digits)
    gadget.ext  # validates Q·P against the table (raises InsecureParameters)
    return gadget


def decompose(gadget: Gadget, x: np.ndarray) -> np.ndarray:
    """Balanced digits of coefficient-form residues ``x`` (``(B, L, N)`` mod ``q``) as residues mod the primes of
    ``Q·P``: ``(B, D, L+1, N)`` (compiled, :func:`~aiompc.kernels.gadget.decompose_into`)."""
    primes, garner, ext, _ = gadget._consts
    x = np.ascontiguousarray(x, dtype=np.uint64)
    out = np.empty((x.shape[0], gadget.digits, ext.size, x.shape[-1]), dtype=np.uint64)
    decompose_into(x, primes, garner, gadget.width, ext, out)
    return out


@dataclass(frozen=True, eq=False)
class GaloisKeys:
    """Galois keys for ``elements`` of ``params`` (at the gadget's modulus ``Q·P``).

    ``k0``: ``(E, D, L+1, N)`` coefficient-form residues mod the primes of ``Q·P`` (element, digit, prime,
    coefficient) of ``−a·s + e + P·2^(w·k)·σ_g(s)``; the ``a`` of element ``e`` and digit ``k`` is row ``e·D + k``
    of ``expand_uniform(Q·P, seed, E·D)``.
    """

    params: HEParams
    elements: tuple[int, ...]
    k0: np.ndarray = field(repr=False)
    seed: bytes = field(repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        gadget = gadget_for(self.params)
        want = (len(self.elements), gadget.digits, self.params.levels + 1, self.params.n)
        if self.k0.shape != want:
            raise InputError(f"Galois key of shape {self.k0.shape}, expected {want}")
        if len(set(self.elements)) != len(self.elements):
            raise InputError(f"Galois elements must be distinct: {self.elements}")

    @property
    def gadget(self) -> Gadget:
        return gadget_for(self.params)

    def switching_key(self, g: int) -> np.ndarray:
        """NTT-form key for ``g`` at ``Q·P``: ``(2, D, L+1, N)`` (component, digit, prime, coefficient; cached,
        contiguous: the weight operand of :func:`~aiompc.kernels.rns.mac_into`)."""
        if g not in self.elements:
            raise InputError(f"no Galois key for element {g} (have {self.elements})")
        if not self._cache:
            ext = self.gadget.ext
            E, D = len(self.elements), self.gadget.digits
            ntt = get_ntt(ext.n, ext.primes)
            a_hat = expand_uniform(ext, self.seed, E * D).reshape(E, D, ext.levels, ext.n)
            k0_hat = ntt.forward(self.k0)
            for e, el in enumerate(self.elements):
                key = np.ascontiguousarray(np.stack([k0_hat[e], a_hat[e]]))  # (2, digit, L+1, N)
                key.setflags(write=False)
                self._cache[el] = key
        return self._cache[g]

    @property
    def wire_bytes(self) -> int:
        """Bytes of :meth:`to_bytes` (without computing it)."""
        return key_wire_bytes(self.params, len(self.elements))

    def to_bytes(self) -> bytes:
        """Wire form: a seeded-ciphertext batch of ``E·D`` polynomials at ``Q·P`` (elements are agreed, not sent)."""
        E, D, M, n = self.k0.shape
        return SeededCiphertext(self.gadget.ext, self.k0.reshape(E * D, M, n), self.seed).to_bytes()

    @classmethod
    def from_bytes(cls, params: HEParams, elements: tuple[int, ...], data: bytes | memoryview) -> GaloisKeys:
        """Parse :meth:`to_bytes` for the agreed ``elements``; raises :class:`ProtocolError` if malformed."""
        gadget = gadget_for(params)
        ext = gadget.ext
        up = SeededCiphertext.from_bytes(ext, data)
        E, D = len(elements), gadget.digits
        if up.level != ext.levels or up.batch != E * D:
            raise ProtocolError(f"Galois keys carry {up.batch} polynomials at level {up.level}, expected {E * D} "
                                f"at {ext.levels}")
        return cls(params, tuple(elements), up.c0.reshape(E, D, ext.levels, params.n), up.seed)


def key_wire_bytes(params: HEParams, elements: int = 1) -> int:
    """Wire bytes of the Galois keys of ``elements`` elements of ``params`` (one message): ``E·D`` seeded
    polynomials at ``Q·P``."""
    from .serialize import seeded_size

    gadget = gadget_for(params)
    return seeded_size(gadget.ext, elements * gadget.digits)


@dataclass(frozen=True, eq=False)
class GaloisKeyRing:
    """Galois keys for several elements gathered from separately sent :class:`GaloisKeys` (same parameters)."""

    params: HEParams
    parts: tuple[GaloisKeys, ...]

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
    """Client: Galois keys for ``elements`` from ``sk`` (fresh seed and errors from ``prg``), at ``Q·P``.

    Cost: ``E·D`` inverse NTT batches of ``L+1`` primes, ``E·D·N`` Gaussian samples."""
    params = sk.params
    gadget = gadget_for(params)
    ext = gadget.ext
    elements = tuple(int(g) % (2 * params.n) for g in elements)
    E, D, M, n = len(elements), gadget.digits, ext.levels, params.n
    basis = get_basis(ext.primes)
    ntt = get_ntt(n, ext.primes)
    seed = prg.seed()
    a_hat = expand_uniform(ext, seed, E * D).reshape(E, D, M, n)
    s_hat = ntt.forward_signed(sk.s)
    k0 = np.empty((E, D, M, n), dtype=np.uint64)
    for e, g in enumerate(elements):
        err = reduce_signed(prg.gaussian(params.sigma, (D, n)), basis)  # (digit, prime, N)
        s_g = _permute_signed(sk.s.astype(np.int64), g)
        for k in range(D):  # P·2^(w·k)·σ_g(s): zero mod P, scaled in each prime of q
            for j, p in enumerate(params.primes):
                factor = gadget.special * (1 << (gadget.width * k)) % p
                term = (s_g % p).astype(np.uint64) * np.uint64(factor) % np.uint64(p)
                err[k, j] = mod_add(err[k, j], term, np.uint64(p))
        a_s = ntt.inverse(mod_mul(a_hat[e], s_hat, basis.col))
        k0[e] = mod_add(err, mod_neg(a_s, basis.col), basis.col)
    k0.setflags(write=False)
    return GaloisKeys(params, elements, k0, seed)


def key_switch_automorphism(ct: Ciphertext, g: int, keys: GaloisKeys | GaloisKeyRing,
                            add: np.ndarray | None = None) -> Ciphertext:
    """``σ_g(ct)`` switched back to the original key (hybrid, see the module docstring): an NTT-form ciphertext
    of ``σ_g(m)`` at the top level, plus the NTT-form ciphertext data ``add`` (``(2, B, L, N)``) if given (fused
    into the last pass).  Adds ``E/P − r0 − r1·s`` to the noise.  ``ct`` must be at the top level
    (coefficient-form input is transformed first)."""
    params = ct.params
    if keys.params != params:
        raise InputError("Galois keys and ciphertext use different parameters")
    if ct.level != params.levels:
        raise InputError(f"key switching needs the top level {params.levels}, got {ct.level}")
    g %= 2 * params.n
    key = keys.switching_key(g)
    gadget = gadget_for(params)
    ext = gadget.ext
    _, _, ext_primes, pinv = gadget._consts
    basis = ct.basis
    col, primes, n = basis.col, basis.primes, params.n
    L = basis.size
    src = np.ascontiguousarray(ct.to_ntt().data)
    data = np.empty_like(src)  # (2, B, L, N): the automorphism is a permutation of the evaluation points
    permute_into(src.reshape(-1, n), ntt_automorphism_map(n, g), data.reshape(-1, n))
    B = data.shape[1]
    c1 = get_ntt(n, primes).inverse(data[1])
    ntt_ext = get_ntt(n, ext.primes)
    d_hat = decompose(gadget, c1)  # (B, D, L+1, N)
    ntt_ext.forward_inplace(d_hat)
    out = np.empty((B, 2, L + 1, n), dtype=np.uint64)
    mac_into(d_hat, key, ext_primes.astype(np.uint64), out)  # Σ_k d_k·k_k at Q·P, compiled
    # ModDown: (u − [u]_P)·P^(-1) in each prime of q, in the evaluation domain, fused with adding σ_g(c0)
    special = gadget.special
    r = get_ntt(n, (special,)).inverse(out[:, :, L:])[:, :, 0].view(np.int64)
    r[r > special // 2] -= special
    r_hat = get_ntt(n, primes).forward_signed(r)  # (B, 2, L, N)
    res = np.empty((2, B, L, n), dtype=np.uint64)
    addx = res if add is None else np.ascontiguousarray(add, dtype=np.uint64)
    if addx.shape != res.shape:
        raise InputError(f"the ciphertext to add has shape {addx.shape}, expected {res.shape}")
    moddown_into(out, r_hat, pinv, np.ascontiguousarray(col.reshape(-1)), np.ascontiguousarray(data[0]), addx,
                 add is not None, res)
    return Ciphertext(params, res, True)
