"""The compiled RNS multiply-accumulate against the numpy reference and Python integers."""

from __future__ import annotations

import numpy as np
import pytest
from rns_reference import multiply_accumulate_reference

from aiompc.crypto.he import cheetah_params
from aiompc.crypto.he.primes import MAX_PRIME_BITS, ntt_primes_below
from aiompc.kernels.rns import mac_add_into, mac_into


def _primes(n: int, count: int, bits: int) -> tuple[int, ...]:
    return tuple(p for _, p in zip(range(count), ntt_primes_below(n, 1 << bits)))


def _residues(rng: np.random.Generator, shape: tuple[int, ...], primes: tuple[int, ...]) -> np.ndarray:
    col = np.array(primes, dtype=np.uint64).reshape(-1, 1)
    return rng.integers(0, 1 << 63, shape, dtype=np.uint64) % col


def _mac(x: np.ndarray, w: np.ndarray, primes: tuple[int, ...]) -> np.ndarray:
    out = np.empty((x.shape[0], w.shape[0], x.shape[2], x.shape[3]), dtype=np.uint64)
    mac_into(x, w, np.array(primes, dtype=np.uint64), out)
    return out


@pytest.mark.parametrize(
    "n,primes,n_out,n_in",
    [
        (4096, cheetah_params().primes, 6, 33),  # Cheetah's basis; J not a multiple of 16, O not of 4
        (1024, _primes(1024, 1, 27), 1, 1),
        (2048, _primes(2048, 2, MAX_PRIME_BITS), 9, 16),  # largest primes: the tightest lazy bound
        (8192, _primes(8192, 3, 20), 4, 40),
        (1024, (12289, 18433), 3, 17),  # the smallest NTT primes N >= 1024 allows
        (64, (17, 97, 193), 2, 20),  # tiny primes take the plain-division branch
    ],
)
def test_mac_matches_reference(n: int, primes: tuple[int, ...], n_out: int, n_in: int) -> None:
    rng = np.random.default_rng(n + n_out)
    x = _residues(rng, (2, n_in, len(primes), n), primes)
    w = _residues(rng, (n_out, n_in, len(primes), n), primes)
    assert np.array_equal(_mac(x, w, primes), multiply_accumulate_reference(x, w, primes))
    assert np.array_equal(_mac(x[:1], w, primes), multiply_accumulate_reference(x[:1], w, primes))  # one component


def test_mac_all_maximal_residues_against_python_integers() -> None:
    """Every residue p−1: each lazy block reaches its largest sum (16·(p−1)² + p − 1 < 2**64)."""
    primes = _primes(2048, 2, MAX_PRIME_BITS)
    n, n_in = 2048, 35
    col = np.array(primes, dtype=np.uint64).reshape(-1, 1)
    x = np.broadcast_to(col - np.uint64(1), (2, n_in, 2, n)).copy()
    w = np.broadcast_to(col - np.uint64(1), (3, n_in, 2, n)).copy()
    w[1] = 0
    got = _mac(x, w, primes)
    for li, p in enumerate(primes):
        assert (got[:, 0, li] == (n_in * (p - 1) ** 2) % p).all()
        assert (got[:, 1, li] == 0).all()


def test_mac_strided_weights() -> None:
    primes = cheetah_params().primes
    rng = np.random.default_rng(3)
    x = _residues(rng, (2, 5, 4, 4096), primes)
    whole = _residues(rng, (3, 9, 4, 4096), primes)
    w = whole[:, 2:7]  # a chunk of a whole weight tensor, not contiguous
    assert not w.flags.c_contiguous
    assert np.array_equal(_mac(x, w, primes), multiply_accumulate_reference(x, np.ascontiguousarray(w), primes))


@pytest.mark.parametrize("primes", [cheetah_params().primes, _primes(4096, 3, MAX_PRIME_BITS), (12289, 18433), (17, 97)])
def test_elementwise_mod_ufuncs_match_numpy_and_python(primes: tuple[int, ...]) -> None:
    from aiompc.kernels.rns import add_mod, mul_mod, neg_mod, rem, sub_mod

    rng = np.random.default_rng(len(primes))
    col = np.array(primes, dtype=np.uint64).reshape(-1, 1)
    a = _residues(rng, (3, len(primes), 512), primes)
    b = _residues(rng, (3, len(primes), 512), primes)
    a[0, :, :4] = 0  # edges: 0 and p-1 in every combination
    b[0, :, :4] = (col - np.uint64(1)) * np.array([0, 1, 0, 1], dtype=np.uint64)
    a[0, :, 2:4] = col - np.uint64(1)
    assert np.array_equal(add_mod(a, b, col), (a + b) % col)
    assert np.array_equal(sub_mod(a, b, col), (a + col - b) % col)
    assert np.array_equal(neg_mod(a, col), (col - a) % col)
    assert np.array_equal(mul_mod(a, b, col), a * b % col)  # products < 2**60: numpy is exact
    i, j = 1, 0
    assert int(mul_mod(a[i, j, 7], b[i, j, 7], np.uint64(primes[j]))) == int(a[i, j, 7]) * int(b[i, j, 7]) % primes[j]
    assert mul_mod(a[0], b[0, :1], col).shape == a[0].shape  # broadcasting like any ufunc
    words = rng.integers(0, np.iinfo(np.uint64).max, (len(primes), 512), dtype=np.uint64, endpoint=True)
    words[:, :3] = [0, np.iinfo(np.uint64).max, (1 << 63)]
    assert np.array_equal(rem(words, col), words % col)


