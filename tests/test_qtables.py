"""aiompc.qtables: the constants each builder chooses, checked against the properties its docstring states
(reciprocal buckets, the centring multiplier, the variance shift, the rsqrt table's width, the GELU table's
two's-complement order) by brute force over every reachable value, and the typed errors with their messages.

(The accuracy of the integer programs these constants drive, against float Softmax / LayerNorm / GELU, is
measured in ``tests/test_qmath.py``.)"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.qmath import MAX_OCTAVES, MAX_TABLE_BITS, lookup_int, softmax_reciprocal
from aiompc.qtables import (DEFAULT_LAYERNORM_OCTAVES, GELU_APPROXIMATIONS, gelu_table, layernorm_params,
                            softmax_params)

# --------------------------------------------------------------------------- softmax_params


def _sums(p, n: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Every row sum of ``n`` exp-table values that contains the row's maximum (``e0``)."""
    e0 = p.exp_table[0]
    return np.arange(e0, n * e0 + 1, dtype=np.int64)


@pytest.mark.parametrize("scale,n,recip_bits", [(1 / 8, 32, 8), (1 / 8, 128, 8), (1 / 4, 7, 4), (1 / 16, 1000, 6),
                                                (1 / 2, 2, 8), (1 / 8, 3, 3)])
def test_softmax_reciprocal_with_octaves_is_within_half_a_bucket(scale: float, n: int, recip_bits: int) -> None:
    """``r ≈ 2^c/S`` within ``2^−(kr+1)`` relative (half a bucket of the normalised sum) plus one unit of rounding,
    for every reachable sum S, whatever n; ``c = shift + out_bits``."""
    p, _ = softmax_params(scale, n, recip_bits=recip_bits)
    f = 10  # out_bits + 2: e0 = 2^f - 1, so the octaves start at 2^(f-1)
    assert p.octaves >= 1 and p.recip_bits == min(recip_bits, f - 1 + p.octaves)
    s = _sums(p, n)
    want = 2.0 ** (p.shift + p.out_bits) / s
    err = np.abs(softmax_reciprocal(s, p) - want)
    assert np.all(err <= want * 2.0 ** -(p.recip_bits + 1) + 1 + 1e-9)


@pytest.mark.parametrize("n,recip_bits", [(32, 8), (128, 5), (1, 8)])
def test_softmax_linear_reciprocal_error_grows_with_n(n: int, recip_bits: int) -> None:
    """``octaves = 0``: relative error up to about ``n·2^−(recip_bits+1)`` (at the peaky end)."""
    p, _ = softmax_params(1 / 8, n, recip_bits=recip_bits, octaves=0)
    s = _sums(p, n)
    want = 2.0 ** (p.shift + p.out_bits) / s
    r = softmax_reciprocal(s, p)
    assert np.all(np.abs(r - want) <= want * (n * 2.0 ** -(recip_bits + 1)) + 1)
    if n >= 32:  # and it is that large somewhere: the octaves are worth their comparisons
        assert (np.abs(r - want) / want).max() > n * 2.0 ** -(recip_bits + 1) / 4


@pytest.mark.parametrize("frac_bits,out_bits,guard_bits", [(None, 8, 2), (8, 8, 0), (14, 6, 4), (3, 4, 1)])
def test_softmax_widths_follow_the_stated_formulas(frac_bits: int | None, out_bits: int, guard_bits: int) -> None:
    n = 20
    p, out_scale = softmax_params(0.3, n, frac_bits=frac_bits, out_bits=out_bits, guard_bits=guard_bits)
    f = out_bits + 2 if frac_bits is None else frac_bits
    assert out_scale == 2.0**-out_bits and p.out_bits == out_bits and p.multiplier == 1
    assert p.exp_table[0] == (1 << f) - 1 and max(p.exp_table) < 1 << f  # f bits, top bit of f + 1 known zero
    assert p.exp_table == tuple(round((2**f - 1) * math.exp(-i * 0.3)) for i in range(len(p.exp_table)))
    assert p.octaves == math.ceil(math.log2(n)) and n * p.exp_table[0] < 1 << (f + p.octaves)
    assert p.recip_bits == min(MAX_TABLE_BITS, f - 1 + p.octaves)
    c = f + out_bits + guard_bits + 1  # with octaves
    assert p.shift == c - out_bits


