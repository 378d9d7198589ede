"""The quantized planner without HE: search space, never worse than Cheetah's rule, compact tiles, byte model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiompc.errors import InputError, ParameterError, UndecryptableParameters
from aiompc.protocols.linear.costs import frame_bytes, output_counts, wire_cost
from aiompc.protocols.linear.encoding import conv_output_positions
from aiompc.protocols.linear.engine import input_chunks, output_batches
from aiompc.protocols.linear.layouts import ConvLayout, MatmulLayout
from aiompc.protocols.linear.plan import CheetahPlanner
from aiompc.protocols.linear.planners import PLANNERS, planner_named
from aiompc.protocols.linear.quantized import QuantizedPlanner, axis_tiles, block_sizes, conv_tilings
from aiompc.protocols.linear.reference import conv2d_ref
from aiompc.protocols.linear.tiling import ConvShape, ConvTiling, MatmulShape, MatmulTiling

from test_encoding import conv_via_encoding


@given(st.integers(1, 3000), st.integers(1, 3000))
@settings(max_examples=200, deadline=None)
def test_block_sizes_are_the_minimal_block_per_count(total: int, largest: int) -> None:
    got = block_sizes(total, largest)
    expect = sorted({-(-total // -(-total // b)) for b in range(1, min(total, largest) + 1)}, reverse=True)
    assert got == expect
    counts = [-(-total // b) for b in got]
    assert counts == sorted(set(counts))  # one block size per count


def test_axis_tiles_cover_the_outputs() -> None:
    # 32 outputs, kernel 3, stride 2, padded 34: tiles of (r - 1)*2 + 3 rows for each distinct tile count
    for tile in axis_tiles(34, 3, 2, 16):
        per = (tile - 3) // 2 + 1
        assert tile <= 34 and per >= 1 and math.ceil(16 / per) * per >= 16
    assert axis_tiles(6, 3, 1, 4) == [6, 4, 3]


SHAPES = {
    "512x4x4 -> 512": ConvShape.make(512, 4, 4, 512, 3, padding=1),
    "64x32x32 -> 64": ConvShape.make(64, 32, 32, 64, 3, padding=1),
    "64x32x32 -> 128 s2": ConvShape.make(64, 32, 32, 128, 3, stride=2, padding=1),
    "3x70x70 -> 8 (H*W > N)": ConvShape.make(3, 70, 70, 8, 3, padding=1),
    "one output channel": ConvShape.make(40, 8, 8, 1, 3, padding=1),
    "one input channel, 1x1": ConvShape.make(1, 6, 6, 7, 1),
    "depthwise": ConvShape.make(32, 8, 8, 32, 3, padding=1, groups=32),
    "fc 512 -> 10": MatmulShape(1, 512, 10),
    "fc batch 4, 300 -> 70": MatmulShape(4, 300, 70),
}


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("l, wb", [(18, 4), (9, 2)])
def test_search_never_worse_than_cheetah_rule(name: str, l: int, wb: int) -> None:
    shape = SHAPES[name]
    planner = QuantizedPlanner()
    res = planner.search(shape, l, wb)
    assert res.cheetah is not None
    cheetah = CheetahPlanner(he="smallest")(shape, l, wb)  # Cheetah's rule with the smallest secure q
    assert res.cheetah.plan == cheetah
    assert res.best.cost.total <= res.cheetah.cost.total
    best = res.best.plan
    assert best.planner == "quantized" and best.l == l and best.weight_bits == wb
    assert best.pipeline.stat_bits == 40 and best.output.flood_bits >= 41
    assert best.he.q.bit_length() <= {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438}[best.he.n]


def test_search_finds_out_pack_for_small_images() -> None:
    """REFERENCE.md's worst case: 512x4x4 under Cheetah's rule uses 16 of 4096 coefficients per result."""
    res = QuantizedPlanner(output_packing=False).search(SHAPES["512x4x4 -> 512"], 18, 4)
    t = res.best.plan.layout.tiling
    assert t.out_pack > 1 and t.compact
    assert res.cheetah.plan.output_ciphertexts == 512
    assert res.best.plan.output_ciphertexts < 128
    assert res.best.cost.total * 2.5 < res.cheetah.cost.total


def test_one_output_channel_cannot_pack() -> None:
    res = QuantizedPlanner().search(SHAPES["one output channel"], 16, 4)
    assert res.best.plan.layout.tiling.out_pack == 1


def test_bandwidth_objective_and_registration() -> None:
    shape = SHAPES["64x32x32 -> 64"]
    fast = QuantizedPlanner(bandwidth=1e12, output_packing=False).search(shape, 15, 4)
    slow = QuantizedPlanner(bandwidth=1e5, output_packing=False).search(shape, 15, 4)
    # on a slow link time is bytes; on a fast one compute matters: never more compute than the byte-optimum
    assert slow.best.cost.total == QuantizedPlanner(output_packing=False).search(shape, 15, 4).best.cost.total
    assert fast.best.cost.seconds() <= slow.best.cost.seconds()
    assert isinstance(PLANNERS["quantized"], QuantizedPlanner)
    assert planner_named("quantized")(shape, 15, 4) == QuantizedPlanner()(shape, 15, 4)
    with pytest.raises(InputError):
        QuantizedPlanner()(shape, 15, 16)  # weight_bits > l


def test_undecryptable_is_an_error() -> None:
    with pytest.raises(UndecryptableParameters, match="no layout decrypts"):
        QuantizedPlanner(ns=(2048, 4096))(SHAPES["fc 512 -> 10"], 60, 60)  # 60-bit weights, 60-bit ring


# --------------------------------------------------------------------------- compact tiles


COMPACT = [  # C, H, W, M, kernel, stride, padding (t, b, l, r), groups, C_w, H_w, W_w, out_pack
    (5, 4, 4, 6, 3, 1, (1, 1, 1, 1), 1, 2, 6, 6, 3),
    (3, 7, 5, 4, 3, 2, (1, 1, 1, 1), 1, 2, 9, 7, 2),
    (4, 6, 6, 4, 3, 1, (1, 1, 2, 1), 1, 2, 8, 9, 2),  # right < left
    (4, 10, 6, 3, 3, 1, (2, 1, 1, 1), 1, 3, 6, 8, 1),  # several row tiles: columns compacted only
    (6, 5, 5, 6, 3, 1, (1, 1, 1, 1), 3, 2, 7, 7, 2),  # groups
    (2, 9, 9, 3, 5, 2, (2, 2, 2, 2), 1, 2, 13, 13, 2),
]


@pytest.mark.parametrize("case", COMPACT)
def test_compact_tiles_compute_the_convolution(case, nprng) -> None:
    c, h, w, m, k, s, p, g, cw, th, tw, op = case
    shape = ConvShape.make(c, h, w, m, k, stride=s, padding=p, groups=g)
    t = ConvTiling(shape, 1024, cw, th, tw, op, compact=True)
    plain = ConvTiling(shape, 1024, cw, th, tw, op)
    assert t.channel_size < plain.channel_size
    x = nprng.integers(0, 1 << 16, shape.in_shape, dtype=np.uint64)
    wt = nprng.integers(-100, 100, shape.weight_shape)
    assert np.array_equal(conv_via_encoding(x, wt, t, 16), conv2d_ref(x, wt, shape, 16))


def test_compact_needs_full_width_and_right_padding_at_most_left() -> None:
    shape = ConvShape.make(2, 8, 8, 2, 3, padding=1)
    with pytest.raises(ParameterError, match="span the padded width"):
        ConvTiling(shape, 256, 1, 10, 6, compact=True)
    with pytest.raises(ParameterError, match="right"):
        ConvTiling(ConvShape.make(2, 8, 8, 2, 3, padding=(1, 1, 0, 1)), 256, 1, 10, 9, compact=True)


# --------------------------------------------------------------------------- byte model


def _slow_wire(layout, params, output, chunk, label):
    """Every message priced individually, following the engine's own message structure."""
    from aiompc.crypto.he import result_size, seeded_size

    class Plan:  # the fields input_chunks / output_batches read
        pass

    plan = Plan()
    plan.layout, plan.chunk = layout, chunk
    up = down = 0
    for u in range(layout.units):
        lab = f"{label}/tile{u}"
        up += sum(frame_bytes(lab, seeded_size(params, k1 - k0)) for k0, k1 in input_chunks(plan))
        down += sum(frame_bytes(lab, result_size(params, b.count, b.positions.size, output.bits0, output.bits1))
                    for b in output_batches(plan, u))
    return up, down


