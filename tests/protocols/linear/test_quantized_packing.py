"""Kronecker packing of input channels: the packed product carries the convolution in its diagonal slot, the
protocol on shares (each channel in the ring its slot needs) is within one unit of the truncated result, and
the packing choice accounts for the wider input rings."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.protocols.linear.planners import PLANNERS
from aiompc.crypto.he import choose_primes
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, UndecryptableParameters
from aiompc.nn.bounds import width_for_range
from aiompc.ring import reconstruct, share, to_signed
from aiompc.session import run_local
from aiompc.protocols.linear.conv import conv2d, conv_plan
from aiompc.protocols.linear.costs import plan_cost
from aiompc.protocols.linear.kronecker import KroneckerConvLayout, packed_shape, slot_rings, unpack_offset
from aiompc.protocols.linear.quantized import QuantizedPlanner, choose_packing
from aiompc.protocols.linear.reference import conv2d_ref
from aiompc.protocols.linear.tiling import ConvShape, ConvTiling

from test_encoding import conv_via_encoding


@pytest.mark.parametrize("pack, slot, c", [(2, 14, 5), (3, 15, 9), (2, 16, 8)])
def test_diagonal_slot_is_the_convolution(pack: int, slot: int, c: int, nprng) -> None:
    """In the clear: slot k-1 of the packed product, after centring the cross terms, is the convolution."""
    shape = ConvShape.make(c, 5, 6, 3, 3, padding=1)
    l = pack * slot
    tiling = ConvTiling(packed_shape(shape, pack), 1024, 2, 7, 8, 2)
    lay = KroneckerConvLayout(tiling, shape, pack, slot, 4)
    x = nprng.integers(0, 16, shape.in_shape)
    w = nprng.integers(-8, 8, shape.weight_shape)
    y = conv2d_ref(x, w, shape, 64).view(np.int64)
    assert np.abs(y).max() < 1 << (slot - 1)
    z = conv_via_encoding(lay.pack_input(x, l), lay.pack_weight(w, l), tiling, l)  # L + 2^((k-1)B) y mod 2^l
    high = (pack - 1) * slot
    top = ((z + np.uint64(unpack_offset(pack, slot))) & np.uint64((1 << l) - 1)) >> np.uint64(high)
    assert np.array_equal(to_signed(top, slot), y)


@pytest.mark.parametrize("wval", [-8, 7])
def test_diagonal_slot_at_the_accumulator_extremes(wval: int) -> None:
    """All inputs 15 and all weights at one extreme: every slot sum sits at the edge of its B-bit range."""
    shape = ConvShape.make(6, 4, 4, 2, 3, padding=1)
    bound = 6 * 9 * 8 * 15  # |any slot sum| <= C * taps * |w| * x
    slot, _ = width_for_range(-bound, bound)  # the smallest slot: 14 signed bits
    lay = KroneckerConvLayout(ConvTiling(packed_shape(shape, 3), 256, 2, 6, 6, 2), shape, 3, slot, 4)
    x = np.full(shape.in_shape, 15)
    w = np.full(shape.weight_shape, wval)
    y = conv2d_ref(x, w, shape, 64).view(np.int64)
    l = 3 * slot
    z = conv_via_encoding(lay.pack_input(x, l), lay.pack_weight(w, l), lay.tiling, l)
    top = ((z + np.uint64(unpack_offset(3, slot))) & np.uint64((1 << l) - 1)) >> np.uint64(2 * slot)
    assert np.array_equal(to_signed(top, slot), y)


def test_weights_above_the_bound_are_refused(nprng) -> None:
    shape = ConvShape.make(4, 4, 4, 2, 3, padding=1)
    lay = KroneckerConvLayout(ConvTiling(packed_shape(shape, 2), 256, 2, 6, 6), shape, 2, 12, 4)
    with pytest.raises(InputError, match="public bound"):
        lay.pack_weight(np.full(shape.weight_shape, 9), 24)


@pytest.mark.parametrize("pack, shift", [(2, 8), (3, 6), (2, 0)])
async def test_packed_conv_on_shares_in_their_slot_rings(pack: int, shift: int, nprng) -> None:
    slot, wb = 15, 4
    shape = ConvShape.make(40, 4, 4, 48, 3, padding=1)
    l = pack * slot
    out_shift = (pack - 1) * slot + shift
    x = nprng.integers(0, 16, shape.in_shape)
    w = nprng.integers(-8, 8, shape.weight_shape)
    bias = nprng.integers(-100, 100, 48)
    exact = conv2d_ref(x, w, shape, 64).view(np.int64) + bias[:, None, None]
    assert np.abs(exact).max() < 1 << (slot - 2)
    xs = np.zeros(shape.in_shape, dtype=np.uint64)
    xc = np.zeros(shape.in_shape, dtype=np.uint64)
    for c, ring in enumerate(slot_rings(40, pack, slot)):  # slot i: a share mod 2^((k-i)B) only
        xs[c], xc[c] = share(x[c], int(ring), PRG())
    kw = dict(out_channels=48, kernel=3, padding=1, l=l, weight_bits=wb, planner=PLANNERS["quantized"], out_shift=out_shift,
              pack=pack)

    async def server(p):
        return await conv2d(p, "conv", xs, weight=w, bias=bias, **kw)

    async def client(p):
        return await conv2d(p, "conv", xc, **kw), p.channel.stats()

    ys, (yc, stats) = await run_local(server, client)
    got = to_signed(reconstruct(ys, yc, l - out_shift), l - out_shift)
    err = got - (exact >> shift)
    assert set(np.unique(err)) <= {-1, 0, 1} and (err == 0).mean() > 0.5
    plan = conv_plan(shape, l, weight_bits=wb, planner=PLANNERS["quantized"], out_shift=out_shift, pack=pack)
    assert plan.layout.pack == pack and plan.input_ciphertexts <= conv_plan(
        shape, slot, weight_bits=wb, planner=PLANNERS["quantized"], out_shift=shift).input_ciphertexts
    cost = plan_cost(plan, "conv")
    assert (stats.select("conv").bytes_sent, stats.select("conv").bytes_recv) == (cost.upload, cost.download)


def test_packing_needs_the_truncation_and_a_planner_that_packs() -> None:
    shape = ConvShape.make(8, 4, 4, 8, 3, padding=1)
    with pytest.raises(InputError, match="out_shift >= 12"):
        QuantizedPlanner()(shape, 24, 4, out_shift=4, pack=2)  # the cross terms would reach the output
    with pytest.raises(InputError, match="groups = 1"):
        QuantizedPlanner()(ConvShape.make(8, 4, 4, 8, 3, padding=1, groups=8), 24, 4, out_shift=12, pack=2)
    with pytest.raises(InputError, match="does not pack"):
        conv_plan(shape, 24, weight_bits=4, planner=PLANNERS["cheetah-smallest"], out_shift=12, pack=2)


def test_choose_packing_counts_the_input_widening() -> None:
    planner = QuantizedPlanner()
    small_image = choose_packing(planner, ConvShape.make(256, 4, 4, 256, 3, padding=1), 18, 4, 10)
    assert small_image[0].pack > 1  # HE bytes dominate: packing pays even net of the wider input rings
    opts = {o.pack: o for o in small_image}
    assert opts[1].widening == 0 and opts[2].widening > 0
    assert opts[2].cost.total < opts[1].cost.total
    # with an expensive input (a price per ring bit well above the requantization's 4 bits) it never pays
    costly = choose_packing(planner, ConvShape.make(256, 4, 4, 256, 3, padding=1), 18, 4, 10, input_bit_cost=400)
    assert costly[0].pack == 1
    # one input channel: nothing to pack
    assert [o.pack for o in choose_packing(planner, ConvShape.make(1, 6, 6, 4, 3, padding=1), 12, 4, 4)] == [1]


def test_prime_search_near_the_budget_does_not_overflow() -> None:
    """Regression: near the 128-bit budget the prime count grows; the q = 1 mod t step must not overflow."""
    with pytest.raises(UndecryptableParameters):
        choose_primes(8192, 218.0, 218, 40)