@pytest.mark.parametrize("scale", [4.0, 1.0, 0.3, 0.05, 0.01, 1e-4])
def test_softmax_exp_table_is_the_shortest_ending_in_zero(scale: float) -> None:
    p, _ = softmax_params(scale, 8, exp_bits=6)
    t = p.exp_table
    k = len(t).bit_length() - 1
    assert len(t) == 1 << k and 1 <= k <= 6
    if t[-1] == 0:  # the shortest: half the length would still end above 0
        assert k == 1 or t[(1 << (k - 1)) - 1] > 0
    else:  # capped at 2^exp_bits: only when even that many entries do not reach 0
        assert k == 6 and round((2**10 - 1) * math.exp(-63 * scale)) > 0


def test_softmax_one_value_rows_have_one_octave_less() -> None:
    p, _ = softmax_params(0.1, 1)
    assert p.octaves == 0  # a row of one: the sum is e0, nothing to normalise
    assert int(softmax_reciprocal(np.array([p.exp_table[0]]), p)[0]) * p.exp_table[0] >> p.shift == 255


@pytest.mark.parametrize("kwargs,match", [
    ({"scale_in": -0.5}, "softmax_params: scale_in must be a positive number, got -0.5"),
    ({"scale_in": float("inf")}, "scale_in must be a positive number, got inf"),
    ({"n": 2.0}, "softmax_params: n must be a positive integer, got 2.0"),
    ({"n": -3}, "n must be a positive integer, got -3"),
    ({"exp_bits": 0}, f"table widths in 1..{MAX_TABLE_BITS}"),
    ({"recip_bits": MAX_TABLE_BITS + 1}, f"table widths in 1..{MAX_TABLE_BITS}"),
    ({"frac_bits": 25}, "frac_bits in 1..24, guard_bits in 0..16"),
    ({"guard_bits": 17}, "frac_bits in 1..24, guard_bits in 0..16"),
    ({"guard_bits": -1}, "frac_bits in 1..24, guard_bits in 0..16"),
    ({"octaves": 2}, "octaves must be 0 or in 3..16 for rows of 8, got 2"),
    ({"octaves": MAX_OCTAVES + 1}, "octaves must be 0 or in 3..16 for rows of 8, got 17"),
])
def test_softmax_params_errors_say_what_is_wrong(kwargs: dict, match: str) -> None:
    args = {"scale_in": 0.1, "n": 8} | kwargs
    with pytest.raises(InputError, match=re.escape(match)):
        softmax_params(args.pop("scale_in"), args.pop("n"), **args)


def test_softmax_params_take_numpy_integers() -> None:
    assert softmax_params(0.1, np.int64(8)) == softmax_params(0.1, 8)


# --------------------------------------------------------------------------- layernorm_params


LN_CASES = [(0.05, 128, {}), (0.02, 768, {}), (1.0, 100, {"in_bits": 6}), (1e-3, 64, {"in_bits": 12, "center_bits": 14}),
            (0.1, 1, {}), (0.1, 16, {"octaves": 0}), (0.1, 16, {"rsqrt_out_bits": 20}), (0.1, 3, {"std_max": 0.01}),
            (0.1, 16, {"center_bits": 5}), (0.25, 7, {"rsqrt_bits": 5, "octaves": 1}), (0.1, 19, {}), (0.3, 5, {})]


