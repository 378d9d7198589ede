"""Server-side finishing of a result ciphertext, and its decryption by the client.

Pipeline (:func:`finalize`), applied to the accumulated ciphertext after the server added its mask:

1. **Re-randomise** (:func:`rerandomize`): add ``u·pk + (e0 + U, e1)`` with ``u`` uniform ternary,
   ``e0, e1`` fresh errors and ``U`` uniform in ``[−2^(f−1), 2^(f−1))`` (``f`` = ``flood_bits``), or the
   sum of two such (``flood_terms = 2``).
2. **Switch** the modulus to ``Q`` (:func:`switch_modulus`): ``Q = 2**k`` (``c ↦ round(2**k·c/q)``), or
   the first RNS prime (:func:`switch_level`, dropping primes one by one).
3. **Drop** low bits (:func:`drop_bits`): keep ``⌊c0/2**d0⌋`` and ``⌊c1/2**d1⌋``; the client
   reconstructs ``hi·2**d + 2**(d−1)``, an error of at most ``2**(d−1)`` per coefficient.
4. **Select** the ``c0`` coefficients that hold outputs (:func:`select`); ``c1`` is sent whole.

Why the returned ciphertext reveals nothing about the server's plaintexts beyond the decrypted value
(semi-honest client, who knows ``s``, its own errors and every ``a``):

* The client's view is a deterministic function of ``(C1, φ[S])`` where ``C1`` is the re-randomised
  ``c1`` mod ``q`` and ``φ = C0 + C1·s`` the phase at the exported positions ``S`` (switching, dropping
  and selecting are public functions, so they cannot add information).
* ``φ = q·M/t + X + U`` where ``M`` is the decrypted value and ``X`` collects every weight-dependent
  term (``Σ w·e``, encoding roundings) and the re-randomisation noise (``e_pk·u + e1·s + e0``).
  ``|X| <= B_X`` except with probability ``2**-41`` (:mod:`~.noise`), and ``U`` is uniform on
  ``2**f >= 2**41·|S|·B_X`` integers, so the statistical distance between ``X + U`` and ``U`` over all of
  ``S`` is at most ``|S|·B_X/2**f <= 2**-41``: the phase is ``q·M/t + U`` up to ``2**-40``.  With
  ``flood_terms = 2`` the distance is at most ``sqrt(|S|·(5 + ln(2**f/B_X)/2))·B_X/2**f``
  (:func:`~.noise.flood_distance`), which the planner likewise keeps below ``2**-40`` minus the tail.
* After that step ``u`` and ``e1`` appear only in ``C1 = c1(w) + a_pk·u + e1``, an RLWE sample with
  secret ``u``: computationally uniform (128-bit RLWE, same parameters), whatever ``c1(w)`` was.

So the view is (statistically, then computationally) independent of the weights given ``M``.
The cost is ``f ≈ 41 + log2(|S|·B_X)`` bits of noise, which the parameter choice must absorb; flooding
*before* the switch is what makes it cheap afterwards (it is scaled down by ``Q/q`` with everything else).
The bound is per result ciphertext (each gets fresh ``u, e0, e1, U``).  Over ``R`` results of one
inference (:mod:`aiompc.protocols.linear.stat_sum`) the one-uniform distances and the noise tails
``2**-(fail_bits+2)`` add up, while the two-uniform floods compose through their Hellinger distances, in
quadrature: ``sqrt(Σ d²)``.  The quantized mode therefore plans a two-uniform result at about
``40 + log2(R)/2`` bits, a one-uniform one at ``40 + log2 R`` and ``fail_bits`` at ``40 + log2 R``
(:func:`aiompc.nn.stat_budget.inference_levels`), and checks the composed distance before any layer; the
Cheetah baseline stays at 40 bits per result ciphertext.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, ProtocolError
from aiompc.kernels.rerandomize import add_noise_into, add_pk_product_into

from .bfv import Ciphertext
from .keys import PublicKey, SecretKey
from .noise import OutputPlan
from .ntt import get_ntt
from .params import HEParams

from .rns import (
    RNSBasis,
    crt_mod,
    drop_last_prime,
    from_limbs,
    get_basis,
    mod_add,
    mod_mul,
    mod_sub,
    reduce_signed,
    reduce_unsigned,
    scale_round_pow2,
)
from .serialize import dump_result, kept_bits, load_result

__all__ = [
    "ResultCiphertext",
    "sample_flood",
    "rerandomize",
    "switch_level",
    "switch_modulus",
    "drop_bits",
    "select",
    "finalize",
    "result_phase",
    "decrypt_result",
    "MAX_SWITCH_BITS",
]

MAX_SWITCH_BITS = 62


def _is_pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def _check_modulus(params: HEParams, modulus: int) -> None:
    if _is_pow2(modulus):
        if not 2 <= modulus <= 1 << MAX_SWITCH_BITS:
            raise InputError(
                f"power-of-two modulus must be 2**1..2**{MAX_SWITCH_BITS}, got 2**{modulus.bit_length() - 1}"
            )
    elif modulus != params.primes[0]:
        raise InputError(f"result modulus must be a power of two or the first prime {params.primes[0]}, got {modulus}")


@dataclass(frozen=True, eq=False)
class ResultCiphertext:
    """A batch of result ciphertexts mod ``modulus`` as sent to the client.

    ``c0``: ``(B, n)`` values ``⌊c0/2**drop0⌋`` at coefficient indices ``positions`` (``None`` = all ``N``);
    ``c1``: ``(B, N)`` values ``⌊c1/2**drop1⌋``.  ``modulus`` is ``2**k`` or ``params.primes[0]``.
    Wire size: ``B·(n·bits0 + N·bits1)`` bits plus a small header (:meth:`to_bytes`).
    """

    params: HEParams
    modulus: int
    drop0: int
    drop1: int
    c0: np.ndarray
    c1: np.ndarray
    positions: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_modulus(self.params, self.modulus)
        n = self.params.n
        if self.c1.ndim != 2 or self.c1.shape[1] != n or self.c0.ndim != 2 or self.c0.shape[0] != self.c1.shape[0]:
            raise InputError(f"result components must be (B, n) and (B, {n}), got {self.c0.shape} and {self.c1.shape}")
        width = self.n_coeffs
        if self.c0.shape[1] != width:
            raise InputError(f"c0 has {self.c0.shape[1]} coefficients, positions say {width}")
        for d in (self.drop0, self.drop1):
            if not 0 <= d < self.modulus.bit_length() - 1 + (0 if _is_pow2(self.modulus) else 1):
                raise InputError(f"cannot drop {d} bits of a {self.modulus.bit_length()}-bit modulus")

    @property
    def batch(self) -> int:
        return self.c1.shape[0]

    @property
    def n_coeffs(self) -> int:
        """Number of ``c0`` coefficients carried."""
        return self.params.n if self.positions is None else int(self.positions.shape[0])

    @property
    def bits0(self) -> int:
        """Bits per carried ``c0`` coefficient."""
        return kept_bits(self.modulus, self.drop0)

    @property
    def bits1(self) -> int:
        """Bits per ``c1`` coefficient."""
        return kept_bits(self.modulus, self.drop1)

    @property
    def wire_bits(self) -> int:
        """Payload bits (without header): ``B·(n·bits0 + N·bits1)``."""
        return self.batch * (self.n_coeffs * self.bits0 + self.params.n * self.bits1)

    def to_bytes(self) -> bytes:
        """Bit-packed wire form (positions are not sent: both sides derive them from the layer)."""
        return dump_result(self.params, self.modulus, self.drop0, self.drop1, self.c0, self.c1)

    @classmethod
    def from_bytes(
        cls, params: HEParams, data: bytes | memoryview, positions: np.ndarray | None = None
    ) -> ResultCiphertext:
        """Parse :meth:`to_bytes` output given the agreed ``positions``; raises ``ProtocolError`` if malformed."""
        pos = None if positions is None else np.asarray(positions, dtype=np.int64).reshape(-1)
        fields = load_result(params, data, params.n if pos is None else int(pos.size))
        try:
            return cls(params, *fields, pos)
        except InputError as exc:
            raise ProtocolError(f"malformed result: {exc}") from None


# --------------------------------------------------------------------------- server side


def sample_flood(prg: PRG, bits: int, shape: tuple[int, ...], basis: RNSBasis, terms: int = 1) -> np.ndarray:
    """Residues ``(*shape[:-1], L, N)`` of the sum of ``terms`` independent integers uniform in
    ``[−2**(bits−1), 2**(bits−1))`` (``terms = 2``: a discrete triangle, see :func:`~.noise.flood_distance`).

    Exact: ``bits`` random bits are drawn as 32-bit limbs and reduced mod each prime (any ``bits``).
    """
    if bits < 1:
        raise InputError(f"flooding needs at least one bit, got {bits}")
    if terms < 1:
        raise InputError(f"flooding needs at least one term, got {terms}")
    if terms > 1:
        total = sample_flood(prg, bits, shape, basis)
        for _ in range(terms - 1):
            total = mod_add(total, sample_flood(prg, bits, shape, basis), basis.col)
        return total
    n_limbs = -(-bits // 32)
    limbs = prg.integers(32, (n_limbs, *shape))
    top = bits - 32 * (n_limbs - 1)
    limbs[-1] &= np.uint64((1 << top) - 1)
    offset = np.array([(1 << (bits - 1)) % p for p in basis.primes], dtype=np.uint64).reshape(-1, 1)
    return mod_sub(from_limbs(limbs, basis), offset, basis.col)


def rerandomize(ct: Ciphertext, pk: PublicKey, prg: PRG, flood_bits: int = 0, flood_terms: int = 1) -> Ciphertext:
    """``ct + u·pk + (e0 + U, e1)``: same plaintext, fresh ``c1``; ``U`` flooding of ``flood_bits`` bits (0 = none),
    the sum of ``flood_terms`` uniforms.

    ``u`` uniform ternary, ``e0, e1`` rounded Gaussians, all from ``prg``.  Returns coefficient form.
    Cost: ``B·L`` forward and ``2·B·L`` inverse NTTs.
    """
    params, level, n = ct.params, ct.level, ct.params.n
    basis = ct.basis
    ntt = get_ntt(n, basis.primes)
    shape = (ct.batch, n)
    u = prg.ternary(shape)
    e0 = prg.gaussian(params.sigma, shape)
    e1 = prg.gaussian(params.sigma, shape)
    u_hat = ntt.forward_signed(u)
    primes = basis.col.reshape(-1)
    if ct.ntt_form:  # (c + pk·u) in NTT form, then one inverse transform, in one fresh array
        data = np.array(ct.data, dtype=np.uint64, order="C", copy=True)
        add_pk_product_into(data, pk.ntt_pair(level), u_hat, primes)
        ntt.inverse_inplace(data)
    else:
        z = np.zeros((2, *u_hat.shape), dtype=np.uint64)
        add_pk_product_into(z, pk.ntt_pair(level), u_hat, primes)
        ntt.inverse_inplace(z)
        data = mod_add(ct.data, z, basis.col)
    fused_bits = flood_bits if flood_terms == 1 else 0
    limbs, offset = _flood_limbs(prg, fused_bits, shape, basis)
    add_noise_into(data, e0, e1, limbs, offset, primes)  # += (e0 + U, e1), compiled, in place
    if flood_bits and flood_terms > 1:  # a sum of uniforms (the wide layers of cheetah mode)
        data[0] = mod_add(data[0], sample_flood(prg, flood_bits, shape, basis, flood_terms), basis.col)
    return Ciphertext(params, data, False)


def _flood_limbs(prg: PRG, bits: int, shape: tuple[int, ...], basis: RNSBasis) -> tuple[np.ndarray, np.ndarray]:
    """The 32-bit limbs ``(n_limbs, *shape)`` of ``bits``-bit uniform integers ``X`` (the draw of
    :func:`sample_flood`) and the residues of ``2**(bits−1)``; no limbs for ``bits = 0``."""
    if not bits:
        return np.zeros((0, *shape), dtype=np.uint64), np.zeros(basis.size, dtype=np.uint64)
    n_limbs = -(-bits // 32)
    limbs = prg.integers(32, (n_limbs, *shape))
    limbs[-1] &= np.uint64((1 << (bits - 32 * (n_limbs - 1))) - 1)
    return limbs, np.array([(1 << (bits - 1)) % p for p in basis.primes], dtype=np.uint64)


def switch_level(ct: Ciphertext, level: int) -> Ciphertext:
    """Modulus switch from ``q_L`` down to ``q_level`` (a prefix of the primes): ``c ↦ round(c·q_level/q_L)``.

    Drops primes one at a time (:func:`~.rns.drop_last_prime`); adds at most ``(1 + ‖s‖₁)/2`` (plus
    ``2**-20``) of rounding noise.  Returns coefficient form.
    """
    if not 1 <= level <= ct.level:
        raise InputError(f"target level {level} outside 1..{ct.level}")
    data = ct.to_coeff().data
    primes = ct.params.primes
    for cur in range(ct.level, level, -1):
        data = drop_last_prime(data, get_basis(primes[:cur]))
    return Ciphertext(ct.params, np.ascontiguousarray(data), False)


def switch_modulus(ct: Ciphertext, modulus: int) -> ResultCiphertext:
    """Switch to a single modulus ``Q`` (``2**k``, ``k <= 62``, or ``params.primes[0]``) → :class:`ResultCiphertext`.

    ``Q = 2**k``: ``round(2**k·c/q)`` per coefficient (:func:`~.rns.scale_round_pow2`; the rounding error
    is below ``1/2 + 2**-10``).  ``Q = p_0``: :func:`switch_level` to one prime.  No bits dropped yet.
    """
    _check_modulus(ct.params, modulus)
    if _is_pow2(modulus):
        data = scale_round_pow2(ct.to_coeff().data, modulus.bit_length() - 1, ct.basis)
    else:
        data = switch_level(ct, 1).data[:, :, 0, :]
    return ResultCiphertext(ct.params, modulus, 0, 0, data[0], data[1])


def drop_bits(res: ResultCiphertext, drop0: int, drop1: int) -> ResultCiphertext:
    """Keep ``⌊c/2**d⌋`` of each component (``d`` at least the bits already dropped)."""
    if drop0 < res.drop0 or drop1 < res.drop1:
        raise InputError(f"bits already dropped ({res.drop0}, {res.drop1}) exceed the request ({drop0}, {drop1})")
    c0 = res.c0 >> np.uint64(drop0 - res.drop0)
    c1 = res.c1 >> np.uint64(drop1 - res.drop1)
    return replace(res, drop0=drop0, drop1=drop1, c0=c0, c1=c1)


def select(res: ResultCiphertext, positions: np.ndarray) -> ResultCiphertext:
    """Keep only the ``c0`` coefficients at ``positions`` (distinct indices in ``0..N−1``, in the given order)."""
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    n = res.params.n
    if pos.size and (pos.min() < 0 or pos.max() >= n):
        raise InputError(f"positions must lie in 0..{n - 1}")
    if np.unique(pos).size != pos.size:
        raise InputError("positions must be distinct")
    if res.positions is None:
        index = pos
    else:  # column of each requested position among those kept
        order = np.argsort(res.positions)
        index = order[np.searchsorted(res.positions, pos, sorter=order).clip(0, order.size - 1)]
        if not np.array_equal(res.positions[index], pos):
            raise InputError("positions must be a subset of the positions already kept")
    pos = pos.copy()
    pos.setflags(write=False)
    return replace(res, c0=res.c0[:, index], positions=pos)


def finalize(
    ct: Ciphertext, pk: PublicKey, plan: OutputPlan, prg: PRG, positions: np.ndarray | None = None
) -> ResultCiphertext:
    """Re-randomise (with ``plan.flood_bits`` of flooding), switch to ``plan.modulus``, drop
    ``plan.drop0/drop1`` bits and keep ``c0`` at ``positions`` — the server's last step.

    Get ``plan`` from :func:`~.noise.plan_output` (which proves it decryptable and private for the
    server's computation).  Cost: ``B·L`` forward and ``2·B·L`` inverse NTTs plus linear work.
    """
    res = switch_modulus(rerandomize(ct, pk, prg, plan.flood_bits, plan.flood_terms), plan.modulus)
    res = drop_bits(res, plan.drop0, plan.drop1)
    return res if positions is None else select(res, positions)


# --------------------------------------------------------------------------- client side


def _restore(hi: np.ndarray, drop: int, modulus: int) -> np.ndarray:
    """``hi·2**d + 2**(d−1)`` mod ``modulus`` (the midpoint of the dropped range)."""
    if drop == 0:
        return hi
    v = (hi << np.uint64(drop)) + np.uint64(1 << (drop - 1))
    return v & np.uint64(modulus - 1) if _is_pow2(modulus) else v % np.uint64(modulus)


def result_phase(sk: SecretKey, res: ResultCiphertext) -> np.ndarray:
    """``c0 + c1·s mod Q`` at the carried positions, ``(B, n)`` ``uint64``.

    ``c1·s`` is computed exactly over the integers in an auxiliary 3-prime NTT basis (``> 2**87``, and
    ``|c1·s| < N·Q <= 2**77``) and reduced mod ``Q``.  Cost: ``3·B`` forward and ``3·B`` inverse NTTs.
    """
    params = sk.params
    aux = get_basis(params.aux_primes)
    ntt = get_ntt(params.n, aux.primes)
    c1 = _restore(res.c1, res.drop1, res.modulus)
    prod = ntt.inverse(mod_mul(ntt.forward(reduce_unsigned(c1, aux)), sk.aux_ntt(), aux.col))
    if res.positions is not None:
        prod = prod[..., res.positions]
    c1s = crt_mod(prod, aux, res.modulus)
    c0 = _restore(res.c0, res.drop0, res.modulus)
    s = c0 + c1s
    return s & np.uint64(res.modulus - 1) if _is_pow2(res.modulus) else s % np.uint64(res.modulus)


def decrypt_result(sk: SecretKey, res: ResultCiphertext) -> np.ndarray:
    """The plaintext coefficients at the carried positions, ``(B, n)`` ``uint64`` mod ``t``."""
    phi = result_phase(sk, res)
    l, t = res.params.plain_bits, res.params.t
    if _is_pow2(res.modulus):
        k = res.modulus.bit_length() - 1
        if k <= l:
            raise InputError(f"a result mod 2**{k} cannot carry a plaintext mod 2**{l}")
        return ((phi + np.uint64(1 << (k - l - 1))) >> np.uint64(k - l)) & np.uint64(t - 1)
    q1 = res.modulus
    if t >= q1:
        raise InputError(f"a result mod {q1} cannot carry a plaintext mod 2**{l}")
    return ((phi * np.uint64(t) + np.uint64(q1 // 2)) // np.uint64(q1)) & np.uint64(t - 1)