@pytest.mark.parametrize("name", ["3x70x70 -> 8 (H*W > N)", "64x32x32 -> 128 s2", "fc batch 4, 300 -> 70", "depthwise"])
@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_fast_byte_model_equals_message_walk(name: str, chunk: int) -> None:
    shape = SHAPES[name]
    for planner in (QuantizedPlanner(chunk=chunk), CheetahPlanner(he="smallest", chunk=chunk)):
        plan = planner(shape, 12, 4)
        up, down, *_ = wire_cost(plan.layout, plan.he, plan.output, plan.chunk, "some/label")
        assert (up, down) == _slow_wire(plan.layout, plan.he, plan.output, plan.chunk, "some/label")
        per_msg = wire_cost(plan.layout, plan.he, plan.output, plan.chunk, "some/label", overhead=lambda n, d: 8)
        assert per_msg[0] == up + 8 * per_msg[2] and per_msg[1] == down + 8 * per_msg[3]


def test_output_counts_match_positions() -> None:
    t = ConvTiling(ConvShape.make(3, 11, 9, 7, 3, stride=2, padding=1), 1024, 2, 7, 5, 3)
    lay = ConvLayout(t)
    for u in range(lay.units):
        a, b = divmod(u, t.tiles_w)
        assert list(output_counts(lay, u)) == [conv_output_positions(t, a, b, g).size for g in range(t.out_groups)]
    m = MatmulLayout(MatmulTiling(MatmulShape(5, 30, 13), 256, 2, 8, 4))
    for u in range(m.units):
        assert list(output_counts(m, u)) == [m.positions(u, j).size for j in range(m.outputs)]


