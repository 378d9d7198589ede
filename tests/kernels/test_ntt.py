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


def _signed_samples(seed: int, n: int, primes: tuple[int, ...]) -> np.ndarray:
    """Full-range int64, small values, and the edges (0, ±1, ±p, ±(p−1), ±2**62, int64 min/max): (4, n)."""
    rng = np.random.default_rng(seed)
    full = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, n, dtype=np.int64, endpoint=True)
    small = rng.integers(-(1 << 40), 1 << 40, n, dtype=np.int64)
    tiny = rng.integers(-3, 4, n, dtype=np.int64)
    edge_vals = [0, 1, -1, 1 << 62, -(1 << 62), np.iinfo(np.int64).max, np.iinfo(np.int64).min]
    for p in primes:
        edge_vals += [p, -p, p - 1, 1 - p, p + 1, -p - 1, 3 * p, -3 * p]
    edge = np.resize(np.array(edge_vals, dtype=np.int64), n)
    return np.stack([full, small, tiny, edge])


@pytest.mark.parametrize("primes", [(17, 97, 257), (12289,), None])
def test_reduce_signed_matches_python_modulo(primes: tuple[int, ...] | None) -> None:
    from aiompc.crypto.he.rns import get_basis, reduce_signed

    primes = primes or cheetah_params().primes + _primes(4096, 2, MAX_PRIME_BITS)
    x = _signed_samples(11, 1024, primes)
    got = reduce_signed(x, get_basis(primes))
    assert got.shape == (4, len(primes), 1024) and got.dtype == np.uint64
    want = [[[int(v) % p for v in row] for p in primes] for row in x.tolist()]
    assert got.tolist() == want


@pytest.mark.parametrize("n,count,bits", [(1024, 3, 30), (4096, 4, 27), (8192, 2, 20)])
def test_forward_signed_is_forward_of_the_residues(n: int, count: int, bits: int) -> None:
    primes = _primes(n, count, bits)
    ref = ReferenceNTT(n, primes)
    x = _signed_samples(n, n, primes)
    residues = np.stack([x % np.int64(p) for p in primes], axis=1).astype(np.uint64)
    got = NTT(n, primes).forward_signed(x)
    assert got.shape == (4, count, n)
    assert np.array_equal(got, ref.forward(residues))
    assert np.array_equal(NTT(n, primes).forward_signed(x[2].astype(np.int8)), got[2])  # small dtypes, one row
    with pytest.raises(InputError):
        NTT(n, primes).forward_signed(x[:, :-1])


@pytest.mark.parametrize("bits", [1, 13, 37, 60])
def test_sparse_centered_forward_matches_the_dense_reference(bits: int) -> None:
    n, primes = 2048, _primes(2048, 3, 29)
    rng = np.random.default_rng(bits)
    exps = rng.choice(n, 40, replace=False)
    values = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, (5, 40), dtype=np.int64)
    values[0] = 0  # an all-zero polynomial
    values[1, :3] = [1 << (bits - 1), -(1 << (bits - 1)), (1 << bits) - 1]  # t/2 stays positive; -t/2 -> t/2; t-1 -> -1
    values[2, 5:] = 0  # fewer non-zeros
    t = 1 << bits
    u = values.view(np.uint64) & np.uint64(t - 1)
    lifted = u.astype(np.int64) - np.where(u > np.uint64(t // 2), np.int64(t), np.int64(0))
    dense = np.zeros((5, n), dtype=np.int64)
    dense[:, exps] = lifted
    residues = np.stack([dense % p for p in primes], axis=1).astype(np.uint64)
    data, norm, count = NTT(n, primes).forward_sparse_centered(values, exps, bits)
    assert np.array_equal(data, ReferenceNTT(n, primes).forward(residues))
    assert norm == int(np.abs(lifted).max()) and count == int(np.count_nonzero(lifted, axis=-1).max())
    rep = np.r_[exps[:-1], exps[0]]  # a repeated exponent: the last value wins, as in a dense assignment
    dense_rep = np.zeros((5, n), dtype=np.int64)
    dense_rep[:, rep] = lifted
    got, norm_rep, count_rep = NTT(n, primes).forward_sparse_centered(values, rep, bits)
    assert np.array_equal(got, ReferenceNTT(n, primes).forward(np.stack([dense_rep % p for p in primes], axis=1).astype(np.uint64)))
    assert norm_rep == int(np.abs(dense_rep).max()) and count_rep == int(np.count_nonzero(dense_rep, axis=-1).max())
    with pytest.raises(InputError):
        NTT(n, primes).forward_sparse_centered(values, np.r_[exps[:-1], n], bits)  # out of range
