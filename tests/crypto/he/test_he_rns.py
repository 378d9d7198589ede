"""RNS arithmetic against exact Python-integer references on random and edge values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from he_testing import small_primes

from aiompc.crypto.he.rns import (
    centered_to_float,
    crt_mod,
    drop_last_prime,
    encode_scaled,
    from_limbs,
    get_basis,
    limbs_less_than,
    reduce_signed,
    scale_round_pow2,
    to_limbs,
)

N = 1024


def _basis(count: int, bits: int = 30):
    return get_basis(small_primes(N, count, 1 << bits))


def _residues(values: list[int], basis) -> np.ndarray:
    return np.array([[v % p for v in values] for p in basis.primes], dtype=np.uint64)


def _random_ints(q: int, count: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    vals = [int.from_bytes(rng.bytes(q.bit_length() // 8 + 8), "little") % q for _ in range(count - 6)]
    return vals + [0, 1, q - 1, q // 2, q // 2 + 1, q - 2]


def _round_div(num: int, den: int) -> int:
    return (2 * num + den) // (2 * den)  # round half up


@pytest.mark.parametrize("count", [1, 2, 4, 9])
def test_limbs_roundtrip_and_compare(count: int) -> None:
    basis = _basis(count)
    vals = _random_ints(basis.q, 64, count)
    limbs = to_limbs(_residues(vals, basis), basis)
    assert limbs.shape == (basis.limbs, len(vals))
    back = [sum(int(limbs[j, i]) << (32 * j) for j in range(basis.limbs)) for i in range(len(vals))]
    assert back == vals
    assert np.array_equal(from_limbs(limbs, basis), _residues(vals, basis))
    assert limbs_less_than(limbs, basis.q_limbs).all()
    over = limbs.copy()
    over[:, 0] = basis.q_limbs  # == q: not less
    assert not limbs_less_than(over, basis.q_limbs)[0]


@pytest.mark.parametrize("count", [1, 3, 6])
def test_centered_to_float(count: int) -> None:
    basis = _basis(count)
    vals = _random_ints(basis.q, 40, 10 + count) + [basis.q - 5, 7]
    got = centered_to_float(_residues(vals, basis), basis)
    want = [v - basis.q if v > basis.q // 2 else v for v in vals]
    assert np.allclose(got, np.array(want, dtype=np.float64), rtol=1e-15, atol=0)
    assert got[-2] == -5.0 and got[-1] == 7.0


@pytest.mark.parametrize("count,bits", [(1, 1), (2, 20), (4, 37), (3, 60), (2, 62)])
def test_scale_round_pow2(count: int, bits: int) -> None:
    basis = _basis(count)
    vals = _random_ints(basis.q, 200, bits)
    got = scale_round_pow2(_residues(vals, basis), bits, basis)
    exact = [(_round_div(v << bits, basis.q)) % (1 << bits) for v in vals]
    # exact up to the documented float slack: a value within 2**-10 of a half-integer may round either way
    for v, g, e in zip(vals, got.tolist(), exact):
        if g != e:
            frac = ((v << bits) % basis.q) / basis.q
            assert abs(frac - 0.5) < 2**-10 and (g - e) % (1 << bits) in (1, (1 << bits) - 1)


@pytest.mark.parametrize("count,l", [(1, 1), (2, 8), (4, 37), (4, 60), (3, 25)])
def test_encode_scaled_is_round_q_m_over_t(count: int, l: int) -> None:
    basis = _basis(count, 28)
    t = 1 << l
    rng = np.random.default_rng(l)
    m = rng.integers(0, t, 300, dtype=np.uint64)
    m[:4] = [0, 1, t - 1, t // 2]
    got = encode_scaled(m, l, basis)
    for i, mi in enumerate(m.tolist()):
        want = _round_div(basis.q * mi, t)
        assert [int(got[j, i]) for j in range(count)] == [want % p for p in basis.primes]


def test_drop_last_prime_rounds() -> None:
    basis = _basis(3)
    vals = _random_ints(basis.q, 100, 3)
    got = drop_last_prime(_residues(vals, basis), basis)
    p = basis.primes[-1]
    rest = get_basis(basis.primes[:-1])
    for i, v in enumerate(vals):
        r = v % p
        rc = r - p if r > p // 2 else r
        want = (v - rc) // p
        assert abs(want - v / p) <= 0.5
        assert [int(got[j, i]) for j in range(2)] == [want % q for q in rest.primes]


@pytest.mark.parametrize("modulus", [1 << 62, 1 << 64, 1 << 5, 1_000_003, (1 << 31) - 1])
def test_crt_mod_centered(modulus: int) -> None:
    basis = get_basis(small_primes(N, 3))
    rng = np.random.default_rng(5)
    bound = basis.q // 4 - 1
    vals = [int(x) for x in rng.integers(-(1 << 62), 1 << 62, 100)] + [bound, -bound, 0, -1]
    got = crt_mod(_residues(vals, basis), basis, modulus)
    assert got.tolist() == [v % modulus for v in vals]


def test_reduce_signed() -> None:
    basis = _basis(2)
    x = np.array([-5, 0, 7, -(1 << 40)], dtype=np.int64)
    got = reduce_signed(x, basis)
    assert got.tolist() == [[int(v) % p for v in x] for p in basis.primes]
    assert math.prod(basis.primes) == basis.q