@pytest.mark.parametrize("scale,n,kw", LN_CASES)
def test_layernorm_center_multiplier_is_the_largest_4_bit_fraction_below_2g_over_n(scale: float, n: int,
                                                                                 kw: dict) -> None:
    p, _ = layernorm_params(scale, n, **kw)
    g = p.center_bits - 1 - kw.get("in_bits", 8)
    target = 2.0**g / n
    m, s = p.center_multiplier, p.center_shift
    assert 1 <= m < 16 and s >= 0
    if target >= 1:
        assert (m, s) == (min(math.floor(target), 15), 0)
    else:
        assert m / 2.0**s <= target  # never above: c' cannot clip
        best = max(mm / 2.0**ss for ss in range(0, 64) for mm in range(1, 16) if mm / 2.0**ss <= target)
        assert m / 2.0**s == best


@pytest.mark.parametrize("scale,n,kw", LN_CASES)
def test_layernorm_var_shift_is_the_least_that_fits_std_max(scale: float, n: int, kw: dict) -> None:
    p, _ = layernorm_params(scale, n, **kw)
    in_bits, rb = kw.get("in_bits", 8), kw.get("rsqrt_bits", MAX_TABLE_BITS)
    scale_c = scale * 2.0**p.center_shift / (n * p.center_multiplier)
    sigma = kw.get("std_max", 2.0 ** (in_bits - 1) * scale)
    v_max = n * (sigma / scale_c) ** 2  # Σc'² of a row of deviation std_max
    assert len(p.rsqrt_table) == 1 << rb
    assert max(v_max, 1.0) <= 2.0 ** (p.var_shift + rb) * (1 + 1e-12)
    if p.var_shift:
        assert v_max > 2.0 ** (p.var_shift - 1 + rb)


@pytest.mark.parametrize("scale,n,kw", LN_CASES)
def test_layernorm_rsqrt_table_uses_rsqrt_out_bits(scale: float, n: int, kw: dict) -> None:
    """Every entry below ``2^rsqrt_out_bits``; the largest has ``rsqrt_out_bits`` or one bit fewer; the octave
    rule for the default; the output scale."""
    p, so = layernorm_params(scale, n, **kw)
    ob = kw.get("rsqrt_out_bits", 12)
    t = p.rsqrt_table
    assert max(t) < 1 << ob and max(t).bit_length() >= ob - 1 and min(t) > 0
    assert p.multiplier == 1 and p.out_bits == 8 and so == 8.0 / 128
    rb = kw.get("rsqrt_bits", MAX_TABLE_BITS)
    if "octaves" not in kw:
        assert p.octaves == max(0, min(DEFAULT_LAYERNORM_OCTAVES, (p.var_shift + rb - 2) // 2))
    if p.octaves == 0:  # linear buckets of growing variance: the table falls
        assert list(t) == sorted(t, reverse=True)


def test_layernorm_table_entries_are_the_bucket_midpoints() -> None:
    """Linear form: ``rsqrt_table[u] = round(R/sqrt(v_u/n + eps_c))``, ``v_u = (u + 1/2)·2^var_shift``."""
    scale, n, eps = 0.05, 64, 1e-5
    p, so = layernorm_params(scale, n, octaves=0, eps=eps)
    scale_c = scale * 2.0**p.center_shift / (n * p.center_multiplier)
    R = 2.0**p.shift / so
    want = [math.floor(R / math.sqrt((u + 0.5) * 2.0**p.var_shift / n + eps / scale_c**2) + 0.5)
            for u in range(len(p.rsqrt_table))]
    assert list(p.rsqrt_table) == want


@pytest.mark.parametrize("kwargs,match", [
    ({"scale_in": float("nan")}, "layernorm_params: scale_in must be a positive number, got nan"),
    ({"n": 1.5}, "layernorm_params: n must be a positive integer, got 1.5"),
    ({"in_bits": 1}, "layernorm_params: in_bits in 2..15, got 1"),
    ({"center_bits": 1}, "layernorm_params: center_bits in 2..16, got 1 (in_bits + 2 by default)"),
    ({"in_bits": 15}, "center_bits in 2..16, got 17"),  # the default in_bits + 2
    ({"rsqrt_bits": 0}, "rsqrt_bits in 1..8 and rsqrt_out_bits in 2..24"),
    ({"rsqrt_out_bits": 25}, "rsqrt_bits in 1..8 and rsqrt_out_bits in 2..24"),
    ({"out_range": 0.0}, "eps, out_range and std_max are positive"),
    ({"std_max": 0.0}, "eps, out_range and std_max are positive"),
    ({"octaves": 1.0}, "octaves in 0..16, got 1.0"),
    ({"std_max": 0.01, "octaves": 4}, "4 octaves need a variance range of 2^10; use fewer"),
    ({"out_range": 1e-9, "rsqrt_out_bits": 2}, "out_range too small for the table"),
])
def test_layernorm_params_errors_say_what_is_wrong(kwargs: dict, match: str) -> None:
    args = {"scale_in": 0.1, "n": 8} | kwargs
    with pytest.raises(InputError, match=re.escape(match)):
        layernorm_params(args.pop("scale_in"), args.pop("n"), **args)


# --------------------------------------------------------------------------- gelu_table


def _gelu(v: float, approximate: str) -> float:
    if approximate == "tanh":
        return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))
    return v * 0.5 * math.erfc(-v / math.sqrt(2))  # Φ(v) through erfc: another route than erf


