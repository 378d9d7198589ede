"""Primes, canonical roots and the negacyclic NTT against naive references."""

from __future__ import annotations

import numpy as np
import pytest
from he_testing import negacyclic_mod_p, small_primes

from aiompc.crypto.he.ntt import NTT, bit_reverse, get_ntt
from aiompc.crypto.he.primes import (
    MAX_PRIME_BITS,
    is_prime,
    ntt_primes_above,
    ntt_primes_below,
    primitive_root_2n,
)


def _trial_division(n: int) -> bool:
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def test_is_prime_matches_trial_division() -> None:
    assert [n for n in range(3000) if is_prime(n)] == [n for n in range(3000) if _trial_division(n)]
    # Carmichael numbers and strong pseudoprimes to small bases
    for c in (561, 1105, 1729, 2465, 3215031751, 3825123056546413051):
        assert not is_prime(c)
    assert is_prime((1 << 61) - 1) and not is_prime((1 << 61) + 1)


@pytest.mark.parametrize("n", [1024, 4096, 32768])
def test_ntt_primes_are_ntt_friendly(n: int) -> None:
    below = small_primes(n, 5)
    assert list(below) == sorted(below, reverse=True)
    above = [p for _, p in zip(range(3), ntt_primes_above(n, 1 << 20))]
    for p in below + tuple(above):
        assert is_prime(p) and (p - 1) % (2 * n) == 0 and p < 1 << MAX_PRIME_BITS
    assert all(p >= 1 << 20 for p in above)
    # nothing skipped: no NTT prime strictly between consecutive results
    lo, hi = below[1], below[0]
    assert not any(is_prime(c) for c in range(lo + 2 * n, hi, 2 * n))


def test_residue_class_filter() -> None:
    n, mod = 1024, 1 << 16
    res = 1 + 5 * 2048
    ps = [p for _, p in zip(range(3), ntt_primes_below(n, 1 << 30, residue=res, modulus=mod))]
    assert all(p % mod == res and is_prime(p) for p in ps)


@pytest.mark.parametrize("n", [4, 1024, 8192])
def test_primitive_root_is_canonical(n: int) -> None:
    p = small_primes(n, 1)[0]
    psi = primitive_root_2n(p, n)
    assert pow(psi, n, p) == p - 1 and pow(psi, 2 * n, p) == 1
    if n <= 1024:  # it is the least of all primitive 2n-th roots
        roots = {pow(psi, 2 * j + 1, p) for j in range(n)}
        assert psi == min(roots)


def test_bit_reverse() -> None:
    rev = bit_reverse(16)
    assert rev.tolist() == [int(f"{i:04b}"[::-1], 2) for i in range(16)]


@pytest.mark.parametrize("n", [8, 64, 1024])
def test_forward_is_evaluation_at_odd_powers(n: int) -> None:
    primes = small_primes(n, 3)
    rng = np.random.default_rng(n)
    a = np.stack([rng.integers(0, p, n) for p in primes]).astype(np.uint64)
    out = get_ntt(n, primes).forward(a)
    rev = bit_reverse(n)
    ks = range(n) if n <= 64 else rng.choice(n, 12, replace=False)
    for i, p in enumerate(primes):
        psi = primitive_root_2n(p, n)
        for k in ks:
            x = pow(psi, 2 * int(rev[k]) + 1, p)
            assert sum(int(c) * pow(x, j, p) for j, c in enumerate(a[i])) % p == int(out[i, k])


@pytest.mark.parametrize("n", [1024, 2048, 4096, 8192, 16384, 32768])
def test_roundtrip_and_convolution(n: int) -> None:
    primes = small_primes(n, 2)
    ntt = get_ntt(n, primes)
    rng = np.random.default_rng(n)
    batch = 3 if n <= 8192 else 1
    a = np.stack([rng.integers(0, p, (batch, n)) for p in primes], axis=1).astype(np.uint64)
    a[0, :, :5] = 0  # edge values
    a[0, 0, 5:10] = primes[0] - 1
    fa = ntt.forward(a)
    assert fa.dtype == np.uint64 and fa.shape == a.shape
    assert (fa < np.array(primes, dtype=np.uint64)[:, None]).all()
    assert np.array_equal(ntt.inverse(fa), a)
    if n <= 4096:  # pointwise product in the NTT domain = negacyclic product
        b = np.zeros((len(primes), n), dtype=np.uint64)
        b[:, rng.choice(n, 40, replace=False)] = rng.integers(0, primes[-1], 40, dtype=np.uint64)
        prod = ntt.inverse(fa[0] * ntt.forward(b) % np.array(primes, dtype=np.uint64)[:, None])
        for i, p in enumerate(primes):
            assert np.array_equal(prod[i], negacyclic_mod_p(a[0, i], b[i], p))


def test_batch_shapes_and_blocks_agree() -> None:
    n = 2048
    primes = small_primes(n, 5)  # more rows than one block holds: exercises prime-chunking
    ntt = NTT(n, primes)
    rng = np.random.default_rng(7)
    a = np.stack([rng.integers(0, p, (2, 3, n)) for p in primes], axis=2).astype(np.uint64)
    before = a.copy()
    whole = ntt.forward(a)
    assert np.array_equal(a, before)  # input untouched
    single = np.stack([ntt.forward(a[i, j][None])[0] for i in range(2) for j in range(3)]).reshape(a.shape)
    assert np.array_equal(whole, single)
    assert np.array_equal(ntt.inverse(whole), a)


def test_threads_share_tables_not_scratch() -> None:
    from concurrent.futures import ThreadPoolExecutor

    n = 4096
    primes = small_primes(n, 2)
    ntt = get_ntt(n, primes)
    rng = np.random.default_rng(3)
    inputs = [np.stack([rng.integers(0, p, (5, n)) for p in primes], axis=1).astype(np.uint64) for _ in range(8)]
    want = [ntt.forward(x) for x in inputs]
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(ntt.forward, inputs * 3))
        back = list(pool.map(ntt.inverse, got))
    assert all(np.array_equal(g, w) for g, w in zip(got, want * 3))
    assert all(np.array_equal(b, x) for b, x in zip(back, inputs * 3))


def test_rejects_bad_shapes_and_primes() -> None:
    ntt = get_ntt(1024, small_primes(1024, 2))
    with pytest.raises(ValueError):
        ntt.forward(np.zeros((3, 1024), dtype=np.uint64))
    with pytest.raises(ValueError):
        NTT(1024, ((1 << 31) - 1,))
