"""Where HE parameter sets are made: every :class:`HEParams` the protocols use comes from here.

* :func:`cheetah_params` — Cheetah's published set (``N = 4096``, ``log2 q ≈ 109``) at any ``t = 2**l``;
* :func:`params_for_modulus` — balanced NTT primes for a required ``log2 q`` at a given ``N``;
* :func:`find_params` — the smallest secure set that decrypts a given server pipeline;
* :meth:`HEParams.with_plain_bits` — the same set at another plaintext width.

Every set is validated by :class:`HEParams` itself (the 128-bit table, the error width, the primes) and
the last two are proven decryptable by :func:`~aiompc.crypto.he.noise.plan_output`.
"""

from __future__ import annotations

from aiompc.errors import UndecryptableParameters

from .noise import ServerPipeline, choose_primes, min_modulus_bits, plan_output
from .params import CHEETAH_PLAIN_BITS, CHEETAH_RING_DEGREE, MAX_N, MIN_N, SECURITY_TABLE, HEParams
from .primes import ntt_primes_below

__all__ = ["cheetah_params", "params_for_modulus", "find_params"]


def cheetah_params(l: int = CHEETAH_PLAIN_BITS) -> HEParams:
    """The Cheetah baseline: ``N = 4096``, ``log2 q ≈ 109``, ``t = 2**l``.

    Cheetah (via SEAL) uses two primes of 60 and 49 bits.  Here the same modulus size is realised by
    four NTT primes of ≈27.25 bits (the largest four ``≡ 1 mod 8192`` below ``2**(109/4)``, so
    ``q < 2**109``): the ciphertext modulus, the noise budget and every wire size depend on
    ``log2 q`` only, not on how ``q`` splits into primes, while 27-bit primes keep all products
    inside 64-bit integers.
    """
    n = CHEETAH_RING_DEGREE
    bound = int(2 ** (SECURITY_TABLE[n] / 4))
    primes = tuple(p for _, p in zip(range(4), ntt_primes_below(n, bound)))
    return HEParams(n, primes, l)


def params_for_modulus(n: int, need_bits: float, plain_bits: int, *, unit_rho: bool = True) -> HEParams:
    """Balanced primes at ring degree ``n`` with ``log2 q >= need_bits`` (within the 128-bit budget), and
    ``q ≡ 1 (mod 2**plain_bits)`` where possible when ``unit_rho`` (REFERENCE.md: then ``ρ = 1`` and the
    plaintext-product error term vanishes).  Raises :class:`UndecryptableParameters` if none exists."""
    return HEParams(n, choose_primes(n, need_bits, SECURITY_TABLE[n], plain_bits if unit_rho else None), plain_bits)


def find_params(plain_bits: int, pipeline: ServerPipeline, *, n: int | None = None, margin_bits: float = 2.0,
                prefer_unit_rho: bool = True) -> HEParams:
    """The smallest secure parameters for ``pipeline`` with ``t = 2**plain_bits``: the least ``N`` (or the
    given one) whose 128-bit modulus budget holds :func:`min_modulus_bits`, then the least ``q``
    (balanced primes just above the need).  Raises :class:`UndecryptableParameters` if nothing fits."""
    sizes = [n] if n is not None else [m for m in SECURITY_TABLE if MIN_N <= m <= MAX_N]
    last = ""
    for m in sorted(sizes):
        visible = pipeline.visible or m
        if pipeline.weight_count > m or visible > m:
            last = f"N = {m} is too small for {pipeline.weight_count} weights / {visible} outputs per polynomial"
            continue
        need = min_modulus_bits(m, plain_bits, pipeline, margin_bits)
        if need > SECURITY_TABLE[m]:
            last = f"N = {m} needs log2 q >= {need:.1f} > {SECURITY_TABLE[m]}"
            continue
        params = params_for_modulus(m, need, plain_bits, unit_rho=prefer_unit_rho)
        try:
            plan_output(params, pipeline)  # proves it decryptable end to end
        except UndecryptableParameters as exc:
            last = f"N = {m}: {exc}"
            continue
        return params
    raise UndecryptableParameters(f"no secure parameters for l = {plain_bits} and {pipeline}: {last}")

