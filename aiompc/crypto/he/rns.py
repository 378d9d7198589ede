"""Residue-number-system arithmetic for moduli ``q = p_0·…·p_{L-1}`` of primes below ``2**30``.

A value mod ``q`` is held as its residues, an ``uint64`` array shaped ``(..., L, N)`` (axis ``-2``
indexes the primes).  Everything here is vectorised over the leading axes and over ``N``; the only
Python loops run over primes or 32-bit limbs.

Exactness: residues are ``< 2**30``, so the product of two is ``< 2**60`` and sixteen products sum
without overflow.  The few places that need real numbers use float64 only for a correction term whose
error is far below the rounding margin that the noise estimator reserves (stated at each function).

Functions:

* :func:`reduce_signed` — small signed integers → residues.
* :func:`encode_scaled` — plaintext ``m mod t`` → residues of ``round(q·m/t)`` (exact, no floats).
* :func:`scale_round_pow2` — residues of ``x`` → ``round(2**b·x/q) mod 2**b`` (BFV decryption with
  ``b = l``, modulus switching to ``2**b``).
* :func:`drop_last_prime` — ``round(x/p_last)`` in the remaining basis (modulus switching by a prime).
* :func:`to_limbs` / :func:`from_limbs` — exact CRT reconstruction into 32-bit limbs and back (bit-exact
  serialization, noise measurement), :func:`limbs_less_than`, :func:`centered_to_float`.
* :func:`crt_mod` — a centered integer given by residues in an auxiliary basis → its value mod ``2**b``
  or mod a small odd modulus (exact ``c1·s`` products at decryption).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from aiompc.errors import ParameterError

from aiompc.kernels.ntt import reduce_signed_into
from aiompc.kernels.rns import add_mod, mul_mod, neg_mod, rem, scale_round_pow2_into, sub_mod

__all__ = [
    "RNSBasis",
    "get_basis",
    "reduce_signed",
    "reduce_unsigned",
    "encode_scaled",
    "scale_round_pow2",
    "drop_last_prime",
    "to_limbs",
    "from_limbs",
    "limbs_less_than",
    "centered_to_float",
    "crt_mod",
    "mod_add",
    "mod_sub",
    "mod_neg",
    "mod_mul",
]

_T = TypeVar("_T")
_MASK32 = np.uint64(0xFFFFFFFF)
_U32 = np.uint64(32)
#: Bound on the float64 error of :func:`scale_round_pow2`'s rounding decision, as a fraction of one
#: unit; the noise model adds it to every rounding error (the true bound is below 2**-17 for ≤ 64 primes).
ROUNDING_SLACK = 2.0**-10


class RNSBasis:
    """Precomputed constants for one tuple of primes (the first ``L`` primes of a parameter set)."""

    def __init__(self, primes: tuple[int, ...]) -> None:
        self.primes = tuple(int(p) for p in primes)
        self.q = math.prod(self.primes)
        self.col = np.array(self.primes, dtype=np.uint64).reshape(-1, 1)  # broadcast over (..., L, N)
        self.col.setflags(write=False)
        # (q/p_i)^-1 mod p_i
        self.qhat_inv = np.array(
            [pow(self.q // p % p, -1, p) for p in self.primes], dtype=np.uint64
        ).reshape(-1, 1)
        # Garner: C_i = (p_0···p_{i-1})^-1 mod p_i
        self.garner = [pow(math.prod(self.primes[:i]) % p, -1, p) if i else 1 for i, p in enumerate(self.primes)]
        self.limbs = (self.q.bit_length() + 31) // 32
        self.q_limbs = np.array([(self.q >> (32 * j)) & 0xFFFFFFFF for j in range(self.limbs)], dtype=np.uint64)
        self._consts: dict[tuple[str, int], Any] = {}  # derived constants per bit width / modulus

    def _cached(self, key: tuple[str, int], make: Callable[[], _T]) -> _T:
        if key not in self._consts:
            self._consts[key] = make()
        return cast(_T, self._consts[key])

    @property
    def size(self) -> int:
        return len(self.primes)

    def _scale_consts(self, bits: int) -> tuple[np.ndarray, np.ndarray]:
        """``⌊2**bits/p_i⌋ mod 2**64`` and ``(2**bits mod p_i)/p_i`` for :func:`scale_round_pow2`."""

        def make() -> tuple[np.ndarray, np.ndarray]:
            whole = np.array([((1 << bits) // p) & ((1 << 64) - 1) for p in self.primes], dtype=np.uint64)
            frac = np.array([((1 << bits) % p) / p for p in self.primes], dtype=np.float64)
            return whole.reshape(-1, 1), frac.reshape(-1, 1)

        return self._cached(("scale", bits), make)

    def _encode_consts(self, bits: int) -> tuple[int, np.ndarray]:
        """``ρ = q mod 2**bits`` and ``(2**bits)^-1 mod p_i``."""

        def make() -> tuple[int, np.ndarray]:
            tinv = np.array([pow(1 << bits, -1, p) for p in self.primes], dtype=np.uint64).reshape(-1, 1)
            return self.q % (1 << bits), tinv

        return self._cached(("encode", bits), make)

    def _crt_consts(self, modulus: int) -> tuple[np.ndarray, np.ndarray, int]:
        """``(q/p_i) mod M``, ``1/p_i`` and ``q mod M`` for :func:`crt_mod` (``M = 2**64`` for powers of two)."""

        def make() -> tuple[np.ndarray, np.ndarray, int]:
            m = modulus if modulus & (modulus - 1) else 1 << 64
            qhat = np.array([(self.q // p) % m for p in self.primes], dtype=np.uint64).reshape(-1, 1)
            inv = np.array([1.0 / p for p in self.primes]).reshape(-1, 1)
            return qhat, inv, self.q % m

        return self._cached(("crt", modulus), make)

    def __hash__(self) -> int:
        return hash(self.primes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RNSBasis) and other.primes == self.primes


@functools.lru_cache(maxsize=256)
def get_basis(primes: tuple[int, ...]) -> RNSBasis:
    """The cached :class:`RNSBasis` for ``primes``."""
    return RNSBasis(tuple(primes))


# --------------------------------------------------------------------------- elementwise helpers


def mod_add(a: np.ndarray, b: np.ndarray, col: np.ndarray) -> np.ndarray:
    """``(a + b) mod p`` for residues ``a, b < p`` (broadcast ``col`` of primes; a compiled ufunc)."""
    return add_mod(a, b, col)


def mod_sub(a: np.ndarray, b: np.ndarray, col: np.ndarray) -> np.ndarray:
    """``(a - b) mod p`` for residues ``a, b < p``."""
    return sub_mod(a, b, col)


def mod_neg(a: np.ndarray, col: np.ndarray) -> np.ndarray:
    """``-a mod p`` for residues ``a < p``."""
    return neg_mod(a, col)


def mod_mul(a: np.ndarray, b: np.ndarray, col: np.ndarray) -> np.ndarray:
    """``a·b mod p`` for residues ``a, b < p`` (``p < 2**30``; a compiled ufunc, no integer division)."""
    return mul_mod(a, b, col)


def reduce_signed(x: np.ndarray, basis: RNSBasis) -> np.ndarray:
    """Signed integers ``x`` (``(..., N)``, ``|x| < 2**63``) → residues ``(..., L, N)`` (compiled kernel)."""
    x = np.asarray(x, dtype=np.int64)
    flat = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))
    out = np.empty((flat.shape[0], basis.size, flat.shape[1]), dtype=np.uint64)
    reduce_signed_into(flat, basis.col.reshape(-1), out)
    return out.reshape(*x.shape[:-1], basis.size, x.shape[-1])


def reduce_unsigned(x: np.ndarray, basis: RNSBasis) -> np.ndarray:
    """Unsigned integers ``x`` (``(..., N)``, any ``uint64``) → residues ``(..., L, N)``."""
    return rem(np.asarray(x, dtype=np.uint64)[..., None, :], basis.col)


# --------------------------------------------------------------------------- BFV scaling


def encode_scaled(m: np.ndarray, bits: int, basis: RNSBasis) -> np.ndarray:
    """Residues of ``round(q·m / 2**bits)`` for plaintext coefficients ``m`` (``(..., N)``, taken mod ``2**bits``).

    Exact and float-free: with ``r = q·m mod t = (ρ·m) mod t`` (``t = 2**bits``, computed with wrapping
    uint64 arithmetic since ``t`` divides ``2**64``), ``⌊q·m/t⌋ = (q·m − r)/t ≡ −r·t^-1 (mod p_i)`` and
    rounding adds ``[r >= t/2]``.  This is the encoding that keeps a ciphertext × full-range-plaintext
    product correct for any ``q mod t`` (never ``⌊q/t⌋·m``).
    """
    rho, tinv = basis._encode_consts(bits)
    t_mask = np.uint64((1 << bits) - 1)
    mm = np.asarray(m).astype(np.uint64, copy=False) & t_mask
    r = (mm * np.uint64(rho)) & t_mask  # wraps mod 2**64, exact mod t
    up = (r >> np.uint64(bits - 1)).astype(np.uint64)  # [r >= t/2]
    r = r[..., None, :]
    floor_part = mod_neg(mod_mul(rem(r, basis.col), tinv, basis.col), basis.col)
    return mod_add(floor_part, up[..., None, :], basis.col)


def scale_round_pow2(x: np.ndarray, bits: int, basis: RNSBasis) -> np.ndarray:
    """``round(2**bits · x / q) mod 2**bits`` for ``x`` given by residues ``(..., L, N)``; ``1 <= bits <= 62``.

    With ``y_i = [x_i·(q/p_i)^-1]_{p_i}``, ``x ≡ Σ y_i·q/p_i (mod q)`` so
    ``2**b·x/q ≡ Σ y_i·(2**b/p_i) (mod 2**b)``.  The integer parts ``y_i·⌊2**b/p_i⌋`` are summed
    exactly in wrapping uint64; the fractional parts ``y_i·frac(2**b/p_i)`` in float64, whose error
    (below ``L·2**-23``) can only move a result whose exact value lies within that distance of a
    half-integer: the returned integer is within ``1/2 + ROUNDING_SLACK`` of ``2**b·x/q``.
    """
    if not 1 <= bits <= 62:
        raise ParameterError(f"bits must be in 1..62, got {bits}")
    whole, frac = basis._scale_consts(bits)
    arr = np.asarray(x)
    flat = np.ascontiguousarray(arr.reshape(-1, *arr.shape[-2:]), dtype=np.uint64)
    out = np.empty((flat.shape[0], flat.shape[-1]), dtype=np.uint64)
    scale_round_pow2_into(flat, basis.qhat_inv.reshape(-1), whole.reshape(-1), frac.reshape(-1), basis.col.reshape(-1),
                          bits, out)  # compiled, one pass
    return out.reshape(*arr.shape[:-2], arr.shape[-1])


def drop_last_prime(x: np.ndarray, basis: RNSBasis) -> np.ndarray:
    """``round(x / p_last)`` expressed in the basis without the last prime; ``x``: ``(..., L, N)``, ``L >= 2``.

    ``x − [x]_{p_last}`` (centered remainder) is divisible by ``p_last``; dividing it is multiplying by
    ``p_last^-1`` in each remaining prime.  The rounding error is the centered remainder over ``p_last``,
    at most ``1/2`` in absolute value.  Output shape ``(..., L-1, N)``.
    """
    if basis.size < 2:
        raise ParameterError("cannot drop the only prime")
    p_last = basis.primes[-1]
    rest = get_basis(basis.primes[:-1])
    last = x[..., -1:, :]
    # centered remainder mod each remaining prime: last - p_last·[last > p_last/2]
    high = last > np.uint64(p_last // 2)
    r = last % rest.col
    r = mod_sub(r, np.where(high, np.uint64(p_last) % rest.col, np.uint64(0)), rest.col)
    inv = np.array([pow(p_last, -1, p) for p in rest.primes], dtype=np.uint64).reshape(-1, 1)
    return mod_sub(x[..., :-1, :], r, rest.col) * inv % rest.col


# --------------------------------------------------------------------------- exact CRT (limbs)


def to_limbs(x: np.ndarray, basis: RNSBasis) -> np.ndarray:
    """Exact integers ``X in [0, q)`` from residues ``x`` (``(L, ...)``-major is not required: ``(..., L, N)``).

    Returns ``(limbs, ..., N)`` uint64 values below ``2**32`` (little-endian 32-bit limbs).  Garner's
    mixed-radix digits ``v_i`` (``X = v_0 + p_0·(v_1 + p_1·(v_2 + …))``) are computed mod each ``p_i``
    and then accumulated by Horner's rule in 32-bit limbs.  Cost ``O(L²)`` vector operations.
    """
    ps = basis.primes
    digits: list[np.ndarray] = []
    for i, p in enumerate(ps):
        xi = x[..., i, :]
        if i == 0:
            digits.append(xi.astype(np.uint64))
            continue
        pp = np.uint64(p)
        acc = digits[i - 1] % pp
        for j in range(i - 2, -1, -1):
            acc = (acc * np.uint64(ps[j]) + digits[j]) % pp
        diff = (xi + (pp - acc)) % pp
        digits.append(diff * np.uint64(basis.garner[i]) % pp)
    limbs = np.zeros((basis.limbs,) + digits[0].shape, dtype=np.uint64)
    limbs[0] = digits[-1]
    for i in range(len(ps) - 2, -1, -1):
        carry = digits[i].copy()
        pp = np.uint64(ps[i])
        for j in range(basis.limbs):
            v = limbs[j] * pp + carry
            limbs[j] = v & _MASK32
            carry = v >> _U32
    return limbs


def from_limbs(limbs: np.ndarray, basis: RNSBasis) -> np.ndarray:
    """Residues ``(..., L, N)`` of the integers given by 32-bit ``limbs`` (``(n_limbs, ..., N)``)."""
    col = basis.col
    r = np.zeros(limbs.shape[1:-1] + (basis.size, limbs.shape[-1]), dtype=np.uint64)
    for j in range(limbs.shape[0] - 1, -1, -1):
        r = rem((r << _U32) + limbs[j][..., None, :], col)
    return r


def limbs_less_than(limbs: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Elementwise ``X < bound`` for limb arrays (``bound``: one limb vector of the same length)."""
    lt = np.zeros(limbs.shape[1:], dtype=bool)
    eq = np.ones(limbs.shape[1:], dtype=bool)
    for j in range(limbs.shape[0] - 1, -1, -1):
        lt |= eq & (limbs[j] < bound[j])
        eq &= limbs[j] == bound[j]
    return lt


