"""Output packing: many result coefficients, spread over many ciphertexts, gathered into few (PackLWEs).

Coefficient-encoded results carry a handful of outputs per ciphertext and cost a whole ``c1`` each.
:func:`pack_coefficients` moves ``K`` chosen coefficients ``(ciphertext index[k], position[k])`` into
``ceil(K/N)`` ciphertexts, coefficient ``k·N/2^ℓ`` of group ``k // N`` (``2^ℓ`` = the group size rounded
up to a power of two), following Chen–Dai–Kim–Song (ACNS 2021):

* a *leaf* is ``X^(−p)·ct``: the wanted value at coefficient 0, everything else garbage (free: a signed
  rotation of the coefficients);
* two nodes ``a, b`` whose wanted values sit at the multiples of ``2^m`` combine into
  ``(a + X^h·b) + σ_g(a − X^h·b)`` with ``h = 2^(m−1)``, ``g = 1 + 2N/2^m``: ``σ_g`` fixes the multiples of
  ``2^m`` and negates the odd multiples of ``2^(m−1)``, so ``a``'s values (doubled) stay at the multiples of
  ``2^m``, ``b``'s (doubled) land in between, and each side's garbage at the other's places cancels.  One
  automorphism and key switch (:mod:`~.galois`) per combination: ``2^ℓ − 1`` per group;
* the ``2^ℓ`` factor cannot be divided out modulo ``t = 2^l``; the leaves are multiplied by
  ``2^(−ℓ) mod q`` first (``q`` odd), so the packed phase at a wanted coefficient equals the leaf's phase
  *exactly* (mod ``q``); only the key-switching noise is added after that scaling (:func:`packing_noise`).

The coefficients in between the wanted ones are garbage and are never sent (only ``c0`` at the packed
positions and ``c1`` travel), so no trace is needed to clean them.

Privacy (the server's weights; the caller's order, as the linear engine uses it):

1. re-randomise every result ciphertext first (``+ (b·u, a·u + e1)``, no flooding, :func:`refresh`): its ``c1``
   becomes a fresh RLWE sample independent of the weights, so the key-switching noise — a function of the
   digits of these ``c1``'s and of the client's key errors — is independent of the weights too;
2. pack; 3. add the output mask and the uniform flooding (:func:`finish_packed`) at the packed positions,
   wide enough to hide the weight-dependent noise that the packing carries over unchanged (the leaves'
   noise, bounded as for an unpacked result, :mod:`~.noise`), over all visible packed coefficients;
4. switch, drop and select as for an unpacked result.

The client's view is a function of the packed ``c1`` and the phase at the packed positions:
``q·M/t + X + U + KS`` with ``X`` the flooded weight-dependent noise, ``U`` uniform and ``KS`` the
key-switching noise — after flooding (statistical, ``2^-40``) and replacing the fresh ``c1``'s by uniform
ones (computational, RLWE with the server's secrets ``u``), nothing depends on the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from aiompc.crypto.prg import PRG
from aiompc.errors import InputError

from aiompc.kernels.keyswitch import butterfly_into
from aiompc.kernels.rerandomize import add_pk_product_into

from .bfv import Ciphertext, encode_plain
from .galois import GaloisKeyRing, GaloisKeys, key_switch_automorphism, monomial_ntt
from .noise import OutputPlan
from .params import FAILURE_BITS, HEParams
from .result import ResultCiphertext, drop_bits, sample_flood, select, switch_modulus
from .keys import PublicKey
from .ntt import get_ntt
from .rns import get_basis, mod_add, mod_mul

Keys = GaloisKeys | GaloisKeyRing

__all__ = [
    "packing_elements",
    "tree_elements",
    "extract_leaves",
    "pack_leaves",
    "pack_coefficients",
    "pack_strided",
    "leaf_offsets",
    "packed_positions",
    "packing_groups",
    "packing_noise",
    "key_switches",
    "finish_packed",
    "refresh",
    "LEAF_CHUNK",
]

#: Leaves combined bottom-up in one batch (bounds memory: ``2·LEAF_CHUNK·L·N`` words).
LEAF_CHUNK = 64


def packing_elements(n: int) -> tuple[int, ...]:
    """The Galois elements ``g_m = 1 + 2N/2^m`` (``m = 1..log2 N``) that packing into ``N`` slots uses."""
    logn = n.bit_length() - 1
    return tuple(1 + (2 * n >> m) for m in range(1, logn + 1))


def tree_elements(n: int, count: int, stride_bits: int | None = None) -> tuple[int, ...]:
    """The Galois elements a tree of ``count`` leaves at stride ``2^stride_bits`` uses: ``g_m`` for the
    ``ℓ`` levels ``m = stride_bits, ..., stride_bits − ℓ + 1`` (the keys a layer needs)."""
    m0 = n.bit_length() - 1 if stride_bits is None else stride_bits
    depth = (count - 1).bit_length()
    return tuple(1 + (2 * n >> m) for m in range(m0, m0 - depth, -1))


def packing_groups(n: int, count: int) -> list[tuple[int, int]]:
    """``(k0, k1)`` ranges of leaves packed into one ciphertext each (at most ``N`` per group)."""
    return [(k0, min(k0 + n, count)) for k0 in range(0, count, n)]


def leaf_offsets(n: int, count: int, stride_bits: int) -> np.ndarray:
    """Where leaf ``k`` of ``count`` packed at stride ``2^stride_bits`` lands: ``c + k·2^(stride_bits − ℓ)``."""
    if not 1 <= count <= 1 << stride_bits or (1 << stride_bits) > n:
        raise InputError(f"1..2^{stride_bits} leaves of stride 2^{stride_bits} fit N = {n}, got {count}")
    depth = (count - 1).bit_length()
    return np.arange(count, dtype=np.int64) << (stride_bits - depth)


def pack_strided(ct: Ciphertext, keys: Keys, index: np.ndarray, stride_bits: int) -> Ciphertext:
    """Pack whole ciphertexts ``ct[index[k]]`` whose wanted values all sit at multiples of ``2^stride_bits``
    into one (``len(index) <= 2^stride_bits``): value at ``c`` of leaf ``k`` ends at
    ``c + leaf_offsets(...)[k]``.  Cost: ``2^ℓ − 1`` key switches for up to ``N`` outputs."""
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    if index.size == 0 or index.min() < 0 or index.max() >= ct.batch:
        raise InputError(f"leaf indices must lie in 0..{ct.batch - 1}")
    data = ct.to_ntt().data

    def leaf(ids: np.ndarray) -> np.ndarray:
        return data[:, index[ids]]

    return pack_leaves(leaf, index.size, ct.params, keys, stride_bits)


def packed_positions(n: int, count: int) -> np.ndarray:
    """Coefficient of leaf ``k`` (``0 <= k < count <= N``) in its packed ciphertext: ``k·N/2^ℓ``."""
    if not 1 <= count <= n:
        raise InputError(f"a packed ciphertext holds 1..{n} values, got {count}")
    depth = (count - 1).bit_length()
    return np.arange(count, dtype=np.int64) * (n >> depth)


def key_switches(n: int, count: int) -> int:
    """Key switches to pack ``count`` leaves (groups of ``N``): ``2^ℓ − 1`` per group (server compute)."""
    return sum((1 << (k1 - k0 - 1).bit_length()) - 1 for k0, k1 in packing_groups(n, count))


# --------------------------------------------------------------------------- polynomial helpers


def extract_leaves(ct: Ciphertext, index: np.ndarray, positions: np.ndarray) -> Ciphertext:
    """Leaves ``X^(−positions[k])·ct[index[k]]`` (NTT form, batch ``K``): the value at coefficient 0.

    In the evaluation domain a monomial factor is a pointwise product with ``NTT(X^(−p))``."""
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    n = ct.params.n
    if index.shape != positions.shape:
        raise InputError("index and positions must have the same length")
    if index.size and (index.min() < 0 or index.max() >= ct.batch or positions.min() < 0 or positions.max() >= n):
        raise InputError(f"leaf index outside 0..{ct.batch - 1} or position outside 0..{n - 1}")
    data = ct.to_ntt().data[:, index]  # (2, K, L, N)
    if not positions.any():
        return Ciphertext(ct.params, np.ascontiguousarray(data), True)
    mono = monomial_ntt(ct.params, -positions)  # (K, L, N)
    return Ciphertext(ct.params, mod_mul(data, mono[None], ct.basis.col), True)


def _scale(x: np.ndarray, factor: int, primes: tuple[int, ...], col: np.ndarray) -> np.ndarray:
    """``factor · x`` mod each prime."""
    f = np.array([factor % p for p in primes], dtype=np.uint64).reshape(-1, 1)
    return mod_mul(x, f, col)


def _combine(a: np.ndarray, b: np.ndarray | None, m: int, params: HEParams, keys: Keys) -> np.ndarray:
    """One tree level on NTT-form batches: ``(a + X^h b) + σ_g(a − X^h b)`` (``b = None``: zero), ``(2, B, L, N)``.

    The butterfly is one compiled pass (:func:`~aiompc.kernels.keyswitch.butterfly_into`); the sum with
    ``a + X^h b`` is fused into the key switch's last pass."""
    n = params.n
    h, g = 1 << (m - 1), 1 + (2 * n >> m)
    if b is None:
        x = y = np.ascontiguousarray(a)
    else:
        a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
        x, y = np.empty_like(a), np.empty_like(a)
        butterfly_into(a, b, monomial_ntt(params, np.array([h]))[0], _col(params).reshape(-1), x, y)
    return key_switch_automorphism(Ciphertext(params, y, True), g, keys, add=x).data


