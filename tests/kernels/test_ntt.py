"""The compiled NTT kernel (through aiompc.crypto.he.ntt) bit for bit against the numpy reference."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from ntt_reference import NTT as ReferenceNTT

from aiompc.crypto.he import cheetah_params
from aiompc.crypto.he.ntt import NTT
from aiompc.crypto.he.primes import MAX_PRIME_BITS, ntt_primes_above, ntt_primes_below
from aiompc.errors import InputError


def _primes(n: int, count: int, bits: int) -> tuple[int, ...]:
    return tuple(p for _, p in zip(range(count), ntt_primes_below(n, 1 << bits)))


def _random(primes: tuple[int, ...], batch: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, p, batch + (n,)) for p in primes], axis=-2).astype(np.uint64)


def _edges(primes: tuple[int, ...], n: int) -> np.ndarray:
    """Zeros, all p-1, alternating 0/p-1, a single 1, a single p-1 at the last coefficient: shape (5, k, n)."""
    col = np.array(primes, dtype=np.uint64)[:, None]
    k = len(primes)
    z = np.zeros((k, n), dtype=np.uint64)
    top = np.broadcast_to(col - np.uint64(1), (k, n)).copy()
    alt = top.copy()
    alt[:, ::2] = 0
    one = z.copy()
    one[:, 0] = 1
    last = z.copy()
    last[:, -1] = (col - np.uint64(1))[:, 0]
    return np.stack([z, top, alt, one, last])


# every ring degree the parameter table allows, prime counts 1..5 (Cheetah's set has 4, the auxiliary
# decryption basis 3), prime sizes from small to the largest allowed (just below 2**30)
CASES = [
    (n, count, bits)
    for n in (1024, 2048, 4096, 8192, 16384, 32768)
    for count, bits in ((1, 30), (2, 27), (3, 30), (4, 20), (5, 30))
    if not (n >= 16384 and count > 3)
]


@pytest.mark.parametrize("n,count,bits", CASES)
def test_forward_and_inverse_match_reference(n: int, count: int, bits: int) -> None:
    primes = _primes(n, count, bits)
    ours, ref = NTT(n, primes), ReferenceNTT(n, primes)
    a = np.concatenate([_random(primes, (3 if n <= 4096 else 1,), n, seed=n + count), _edges(primes, n)])
    fa = ours.forward(a)
    assert fa.dtype == np.uint64 and fa.shape == a.shape
    assert np.array_equal(fa, ref.forward(a))
    assert np.array_equal(ours.inverse(a), ref.inverse(a))  # inverse on arbitrary reduced inputs too
    assert np.array_equal(ours.inverse(fa), a)


def test_cheetah_set_and_largest_primes() -> None:
    params = cheetah_params()
    n = params.n
    top = tuple(p for _, p in zip(range(2), ntt_primes_below(n, 1 << MAX_PRIME_BITS)))
    low = tuple(p for _, p in zip(range(2), ntt_primes_above(n, 1 << 14)))
    for primes in (params.primes, params.aux_primes, top, low):
        a = np.concatenate([_random(primes, (4,), n, seed=len(primes)), _edges(primes, n)])
        ours, ref = NTT(n, primes), ReferenceNTT(n, primes)
        assert np.array_equal(ours.forward(a), ref.forward(a))
        assert np.array_equal(ours.inverse(ours.forward(a)), a)


def test_leading_shapes_dtypes_and_input_untouched() -> None:
    n, primes = 2048, _primes(2048, 2, 29)
    ntt, ref = NTT(n, primes), ReferenceNTT(n, primes)
    a = _random(primes, (2, 3), n, seed=5)
    before = a.copy()
    got = ntt.forward(a)
    assert np.array_equal(a, before)
    assert got.shape == a.shape and np.array_equal(got, ref.forward(a))
    assert np.array_equal(ntt.forward(a[0, 1]), got[0, 1])  # (k, n) alone
    assert np.array_equal(ntt.forward(a.astype(np.int64)), got)  # any integer dtype
    assert np.array_equal(ntt.forward(np.asfortranarray(a[0])), got[0])  # non-contiguous input


def test_unreduced_or_bad_inputs_raise() -> None:
    n, primes = 1024, _primes(1024, 2, 28)
    ntt = NTT(n, primes)
    a = _random(primes, (2,), n, seed=1)
    bad = a.copy()
    bad[1, 1, 17] = primes[1]  # = p: not a residue
    with pytest.raises(InputError):
        ntt.forward(bad)
    with pytest.raises(InputError):
        ntt.inverse(bad)
    neg = a.astype(np.int64)
    neg[0, 0, 3] = -1
    with pytest.raises(InputError):
        ntt.forward(neg)
    with pytest.raises(InputError):
        ntt.forward(a[:, :1])
    with pytest.raises(InputError):
        ntt.forward(a.astype(np.float64))


def test_threads_give_the_same_results() -> None:
    n, primes = 4096, _primes(4096, 3, 27)
    ntt = NTT(n, primes)
    inputs = [_random(primes, (4,), n, seed=s) for s in range(6)]
    want = [ntt.forward(x) for x in inputs]
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(ntt.forward, inputs * 2))
        back = list(pool.map(ntt.inverse, got))
    assert all(np.array_equal(g, w) for g, w in zip(got, want * 2))
    assert all(np.array_equal(b, x) for b, x in zip(back, inputs * 2))
