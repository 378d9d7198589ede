"""Channel-interleaved layout with several output channels per ciphertext and compact tiles: exact against the
plaintext reference, bytes (and Galois keys) equal to the byte model, plain and packed; outputs on the channel
lattice; the constraint ``C·((out_pack − 1)·D + S + O + 1) <= N`` enforced; the planner's candidates valid."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conv_check import L, check_conv, edge_inputs

from aiompc.crypto.he import cheetah_params
from aiompc.errors import ParameterError
from aiompc.protocols.linear.interleaved import InterleavedConvLayout, interleaved_tilings
from aiompc.protocols.linear.packed import packing_stride
from aiompc.protocols.linear.plan import make_plan, packed_plan
from aiompc.protocols.linear.reference import conv2d_ref
from aiompc.protocols.linear.tiling import ConvShape, ConvTiling


# (C, H, W, M, kernel, stride, padding, groups), (C_w, H_w, W_w, out_pack, compact)
CASES = [
    ((16, 4, 4, 7, 3, 1, 1, 1), (8, 6, 6, 3, True)),  # compact 5x5, 3 output slots, partial last group
    ((40, 6, 6, 5, 3, 1, 1, 1), (16, 8, 8, 2, False)),  # 3 channel blocks (last partial), 2 slots
    ((8, 9, 9, 6, 3, 2, 1, 1), (4, 11, 11, 4, True)),  # stride 2, compact
    ((8, 6, 7, 8, 3, 1, 1, 8), (4, 8, 9, 2, True)),  # depthwise, odd width
    ((6, 4, 4, 1, 4, 1, 0, 1), (2, 4, 4, 1, False)),  # one output value
    ((4, 12, 12, 3, 3, 1, 1, 1), (4, 7, 14, 3, True)),  # two row tiles (halo), compact over the width
    ((300, 4, 4, 5, 3, 1, 1, 1), (128, 6, 6, 1, True)),  # 128 lanes: the top terms wrap below the outputs
    ((100, 6, 6, 4, 3, 1, 0, 1), (64, 6, 6, 1, False)),  # plain tile, 64·37 > N: wraps
    ((64, 4, 4, 6, 3, 1, 1, 1), (32, 6, 6, 4, True)),  # 4 slots at 32 lanes (wrapping)
]


@pytest.mark.parametrize("geometry, tiling", CASES)
@pytest.mark.parametrize("packed", [False, True])
async def test_interleaved_layer_equals_reference_and_model(geometry, tiling, packed, nprng) -> None:
    c, h, w_, m, k, s, p, g = geometry
    shape = ConvShape.make(c, h, w_, m, k, stride=s, padding=p, groups=g)
    cw, th, tw, op, compact = tiling
    layout = InterleavedConvLayout(ConvTiling(shape, 4096, cw, th, tw, op, compact))
    assert packing_stride(layout) >= (cw & -cw).bit_length() - 1  # outputs on the channel lattice
    plan = make_plan(layout, L, 4, he=cheetah_params(L))
    if packed:
        plan = packed_plan(plan)
    await check_conv(shape, plan, *edge_inputs(shape, nprng), packed=packed)


def test_the_slot_constraint_is_enforced() -> None:
    shape = ConvShape.make(64, 4, 4, 64, 3, padding=1)
    base = InterleavedConvLayout(ConvTiling(shape, 4096, 32, 6, 6, 1, True))
    s, o, last = 25, 12, 3 * 5 + 3  # compact 5x5 stored, O = 2·pitch + 2, the last output at 3·pitch + 3
    assert base.slot == max(s, o + last + 1) and base.lanes == max(s, o + last + 2)
    fits = (4096 // 32 - base.lanes) // base.slot + 1
    InterleavedConvLayout(ConvTiling(shape, 4096, 32, 6, 6, fits, True))
    with pytest.raises(ParameterError):
        InterleavedConvLayout(ConvTiling(shape, 4096, 32, 6, 6, fits + 1, True))
    # a plain stride-1 tile reaches Cheetah's density: C·(S + 1) <= N (terms past N wrap below the outputs)
    plain = ConvShape.make(256, 6, 6, 8, 3)
    InterleavedConvLayout(ConvTiling(plain, 4096, 110, 6, 6, 1, False))  # 110·37 <= N; C·(S + O + 1) = 5610
    with pytest.raises(ParameterError):
        InterleavedConvLayout(ConvTiling(plain, 4096, 111, 6, 6, 1, False))


def test_candidates_are_valid_and_include_several_outputs() -> None:
    shape = ConvShape.make(512, 4, 4, 512, 3, padding=1)
    found = interleaved_tilings(shape, 4096, [(6, 6, True), (6, 6, False)])
    assert any(f.tiling.out_pack > 1 for f in found) and any(f.tiling.compact for f in found)
    for f in found:
        t = f.tiling
        assert t.channels * f.lanes <= t.n


def test_output_pack_candidates_are_the_planners_blocks() -> None:
    from aiompc.protocols.linear.interleaved import _largest_blocks
    from aiompc.protocols.linear.quantized import block_sizes

    for total in (1, 7, 64, 100, 512, 1000):
        for largest in (1, 2, 3, 5, 16, 40):
            assert _largest_blocks(total, largest, 3) == block_sizes(total, largest)[:3]


def layout_in_the_clear(layout, x: np.ndarray, w: np.ndarray, l: int) -> np.ndarray:
    """What the protocol computes, without HE: every unit's output polynomials ``Σ_k input_k · weight_(j,k)``
    (negacyclic, mod ``2^l``) read at the layout's positions and assembled."""
    from aiompc.protocols.linear.encoding import negacyclic_mul, scatter_coefficients

    polys = layout.input_polys(x, l)
    values, nonzero = layout.weight_values(w, l)
    weights = scatter_coefficients(values, layout.weight_exponents(), layout.n)
    out = {}
    for u in range(layout.units):
        for j in range(layout.outputs):
            acc = np.zeros(layout.n, dtype=np.uint64)
            for k in range(layout.inputs):
                if nonzero[j, k]:
                    acc += negacyclic_mul(polys[u, k], weights[j, k], l)
            out[(u, j)] = acc[layout.positions(u, j)] & np.uint64((1 << l) - 1)
    return layout.assemble(out)


@given(st.integers(1, 9), st.integers(2, 7), st.integers(2, 7), st.integers(1, 5), st.integers(1, 3),
       st.integers(1, 2), st.integers(0, 1), st.sampled_from([128, 256]), st.data())
@settings(max_examples=40, deadline=None)
def test_every_candidate_computes_the_convolution(c, h, w_, m, k, s, p, n, data) -> None:
    """Random geometries at small N: each interleaved candidate the planner would try (compact tiles, several
    output slots, wrapping at the tightest channel count) computes the convolution exactly."""
    from aiompc.protocols.linear.quantized import _tile_shapes

    if h + 2 * p < k or w_ + 2 * p < k:
        return
    shape = ConvShape.make(c, h, w_, m, k, stride=s, padding=p)
    found = interleaved_tilings(shape, n, _tile_shapes(shape, n))
    if not found:
        return
    layout = data.draw(st.sampled_from(found))
    rng = np.random.default_rng(data.draw(st.integers(0, 1 << 30)))
    x = rng.integers(0, 1 << 12, shape.in_shape)
    w = rng.integers(-8, 8, shape.weight_shape)
    assert np.array_equal(layout_in_the_clear(layout, x, w, 20), conv2d_ref(x, w, shape, 20))