def _col(params: HEParams) -> np.ndarray:
    return get_basis(params.primes).col


def pack_leaves(leaf: Callable[[np.ndarray], np.ndarray], count: int, params: HEParams, keys: Keys,
                stride_bits: int | None = None) -> Ciphertext:
    """Pack ``count`` (``<= 2^stride_bits``) leaves into one ciphertext: the value of leaf ``k`` at coefficient
    ``c`` (a multiple of ``2^stride_bits``) ends at ``c + k·2^(stride_bits − ℓ)`` (:func:`leaf_offsets`).

    ``leaf(ids)`` returns the NTT-form data ``(2, len(ids), L, N)`` of the leaves ``ids``, whose
    wanted values sit at the multiples of ``2^stride_bits`` (default ``log2 N``: coefficient 0 only), *not yet
    scaled*; this function scales by ``2^(−ℓ) mod q``.  Leaves are produced and combined in batches of
    :data:`LEAF_CHUNK` (depth-first over the tree), so memory stays bounded.  Cost: ``2^ℓ − 1``
    automorphisms with key switching.
    """
    n = params.n
    logn = n.bit_length() - 1
    m0 = logn if stride_bits is None else stride_bits
    if not 0 <= m0 <= logn or not 1 <= count <= 1 << m0:
        raise InputError(f"a packed ciphertext holds 1..2^{m0} leaves of stride 2^{m0} (m0 <= {logn}), got {count}")
    depth = (count - 1).bit_length()
    col = _col(params)
    inv = pow(1 << depth, -1, params.q)
    ids = np.arange(1 << depth, dtype=np.int64)

    def bottom_up(sub: np.ndarray) -> np.ndarray | None:
        real = sub[sub < count]
        if real.size == 0:
            return None
        cur = np.zeros((2, sub.size, params.levels, n), dtype=np.uint64)
        cur[:, : real.size] = _scale(leaf(real), inv, params.primes, col)  # real ids come first in sub
        step = 0
        while cur.shape[1] > 1:
            half = cur.shape[1] // 2
            a, b = cur[:, :half], cur[:, half:]
            cur = _combine(a, b, m0 - step, params, keys)
            step += 1
        return cur

    def rec(sub: np.ndarray) -> np.ndarray | None:
        """Pack leaves ``sub`` (a strided subset of ``2^r`` ids, natural order)."""
        if sub.size <= LEAF_CHUNK:
            return bottom_up(sub)
        a = rec(sub[0::2])
        b = rec(sub[1::2])
        if a is None:
            return None
        sub_depth = sub.size.bit_length() - 1  # levels below this combination
        return _combine(a, b, m0 - sub_depth + 1, params, keys)

    out = rec(ids)
    assert out is not None
    return Ciphertext(params, np.ascontiguousarray(out), True)


