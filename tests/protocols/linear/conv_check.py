"""One run-and-check for the convolution layouts' tests: both parties run a conv ``plan`` in one process; the
result must equal the plaintext reference bit for bit and the layer's bytes (and, packed, the Galois keys')
must equal the byte model."""

from __future__ import annotations

import numpy as np

from aiompc.channel import Stats
from aiompc.crypto.prg import PRG
from aiompc.protocols.linear.conv import conv2d
from aiompc.protocols.linear.costs import LayerCost, galois_key_bytes, plan_cost
from aiompc.protocols.linear.packed import layout_elements
from aiompc.protocols.linear.plan import LinearPlan
from aiompc.protocols.linear.reference import conv2d_ref
from aiompc.protocols.linear.tiling import ConvShape
from aiompc.ring import reconstruct, share, to_signed
from aiompc.session import run_local

L = 16


def edge_inputs(shape: ConvShape, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """4-bit unsigned activations and 4-bit signed weights, random, with both ends of each range present."""
    x = rng.integers(0, 16, shape.in_shape)
    x.reshape(-1)[:2] = [0, 15]
    w = rng.integers(-8, 8, shape.weight_shape)
    w.reshape(-1)[:2] = [-8, 7]
    return x, w


async def run_conv(shape: ConvShape, plan: LinearPlan, x: np.ndarray, w: np.ndarray,
                   weight_bits: int = 4) -> tuple[np.ndarray, Stats]:
    """The reconstructed signed output and the client's channel statistics of ``plan`` on ``x``, ``w``."""
    xs, xc = share(x, L, PRG())
    kw = dict(out_channels=shape.out_channels, kernel=shape.kernel, stride=shape.stride, padding=shape.padding,
              groups=shape.groups, l=L, weight_bits=weight_bits, plan=plan)

    async def server(p):
        return await conv2d(p, "conv", xs, weight=w, **kw)

    async def client(p):
        return await conv2d(p, "conv", xc, **kw), p.channel.stats()

    ys, (yc, stats) = await run_local(server, client)
    return to_signed(reconstruct(ys, yc, L), L), stats


async def check_conv(shape: ConvShape, plan: LinearPlan, x: np.ndarray, w: np.ndarray, *, packed: bool,
                     weight_bits: int = 4) -> LayerCost:
    """Run ``plan``; assert it equals the reference and the byte model (Galois keys too if ``packed``)."""
    got, stats = await run_conv(shape, plan, x, w, weight_bits)
    assert np.array_equal(got, conv2d_ref(x, w, shape, 64).view(np.int64))
    cost = plan_cost(plan, "conv")
    assert (stats.select("conv").bytes_sent, stats.select("conv").bytes_recv) == (cost.upload, cost.download)
    if packed:
        assert stats.select("he-galois").bytes_sent == galois_key_bytes(plan.he, layout_elements(plan.layout))
    return cost
