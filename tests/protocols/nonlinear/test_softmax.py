"""Quantized Softmax on shares against :func:`aiompc.qmath.softmax_int`, bit for bit, on random and edge rows,
in memory and over TCP; widths; typed errors; bytes per element from the channel."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.qmath import SoftmaxParams, softmax_int, softmax_reciprocal
from aiompc.qtables import softmax_params
from aiompc.ring import from_signed, reconstruct
from aiompc.protocols.nonlinear.softmax import SoftmaxWidths, softmax_q
from nonlinear_helpers import Shared, run_both, run_over_tcp


def _logits(lead: tuple[int, ...], n: int, bits: int, gen: np.random.Generator) -> np.ndarray:
    """Random signed ``bits``-bit logits of shape ``(*lead, n)`` with edge rows written over the first ones:
    all equal (at 0, the minimum, the maximum), one huge and the rest at the minimum, two tied maxima, and a
    spread row whose differences exceed any exp table (clipped)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    z = gen.integers(lo, hi + 1, (*lead, n))
    rows = z.reshape(-1, n)
    edges = [np.zeros(n), np.full(n, lo), np.full(n, hi), np.r_[hi, np.full(n - 1, lo)],
             np.r_[np.full(n - 1, lo), hi], np.r_[hi, hi, np.full(max(n - 2, 0), lo)][:n], np.linspace(lo, hi, n)]
    for i, row in enumerate(edges[: rows.shape[0]]):
        rows[i] = np.round(row).astype(np.int64)
    return rows.reshape(z.shape)


async def _secure(z: np.ndarray, params: SoftmaxParams, *, l_in: int, l_out: int, value_bits: int | None = None,
                  tcp: bool = False) -> np.ndarray:
    zs = Shared(from_signed(z, l_in), l_in)

    async def job(p: Party) -> np.ndarray:
        return await softmax_q(p, "sm", zs.mine(p), params=params, l_in=l_in, l_out=l_out, value_bits=value_bits)

    s, c = await (run_over_tcp(job) if tcp else run_both(job))
    assert s.shape == c.shape == z.shape and s.dtype == c.dtype == np.uint64
    return reconstruct(s, c, l_out).astype(np.int64)


CASES = [
    # (lead, n, scale, l_in, value_bits, l_out, octaves): octave-normalised and linear reciprocals; logits as
    # wide as their ring (the max extends them by a bit) or narrower; clipped (value_bits > k) or not
    ((4, 3), 8, 1 / 8, 8, None, 8, None),
    ((2, 3, 2), 17, 1 / 4, 10, 8, 12, None),
    ((20,), 32, 1 / 16, 9, 8, 8, None),
    ((2, 4), 128, 1 / 8, 16, 8, 8, None),  # heads x rows
    ((9,), 6, 1 / 2, 6, 4, 8, None),  # v = 4 = k: no clip at all
    ((9,), 9, 1 / 16, 5, None, 8, None),  # v = 5 < k = 7: no clip, the look-up reads the first 2^5 entries
    ((8,), 16, 1 / 8, 8, None, 8, 0),  # the linear reciprocal table (octaves = 0)
    ((7,), 1, 1 / 8, 8, None, 8, None),  # n = 1: always 255
]


@pytest.mark.parametrize("lead,n,scale,l_in,value_bits,l_out,octaves", CASES)
async def test_softmax_equals_softmax_int(lead: tuple[int, ...], n: int, scale: float, l_in: int,
                                          value_bits: int | None, l_out: int, octaves: int | None,
                                          gen: np.random.Generator) -> None:
    params, _ = softmax_params(scale, n, octaves=octaves)
    z = _logits(lead, n, value_bits or l_in, gen)
    got = await _secure(z, params, l_in=l_in, l_out=l_out, value_bits=value_bits)
    want = softmax_int(z, params)
    np.testing.assert_array_equal(got, want)
    if n == 1:
        assert (got == 255).all()
    elif ((1 << (value_bits or l_in)) - 1) * scale > 6:  # a logit span that lets one value take (almost) all
        assert want.max() >= 240 and (want <= 1).any()  # the edge rows reach ~1 and ~0


async def test_hand_made_params_and_a_lossy_clip(gen: np.random.Generator) -> None:
    """Params not from the builder: a non-zero tail of the exp table (the clip matters), sum_shift 0, an odd
    multiplier; the protocol follows softmax_int whatever the tables are."""
    params = SoftmaxParams(exp_table=(60, 40, 30, 20, 15, 9, 4, 2), sum_shift=0,
                           recip_table=tuple(range(256, 0, -1)), multiplier=3, shift=9, out_bits=7, octaves=2)
    z = _logits((40,), 5, 8, gen)
    np.testing.assert_array_equal(await _secure(z, params, l_in=8, l_out=7), softmax_int(z, params))


async def test_softmax_over_tcp(gen: np.random.Generator) -> None:
    params, _ = softmax_params(1 / 8, 12)
    z = _logits((2, 5), 12, 8, gen)
    np.testing.assert_array_equal(await _secure(z, params, l_in=9, l_out=8, value_bits=8, tcp=True),
                                  softmax_int(z, params))


async def test_empty_leading_axes() -> None:
    params, _ = softmax_params(1 / 8, 4)
    got = await _secure(np.zeros((0, 4), dtype=np.int64), params, l_in=8, l_out=8)
    assert got.shape == (0, 4)