def pack_coefficients(ct: Ciphertext, keys: Keys, index: np.ndarray, positions: np.ndarray) -> Ciphertext:
    """Pack coefficient ``positions[k]`` of ciphertext ``index[k]`` (``K`` of them) into ``ceil(K/N)``
    ciphertexts: value ``k`` at coefficient ``packed_positions(N, size of its group)[k − k0]`` of group
    ``k // N``.  Exact on the phase (mod ``q``) up to the key-switching noise of :func:`packing_noise`.
    ``ct`` must be at the top level; returns NTT form."""
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    params = ct.params
    if index.size == 0:
        raise InputError("nothing to pack")
    ct = ct.to_ntt()
    out = []
    for k0, k1 in packing_groups(params.n, index.size):

        def leaf(ids: np.ndarray, k0: int = k0) -> np.ndarray:
            return extract_leaves(ct, index[k0 + ids], positions[k0 + ids]).data

        out.append(pack_leaves(leaf, k1 - k0, params, keys).data)
    return Ciphertext(params, np.concatenate(out, axis=1), True)


def packing_noise(params: HEParams, count: int, fail_bits: int = FAILURE_BITS) -> float:
    """Bound on the key-switching noise at a packed coefficient (``count`` leaves in one ciphertext).

    A combination at tree level ``j`` (``j = 1`` at the leaves, ``2^(ℓ−j)`` of them) adds
    ``E = Σ_i d_i·e_i`` (``L`` digits, ``|d_i| <= p_i/2``, key errors ``|e| <= e_max``); every later level maps
    a node's noise to the sum of ``2`` of its coefficients, so a packed coefficient collects
    ``4^(ℓ−j)`` coefficients of level-``j`` noise, ``N·L`` products each, in which one digit coefficient can
    repeat ``2^(ℓ−j)`` times.  Conditioned on the key errors, with the digits of the (re-randomised,
    pseudo-uniform) ``c1``'s independent and centred — the heuristic :mod:`~.noise` also uses for
    rounding residues — Hoeffding gives the proxy ``N·L·(p/2·e_max)²·Σ_j 8^(ℓ−j)``; the tail factor makes
    one coefficient exceed it with probability at most ``2^-(fail_bits+2)/N``.
    """
    depth = (count - 1).bit_length()
    if depth == 0:
        return 0.0
    n, levels = params.n, params.levels
    p_half = max(params.primes) / 2
    e_max = params.error_bound
    proxy = n * levels * (p_half * e_max) ** 2 * sum(8.0 ** (depth - j) for j in range(1, depth + 1))
    z = math.sqrt(2 * ((fail_bits + 2) * math.log(2) + math.log(2 * n)))
    return z * math.sqrt(proxy)


