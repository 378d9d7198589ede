"""The integer programs of aiompc.qmath against float references (each non-linearity in its own test class)."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.qmath import MAX_TABLE_BITS, SoftmaxParams, softmax_int, softmax_params


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
    """The stated bound with the defaults (out_bits 8, frac_bits 10, octaves bitlen(n) − 1): measured max 2.41
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
        z = np.full((1, n), -128)
        z[0, :3] = 127  # three equal maxima: each 1/3 = 85.3 LSB
        lin, _ = softmax_params(scale, n, octaves=0)
        oct_, _ = softmax_params(scale, n)
        assert oct_.octaves == 7 and lin.octaves == 0
        assert abs(softmax_int(z, oct_)[0, 0] - 256 / 3) <= 1
        assert abs(softmax_int(z, lin)[0, 0] - 256 / 3) > 10

    def test_tables_and_widths(self) -> None:
        p, _ = softmax_params(1 / 8, 32)
        f = 10
        half = len(p.exp_table) // 2  # the shortest power-of-two table that ends in 0
        assert p.exp_table[0] == 1 << f and p.exp_table[-1] == 0 and p.exp_table[half - 1] > 0
        assert p.exp_table == tuple(round(2**f * np.exp(-i / 8)) for i in range(len(p.exp_table)))
        assert p.exp_bits <= MAX_TABLE_BITS and p.recip_bits <= MAX_TABLE_BITS
        assert p.octaves == 5 and p.sum_shift + p.recip_bits - p.octaves == f  # octaves start at S = 2^f
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
        {"octaves": 17}, {"frac_bits": -1},
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
