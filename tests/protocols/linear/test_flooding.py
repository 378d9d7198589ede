"""Flooding as promised (issue 23, Build 5): the bound of the two-uniform flood against the exact distance,
the sampler, every Cheetah-mode layer of the built-in networks at >= 40 bits, the engine's refusal of a
plan below 40 bits, and an exact layer whose plan floods with two uniforms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiompc.crypto.he import flood_distance, flood_security, statistical_security
from aiompc.crypto.he.rns import get_basis
from aiompc.crypto.prg import PRG
from aiompc.errors import InsecureParameters
from aiompc.nn.fixed_point import fixed_point
from aiompc.nn.ir import Conv, Linear
from aiompc.nn.networks import network_onnx
from aiompc.nn.onnx_import import load_onnx
from aiompc.protocols.linear.conv import conv2d, conv_plan
from aiompc.protocols.linear.engine import run_linear
from aiompc.protocols.linear.plan import STAT_BITS, CheetahBaselinePlanner, CheetahPlanner
from aiompc.protocols.linear.reference import conv2d_ref
from aiompc.protocols.linear.tiling import ConvShape, MatmulShape
from aiompc.ring import reconstruct, share
from aiompc.session import run_local


def _tent(m: int) -> np.ndarray:
    """Exact pmf of the sum of two uniforms on m integers (support 0..2m-2)."""
    s = np.arange(2 * m - 1)
    return np.minimum(s + 1, 2 * m - 1 - s) / float(m * m)


@pytest.mark.parametrize("bits", [4, 6])
def test_two_uniform_bound_holds_against_the_exact_distance(bits: int) -> None:
    m = 1 << bits
    p = _tent(m)
    for visible in (1, 2, 3):
        for x in (1, 2, m // 8, m // 2):
            q = np.concatenate([np.zeros(x), p])[: len(p) + x]  # shifted by x
            pp = np.concatenate([p, np.zeros(x)])
            joint_p, joint_q = pp, q
            for _ in range(visible - 1):  # product distributions, every coordinate shifted by x
                joint_p, joint_q = np.multiply.outer(joint_p, pp).ravel(), np.multiply.outer(joint_q, q).ravel()
            exact = 0.5 * np.abs(joint_p - joint_q).sum()
            assert exact <= flood_distance(visible, x, bits, 2) + 1e-12
            assert exact <= flood_distance(visible, x, bits, 1) + 1e-12  # and the one-uniform bound, for its own case
            one = np.concatenate([np.full(m, 1.0 / m), np.zeros(x)])
            one_q = np.concatenate([np.zeros(x), np.full(m, 1.0 / m)])
            jp, jq = one, one_q
            for _ in range(visible - 1):
                jp, jq = np.multiply.outer(jp, one).ravel(), np.multiply.outer(jq, one_q).ravel()
            assert 0.5 * np.abs(jp - jq).sum() <= flood_distance(visible, x, bits, 1) + 1e-12


def test_two_uniforms_beat_one_for_many_visible_coefficients() -> None:
    hidden = 2.0**21
    one = flood_security(3025, hidden, 71, 1, 40)  # one uniform of magnitude 2^70
    two = flood_security(3025, hidden, 70, 2, 40)  # two of 2^69 each: same magnitude
    assert one < 40 < two and two - one > 2


def test_two_term_sampler_is_a_sum_of_two_uniforms() -> None:
    from aiompc.crypto.he.paramsets import cheetah_params
    from aiompc.crypto.he.result import sample_flood

    basis = get_basis(cheetah_params().primes)
    bits = 20
    raw = sample_flood(PRG(b"\x01" * 32), bits, (8, 4096), basis, terms=2)
    p0 = basis.primes[0]
    v = raw[:, 0, :].astype(np.int64)
    v = np.where(v > p0 // 2, v - p0, v).astype(np.float64)  # centred, |v| < 2^20 << p0
    half = 2.0 ** (bits - 1)
    assert v.min() >= -2 * half and v.max() <= 2 * half - 2
    sd = math.sqrt(2 * (2 * half) ** 2 / 12)  # variance of two independent uniforms
    assert abs(v.std() / sd - 1) < 0.02 and abs(v.mean()) < 0.02 * sd
    assert np.mean(np.abs(v) < half) > 0.7  # a triangle, not a box (a box would give 0.5)


def _layers(name: str):
    g = fixed_point(load_onnx(network_onnx(name)))
    for node in g.nodes:
        if isinstance(node, Conv):
            c, h, w = g.tensors[node.inputs[0]].shape[-3:]
            yield ConvShape.make(c, h, w, node.out_channels, node.kernel[0], stride=node.stride[0],
                                 padding=node.pads[0], groups=node.groups), node.weight_bits
        elif isinstance(node, Linear):
            yield MatmulShape(1, node.weight_shape[1], node.weight_shape[0]), node.weight_bits


@pytest.mark.parametrize("name", ["resnet18", "squeezenet"])
def test_every_cheetah_layer_reaches_40_bits(name: str) -> None:
    planner = CheetahBaselinePlanner()
    levels = [planner(shape, 37, wb).stat_security for shape, wb in _layers(name)]
    assert min(levels) >= STAT_BITS
    assert min(levels) < STAT_BITS + 3  # minimal flooding: the bytes stay Cheetah's


async def test_engine_refuses_a_plan_below_40_bits() -> None:
    shape = ConvShape.make(2, 6, 6, 2, 3, padding=1)
    weak = conv_plan(shape, 37, weight_bits=13, planner=CheetahPlanner(stat_bits=20))
    assert weak.stat_security < STAT_BITS
    x = np.zeros(shape.in_shape, dtype=np.uint64)
    w = np.ones(shape.weight_shape, dtype=np.int64)

    async def server(p):
        return await run_linear(p, "weak", weak, x, w)

    async def client(p):
        return await run_linear(p, "weak", weak, x)

    with pytest.raises(InsecureParameters, match="statistical security"):
        await run_local(server, client)


async def test_two_uniform_flood_layer_is_exact(nprng: np.random.Generator) -> None:
    shape, l, wb = ConvShape.make(1, 55, 55, 2, 3, padding=1), 37, 14
    plan = conv_plan(shape, l, weight_bits=wb, planner=CheetahPlanner())
    assert plan.output.flood_terms == 2 and plan.stat_security >= STAT_BITS
    assert statistical_security(plan.he, plan.pipeline, plan.output) == plan.stat_security
    x = nprng.integers(0, 1 << l, shape.in_shape, dtype=np.uint64)
    half = 1 << (wb - 1)
    w = nprng.integers(-half, half + 1, shape.weight_shape)
    xs, xc = share(x, l, PRG())
    kw = dict(out_channels=2, kernel=(3, 3), padding=(1, 1), l=l, weight_bits=wb, planner=CheetahPlanner())

    async def server(p):
        return await conv2d(p, "c", xs, weight=w, **kw)

    async def client(p):
        return await conv2d(p, "c", xc, **kw)

    ys, yc = await run_local(server, client)
    assert np.array_equal(reconstruct(ys, yc, l), conv2d_ref(x, w, shape, l))
