"""Approximate mode: the output truncated at decryption (``out_shift``) is within one unit of the exact floor,
and buys smaller ciphertexts (fewer bits of q, c0 and c1) for the same layout."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.protocols.linear.planners import PLANNERS
from aiompc.protocols.linear.quantized import QuantizedPlanner
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError
from aiompc.ring import reconstruct, share, to_signed
from aiompc.session import run_local
from aiompc.protocols.linear.conv import conv2d, conv_plan
from aiompc.protocols.linear.costs import plan_cost
from aiompc.protocols.linear.fc import fc
from aiompc.protocols.linear.plan import plan_for, with_out_shift
from aiompc.protocols.linear.reference import conv2d_ref, matmul_ref
from aiompc.protocols.linear.tiling import ConvShape, MatmulShape


async def truncated_conv(x, w, bias, shape: ConvShape, l: int, wb: int, s: int, planner: str):
    xs, xc = share(x, l, PRG())
    kw = dict(out_channels=shape.out_channels, kernel=shape.kernel, stride=shape.stride, padding=shape.padding,
              l=l, weight_bits=wb, planner=PLANNERS[planner], out_shift=s)

    async def server(p):
        return await conv2d(p, "conv", xs, weight=w, bias=bias, **kw)

    async def client(p):
        return await conv2d(p, "conv", xc, **kw), p.channel.stats()

    ys, (yc, stats) = await run_local(server, client)
    assert ys.max() < 1 << (l - s) and yc.max() < 1 << (l - s)
    return to_signed(reconstruct(ys, yc, l - s), l - s), stats


@pytest.mark.parametrize("planner", ["quantized", "cheetah-smallest"])
@pytest.mark.parametrize("l, s, wb, ab", [(18, 9, 4, 4), (17, 4, 2, 6), (22, 1, 8, 4)])
async def test_truncated_conv_is_within_one_unit(planner: str, l: int, s: int, wb: int, ab: int, nprng) -> None:
    shape = ConvShape.make(48, 4, 4, 40, 3, padding=1)
    x = nprng.integers(0, 1 << ab, shape.in_shape)
    w = nprng.integers(-(1 << (wb - 1)), 1 << (wb - 1), shape.weight_shape)
    bias = nprng.integers(-(1 << (l - 4)), 1 << (l - 4), 40)
    exact = conv2d_ref(x, w, shape, 64).view(np.int64) + bias[:, None, None]
    assert np.abs(exact).max() < 1 << (l - 2)  # one bit of headroom for the +-1 error in the l - s ring
    got, stats = await truncated_conv(x, w, bias, shape, l, wb, s, planner)
    err = got - (exact >> s)  # floor division by 2^s
    values, counts = np.unique(err, return_counts=True)
    assert set(values) <= {-1, 0, 1}
    assert counts[values == 0].sum() > err.size // 2  # most values exact (about 3/4 in expectation)
    plan = conv_plan(shape, l, weight_bits=wb, planner=PLANNERS[planner], out_shift=s)
    assert plan.out_bits == l - s
    cost = plan_cost(plan, "conv")
    assert (stats.select("conv").bytes_sent, stats.select("conv").bytes_recv) == (cost.upload, cost.download)


async def test_truncated_fc_vector(nprng) -> None:
    l, s, wb = 15, 7, 4
    w = nprng.integers(-8, 8, (10, 700))
    x = nprng.integers(0, 16, 700)
    xs, xc = share(x, l, PRG())
    kw = dict(out_features=10, l=l, weight_bits=wb, planner=PLANNERS["quantized"], out_shift=s)

    async def server(p):
        return await fc(p, "fc", xs, weight=w, bias=np.arange(10), **kw)

    async def client(p):
        return await fc(p, "fc", xc, **kw)

    ys, yc = await run_local(server, client)
    exact = matmul_ref(x, w, 64).view(np.int64) + np.arange(10)
    assert set(np.unique(to_signed(reconstruct(ys, yc, l - s), l - s) - (exact >> s))) <= {-1, 0, 1}


@pytest.mark.parametrize("shape", [ConvShape.make(256, 8, 8, 256, 3, padding=1), MatmulShape(1, 2048, 100)])
def test_truncation_shrinks_the_ciphertexts(shape) -> None:
    l, s = 18, 10
    planner = QuantizedPlanner(output_packing=False)  # truncation alone (packing changes visible counts and q)
    exact = plan_for(planner, shape, l, 4)
    approx = plan_for(planner, shape, l, 4, out_shift=s)
    same_layout = with_out_shift(exact, s)
    for a in (approx, same_layout):
        assert a.output.bits0 <= exact.output.bits0 - s + 1 and a.output.bits1 <= exact.output.bits1 - s + 1
    assert approx.he.q.bit_length() <= exact.he.q.bit_length() - s + 2  # q re-optimised for the precision
    assert same_layout.he == exact.he
    assert plan_cost(approx).total <= plan_cost(same_layout).total < plan_cost(exact).total
    assert plan_cost(approx).total * 1.25 < plan_cost(exact).total


async def test_out_shift_errors(nprng) -> None:
    shape = ConvShape.make(2, 4, 4, 2, 3, padding=1)
    with pytest.raises(InputError, match="out_shift"):
        conv_plan(shape, 8, weight_bits=4, planner=PLANNERS["quantized"], out_shift=8)
    plan = conv_plan(shape, 8, weight_bits=4, planner=PLANNERS["quantized"], out_shift=2)
    x = np.zeros(shape.in_shape, dtype=np.uint64)

    async def client(p):
        return await conv2d(p, "c", x, out_channels=2, kernel=3, padding=1, l=8, plan=plan)

    async def server(p):
        return await conv2d(p, "c", x, out_channels=2, kernel=3, padding=1, l=8, plan=plan,
                            weight=np.ones(shape.weight_shape, dtype=np.int64))

    with pytest.raises(InputError, match="truncates by 2 bits, not 0"):  # both sides refuse before sending
        await run_local(server, client)