@pytest.mark.parametrize("approximate", GELU_APPROXIMATIONS)
@pytest.mark.parametrize("k,scale_in,scale_out,out_bits", [(1, 1.0, 0.5, 2), (3, 0.7, 0.1, 4), (8, 0.05, 0.01, 12)])
def test_gelu_table_is_indexed_in_twos_complement(approximate: str, k: int, scale_in: float, scale_out: float,
                                                  out_bits: int) -> None:
    t = gelu_table(k, scale_in, scale_out, out_bits, approximate=approximate)
    assert len(t) == 1 << k and all(type(v) is int for v in t)
    lo, hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    for j, v in enumerate(t):
        x = j - (1 << k) if j >= 1 << (k - 1) else j  # entries 2^(k-1).. are the negative inputs
        want = _gelu(x * scale_in, approximate) / scale_out
        assert lo <= v <= hi
        if lo < want < hi:
            assert abs(v - want) <= 0.5 + 1e-9, (j, v, want)
    assert t[0] == 0  # GELU(0) = 0
    x = np.arange(-(1 << (k - 1)), 1 << (k - 1))
    assert lookup_int(x, t).tolist() == [t[int(i) % (1 << k)] for i in x]


def test_gelu_table_clips_to_out_bits_at_both_ends() -> None:
    t = gelu_table(8, 0.5, 0.01, 6)  # GELU(63.5) = 63.5 -> 6350 LSB: clipped at 31
    assert max(t) == 31 and t[127] == 31
    t2 = gelu_table(4, 1.0, 0.001, 4)  # GELU(-0.75..) ~ -0.17 -> about -170 LSB: clipped at -8
    assert min(t2) == -8


def test_gelu_table_takes_numpy_integers() -> None:
    assert gelu_table(np.int64(4), 0.25, 0.1, np.int32(8)) == gelu_table(4, 0.25, 0.1, 8)


@pytest.mark.parametrize("args,kwargs,match", [
    ((2.0, 0.1, 0.1, 8), {}, "gelu_table: k in 1..8, got 2.0"),
    ((9, 0.1, 0.1, 8), {}, "gelu_table: k in 1..8, got 9"),
    ((4, 0.1, -0.1, 8), {}, "gelu_table: scales are positive numbers"),
    ((4, float("inf"), 0.1, 8), {}, "gelu_table: scales are positive numbers"),
    ((4, 0.1, 0.1, 33), {}, "gelu_table: out_bits in 2..32, got 33"),
    ((4, 0.1, 0.1, 8.0), {}, "gelu_table: out_bits in 2..32, got 8.0"),
    ((4, 0.1, 0.1, 8), {"approximate": "sigmoid"}, "gelu_table: approximate is one of ('none', 'tanh'), got 'sigmoid'"),
])
def test_gelu_table_errors_say_what_is_wrong(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=re.escape(match)):
        gelu_table(*args, **kwargs)
