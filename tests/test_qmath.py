"""The builders of aiompc.qmath against the float functions they approximate, with their stated error bounds.

(LayerNorm and GELU tests; the Softmax lane keeps its tests in separate functions of this file.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.qmath import LayerNormParams, gelu_table, layernorm_int, layernorm_params, lookup_int


def _float_layernorm(x: np.ndarray, eps: float) -> np.ndarray:
    m = x.mean(axis=-1, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(axis=-1, keepdims=True) + eps)


def _rows(gen: np.random.Generator, n: int, rows: int, in_bits: int) -> np.ndarray:
    """Rows of signed in_bits integers with deviations from tiny to the full range and random offsets."""
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    std = (2.0 ** (in_bits - 1)) * 2.0 ** gen.uniform(-5, 0, (rows, 1))
    mean = gen.uniform(-0.3, 0.3, (rows, 1)) * 2 ** (in_bits - 1)
    return np.clip(np.round(gen.normal(mean, std, (rows, n))), lo, hi).astype(np.int64)


@pytest.mark.parametrize("n,in_bits,center_bits,scale_in", [(128, 8, None, 0.05), (768, 8, None, 0.02),
                                                            (768, 8, 9, 0.02), (100, 6, None, 1.0), (64, 12, 14, 1e-3)])
def test_layernorm_params_error_bound(n: int, in_bits: int, center_bits: int | None, scale_in: float,
                                      nprng: np.random.Generator) -> None:
    eps = 1e-5
    p, so = layernorm_params(scale_in, n, in_bits=in_bits, center_bits=center_bits, eps=eps)
    assert isinstance(p, LayerNormParams) and so == 8.0 / 128
    x = _rows(nprng, n, 400, in_bits)
    got = layernorm_int(x, p) * so
    want = _float_layernorm(x * scale_in, eps)
    # the stated bound, per row: rows whose variance index u is at least 16 and below the table's end
    g = p.center_bits - 1 - in_bits
    sigma = x.std(axis=-1, keepdims=True)  # input units
    u = np.floor(n * sigma**2 * 4.0**g / 2.0**p.var_shift)
    ok_rows = (u >= 16) & (u < len(p.rsqrt_table) - 2)
    assert ok_rows.sum() > 50  # the test covers many rows
    r_min = min(p.rsqrt_table)
    rel = 1 / (4 * (u - 1) + 2) + 1 / r_min + 2.0**-12
    centre = 1.25 * 2.0 ** -(g + 1) / np.maximum(sigma, 1e-9)
    bound = so / 2 + np.abs(want) * rel + centre
    inside = ok_rows & (np.abs(want) < 8 - so)
    err = np.abs(got - want)
    assert np.all(err[inside] <= bound[inside])
    assert err[inside].max() > bound[inside].min() / 4  # the bound is not vacuous
    # clipped outputs stay at the ends of the output range
    assert got.min() >= -8 and got.max() <= 8 - so


def test_layernorm_zero_variance_rows_n1_and_extremes() -> None:
    p, so = layernorm_params(0.1, 16)
    x = np.stack([np.full(16, 5), np.full(16, -128), np.full(16, 127), np.array([-128, 127] * 8)])
    y = layernorm_int(x, p)
    assert np.all(y[:3] == 0)  # zero variance: exactly 0, as the float LayerNorm
    np.testing.assert_allclose(y[3] * so, _float_layernorm(x[3] * 0.1, 1e-5), atol=so)  # ±1 at the extremes
    for n in (1, 2, 3):  # n = 1: x - mean = 0; n = 2: the row is ±1 std
        pn, son = layernorm_params(0.1, n)
        xs = np.array([[-128] * n, [0] * n, [127] * n, [-128, 127, 5][:n], [-100, 50, 100][:n]])
        np.testing.assert_allclose(layernorm_int(xs, pn) * son, _float_layernorm(xs * 0.1, 1e-5), atol=0.1)


def test_layernorm_std_max_calibrates_the_table(nprng: np.random.Generator) -> None:
    """A row 16x below the default's full range is coarse by default and accurate with a calibrated std_max."""
    n, s = 256, 0.05
    x = np.clip(np.round(nprng.normal(0, 6, (50, n))), -128, 127).astype(np.int64)
    want = _float_layernorm(x * s, 1e-5)
    p_def, so = layernorm_params(s, n)
    p_cal, so2 = layernorm_params(s, n, std_max=8 * s)
    err_def = np.abs(layernorm_int(x, p_def) * so - want).max()
    err_cal = np.abs(layernorm_int(x, p_cal) * so2 - want).max()
    assert err_cal < 0.2 < err_def


@pytest.mark.parametrize("kwargs", [{"scale_in": 0.0}, {"n": 0}, {"in_bits": 16}, {"center_bits": 17},
                                    {"rsqrt_bits": 9}, {"eps": 0.0}, {"std_max": -1.0}])
def test_layernorm_params_bad_arguments(kwargs: dict) -> None:
    args = {"scale_in": 0.1, "n": 8} | kwargs
    with pytest.raises(InputError):
        layernorm_params(args.pop("scale_in"), args.pop("n"), **args)


def _gelu(v: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))
    return 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))


@pytest.mark.parametrize("k,scale_in,scale_out,out_bits,approximate", [
    (8, 8 / 128, 8 / 128, 8, "none"), (8, 8 / 128, 1 / 64, 10, "tanh"), (4, 0.5, 0.25, 5, "none"),
    (6, 0.25, 0.05, 8, "none"), (1, 1.0, 1.0, 2, "none"),
])
def test_gelu_table_error_bound(k: int, scale_in: float, scale_out: float, out_bits: int, approximate: str) -> None:
    table = gelu_table(k, scale_in, scale_out, out_bits, approximate=approximate)
    assert len(table) == 1 << k
    x = np.arange(-(1 << (k - 1)), 1 << (k - 1))
    y = lookup_int(x, table) * scale_out
    want = _gelu(x * scale_in, approximate)
    hi = ((1 << (out_bits - 1)) - 1) * scale_out
    inside = want <= hi
    assert np.all(np.abs(y - want)[inside] <= scale_out / 2 + 1e-12)  # the stated bound: half an output LSB
    assert np.all(y[~inside] == hi)  # large inputs clip to the top of the output range
    assert min(table) >= -(1 << (out_bits - 1)) and max(table) < 1 << (out_bits - 1)


def test_gelu_table_large_negative_inputs_are_zero_and_forms_differ() -> None:
    t = gelu_table(8, 0.1, 0.01, 12)
    assert lookup_int(np.array([-128, -100, 0]), t).tolist() == [0, 0, 0]  # GELU(-12.8) ~ 0
    assert gelu_table(8, 0.05, 0.001, 12) != gelu_table(8, 0.05, 0.001, 12, approximate="tanh")


@pytest.mark.parametrize("args,kwargs", [((0, 0.1, 0.1, 8), {}), ((9, 0.1, 0.1, 8), {}), ((4, 0.0, 0.1, 8), {}),
                                         ((4, 0.1, 0.1, 1), {}), ((4, 0.1, 0.1, 8), {"approximate": "erf"})])
def test_gelu_table_bad_arguments(args: tuple, kwargs: dict) -> None:
    with pytest.raises(InputError):
        gelu_table(*args, **kwargs)