def centered_to_float(x: np.ndarray, basis: RNSBasis) -> np.ndarray:
    """The centered representative of ``x mod q`` (in ``(-q/2, q/2]``) as float64 (for noise measurement).

    Exact up to float64 rounding of the final value (relative error ``2**-52``), including for small
    values near ``0`` or ``q`` because the subtraction ``q − X`` is done on limbs.
    """
    limbs = to_limbs(x, basis)
    above = basis.q // 2 + 1  # X > q/2  <=>  X >= above  (q odd)
    above_limbs = np.array([(above >> (32 * j)) & 0xFFFFFFFF for j in range(basis.limbs)], dtype=np.uint64)
    upper = ~limbs_less_than(limbs, above_limbs)
    neg = np.empty_like(limbs)
    borrow = np.zeros(limbs.shape[1:], dtype=np.uint64)
    for j in range(basis.limbs):  # q - X
        v = basis.q_limbs[j] - limbs[j] - borrow  # wraps when negative
        borrow = (v >> np.uint64(63)) & np.uint64(1)
        neg[j] = v & _MASK32
    scale = 2.0 ** (32 * np.arange(basis.limbs))
    pos_f = np.tensordot(scale, limbs.astype(np.float64), axes=1)
    neg_f = np.tensordot(scale, neg.astype(np.float64), axes=1)
    return np.where(upper, -neg_f, pos_f)


