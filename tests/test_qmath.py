"""The integer programs of aiompc.qmath against float references (each non-linearity in its own test class or
functions: Softmax above, LayerNorm and GELU below)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.qmath import (MAX_TABLE_BITS, LayerNormParams, SoftmaxParams, int_table, layernorm_int, lookup_int, softmax_int,
                          softmax_reciprocal)
from aiompc.qtables import gelu_table, layernorm_params, softmax_params


def _float_softmax(z: np.ndarray, scale: float) -> np.ndarray:
    x = z * scale
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _rows(n: int, scale: float, gen: np.random.Generator) -> dict[str, np.ndarray]:
    """8-bit signed logits: uniform, Gaussian (about ±2 in float), and the edge rows."""
    peak = np.full(n, -128)
    peak[n // 2] = 127
    return {
        "uniform": gen.integers(-128, 128, (200, n)),
        "gauss": np.clip(np.round(gen.normal(0, 2 / scale, (200, n))), -128, 127).astype(np.int64),
        "equal": np.stack([np.zeros(n, np.int64), np.full(n, -128), np.full(n, 127)]),
        "one_huge": peak[None, :],
        "two_top": np.concatenate([[127, 127], np.full(n - 2, -128)])[None, :] if n >= 2 else peak[None, :],
    }


class TestSoftmaxParams:
    """softmax_params: tables, widths and the accuracy of softmax_int against the float softmax."""

    BOUND_LSB = 2.5
    """The stated bound with the defaults (out_bits 8, frac_bits 10, octaves ceil(log2 n)): measured max 2.12
    (Gaussian rows of 128, where the exp table's rounding accumulates in the sum)."""

    @pytest.mark.parametrize("scale", [1 / 16, 1 / 8, 1 / 4, 1 / 2])
    @pytest.mark.parametrize("n", [1, 2, 5, 17, 32, 128])
    def test_error_against_float_softmax(self, scale: float, n: int) -> None:
        p, out_scale = softmax_params(scale, n)
        assert out_scale == 2.0**-8 and p.out_bits == 8
        gen = np.random.default_rng(n * 1000 + int(1 / scale))
        worst = 0.0
        for name, z in _rows(n, scale, gen).items():
            got = softmax_int(z, p)
            assert got.dtype == np.int64 and got.shape == z.shape and got.min() >= 0 and got.max() <= 255
            want = np.minimum(_float_softmax(z, scale), 255 / 256)  # 1 saturates at 255/256
            err = np.abs(got * out_scale - want).max() / out_scale
            assert err <= self.BOUND_LSB, (name, err)
            worst = max(worst, err)
        if n > 1:
            assert worst > 0.25  # the comparison sees real rounding (not a vacuous bound)

    @pytest.mark.parametrize("n", [1, 7, 128])
    def test_edge_rows_exactly(self, n: int) -> None:
        p, _ = softmax_params(1 / 8, n)
        equal = softmax_int(np.full((2, n), 5), p)
        np.testing.assert_array_equal(equal, np.full((2, n), min(255, round(256 / n))))
        one_hot = np.full(n, -128)
        one_hot[-1] = 127
        got = softmax_int(one_hot, p)
        assert got[-1] == 255 and (got[:-1] == 0).all()

    def test_octaves_fix_the_peaky_end(self) -> None:
        """The linear table (octaves=0) loses precision where S is small; the normalised one does not."""
        n, scale = 128, 1 / 8
        z = np.full((8, n), -128)
        for j in range(8):
            z[j, : j + 1] = 127  # j + 1 equal maxima: each 256 / (j + 1) LSB
        want = np.minimum(256 / np.arange(1, 9), 255)
        lin, _ = softmax_params(scale, n, octaves=0)
        oct_, _ = softmax_params(scale, n)
        assert oct_.octaves == 7 and lin.octaves == 0
        assert np.abs(softmax_int(z, oct_)[:, 0] - want).max() <= 1
        assert np.abs(softmax_int(z, lin)[:, 0] - want).max() > 10

    @pytest.mark.parametrize("n", [1, 2, 7, 32, 128])
    @pytest.mark.parametrize("octaves", [None, 0])
    def test_no_product_needs_the_clip(self, n: int, octaves: int | None) -> None:
        """Every reachable e·r (e <= S) rounds to at most 2^out_bits − 1, and a one-hot row still gives 255."""
        p, _ = softmax_params(1 / 8, n, octaves=octaves)
        e0 = p.exp_table[0]
        sums = np.arange(e0, n * e0 + 1)
        peak = (np.minimum(sums, e0) * softmax_reciprocal(sums, p)).max()
        assert (peak + (1 << (p.shift - 1))) >> p.shift == 255
        one_hot = np.full(n, -128)
        one_hot[0] = 127
        assert softmax_int(one_hot, p)[0] == 255

    def test_tables_and_widths(self) -> None:
        p, _ = softmax_params(1 / 8, 32)
        f = 10
        half = len(p.exp_table) // 2  # the shortest power-of-two table that ends in 0
        assert p.exp_table[0] == (1 << f) - 1 and p.exp_table[-1] == 0 and p.exp_table[half - 1] > 0
        assert p.exp_table == tuple(round((2**f - 1) * np.exp(-i / 8)) for i in range(len(p.exp_table)))
        assert p.exp_bits <= MAX_TABLE_BITS and p.recip_bits <= MAX_TABLE_BITS
        assert p.octaves == 5 and p.sum_shift + p.recip_bits - p.octaves == f - 1  # octaves start at 2^(f-1)
        assert 32 * p.exp_table[0] < 1 << (f + p.octaves)  # ... and the last ends above the largest sum
        assert list(p.recip_table) == sorted(p.recip_table, reverse=True)
        # a coarse input scale: the table is short; a fine one: capped at 2^exp_bits with a non-zero tail
        assert softmax_params(2.0, 32)[0].exp_bits == 3
        capped, _ = softmax_params(0.01, 32)
        assert capped.exp_bits == MAX_TABLE_BITS and capped.exp_table[-1] > 0

    @pytest.mark.parametrize("out_bits", [4, 6, 12])
    def test_other_output_widths(self, out_bits: int) -> None:
        """Up to 8 output bits the LSB bound holds; wider outputs add the reciprocal's relative error 2^-9."""
        p, out_scale = softmax_params(1 / 8, 16, out_bits=out_bits)
        z = np.random.default_rng(3).integers(-128, 128, (100, 16))
        err = np.abs(softmax_int(z, p) * out_scale - np.minimum(_float_softmax(z, 1 / 8), 1 - out_scale)).max()
        assert err <= self.BOUND_LSB * out_scale + (2.0**-9 if out_bits > 8 else 0)

    @pytest.mark.parametrize("kwargs", [
        {"scale_in": 0.0}, {"scale_in": float("nan")}, {"n": 0}, {"exp_bits": 9}, {"recip_bits": 0},
        {"octaves": 17}, {"octaves": 2}, {"frac_bits": 0},
    ])
    def test_bad_arguments(self, kwargs: dict) -> None:
        args = {"scale_in": 0.1, "n": 8}
        args.update(kwargs)
        with pytest.raises(InputError):
            softmax_params(args.pop("scale_in"), args.pop("n"), **args)

    def test_params_check_octaves(self) -> None:
        p, _ = softmax_params(1 / 8, 8)
        fields = dict(exp_table=p.exp_table, sum_shift=0, recip_table=(1, 1), multiplier=1, shift=0, out_bits=8)
        with pytest.raises(InputError):
            SoftmaxParams(**fields, octaves=2)  # sum_shift + recip_bits = 1 < 2
        assert SoftmaxParams(**fields, octaves=1).octaves == 1


# --------------------------------------------------------------------------- LayerNorm and GELU builders


def _float_layernorm(x: np.ndarray, eps: float) -> np.ndarray:
    m = x.mean(axis=-1, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(axis=-1, keepdims=True) + eps)


def _ln_rows(gen: np.random.Generator, n: int, rows: int, in_bits: int) -> np.ndarray:
    """Rows of signed in_bits integers with deviations from tiny to the full range and random offsets."""
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    std = (2.0 ** (in_bits - 1)) * 2.0 ** gen.uniform(-5, 0, (rows, 1))
    mean = gen.uniform(-0.3, 0.3, (rows, 1)) * 2 ** (in_bits - 1)
    return np.clip(np.round(gen.normal(mean, std, (rows, n))), lo, hi).astype(np.int64)


@pytest.mark.parametrize("n,in_bits,center_bits,scale_in,octaves", [
    (128, 8, None, 0.05, 0), (768, 8, None, 0.02, 0), (768, 8, 9, 0.02, 0), (100, 6, None, 1.0, 0),
    (64, 12, 14, 1e-3, 0), (128, 8, None, 0.05, 4), (768, 8, None, 0.02, 3), (64, 12, 14, 1e-3, 6),
])
def test_layernorm_params_error_bound(n: int, in_bits: int, center_bits: int | None, scale_in: float, octaves: int,
                                      nprng: np.random.Generator) -> None:
    eps = 1e-5
    p, so = layernorm_params(scale_in, n, in_bits=in_bits, center_bits=center_bits, eps=eps, octaves=octaves)
    assert isinstance(p, LayerNormParams) and so == 8.0 / 128 and p.octaves == octaves
    x = _ln_rows(nprng, n, 400, in_bits)
    got = layernorm_int(x, p) * so
    want = _float_layernorm(x * scale_in, eps)
    # the stated bound, per row: rows whose (normalised) variance index u is at least 16 and below the table's end
    g = p.center_bits - 1 - in_bits
    sigma = x.std(axis=-1, keepdims=True)  # input units
    v = n * sigma**2 * 4.0**g
    e = sum((v >= 2.0 ** (p.octave_base + 2 * i)).astype(int) for i in range(1, octaves + 1)) if octaves else 0
    u = np.floor(v * 4.0 ** (octaves - e) / 2.0**p.var_shift)
    ok_rows = (u >= 16) & (u < len(p.rsqrt_table) - 2)
    assert ok_rows.sum() > (300 if octaves >= 3 else 50)  # the test covers many rows (octaves: most rows)
    if octaves:  # near a threshold the estimate of E may be one off: u then is a quarter of the estimate
        u = u / 4.1
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


def test_layernorm_octaves_widen_the_accurate_range(nprng: np.random.Generator) -> None:
    """Rows 32x below the full range: coarse in the linear form, within 2 output LSB with 4 octaves."""
    n, s = 256, 0.05
    x = np.clip(np.round(nprng.normal(0, 4, (50, n))), -128, 127).astype(np.int64)
    want = _float_layernorm(x * s, 1e-5)
    p0, so = layernorm_params(s, n, octaves=0)
    p4, _ = layernorm_params(s, n)  # the default: 4 octaves
    assert p4.octaves == 4
    assert np.abs(layernorm_int(x, p4) * so - want).max() < 2 * so < 0.5 < np.abs(layernorm_int(x, p0) * so - want).max()


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
    """A row 16x below the full range is coarse in the linear form and accurate with a calibrated std_max."""
    n, s = 256, 0.05
    x = np.clip(np.round(nprng.normal(0, 6, (50, n))), -128, 127).astype(np.int64)
    want = _float_layernorm(x * s, 1e-5)
    p_def, so = layernorm_params(s, n, octaves=0)
    p_cal, so2 = layernorm_params(s, n, std_max=8 * s, octaves=0)
    err_def = np.abs(layernorm_int(x, p_def) * so - want).max()
    err_cal = np.abs(layernorm_int(x, p_cal) * so2 - want).max()
    assert err_cal < 0.2 < err_def


@pytest.mark.parametrize("kwargs", [{"scale_in": 0.0}, {"n": 0}, {"in_bits": 16}, {"center_bits": 17},
                                    {"rsqrt_bits": 9}, {"eps": 0.0}, {"std_max": -1.0}, {"octaves": -1},
                                    {"octaves": 17}, {"octaves": 12}])
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


def test_int_table_makes_python_ints_and_checks_the_length() -> None:
    t = int_table(np.array([3, -1, 0, 7], dtype=np.int16), "t")
    assert t == (3, -1, 0, 7) and all(type(v) is int for v in t)
    for bad in ([1], [1, 2, 3], list(range(1 << (MAX_TABLE_BITS + 1)))):
        with pytest.raises(InputError, match="my table"):
            int_table(bad, "my table")
    with pytest.raises(InputError, match="softmax recip_table"):  # the params name the table that is wrong
        SoftmaxParams(exp_table=(4, 2), sum_shift=0, recip_table=(1, 1, 1), multiplier=1, shift=0, out_bits=8)


@pytest.mark.parametrize("shape", [(), (3, 0)])
def test_softmax_and_layernorm_need_a_non_empty_last_axis(shape: tuple[int, ...]) -> None:
    sp, _ = softmax_params(1 / 8, 8)
    lp = layernorm_params(0.1, 8)[0]
    with pytest.raises(InputError, match="softmax needs a non-empty last axis"):
        softmax_int(np.zeros(shape, np.int64), sp)
    with pytest.raises(InputError, match="layernorm needs a non-empty last axis"):
        layernorm_int(np.zeros(shape, np.int64), lp)
