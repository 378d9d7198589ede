"""Convolution as a matrix product (im2col): the rearrangement is the convolution (plaintext, many geometries),
the two-party layer equals the plaintext reference bit for bit with the byte model equal to the channel
statistics (plain and output-packed, Galois keys included), and the planner takes it where it is cheaper (never more bytes than Cheetah's rule)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conv_check import L, check_conv, edge_inputs, run_conv

from aiompc.crypto.he import cheetah_params
from aiompc.errors import InputError, ParameterError
from aiompc.protocols.linear.costs import plan_cost
from aiompc.protocols.linear.im2col import Im2colLayout, im2col_input, im2col_shape, im2col_weight
from aiompc.protocols.linear.packed import packing_stride
from aiompc.protocols.linear.plan import make_plan, packed_plan
from aiompc.protocols.linear import quantized
from aiompc.protocols.linear.quantized import QuantizedPlanner, im2col_tilings
from aiompc.protocols.linear.reference import conv2d_ref
from aiompc.protocols.linear.tiling import ConvShape, MatmulShape, MatmulTiling


# (C, H, W, M, kernel, stride, padding)
GEOMETRIES = [
    (3, 6, 6, 4, 3, 1, 1),  # 3x3, padding 1
    (5, 7, 6, 3, 1, 1, 0),  # 1x1: a transpose, no inflation
    (4, 9, 8, 6, 1, 2, 0),  # 1x1 stride 2: a quarter of the input
    (3, 11, 12, 5, (3, 5), (2, 3), (2, 1, 0, 2)),  # rectangular kernel and stride, asymmetric padding
    (2, 4, 4, 1, 4, 1, 0),  # one output value
    (6, 5, 5, 2, 3, 2, (1, 0, 2, 1)),  # odd shape, stride 2, asymmetric padding
]


def _shape(g: tuple) -> ConvShape:
    c, h, w, m, k, s, p = g
    return ConvShape.make(c, h, w, m, k, stride=s, padding=p)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_product_is_the_convolution(geometry, nprng) -> None:
    shape = _shape(geometry)
    ms = im2col_shape(shape)
    assert ms is not None and (ms.batch, ms.out_features) == (shape.out_height * shape.out_width, shape.out_channels)
    for _ in range(3):
        x = nprng.integers(-(1 << 15), 1 << 15, shape.in_shape)
        w = nprng.integers(-128, 128, shape.weight_shape)
        y = (im2col_input(x, shape) @ im2col_weight(w, shape).T).T.reshape(shape.out_shape)
        assert np.array_equal(y.astype(np.uint64), conv2d_ref(x, w, shape, 64))
    shares = nprng.integers(0, 1 << 63, shape.in_shape, dtype=np.uint64)
    assert im2col_input(shares, shape).dtype == np.uint64  # shares stay ring elements (zero fill: shares of 0)


def test_grouped_convolutions_have_no_im2col_form() -> None:
    grouped = ConvShape.make(4, 6, 6, 4, 3, padding=1, groups=2)
    assert im2col_shape(grouped) is None
    shape = ConvShape.make(4, 6, 6, 4, 3, padding=1)
    with pytest.raises(ParameterError):
        Im2colLayout(MatmulTiling(MatmulShape(36, 36, 5), 4096, 4, 4, 4), source=shape)  # another product
    with pytest.raises(ParameterError):
        Im2colLayout(MatmulTiling(im2col_shape(shape), 4096, 4, 4, 4), source=None)
    assert im2col_tilings(im2col_shape(shape), 4096)  # the planner's candidates exist ...
    for t in im2col_tilings(im2col_shape(shape), 4096):  # ... with d1 a power of two: outputs on a lattice
        assert t.d1 & (t.d1 - 1) == 0 and packing_stride(Im2colLayout(t, source=shape)) >= t.d1.bit_length() - 1


# geometry, blocks (d0, d1, d2): several row, inner and column blocks with partial last blocks
PROTOCOL = [
    ((3, 6, 6, 4, 3, 1, 1), (8, 8, 3)),  # 5 row blocks, 4 inner (27 = 3·8 + 3), 2 column blocks
    ((70, 4, 4, 9, 1, 2, 0), (4, 32, 4)),  # 1x1 stride 2: 3 inner blocks, 3 column blocks
    ((2, 4, 4, 1, 4, 1, 0), (1, 16, 1)),  # one output value
    ((6, 5, 5, 2, 3, 2, (1, 0, 2, 1)), (3, 16, 2)),  # odd shape, asymmetric padding
]


@pytest.mark.parametrize("geometry, blocks", PROTOCOL)
@pytest.mark.parametrize("packed", [False, True])
async def test_im2col_layer_equals_reference_and_model(geometry, blocks, packed, nprng) -> None:
    shape = _shape(geometry)
    layout = Im2colLayout(MatmulTiling(im2col_shape(shape), 4096, *blocks), source=shape)
    plan = make_plan(layout, L, 4, he=cheetah_params(L))
    if packed:
        plan = packed_plan(plan)
    cost = await check_conv(shape, plan, *edge_inputs(shape, nprng), packed=packed)
    if packed and layout.outputs > 1:
        assert cost.download < plan_cost(make_plan(layout, L, 4, he=cheetah_params(L)), "conv").download


async def test_a_wrong_plan_is_refused(nprng) -> None:
    shape = _shape(GEOMETRIES[0])
    other = _shape(GEOMETRIES[1])
    plan = make_plan(Im2colLayout(im2col_tilings(im2col_shape(other), 4096)[0], source=other), L, 4,
                     he=cheetah_params(L))
    with pytest.raises(InputError, match="not for"):
        await run_conv(shape, plan, nprng.integers(0, 16, shape.in_shape), nprng.integers(-8, 8, shape.weight_shape))


# --------------------------------------------------------------------------- the quantized planner


def test_planner_takes_im2col_for_a_packed_1x1_shortcut(monkeypatch) -> None:
    shape = ConvShape.make(256, 8, 8, 512, 1, stride=2)  # ResNet-18's last downsampling shortcut
    planner = QuantizedPlanner()
    res = planner.search(shape, 19, 4)
    assert isinstance(res.best.plan.layout, Im2colLayout) and res.best.plan.output_packing
    assert res.cheetah is not None and res.best.cost.total <= res.cheetah.cost.total
    # it beats, on the planner's own key (bytes + keys + compute), the best of the other layouts
    monkeypatch.setattr(quantized, "_im2col_variants", lambda planner, shape: [])
    other = QuantizedPlanner(compute_rate=planner.compute_rate * (1 + 1e-12))  # not the cached search
    best_other = other.search(shape, 19, 4).best
    assert not isinstance(best_other.plan.layout, Im2colLayout)
    assert planner.key(res.best.cost)[0] < 0.98 * other.key(best_other.cost)[0]


def test_planner_leaves_im2col_out_where_it_does_not_pay() -> None:
    shape = ConvShape.make(64, 32, 32, 64, 3, padding=1)  # a 3x3 layer on a large image: 9x the upload
    assert not isinstance(QuantizedPlanner().search(shape, 16, 4).best.plan.layout, Im2colLayout)


@given(st.integers(1, 9), st.integers(1, 7), st.integers(1, 7), st.integers(1, 5), st.integers(1, 3),
       st.integers(1, 3), st.integers(0, 2), st.sampled_from([64, 256]), st.data())
@settings(max_examples=40, deadline=None)
def test_every_candidate_computes_the_convolution(c, h, w_, m, k, s, p, n, data) -> None:
    """Random geometries at small N: each im2col candidate of the planner computes the convolution exactly."""
    from test_interleaved import layout_in_the_clear

    if h + 2 * p < k or w_ + 2 * p < k:
        return
    shape = ConvShape.make(c, h, w_, m, k, stride=s, padding=p)
    tilings = im2col_tilings(im2col_shape(shape), n)
    if not tilings:
        return
    layout = Im2colLayout(data.draw(st.sampled_from(tilings)), source=shape)
    rng = np.random.default_rng(data.draw(st.integers(0, 1 << 30)))
    x = rng.integers(0, 1 << 12, shape.in_shape)
    w = rng.integers(-8, 8, shape.weight_shape)
    assert np.array_equal(layout_in_the_clear(layout, x, w, 20), conv2d_ref(x, w, shape, 20))
