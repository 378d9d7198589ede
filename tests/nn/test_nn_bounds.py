"""Widths and accumulator bounds: sound (no overflow) and tight (attained), checked by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from aiompc.errors import UnsupportedModel
from aiompc.nn.bounds import heq_acc_bits, linear_channel_ranges, range_of_width, width_for_range
from aiompc.nn.interpret import run_int
from aiompc.nn.ir import Conv, QGraph, TensorSpec
from aiompc.nn.tensor_ops import conv2d


def test_width_for_range_is_the_smallest_fitting_width() -> None:
    for lo in range(-70, 70):
        for hi in range(lo, 70, 3):
            bits, signed = width_for_range(lo, hi)
            assert signed == (lo < 0)
            rlo, rhi = range_of_width(bits, signed)
            assert rlo <= lo and hi <= rhi
            if bits > 1:
                slo, shi = range_of_width(bits - 1, signed)
                assert not (slo <= lo and hi <= shi)


@pytest.mark.parametrize("lo,hi", [(0, 3), (-2, 1), (0, 1), (-4, 3)])
def test_linear_bound_equals_brute_force_over_all_inputs(lo: int, hi: int, nprng: np.random.Generator) -> None:
    """Every input vector of a 4-input layer: the extremes reached are exactly the computed bounds."""
    w = nprng.integers(-7, 8, (5, 4))
    b = nprng.integers(-20, 21, 5)
    xs = np.array(list(itertools.product(range(lo, hi + 1), repeat=4)))
    acc = xs @ w.T + b
    got_lo, got_hi = linear_channel_ranges(w, b, lo, hi)
    assert got_lo.tolist() == acc.min(axis=0).tolist()
    assert got_hi.tolist() == acc.max(axis=0).tolist()


def _conv_graph(w: np.ndarray, b: np.ndarray, in_bits: int, signed: bool, hw: int, stride: int, pad: int,
                groups: int) -> QGraph:
    lo, hi = range_of_width(in_bits, signed)
    x = TensorSpec("x", (w.shape[1] * groups, hw, hw), in_bits, signed, lo, hi, (1.0,))
    node = Conv(name="c", inputs=("x",), output="y", weight_shape=w.shape, stride=(stride, stride),
                pads=(pad,) * 4, groups=groups, weight_bits=4, weight=w, bias=b)
    inf = node.infer([x])
    y = TensorSpec.for_range("y", inf.shape, inf.lo, inf.hi, (1.0,))
    return QGraph("x", "y", {"x": x, "y": y}, [node]).validate()


@pytest.mark.parametrize("in_bits,signed,groups", [(4, False, 1), (2, False, 2), (8, True, 1), (3, True, 4)])
def test_conv_accumulator_bound_is_sound_and_attained(in_bits: int, signed: bool, groups: int,
                                                      nprng: np.random.Generator) -> None:
    c, o, k = 4, 8, 3
    w = nprng.integers(-7, 8, (o, c // groups, k, k))
    b = nprng.integers(-50, 51, o)
    g = _conv_graph(w, b, in_bits, signed, 6, 2, 1, groups)
    spec = g.output_spec
    lo, hi = range_of_width(in_bits, signed)
    ch_lo, ch_hi = linear_channel_ranges(w, b, lo, hi)
    # sound: random and extreme inputs never leave the bound
    x = nprng.integers(lo, hi + 1, (200, c, 6, 6))
    x[:100] = np.where(nprng.random(x[:100].shape) < 0.5, lo, hi)
    y = run_int(g, x)
    per_ch = y.transpose(1, 0, 2, 3).reshape(o, -1)
    assert np.all(per_ch.min(axis=1) >= ch_lo) and np.all(per_ch.max(axis=1) <= ch_hi)
    # tight: for each channel, the input putting hi under positive and lo under negative weights of the
    # window at output (1, 1) (wholly inside the input) attains the bound exactly, and its mirror the minimum
    cg = c // groups
    for ch in range(o):
        grp = ch // (o // groups)
        for want, top, bottom in ((ch_hi[ch], hi, lo), (ch_lo[ch], lo, hi)):
            x1 = np.zeros((1, c, 6, 6), dtype=np.int64)
            x1[0, grp * cg:(grp + 1) * cg, 1:4, 1:4] = np.where(w[ch] > 0, top, bottom)
            assert run_int(g, x1)[0, ch, 1, 1] == want
    assert (spec.lo, spec.hi) == (int(ch_lo.min()), int(ch_hi.max()))


@pytest.mark.parametrize("seed", range(20))
def test_width_never_exceeds_heq_formula_plus_sign(seed: int) -> None:
    rng = np.random.default_rng(seed)
    wb, ab = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    q = (1 << (wb - 1)) - 1
    w = rng.integers(-q, q + 1, (int(rng.integers(1, 16)), int(rng.integers(1, 300))))
    lo, hi = linear_channel_ranges(w, None, 0, (1 << ab) - 1)
    bits, _ = width_for_range(int(lo.min()), int(hi.max()))
    assert bits <= heq_acc_bits(w, ab) + 1
    # and within the worst case b_w + b_a + ceil(log2(fan-in)) (sign included)
    assert bits <= wb + ab + int(np.ceil(np.log2(w.shape[1])))


def test_heq_formula_is_attained_when_weights_are_all_positive() -> None:
    """All weights +7 over 16 taps, 4-bit inputs: P = 112 -> 4 + 7 = 11 magnitude bits; max 1680 needs 11."""
    w = np.full((1, 16), 7)
    assert heq_acc_bits(w, 4) == 11
    lo, hi = linear_channel_ranges(w, None, 0, 15)
    assert width_for_range(int(lo.min()), int(hi.max())) == (11, False)


def test_bias_and_zero_weights() -> None:
    lo, hi = linear_channel_ranges(np.zeros((2, 3), dtype=np.int64), np.array([-5, 9]), 0, 15)
    assert lo.tolist() == [-5, 9] and hi.tolist() == [-5, 9]
    assert heq_acc_bits(np.zeros((2, 3), dtype=np.int64), 4) == 4


def test_accumulator_too_wide_is_refused() -> None:
    with pytest.raises(UnsupportedModel, match="bits"):
        linear_channel_ranges(np.full((1, 4), 1 << 30), None, 0, (1 << 31) - 1)


def test_int64_conv_stays_exact_beyond_float_precision(nprng: np.random.Generator) -> None:
    """Products beyond 2^53 take the int64 path and stay exact."""
    x = nprng.integers(-(1 << 40), 1 << 40, (2, 2, 4, 4))
    w = nprng.integers(-(1 << 12), 1 << 12, (3, 2, 2, 2))
    got = conv2d(x, w, None, (1, 1), (0, 0, 0, 0), 1)
    xo, wo = x.astype(object), w.astype(object)
    for n, o, i, j in itertools.product(range(2), range(3), range(3), range(3)):
        assert got[n, o, i, j] == int((xo[n, :, i:i + 2, j:j + 2] * wo[o]).sum())
