"""Iron's fixed-point programs (aiompc.fxmath) against the float functions, on random and edge inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiompc import fxmath as fx

F, L = 12, 37


def _softmax_ref(zi: np.ndarray) -> np.ndarray:
    z = zi / 2.0**F
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True) * 2.0**F


def _gelu_ref(xi: np.ndarray) -> np.ndarray:
    x = xi / 2.0**F
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))) * 2.0**F


def _ln_ref(xi: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    x = xi / 2.0**F
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * 2.0**F


def _ints(x: np.ndarray) -> np.ndarray:
    return np.round(x * 2.0**F).astype(np.int64)


# --------------------------------------------------------------------------- building blocks


def test_exp_neg_matches_exp_within_bound() -> None:
    rng = np.random.default_rng(1)
    d = np.concatenate([np.arange(0, 1 << 17), rng.integers(0, 1 << 36, 20000)]).astype(np.int64)
    e = fx.exp_neg_fixed(d, f=F, bw=36)
    ref = np.exp(-d / 2.0**F) * 2.0**F
    assert e[0] == 1 << F
    assert np.all(e <= ref + 1e-9) and np.all(ref - e < 3)


def test_exp_tables_and_tree() -> None:
    assert fx.exp_digit_widths(36) == [8, 8, 8, 8, 4]
    assert fx.exp_digit_widths(16) == [8, 8]
    assert fx.exp_tree_pairs(5) == [[(0, 1), (2, 3)], [(0, 2)], [(0, 4)]]
    t = fx.exp_tables(36, F)
    assert t[1][16] == math.floor(math.exp(-1) * 2**F) and t[2][0] == 1 << F and t[2][1] == 0
    assert fx.exp_tables(16, F, saturate=True)[0][0] == (1 << F) - 1


def test_reciprocal_approximation() -> None:
    m = fx.recip_lut_bits(F)
    assert m == 5
    for s in (12, 19):
        dn = np.arange(1 << s, 1 << (s + 1), 7, dtype=np.int64)
        w = fx.recip_normalized_fixed(dn, s_dn=s, s_out=F, m=m)
        ref = 2.0**F * 2.0**s / dn
        assert np.all(np.abs(w - ref) <= 2.0**F * 2**-10 + 1)


def test_rsqrt() -> None:
    v = np.concatenate([np.arange(1, 5000), np.random.default_rng(2).integers(1, 1 << 35, 5000)]).astype(np.int64)
    x1, a = fx.rsqrt_fixed(v, f=F, W=35, s_y=F, E=11)
    got = x1.astype(np.float64) * a / 2.0 ** (F + 11)
    ref = 1.0 / np.sqrt(v / 2.0**F)
    assert np.all(np.abs(got / ref - 1) < 2**-9)


def test_leading_one_counts() -> None:
    v = np.arange(1, 1 << 12, dtype=np.int64)
    assert np.array_equal(fx.leading_one_counts(v, range(1, 12)), np.floor(np.log2(v)).astype(np.int64))


# --------------------------------------------------------------------------- softmax


@pytest.mark.parametrize("n", [1, 2, 7, 32, 128, 1000])
@pytest.mark.parametrize("sd", [0.5, 4.0, 30.0])
def test_softmax_random(n: int, sd: float) -> None:
    zi = _ints(np.random.default_rng(n).normal(0, sd, (64, n)))
    y = fx.softmax_fixed(zi, f=F, l=L)
    ref = _softmax_ref(zi)
    assert y.dtype == np.int64 and y.shape == zi.shape
    assert np.all(np.abs(y - ref) <= fx.softmax_error_bound(ref, n, F))
    assert np.all(y >= 0) and np.all(y <= 1 << F)


def test_softmax_edges() -> None:
    eq = fx.softmax_fixed(np.full((3, 128), 12345, dtype=np.int64), f=F, l=L)
    assert np.all(eq == eq[0, 0]) and abs(int(eq[0, 0]) - 32) <= 1
    one = fx.softmax_fixed(np.asarray([[-(2**30)], [0], [2**30]], dtype=np.int64), f=F, l=L)
    assert np.all(np.abs(one - (1 << F)) <= 1)
    big = np.full((2, 5), -(2**34), dtype=np.int64)
    big[:, 0] = 2**34 - 1
    y = fx.softmax_fixed(big, f=F, l=L)
    assert np.all(y[:, 1:] == 0) and np.all(np.abs(y[:, 0] - (1 << F)) <= 1)
    adv = np.full((1, 128), -_ints(np.asarray(math.log(4096 / 20.5))), dtype=np.int64)
    adv[0, 0] = 0
    ref = _softmax_ref(adv)
    assert np.all(np.abs(fx.softmax_fixed(adv, f=F, l=L) - ref) <= fx.softmax_error_bound(ref, 128, F))
    with pytest.raises(ValueError):
        fx.softmax_plan(4096, f=F, l=L)


# --------------------------------------------------------------------------- GELU


def test_gelu_random_and_edges() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 3, 100000), rng.uniform(-1023, 1023, 5000), np.arange(-40000, 40000) / 2.0**F,
                        [0.0, 4.0, -4.0, 1023.99, -1023.99]])
    xi = _ints(x)
    y = fx.gelu_fixed(xi, f=F, l=L)
    ref = _gelu_ref(xi)
    assert np.all(np.abs(y - ref) <= fx.gelu_error_bound(xi, F))
    assert fx.gelu_fixed(np.asarray([0]), f=F, l=L)[0] == 0
    xf = xi / 2.0**F
    erf_gelu = 0.5 * xf * (1 + np.vectorize(math.erf)(xf / math.sqrt(2))) * 2.0**F
    assert np.all(np.abs(y - erf_gelu) <= fx.gelu_error_bound(xi, F) + 2)
    k = fx.gelu_consts(F)
    assert k.exp_bits == 16 and fx.exp_tables(k.exp_bits, F, saturate=True)[1][175] == 0


# --------------------------------------------------------------------------- LayerNorm


@pytest.mark.parametrize("H", [1, 2, 128, 768])
@pytest.mark.parametrize("sd", [1e-3, 0.05, 1.0, 5.0])
def test_layernorm_random(H: int, sd: float) -> None:
    p = fx.layernorm_plan(H, f=F, l=L)
    rng = np.random.default_rng(H)
    lim = 2.0 ** (p.A - 1) - 0.01
    x = np.clip(rng.normal(rng.normal(0, 2), sd, (32, H)), -lim, lim)
    xi = _ints(x)
    y = fx.layernorm_fixed(xi, f=F, l=L)
    ref = _ln_ref(xi)
    assert np.all(np.abs(y - ref) <= fx.layernorm_error_bound(xi, ref, F, L))
    if sd >= 1.0 and H >= 128:
        assert np.all(np.abs(y - ref) <= 16 + np.abs(ref) / 128)


def test_layernorm_edges() -> None:
    const = np.full((2, 768), 777, dtype=np.int64)
    assert np.all(fx.layernorm_fixed(const, f=F, l=L) == 0)  # zero variance: eps keeps V >= 1
    assert np.all(fx.layernorm_fixed(np.asarray([[5], [-9000]]), f=F, l=L) == 0)  # H = 1
    p = fx.layernorm_plan(768, f=F, l=L)
    assert (p.A, p.g, p.T) == (6, 0, 10) and p.x_bits == F + 7
    assert fx.layernorm_plan(128, f=F, l=L).g == 1
    two = fx.layernorm_fixed(np.asarray([[0, 4096]]), f=F, l=L)
    assert np.all(np.abs(two - np.asarray([[-4096, 4096]])) <= 16 + 4096 / 128)
