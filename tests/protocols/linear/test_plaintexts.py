"""The sparse (matrix-product) NTT of weight plaintexts equals the HE core's per-polynomial NTT."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.crypto.he import PlainNTT, cheetah_params
from aiompc.protocols.linear.plaintexts import monomial_ntt, sparse_plain_ntt, weight_plaintexts


@pytest.mark.parametrize("l, count, wbits", [(37, 9, 12), (37, 300, 37), (16, 1000, 16), (8, 1, 8)])
def test_sparse_matches_dense_ntt(l: int, count: int, wbits: int, nprng) -> None:
    params = cheetah_params(l)
    exps = np.sort(nprng.choice(params.n, count, replace=False))
    vals = nprng.integers(-(1 << (wbits - 1)), 1 << (wbits - 1), (3, 2, count))
    polys = np.zeros((3, 2, params.n), dtype=np.int64)
    polys[..., exps] = vals
    got = sparse_plain_ntt(params, vals, exps)
    ref = PlainNTT.encode(params, polys)
    assert np.array_equal(got.data, ref.data) and (got.norm, got.count) == (ref.norm, ref.count)
    mask = np.array([[True, False], [False, False], [True, True]])
    masked = weight_plaintexts(params, vals, exps, mask)
    assert np.array_equal(masked.data[mask], ref.data[mask]) and not masked.data[~mask].any()
    whole = weight_plaintexts(params, vals, exps)  # whichever path the cost model picks
    assert np.array_equal(whole.data, ref.data) and (whole.norm, whole.count) == (ref.norm, ref.count)


def test_monomials(nprng) -> None:
    params = cheetah_params(37)
    e = nprng.integers(0, params.n, 5)
    polys = np.zeros((5, params.n), dtype=np.int64)
    polys[np.arange(5), e] = 1
    assert np.array_equal(monomial_ntt(params, e).transpose(1, 0, 2), PlainNTT.encode(params, polys).data)