def test_widths_are_the_tightest() -> None:
    params, _ = softmax_params(1 / 8, 32)  # e < 2^10, c = 10 + 8 + 2 + 1 = 21, t <= 2^(c+q) / 2^(b+q) = 2^12
    wd = SoftmaxWidths(params, 32, l_in=16, l_out=8, value_bits=8)
    assert (wd.w, wd.l_e, wd.l_r) == (9, 11, 13)
    # the largest e·r of any row (e <= S), not the product of the maxima (which would cost a bit more)
    sums = np.arange(1023, 32 * 1023 + 1)
    assert wd.prod_max == (np.minimum(sums, 1023) * softmax_reciprocal(sums, params)).max()
    assert wd.prod_max < 1 << 21 < 1023 * max(params.recip_table)
    z = np.random.default_rng(5).integers(-128, 128, (2000, 32))
    z[:, 0] = 127
    e = np.asarray(params.exp_table)[np.minimum(z.max(-1, keepdims=True) - z, len(params.exp_table) - 1)]
    assert (e * softmax_reciprocal(e.sum(-1, keepdims=True), params)).max() <= wd.prod_max
    assert wd.L == 22  # every e·r < 2^21 plus the known-zero top bit, whatever n
    assert (wd.prod_max + (1 << (params.shift - 1))) >> params.shift == 255  # the output needs no clip
    assert SoftmaxWidths(softmax_params(1 / 8, 128)[0], 128, l_in=9, l_out=8, value_bits=8).L == 22


@pytest.mark.parametrize("kwargs,match", [
    ({"l_out": 7}, "l_out"), ({"value_bits": 9}, "value_bits"), ({"value_bits": 0}, "value_bits"),
    ({"z": np.zeros((3, 0), dtype=np.uint64)}, "non-empty"), ({"z": np.zeros(4, dtype=np.int64) - 1}, "unsigned"),
    ({"z": np.full(4, 256, dtype=np.uint64)}, "below"), ({"params": "softmax"}, "SoftmaxParams"),
    ({"l_in": 0}, "ring width"),
])
async def test_bad_input_is_a_typed_error(kwargs: dict, match: str) -> None:
    params, _ = softmax_params(1 / 8, 4)
    args = {"z": np.zeros(4, dtype=np.uint64), "params": params, "l_in": 8, "l_out": 8, "value_bits": None}
    args.update(kwargs)

    async def job(p: Party) -> np.ndarray:
        return await softmax_q(p, "sm", args["z"], params=args["params"], l_in=args["l_in"], l_out=args["l_out"],
                               value_bits=args["value_bits"])

    with pytest.raises(InputError, match=match):
        await run_both(job)


async def test_bytes_per_element_from_the_channel(gen: np.random.Generator) -> None:
    """Online bits per element measured on the channel (printed; benchmarks/softmax.py reports them per step).
    The per-row reciprocal is shared by the row, so a row of 32 costs fewer bits per element than rows of 8."""
    per_element = {}
    warm, _ = softmax_params(1 / 8, 2)
    for n in (8, 32):
        params, _ = softmax_params(1 / 8, n)
        z = _logits((512 // n,), n, 8, gen)
        zs = Shared(from_signed(z, 9), 9)

        async def job(p: Party) -> int:
            await softmax_q(p, "warm", zs.mine(p)[:1, :2], params=warm, l_in=9, l_out=8, value_bits=8)  # base OTs
            before = p.channel.stats()
            await softmax_q(p, f"sm{n}", zs.mine(p), params=params, l_in=9, l_out=8, value_bits=8)
            d = (p.channel.stats() - before).select(f"sm{n}", phase="online")
            return d.bytes_sent + d.bytes_recv

        s, c = await run_both(job)
        per_element[n] = 8 * s / z.size
        print(f"softmax n={n}: {per_element[n]:.0f} online bits per element")
    assert 0 < per_element[32] < per_element[8] < 4000


async def test_output_shares_are_fresh() -> None:
    """One value everywhere (all rows equal): each party's output shares must still look uniform mod 2^l_out."""
    params, _ = softmax_params(1 / 8, 4)
    zs = Shared(from_signed(np.full((64, 4), 7), 8), 8)

    async def job(p: Party) -> np.ndarray:
        return await softmax_q(p, "sm", zs.mine(p), params=params, l_in=8, l_out=8)

    s, c = await run_both(job)
    np.testing.assert_array_equal(reconstruct(s, c, 8), np.full((64, 4), 64, dtype=np.uint64))
    for share_ in (s, c):  # 256 draws from 256 values: ~162 distinct if uniform, 1 if not re-randomised
        assert len(np.unique(share_)) > 120


@pytest.mark.parametrize("seed", range(8))
async def test_random_configurations(seed: int) -> None:
    """Random row lengths, scales, widths, output bits, exp precision and octaves (or the linear table)."""
    g = np.random.default_rng(100 + seed)
    n = int(g.choice([2, 3, 9, 24, 64]))
    v = int(g.integers(3, 11))
    l_in = v + int(g.integers(0, 4))
    out_bits = int(g.integers(4, 10))
    params, _ = softmax_params(float(2.0 ** g.uniform(-5, 0)), n, out_bits=out_bits,
                               frac_bits=int(g.integers(6, 13)), octaves=0 if g.random() < 0.3 else None)
    z = _logits((int(g.integers(1, 6)), 3), n, v, g)
    got = await _secure(z, params, l_in=l_in, l_out=out_bits + int(g.integers(0, 3)),
                        value_bits=v if v < l_in or g.random() < 0.5 else None)
    np.testing.assert_array_equal(got, softmax_int(z, params))
