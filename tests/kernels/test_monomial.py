"""The compiled monomial combination against Python integers (exact modular sums)."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.crypto.he.primes import ntt_primes_below
from aiompc.kernels.monomial import monomial_combine_into


def _reference(c: np.ndarray, mono: np.ndarray, p: int) -> np.ndarray:
    ci = c.astype(np.int64).astype(object)
    mi = mono.astype(np.int64).astype(object)
    return np.array((ci @ mi) % p, dtype=np.uint32)


@pytest.mark.parametrize("b,e,n,bits", [(5, 1, 64, 30), (7, 16, 256, 30), (3, 64, 128, 20), (1, 3, 16, 14), (0, 4, 32, 30)])
def test_matches_exact_reference(b: int, e: int, n: int, bits: int) -> None:
    p = next(iter(ntt_primes_below(n, 1 << bits)))
    rng = np.random.default_rng(b * 1000 + e)
    limb = 53 - 1 - bits - int(np.ceil(np.log2(e + 1)))  # the caller's exactness rule
    c = rng.integers(-(1 << (limb - 1)), 1 << (limb - 1), (b, e)).astype(np.float64)
    c[rng.random((b, e)) < 0.3] = 0.0  # zero coefficients are skipped
    mono = rng.integers(0, p, (e, n)).astype(np.float64)
    out = np.empty((b, n), dtype=np.uint32)
    monomial_combine_into(c, mono, float(p), out)
    assert np.array_equal(out, _reference(c, mono, p))


def test_extremes_and_strided_output() -> None:
    """Every coefficient at its largest magnitude, both signs, all residues p - 1; the output is one prime of a
    (B, L, N) array (a strided view), the other prime left untouched."""
    n, e, bits = 64, 8, 30
    p = next(iter(ntt_primes_below(n, 1 << bits)))
    limb = 53 - 1 - bits - int(np.ceil(np.log2(e + 1)))
    big = float((1 << (limb - 1)) - 1)
    c = np.array([[big] * e, [-big] * e, [big, -big] * (e // 2), [0.0] * e])
    mono = np.full((e, n), float(p - 1))
    out = np.full((c.shape[0], 2, n), 7, dtype=np.uint32)
    monomial_combine_into(c, mono, float(p), out[:, 1])
    assert np.array_equal(out[:, 1], _reference(c, mono, p))
    assert (out[:, 0] == 7).all()
