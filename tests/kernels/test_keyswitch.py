"""The compiled passes of output packing's key switching against plain references (Python integers / numpy
fancy indexing): edge residues (0, p − 1, the centred lift's boundary p // 2 and p // 2 + 1), tiny test primes
(the ``%`` path), a prime set of very unequal sizes (digits wider than the smaller primes), and batches."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.kernels.keyswitch import butterfly_into, digits_into, permute_into, switch_finish_into
from tests.crypto.he.he_testing import small_primes

PRIME_SETS = [small_primes(64, 3, 1 << 14), small_primes(64, 3, 1 << 29), (small_primes(64, 1, 1 << 29)[0], 12289, 7681)]


def _residues(rng: np.random.Generator, shape: tuple[int, ...], primes: tuple[int, ...]) -> np.ndarray:
    """Residues below each prime (axis -2) with 0, p − 1, p // 2 and p // 2 + 1 planted."""
    col = np.array(primes, dtype=np.uint64).reshape(-1, 1)
    x = rng.integers(0, 1 << 62, shape, dtype=np.uint64) % col
    x[..., 0] = 0
    x[..., 1] = col[:, 0] - 1
    x[..., 2] = col[:, 0] // 2
    x[..., 3] = col[:, 0] // 2 + 1
    return x


def test_permute_equals_fancy_indexing(nprng: np.random.Generator) -> None:
    x = nprng.integers(0, 1 << 60, (5, 64), dtype=np.uint64)
    perm = nprng.permutation(64).astype(np.int64)
    out = np.empty_like(x)
    permute_into(x, perm, out)
    assert np.array_equal(out, x[:, perm])


@pytest.mark.parametrize("primes", PRIME_SETS)
def test_digits_are_the_centred_lifts_in_every_prime(primes: tuple[int, ...], nprng: np.random.Generator) -> None:
    n, b, L = 64, 2, len(primes)
    c1 = _residues(nprng, (b, L, n), primes)
    out = np.empty((b, L, L, n), dtype=np.uint64)
    digits_into(c1, np.array(primes, dtype=np.uint64), out)
    for bb in range(b):
        for i, pi in enumerate(primes):
            lift = [int(v) - pi if int(v) > pi // 2 else int(v) for v in c1[bb, i]]
            assert max(abs(d) for d in lift) <= pi // 2
            for j, pj in enumerate(primes):
                assert out[bb, i, j].tolist() == [d % pj for d in lift]


@pytest.mark.parametrize("primes", PRIME_SETS)
def test_butterfly_and_finish_equal_python_integers(primes: tuple[int, ...], nprng: np.random.Generator) -> None:
    n, b, L = 32, 2, len(primes)
    ps = np.array(primes, dtype=np.uint64)
    a, bb, x_add = (_residues(nprng, (2, b, L, n), primes) for _ in range(3))
    mono = _residues(nprng, (L, n), primes)
    x, y = np.empty_like(a), np.empty_like(a)
    butterfly_into(a, bb, mono, ps, x, y)
    u = _residues(nprng, (b, 2, L, n), primes)
    c0 = _residues(nprng, (b, L, n), primes)
    res, plain = np.empty_like(a), np.empty_like(a)
    switch_finish_into(u, c0, x_add, True, ps, res)
    switch_finish_into(u, c0, plain, False, ps, plain)
    for c in range(2):
        for k in range(b):
            for j, p in enumerate(primes):
                s = [int(bv) * int(m) % p for bv, m in zip(bb[c, k, j], mono[j])]
                assert x[c, k, j].tolist() == [(int(av) + sv) % p for av, sv in zip(a[c, k, j], s)]
                assert y[c, k, j].tolist() == [(int(av) - sv) % p for av, sv in zip(a[c, k, j], s)]
                base = [int(v) + (int(w) if c == 0 else 0) for v, w in zip(u[k, c, j], c0[k, j])]
                assert plain[c, k, j].tolist() == [v % p for v in base]
                assert res[c, k, j].tolist() == [(v + int(w)) % p for v, w in zip(base, x_add[c, k, j])]
