"""Weight plaintexts in NTT form, fast for the sparse polynomials of coefficient-encoded layers.

Every weight polynomial of a layout has its non-zero coefficients inside one public exponent set ``E``
(the same for all polynomials of the layer: ``C_w * kh * kw * out_pack`` exponents for a conv, ``d1 * d2``
for a matrix product).  The NTT is linear and ``NTT(X^e)[k] = w_k^e`` with ``w_k = NTT(X)[k]``, so

    ``NTT(w) = sum_{e in E} w_e * NTT(X^e)``  =  ``values (B x |E|)  @  monomials (|E| x N)``   (mod p),

one matrix product per prime instead of ``B`` NTTs.  The product is done exactly in float64: the centered
weights are split into signed limbs small enough that every partial sum stays below ``2^53``; with one limb
(the usual case) products, reduction and conversion are one compiled pass
(:func:`aiompc.kernels.monomial.monomial_combine_into`), with several BLAS products and numpy reductions.
:func:`weight_plaintexts` picks this path or the HE core's per-polynomial NTT (:meth:`PlainNTT.encode_sparse`) by a
cost estimate; both give identical :class:`~aiompc.crypto.he.PlainNTT` objects.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from aiompc.errors import InputError
from aiompc.crypto.he import HEParams, PlainNTT, get_ntt
from aiompc.kernels.monomial import monomial_combine_into

__all__ = ["monomial_ntt", "sparse_plain_ntt", "weight_plaintexts"]

_FLOAT_BITS = 53
# Cost rule, seconds per output coefficient per prime (measured CPU time of both paths on ResNet layers,
# Cheetah's parameters, on the loaded 2-core development machine; benchmarks/kernels.py): the compiled NTT
# path ≈ 0.45 ns per butterfly level plus ≈ 4 ns of scatter / copies / first-touch of the output; the
# matrix path's elementwise reduction ≈ 12 ns on top of its float64 products when it needs several limbs
# (numpy passes), ≈ 3 ns with one limb (the compiled pass of aiompc.kernels.monomial, which also does the
# products at ≈ 0.13 ns per exponent; measured 2026-12-05 on ResNet-50 layers: E = 16 → 3.1 ns per element
# against 5.3 ns for the NTT path, E = 64 → 9.7 ns against 5.3).
_NTT_LEVEL_SECONDS = 0.45e-9
_NTT_FIXED_SECONDS = 4e-9
_MAT_ELEMENT_SECONDS = 12e-9
_MAT_FUSED_SECONDS = 3e-9
_FLOPS = 1.5e10  # float64 matmul throughput assumed for the cost rule


def _mulmod(a: np.ndarray, b: np.ndarray, p: int) -> np.ndarray:
    return a * b % np.uint64(p)  # residues < 2**30: the product fits in uint64


@functools.lru_cache(maxsize=8)
def _power_tables(params: HEParams) -> tuple[np.ndarray, np.ndarray, int]:
    """Per prime, ``lo[i] = w^i`` for ``i < s`` and ``hi[j] = w^(s j)`` for ``j < N / s`` (``s = sqrt(N)``)."""
    n, primes = params.n, params.primes
    x = np.zeros((len(primes), n), dtype=np.uint64)
    x[:, 1] = 1
    w = get_ntt(n, primes).forward(x)  # (L, N): w_k = NTT(X)[k]
    s = 1 << ((n.bit_length() - 1 + 1) // 2)
    lo = np.empty((len(primes), s, n), dtype=np.uint64)
    hi = np.empty((len(primes), n // s, n), dtype=np.uint64)
    for i, p in enumerate(primes):
        lo[i, 0] = 1
        for k in range(1, s):
            lo[i, k] = _mulmod(lo[i, k - 1], w[i], p)
        ws = _mulmod(lo[i, s - 1], w[i], p)
        hi[i, 0] = 1
        for k in range(1, n // s):
            hi[i, k] = _mulmod(hi[i, k - 1], ws, p)
    lo.setflags(write=False)
    hi.setflags(write=False)
    return lo, hi, s


def monomial_ntt(params: HEParams, exps: np.ndarray) -> np.ndarray:
    """``NTT(X^e)`` for each exponent ``e`` in ``[0, N)``: ``uint64`` of shape ``(L, len(exps), N)``."""
    lo, hi, s = _power_tables(params)
    e = np.asarray(exps, dtype=np.int64).reshape(-1)
    out = np.empty((len(params.primes), e.size, params.n), dtype=np.uint64)
    for i, p in enumerate(params.primes):
        out[i] = _mulmod(hi[i, e // s], lo[i, e % s], p)
    return out


def centered(params: HEParams, w: np.ndarray) -> np.ndarray:
    """Weights mod ``t`` lifted to ``(-t/2, t/2]`` as ``int64``."""
    t = params.t
    u = np.asarray(w).astype(np.uint64) & np.uint64(t - 1)
    return u.astype(np.int64) - np.where(u > np.uint64(t // 2), np.int64(t), np.int64(0))


def sparse_plain_ntt(params: HEParams, values: np.ndarray, exps: np.ndarray) -> PlainNTT:
    """The :class:`PlainNTT` of polynomials ``sum_e values[..., e] X^exps[e]`` (exponents distinct, in ``[0, N)``).

    ``values``: integers mod ``t`` of shape ``(*batch, |E|)``.  Cost per prime: ``limbs`` float64 matrix
    products ``(B x |E|) @ (|E| x N)``; exact (every partial sum below ``2^53``).
    """
    c = centered(params, values)
    batch = c.shape[:-1]
    e_count = c.shape[-1]
    flat = c.reshape(-1, e_count)
    mono = np.ascontiguousarray(monomial_ntt(params, exps), dtype=np.float64)  # (L, E, N), entries < 2**30
    prime_bits = max(p.bit_length() for p in params.primes)
    limb_bits = _FLOAT_BITS - 1 - prime_bits - max(1, math.ceil(math.log2(e_count + 1)))
    if limb_bits < 1:
        raise InputError(f"{e_count} exponents are too many for exact float64 products; use PlainNTT.encode")
    norm = int(np.abs(flat).max()) if flat.size else 0
    count = int(np.count_nonzero(flat, axis=-1).max()) if flat.size else 0
    # signed limbs: flat = sum_i limb_i * 2^(i * limb_bits), |limb_i| < 2^limb_bits
    limbs: list[np.ndarray] = []
    rest = flat.copy()
    while True:
        low = rest & np.int64((1 << limb_bits) - 1)
        low = low - np.where(low >= (1 << (limb_bits - 1)), np.int64(1 << limb_bits), np.int64(0))
        limbs.append(low.astype(np.float64))
        rest = (rest - low) >> limb_bits
        if not rest.any():
            break
    out = np.empty((flat.shape[0], len(params.primes), params.n), dtype=np.uint32)  # residues < 2**30
    for i, p in enumerate(params.primes):
        if len(limbs) == 1:  # the common case: one compiled pass (sums exact below 2^53, reduced, stored)
            monomial_combine_into(limbs[0], mono[i], float(p), out[:, i])
            continue
        acc = np.zeros((flat.shape[0], params.n), dtype=np.int64)
        for j, limb in enumerate(limbs):
            part = np.rint(limb @ mono[i]).astype(np.int64) % p  # exact: |sum| < 2^53
            acc = (acc + part * (pow(2, j * limb_bits, p))) % p
        out[:, i] = acc.astype(np.uint32)
    data = out.reshape(*batch, len(params.primes), params.n)
    data.setflags(write=False)
    return PlainNTT(params, data, norm, count)


def weight_plaintexts(params: HEParams, values: np.ndarray, exps: np.ndarray, mask: np.ndarray | None = None) -> PlainNTT:
    """NTT-form plaintexts of the weight polynomials ``sum_e values[..., e] X^exps[e]``, by the cheaper path.

    ``values``: ``(*batch, E)`` integers mod ``t``; ``exps``: the ``E`` public exponents (distinct, in
    ``[0, N)``) holding every non-zero coefficient.  ``mask``: optional boolean array of the batch shape;
    polynomials where it is False are structurally zero and are not transformed (their NTT form is zero).
    Output: a :class:`PlainNTT` of batch shape ``values.shape[:-1]``.
    """
    values = np.asarray(values)
    exps = np.asarray(exps, dtype=np.int64).reshape(-1)
    if mask is not None and not np.all(mask):
        part = weight_plaintexts(params, values[mask], exps)
        data = np.zeros((*values.shape[:-1], len(params.primes), params.n), dtype=part.data.dtype)
        data[mask] = part.data
        data.setflags(write=False)
        return PlainNTT(params, data, part.norm, part.count)
    b = int(np.prod(values.shape[:-1], dtype=np.int64))
    levels = len(params.primes)
    elements = b * levels * params.n
    ntt_cost = elements * (_NTT_LEVEL_SECONDS * math.log2(params.n) + _NTT_FIXED_SECONDS)
    free_bits = _FLOAT_BITS - 2 - 30 - math.ceil(math.log2(exps.size + 1))
    limbs = max(1, math.ceil(params.plain_bits / max(1, free_bits)))
    mat_cost = elements * limbs * (2 * exps.size / _FLOPS + (_MAT_FUSED_SECONDS if limbs == 1 else _MAT_ELEMENT_SECONDS))
    if exps.size == 0 or mat_cost >= ntt_cost or free_bits < 1:
        return PlainNTT.encode_sparse(params, values, exps)
    return sparse_plain_ntt(params, values, exps)
