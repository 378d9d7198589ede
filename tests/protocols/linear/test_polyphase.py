"""Polyphase layout of strided convolutions: the phase split is the strided convolution (plaintext, many
geometries), the two-party layer equals the plaintext reference bit for bit with the byte model equal to the
channel statistics (plain and output-packed), and the planner uses it where it saves bytes."""

from __future__ import annotations

import numpy as np
import pytest

from conv_check import L, check_conv, edge_inputs

from aiompc.crypto.he import cheetah_params
from aiompc.errors import ParameterError
from aiompc.protocols.linear.interleaved import interleaved_tilings
from aiompc.protocols.linear.plan import make_plan, packed_plan
from aiompc.protocols.linear.polyphase import (
    PolyphaseConvLayout,
    PolyphaseInterleavedLayout,
    phase_input,
    phase_shape,
    phase_weight,
)
from aiompc.protocols.linear.quantized import QuantizedPlanner, conv_tilings
from aiompc.protocols.linear.reference import conv2d_ref
from aiompc.protocols.linear.tiling import ConvShape, ConvTiling


# (C, H, W, M, kernel, stride, padding, groups)
GEOMETRIES = [
    (3, 9, 9, 4, 3, 2, 1, 1),  # 3x3 stride 2, padding 1
    (4, 8, 7, 4, 3, 2, (1, 0, 2, 1), 2),  # asymmetric padding, odd width, groups
    (6, 10, 10, 6, 1, 2, 0, 6),  # depthwise 1x1 stride 2: a quarter of the input
    (3, 11, 12, 5, (3, 5), (2, 3), (2, 1, 0, 2), 1),  # rectangular kernel and stride
    (2, 7, 7, 2, 7, 2, 3, 2),  # 7x7 stride 2 (a stem), grouped
    (4, 6, 6, 1, 3, 3, 1, 1),  # stride = kernel, one output channel
    (1, 5, 5, 1, 2, 4, 0, 1),  # stride above the kernel: one output
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_phase_split_is_the_strided_convolution(geometry, nprng) -> None:
    c, h, w_, m, k, s, p, g = geometry
    shape = ConvShape.make(c, h, w_, m, k, stride=s, padding=p, groups=g)
    ps = phase_shape(shape)
    assert ps is not None and ps.stride == (1, 1) and ps.padding == (0, 0, 0, 0) and ps.groups == g
    assert ps.out_shape == shape.out_shape  # exactly the outputs, none extra
    for _ in range(3):
        x = nprng.integers(-(1 << 15), 1 << 15, shape.in_shape)
        w = nprng.integers(-128, 128, shape.weight_shape)
        want = conv2d_ref(x, w, shape, 64)
        assert np.array_equal(conv2d_ref(phase_input(x, shape), phase_weight(w, shape), ps, 64), want)


def test_stride_one_has_no_phases_and_layouts_check_their_tiling() -> None:
    shape = ConvShape.make(4, 6, 6, 4, 3, padding=1)
    assert phase_shape(shape) is None
    strided = ConvShape.make(4, 6, 6, 4, 3, stride=2, padding=1)
    with pytest.raises(ParameterError):
        PolyphaseConvLayout(ConvTiling(shape, 4096, 4, 8, 8), strided)  # a tiling of another shape
    with pytest.raises(ParameterError):
        PolyphaseConvLayout(ConvTiling(shape, 4096, 4, 8, 8), None)


PROTOCOL = [
    (3, 9, 9, 4, 3, 2, 1, 1),
    (6, 10, 10, 6, 1, 2, 0, 6),  # depthwise 1x1 stride 2
    (300, 4, 4, 3, 3, 2, 1, 1),  # many channel blocks (1200 phase channels, 64 per block) accumulated
    (4, 6, 6, 1, 3, 3, 1, 1),  # one output channel
]


@pytest.mark.parametrize("geometry", PROTOCOL)
async def test_polyphase_layer_equals_reference_and_model(geometry, nprng) -> None:
    c, h, w_, m, k, s, p, g = geometry
    shape = ConvShape.make(c, h, w_, m, k, stride=s, padding=p, groups=g)
    tiling = min(conv_tilings(phase_shape(shape), 4096), key=lambda t: (abs(t.channels - 64), -t.out_pack))
    plan = make_plan(PolyphaseConvLayout(tiling, shape), L, 4, he=cheetah_params(L))
    await check_conv(shape, plan, *edge_inputs(shape, nprng), packed=False)


async def test_polyphase_interleaved_packed_equals_reference_and_model(nprng) -> None:
    shape = ConvShape.make(16, 8, 8, 6, 3, stride=2, padding=1)
    ps = phase_shape(shape)
    inner = min(interleaved_tilings(ps, 4096, [(ps.height, ps.width)]), key=lambda x: x.tiling.channels)
    plan = packed_plan(make_plan(PolyphaseInterleavedLayout(inner.tiling, shape), L, 4, he=cheetah_params(L)))
    await check_conv(shape, plan, *edge_inputs(shape, nprng), packed=True)


def test_planner_takes_the_polyphase_form_of_a_strided_1x1() -> None:
    shape = ConvShape.make(64, 32, 32, 128, 1, stride=2)  # ResNet's downsampling shortcut
    res = QuantizedPlanner(output_packing=False).search(shape, 18, 4)
    assert isinstance(res.best.plan.layout, PolyphaseConvLayout)
    assert res.cheetah is not None and res.best.cost.total < 0.6 * res.cheetah.cost.total