def refresh(ct: Ciphertext, pk: PublicKey, prg: PRG) -> Ciphertext:
    """Server, before packing: ``ct + (b·u, a·u + e1)`` in NTT form — fresh ``c1``'s, no flooding (the flooding
    comes after packing, :func:`finish_packed`).

    ``c1 + a·u + e1`` is an RLWE sample with the server's secret ``u`` (uniform ternary) and fresh error ``e1``:
    computationally uniform whatever ``c1`` was, which is all the key switching needs (its noise is a function
    of the digits of ``c1`` and of the key errors).  ``c0`` gets ``b·u`` so that the phase only gains
    ``e_pk·u + e1·s``; no ``e0`` is added, because the phase is flooded after packing anyway (the flood hides any
    noise below its bound, and :mod:`~.noise` counts ``e0``'s share of the re-randomisation noise as if it were
    there, an over-estimate).  Cost: ``2·B·L`` forward NTTs (of ``u`` and ``e1``, one fused pass each) and
    one compiled pass adding ``pk·u``."""
    params, basis = ct.params, ct.basis
    ntt = get_ntt(params.n, basis.primes)
    shape = (ct.batch, params.n)
    hat = ntt.forward_signed(np.stack([prg.ternary(shape), prg.gaussian(params.sigma, shape)]))  # (2, B, L, N)
    data = np.array(ct.to_ntt().data, dtype=np.uint64, order="C", copy=True)
    add_pk_product_into(data, pk.ntt_pair(ct.level), hat[0], np.ascontiguousarray(basis.col.reshape(-1)))
    data[1] = mod_add(data[1], hat[1], basis.col)
    return Ciphertext(params, data, True)


def finish_packed(ct: Ciphertext, mask: np.ndarray, plan: OutputPlan, prg: PRG, positions: np.ndarray) -> ResultCiphertext:
    """Server: add the plaintext ``mask`` (``(B, N)`` mod ``t``), uniform flooding of ``plan.flood_bits`` bits on
    ``c0``, switch to ``plan.modulus``, drop ``plan.drop0/drop1`` bits, keep ``c0`` at ``positions``.

    ``ct`` must already carry fresh ``c1``'s (re-randomised before packing, see the module docstring)."""
    params, basis = ct.params, ct.basis
    ct = ct.to_coeff()
    data = ct.data.copy()
    data[0] = mod_add(data[0], encode_plain(params, mask, ct.level), basis.col)
    if plan.flood_bits:
        data[0] = mod_add(data[0], sample_flood(prg, plan.flood_bits, (ct.batch, params.n), basis, plan.flood_terms),
                          basis.col)
    res = switch_modulus(Ciphertext(params, data, False), plan.modulus)
    return select(drop_bits(res, plan.drop0, plan.drop1), positions)