def test_candidates_are_valid_tilings() -> None:
    shape = SHAPES["64x32x32 -> 128 s2"]
    tilings = list(conv_tilings(shape, 4096))
    assert tilings and all(t.out_pack * t.tile_size <= 4096 for t in tilings)
    assert any(t.compact for t in conv_tilings(SHAPES["512x4x4 -> 512"], 4096))


def test_compact_tile_outputs_stay_below_n() -> None:
    """A compact tile's last outputs reach ``bottom·pitch + right`` past its stored size: with output
    channels packed up to exactly N the last channel's outputs would wrap past X^N (ResNet-50's
    512×7×7 → 512 3×3 conv once got such a plan).  Such tilings are rejected; every candidate's output
    positions lie in [0, N) and inside its own output channel's range or the zero-padded start of the next."""
    shape = ConvShape.make(16, 7, 7, 4, 3, padding=1)
    with pytest.raises(ParameterError, match="exceed N"):
        ConvTiling(shape, 1024, 4, 9, 9, 4, True)  # 4 channels × 8×8 stored = 256, × 4 outputs = 1024 = N
    ok = ConvTiling(shape, 1024, 4, 9, 9, 3, True)
    assert ok.span == ok.tile_size + 1 * ok.pitch + 1
    for s, n in [(shape, 1024), (ConvShape.make(512, 7, 7, 512, 3, padding=1), 4096),
                 (ConvShape.make(64, 14, 14, 64, 3, stride=2, padding=1), 4096),
                 (ConvShape.make(8, 5, 5, 12, 5, padding=2), 1024)]:
        for t in conv_tilings(s, n):
            lay = ConvLayout(t)
            for u in range(lay.units):
                for j in range(lay.outputs):
                    pos = lay.positions(u, j)
                    assert pos.min() >= 0 and pos.max() < n, t
                    assert pos.max() < (t.out_pack - 1) * t.tile_size + t.span