def _scale_round_pow2_reference(x: np.ndarray, bits: int, basis) -> np.ndarray:
    """scale_round_pow2 as it was in numpy (test reference)."""
    from aiompc.crypto.he.rns import mod_mul

    whole, frac = basis._scale_consts(bits)
    y = mod_mul(x, basis.qhat_inv, basis.col)
    acc = (y * whole).sum(axis=-2, dtype=np.uint64)
    f = (y.astype(np.float64) * frac).sum(axis=-2)
    acc += np.floor(f + 0.5).astype(np.uint64)
    return acc & np.uint64((1 << bits) - 1)


@pytest.mark.parametrize("n, count, bound", [(4096, 4, 1 << 28), (2048, 1, 1 << 30), (8192, 3, 1 << 30), (64, 3, 1 << 14)])
def test_scale_round_pow2_kernel_is_the_numpy_form(n: int, count: int, bound: int) -> None:
    from aiompc.crypto.he.primes import ntt_primes_below
    from aiompc.crypto.he.rns import get_basis, scale_round_pow2

    primes = tuple(p for _, p in zip(range(count), ntt_primes_below(n, bound)))
    basis = get_basis(primes)
    rng = np.random.default_rng(5)
    x = rng.integers(0, 1 << 62, (2, 3, count, n), dtype=np.uint64) % basis.col
    x[0, 0] = 0
    x[0, 1] = basis.col - np.uint64(1)  # X = -1 mod each prime... and mixed below
    x[1, 0, :, ::2] = basis.col - np.uint64(1)
    for bits in (1, 13, 37, 62):
        got = scale_round_pow2(x, bits, basis)
        assert got.shape == (2, 3, n) and np.array_equal(got, _scale_round_pow2_reference(x, bits, basis))
        big = int(basis.q)  # exact check of a few coefficients with Python integers (CRT)
        for r, c in [(0, 0), (0, 1), (1, 0), (1, 2)]:
            for i in (0, 1, n - 1):
                xs = [int(v) for v in x[r, c, :, i]]
                X = sum(v * (big // p) * pow(big // p, -1, p) for v, p in zip(xs, primes)) % big
                exact = (X << bits) / big  # float: compare within the documented slack
                assert abs(((int(got[r, c, i]) - exact + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))) <= 0.5 + 1e-3


@pytest.mark.parametrize(
    "n,primes,n_out,n_in",
    [(4096, cheetah_params().primes, 6, 33), (2048, _primes(2048, 2, MAX_PRIME_BITS), 9, 16), (64, (17, 97, 193), 2, 20)],
)
def test_mac_add_into_accumulates_in_place(n: int, primes: tuple[int, ...], n_out: int, n_in: int) -> None:
    """``mac_add_into`` adds the reduced sum to ``out`` (here a strided row range of a larger accumulator, its
    other rows untouched), starting from residues up to ``p - 1``."""
    rng = np.random.default_rng(n + 7 * n_out)
    x = _residues(rng, (2, n_in, len(primes), n), primes)
    w = _residues(rng, (n_out, n_in, len(primes), n), primes)
    col = np.array(primes, dtype=np.uint64).reshape(-1, 1)
    big = _residues(rng, (2, n_out + 3, len(primes), n), primes)
    big[:, 1] = col - np.uint64(1)  # largest residues: the sum must wrap exactly once
    start = big.copy()
    mac_add_into(x, w, np.array(primes, dtype=np.uint64), big[:, 1 : 1 + n_out])
    want = (start[:, 1 : 1 + n_out] + multiply_accumulate_reference(x, w, primes)) % col
    assert np.array_equal(big[:, 1 : 1 + n_out], want)
    assert np.array_equal(big[:, 0], start[:, 0]) and np.array_equal(big[:, 1 + n_out :], start[:, 1 + n_out :])
