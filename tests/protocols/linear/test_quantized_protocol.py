"""Quantized planner end to end: secure conv / fc equal the integer reference bit for bit at low widths, the
byte model equals the channel statistics, and the choice never costs more than Cheetah's rule at the same l."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from aiompc.protocols.linear.planners import PLANNERS
from aiompc.crypto.prg import PRG
from aiompc.nn.bounds import linear_channel_ranges, width_for_range
from aiompc.ring import reconstruct, share, to_signed
from aiompc.session import run_local
from aiompc.protocols.linear.conv import conv2d, conv_plan
from aiompc.protocols.linear.costs import key_bytes, plan_cost
from aiompc.protocols.linear.fc import fc, fc_plan
from aiompc.protocols.linear.reference import conv2d_ref, matmul_ref
from aiompc.protocols.linear.tiling import ConvShape, MatmulShape
from aiompc.protocols.linear.weight_cache import STATE_KEY, WeightCache


def signed_weights(rng: np.random.Generator, bits: int, shape: tuple[int, ...]) -> np.ndarray:
    """Symmetric ``bits``-bit weights in ``[-2^(b-1), 2^(b-1) - 1]`` (both extremes forced to appear)."""
    w = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), shape)
    w.reshape(-1)[:2] = [-(1 << (bits - 1)), (1 << (bits - 1)) - 1]
    return w


def acc_ring(w: np.ndarray, bias: np.ndarray | None, a_bits: int) -> int:
    """The ring of the accumulator as the secure engine sets it: the signed width of its exact range."""
    lo, hi = linear_channel_ranges(w, bias, 0, (1 << a_bits) - 1)
    bits, signed = width_for_range(int(lo.min()), int(hi.max()))
    return bits if signed else bits + 1


async def run_conv(x, w, bias, shape: ConvShape, l: int, wb: int, planner="quantized", label="conv"):
    xs, xc = share(x, l, PRG())
    kw = dict(out_channels=shape.out_channels, kernel=shape.kernel, stride=shape.stride, padding=shape.padding,
              groups=shape.groups, l=l, weight_bits=wb, planner=PLANNERS[planner])

    async def server(p):
        return await conv2d(p, label, xs, weight=w, bias=bias, **kw), p.channel.stats()

    async def client(p):
        return await conv2d(p, label, xc, **kw), p.channel.stats()

    (ys, st_s), (yc, st_c) = await run_local(server, client)
    return to_signed(reconstruct(ys, yc, l), l), st_c


# weight bits, activation bits, (C, H, W, M, kernel, stride, padding, groups)
CONV_CASES = [
    (2, 2, (16, 4, 4, 32, 3, 1, 1, 1)),
    (3, 5, (8, 8, 8, 16, 3, 2, 1, 1)),
    (4, 4, (32, 4, 4, 40, 3, 1, 1, 1)),
    (5, 3, (3, 12, 12, 5, 3, 1, 1, 1)),
    (6, 6, (8, 6, 6, 8, 3, 1, 1, 8)),  # depthwise
    (7, 7, (12, 5, 5, 20, 1, 1, 0, 1)),  # 1x1: nothing to compact
    (8, 8, (10, 6, 6, 1, 3, 1, 1, 1)),  # one output channel: out_pack impossible
    (8, 2, (1, 9, 9, 6, 5, 2, 2, 1)),  # one input channel, 5x5 stride 2
    (2, 8, (6, 7, 9, 9, 3, 1, (1, 1, 2, 1), 1)),  # asymmetric padding
]


@pytest.mark.parametrize("wb, ab, geometry", CONV_CASES)
async def test_quantized_conv_equals_integer_reference(wb: int, ab: int, geometry, nprng) -> None:
    c, h, w_, m, k, s, p, g = geometry
    shape = ConvShape.make(c, h, w_, m, k, stride=s, padding=p, groups=g)
    x = nprng.integers(0, 1 << ab, shape.in_shape)
    x.reshape(-1)[:3] = [0, (1 << ab) - 1, (1 << ab) - 1]
    w = signed_weights(nprng, wb, shape.weight_shape)
    bias = nprng.integers(-50, 50, m)
    l = acc_ring(w.reshape(m, -1) if g == 1 else w, bias, ab)
    expect = conv2d_ref(x, w, shape, 64).view(np.int64) + bias[:, None, None]
    got, stats = await run_conv(x, w, bias, shape, l, wb)
    assert np.array_equal(got, expect)
    plan = conv_plan(shape, l, weight_bits=wb, planner=PLANNERS["quantized"])
    assert plan.planner == "quantized" and plan.he.plain_bits == l
    # the model is the measurement: bytes of the layer's label in both directions, and the session key
    cost = plan_cost(plan, "conv")
    assert (stats.select("conv").bytes_sent, stats.select("conv").bytes_recv) == (cost.upload, cost.download)
    assert stats.select("he-keys").bytes_sent == key_bytes(plan.he)
    if m == 1:
        assert plan.layout.tiling.out_pack == 1


# batch (0 = vector), in, out, weight bits, activation bits
FC_CASES = [(0, 300, 7, 4, 4), (3, 64, 40, 2, 8), (0, 5000, 3, 8, 2), (2, 100, 100, 6, 3)]


@pytest.mark.parametrize("batch, n_in, n_out, wb, ab", FC_CASES)
async def test_quantized_fc_at_the_accumulator_extremes(batch: int, n_in: int, n_out: int, wb: int, ab: int,
                                                         nprng) -> None:
    w = signed_weights(nprng, wb, (n_out, n_in))
    l = acc_ring(w, None, ab)
    rows = max(batch, 1)
    x = nprng.integers(0, 1 << ab, (rows, n_in))
    x[0] = np.where(w[0] > 0, (1 << ab) - 1, 0)  # output (0, 0) at its largest possible value
    if rows > 1:
        x[1] = np.where(w[-1] < 0, (1 << ab) - 1, 0)  # output (1, -1) at its smallest
    xin = x[0] if batch == 0 else x
    xs, xc = share(xin, l, PRG())
    kw = dict(out_features=n_out, l=l, weight_bits=wb, planner=PLANNERS["quantized"])

    async def server(p):
        return await fc(p, "fc", xs, weight=w, **kw)

    async def client(p):
        return await fc(p, "fc", xc, **kw), p.channel.stats()

    ys, (yc, stats) = await run_local(server, client)
    expect = matmul_ref(xin, w, 64).view(np.int64)
    assert np.array_equal(to_signed(reconstruct(ys, yc, l), l), expect)
    plan = fc_plan(MatmulShape(rows, n_in, n_out), l, weight_bits=wb, planner=PLANNERS["quantized"])
    cost = plan_cost(plan, "fc")
    assert (stats.select("fc").bytes_sent, stats.select("fc").bytes_recv) == (cost.upload, cost.download)


@pytest.mark.parametrize("geometry, l, wb", [((64, 4, 4, 64, 3, 1, 1), 17, 4), ((16, 12, 12, 8, 3, 2, 1), 12, 3)])
async def test_measured_bytes_never_above_cheetahs_rule(geometry, l: int, wb: int, nprng) -> None:
    c, h, w_, m, k, s, p = geometry
    shape = ConvShape.make(c, h, w_, m, k, stride=s, padding=p)
    x = nprng.integers(0, 16, shape.in_shape)
    w = signed_weights(nprng, wb, shape.weight_shape)
    measured = {}
    for planner in ("quantized", "cheetah-smallest"):
        got, stats = await run_conv(x, w, None, shape, l, wb, planner)
        assert np.array_equal(got, to_signed(conv2d_ref(x, w, shape, l), l))
        measured[planner] = stats.select("conv").bytes_sent + stats.select("conv").bytes_recv
    assert measured["quantized"] <= measured["cheetah-smallest"]
    if m >= 64:  # many output channels on a small image: out_pack pays several times over
        assert 2 * measured["quantized"] < measured["cheetah-smallest"]


async def test_weights_prepared_once_for_a_batch(nprng) -> None:
    """Samples of a batch run concurrently (as the secure engine does) and share one weight preparation."""
    l, wb = 14, 4
    shape = ConvShape.make(24, 4, 4, 48, 3, padding=1)
    w = signed_weights(nprng, wb, shape.weight_shape)
    w2 = signed_weights(nprng, wb, shape.weight_shape)
    xs = nprng.integers(0, 16, (3, *shape.in_shape))
    shares = [share(x, l, PRG()) for x in xs]
    kw = dict(out_channels=48, kernel=3, padding=1, l=l, weight_bits=wb, planner=PLANNERS["quantized"])

    async def server(p):
        ys = await asyncio.gather(*(conv2d(p, f"c/b{i}", s[0], weight=w, **kw) for i, s in enumerate(shares)))
        y2 = await conv2d(p, "c2", shares[0][0], weight=w2, **kw)
        return ys, y2, p.state[STATE_KEY]

    async def client(p):
        ys = await asyncio.gather(*(conv2d(p, f"c/b{i}", s[1], **kw) for i, s in enumerate(shares)))
        return ys, await conv2d(p, "c2", shares[0][1], **kw)

    (ys, y2s, cache), (yc, y2c) = await run_local(server, client)
    for i, x in enumerate(xs):
        assert np.array_equal(to_signed(reconstruct(ys[i], yc[i], l), l), to_signed(conv2d_ref(x, w, shape, l), l))
    assert np.array_equal(reconstruct(y2s, y2c, l), conv2d_ref(xs[0], w2, shape, l))
    assert isinstance(cache, WeightCache)
    assert (cache.misses, cache.hits, len(cache)) == (2, 2, 2)


async def test_a_two_uniform_flood_plan_of_the_quantized_planner_is_exact_and_modelled(nprng) -> None:
    """The planner also tries flooding with the sum of two uniforms (``q`` a few bits smaller for many visible
    outputs): such a plan keeps 40 bits, equals the reference bit for bit, and its bytes are the model's."""
    from aiompc.crypto.he import STATISTICAL_SECURITY
    from aiompc.protocols.linear.costs import plan_cost
    from aiompc.protocols.linear.quantized import QuantizedPlanner

    shape = ConvShape.make(16, 16, 16, 8, 3, padding=1)
    planner = QuantizedPlanner(output_packing=False)
    best = planner.search(shape, 16, 4).best.plan
    one = planner.evaluate(best.layout, 16, 4).plan
    two = planner.evaluate(best.layout, 16, 4, flood_terms=2).plan
    assert two.output.flood_terms == 2 and two.stat_security >= STATISTICAL_SECURITY
    assert two.he.log2_q < one.he.log2_q and plan_cost(two).total < plan_cost(one).total
    x = nprng.integers(0, 16, shape.in_shape)
    w = nprng.integers(-8, 8, shape.weight_shape)
    xs, xc = share(x, 16, PRG())
    kw = dict(out_channels=8, kernel=3, padding=1, l=16, weight_bits=4, plan=two)

    async def server(p):
        return await conv2d(p, "conv", xs, weight=w, **kw)

    async def client(p):
        return await conv2d(p, "conv", xc, **kw), p.channel.stats()

    ys, (yc, stats) = await run_local(server, client)
    assert np.array_equal(to_signed(reconstruct(ys, yc, 16), 16), conv2d_ref(x, w, shape, 64).view(np.int64))
    cost = plan_cost(two, "conv")
    assert (stats.select("conv").bytes_sent, stats.select("conv").bytes_recv) == (cost.upload, cost.download)