def crt_mod(y_res: np.ndarray, basis: RNSBasis, modulus: int) -> np.ndarray:
    """A centered integer ``X`` (``|X| < q/4``) given by residues → ``X mod modulus``.

    ``modulus`` is a power of two ``<= 2**64`` or an odd number below ``2**31``.  With
    ``y_i = [x_i·(q/p_i)^-1]_{p_i}``, ``X = Σ y_i·q/p_i − v·q`` where ``v = round(Σ y_i/p_i)``; ``|X|/q < 1/4``
    keeps that rounding unambiguous (float error ``~2**-50``).  The sum is then evaluated mod ``modulus``.
    """
    y = mod_mul(y_res, basis.qhat_inv, basis.col)
    qhat, inv, q_mod = basis._crt_consts(modulus)
    v = np.floor((y.astype(np.float64) * inv).sum(axis=-2) + 0.5).astype(np.uint64)
    if modulus & (modulus - 1) == 0:
        acc = (y * qhat).sum(axis=-2, dtype=np.uint64) - v * np.uint64(q_mod)
        return acc & np.uint64(modulus - 1) if modulus < 1 << 64 else acc
    if modulus >= 1 << 31:
        raise ParameterError("odd moduli must be below 2**31")
    mm = np.uint64(modulus)
    acc = (y % mm * qhat % mm).sum(axis=-2, dtype=np.uint64) % mm
    sub = v * np.uint64(q_mod) % mm
    return (acc + mm - sub) % mm
