"""Secure conv2d / batch-norm: reconstructed output == plaintext integer reference mod 2^l."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.protocols.linear.planners import PLANNERS
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, UndecryptableParameters
from aiompc.ring import reconstruct, share
from aiompc.session import run_local
from aiompc.protocols.linear.batchnorm import batchnorm
from aiompc.protocols.linear.conv import conv2d, conv_plan
from aiompc.protocols.linear.engine import input_chunks, output_batches
from aiompc.protocols.linear.plan import CheetahPlanner
from aiompc.protocols.linear.reference import batchnorm_ref, conv2d_ref
from aiompc.protocols.linear.tiling import ConvShape

# C, H, W, M, kernel, stride, padding, groups, l, weight_bits, planner
CASES = {
    "3x3 pad 1, l=16": (3, 10, 10, 4, 3, 1, 1, 1, 16, 16, PLANNERS["cheetah-smallest"]),
    "stride 2, l=8": (5, 9, 7, 3, 3, 2, 1, 1, 8, 8, PLANNERS["cheetah-smallest"]),
    "1x1, l=8": (8, 6, 6, 5, 1, 1, 0, 1, 8, 8, PLANNERS["cheetah-smallest"]),
    "7x7 stride 2 pad 3, l=16": (2, 15, 15, 3, 7, 2, 3, 1, 16, 10, PLANNERS["cheetah-smallest"]),
    "depthwise, l=16": (6, 8, 8, 6, 3, 1, 1, 6, 16, 12, PLANNERS["cheetah-smallest"]),
    "H*W > N, one output channel, l=8": (2, 66, 66, 1, 3, 1, 1, 1, 8, 8, PLANNERS["cheetah-smallest"]),
    "many channel blocks (C*HW > N), l=16": (80, 8, 8, 2, 3, 1, 1, 1, 16, 8, PLANNERS["cheetah-smallest"]),
    "one ciphertext per message, 2 channel blocks": (12, 20, 18, 5, 3, 1, 1, 1, 16, 9, CheetahPlanner(n=4096, he="smallest", chunk=1)),
    "cheetah params, l=37": (4, 8, 8, 3, 3, 1, 1, 1, 37, 13, PLANNERS["cheetah"]),
    "cheetah params, stride 2, groups 2, l=37": (4, 9, 9, 4, 3, 2, 1, 2, 37, 12, PLANNERS["cheetah"]),
}


def run_conv(transport, x, w, bias, shape: ConvShape, l: int, weight_bits: int, planner):
    xs, xc = share(x, l, PRG())
    kw = dict(out_channels=shape.out_channels, kernel=shape.kernel, stride=shape.stride, padding=shape.padding,
              groups=shape.groups, l=l, weight_bits=weight_bits, planner=planner)

    async def server(p):
        return await conv2d(p, "conv", xs, weight=w, bias=bias, **kw), p.channel.stats()

    async def client(p):
        return await conv2d(p, "conv", xc, **kw), p.channel.stats()

    return transport(server, client)


@pytest.mark.parametrize("name", list(CASES))
async def test_conv2d_exact(name: str, nprng: np.random.Generator) -> None:
    c, h, w_, m, k, s, p, g, l, wb, planner = CASES[name]
    shape = ConvShape.make(c, h, w_, m, k, stride=s, padding=p, groups=g)
    x = nprng.integers(0, 1 << l, shape.in_shape, dtype=np.uint64)
    half = 1 << (wb - 1)
    w = nprng.integers(-half, half + 1, shape.weight_shape)  # full range of the public bound, both signs
    bias = nprng.integers(-1000, 1000, m)
    (ys, st_s), (yc, st_c) = await run_conv(run_local, x, w, bias, shape, l, wb, planner)
    expect = (conv2d_ref(x, w, shape, l) + (bias.astype(np.int64).view(np.uint64)[:, None, None])) & np.uint64((1 << l) - 1)
    assert np.array_equal(reconstruct(ys, yc, l), expect)
    assert ys.dtype == np.uint64 and ys.max() < (1 << l) and yc.max() < (1 << l)
    # the bytes are those of the plan's ciphertexts (from the channel statistics, not from a formula)
    plan = conv_plan(shape, l, weight_bits=wb, planner=planner)
    conv = st_c.select("conv")
    assert set(conv.labels) == {f"conv/tile{u}" for u in range(plan.layout.units)}
    assert all(v.rounds == 2 for v in conv.labels.values())  # one round trip per tile
    for u in range(plan.layout.units):  # streamed in messages of at most plan.chunk ciphertexts
        st = conv.labels[f"conv/tile{u}"]
        assert (st.msgs_sent, st.msgs_recv) == (len(input_chunks(plan)), len(output_batches(plan, u)))
    upload = plan.input_ciphertexts * plan.he.n * plan.he.q.bit_length() / 8
    assert upload <= conv.bytes_sent <= upload + 200 * len(conv.labels) + 100 * plan.input_ciphertexts
    assert st_s.select("conv").bytes_recv == conv.bytes_sent


@pytest.mark.parametrize("name", ["stride 2, l=8", "cheetah params, l=37"])
async def test_conv2d_over_tcp(name: str, nprng: np.random.Generator, tcp) -> None:
    c, h, w_, m, k, s, p, g, l, wb, planner = CASES[name]
    shape = ConvShape.make(c, h, w_, m, k, stride=s, padding=p, groups=g)
    x = nprng.integers(0, 1 << l, shape.in_shape, dtype=np.uint64)
    w = nprng.integers(-(1 << (wb - 1)), 1 << (wb - 1), shape.weight_shape)
    (ys, _), (yc, _) = await run_conv(tcp, x, w, None, shape, l, wb, planner)
    assert np.array_equal(reconstruct(ys, yc, l), conv2d_ref(x, w, shape, l))


async def test_two_layers_share_one_key_exchange(nprng: np.random.Generator) -> None:
    l = 8
    shape = ConvShape.make(2, 5, 5, 2, 3, padding=1)
    x = nprng.integers(0, 1 << l, shape.in_shape, dtype=np.uint64)
    w = nprng.integers(-128, 128, shape.weight_shape)
    xs, xc = share(x, l, PRG())
    kw = dict(out_channels=2, kernel=3, padding=1, l=l, planner=PLANNERS["cheetah-smallest"])

    async def server(p):
        a = await conv2d(p, "a", xs, weight=w, **kw)
        b = await conv2d(p, "b", a, weight=w, **kw)
        return b, p.channel.stats()

    async def client(p):
        a = await conv2d(p, "a", xc, **kw)
        return await conv2d(p, "b", a, **kw)

    (ys, stats), yc = await run_local(server, client)
    assert np.array_equal(reconstruct(ys, yc, l), conv2d_ref(conv2d_ref(x, w, shape, l), w, shape, l))
    assert len([k for k in stats.labels if k.startswith("he-keys/")]) == 1


@pytest.mark.parametrize("l, wb", [(8, 8), (16, 12), (37, 13)])
async def test_batchnorm_exact(l: int, wb: int, nprng: np.random.Generator) -> None:
    x = nprng.integers(0, 1 << l, (5, 7, 6), dtype=np.uint64)
    scale = nprng.integers(-(1 << (wb - 1)), 1 << (wb - 1), 5)
    shift = nprng.integers(-50, 50, 5)
    xs, xc = share(x, l, PRG())
    planner = PLANNERS["cheetah" if l == 37 else "cheetah-smallest"]

    async def server(p):
        return await batchnorm(p, "bn", xs, l=l, scale=scale, shift=shift, weight_bits=wb, planner=planner)

    async def client(p):
        return await batchnorm(p, "bn", xc, l=l, weight_bits=wb, planner=planner)

    ys, yc = await run_local(server, client)
    expect = (batchnorm_ref(x, scale, l) + shift.astype(np.int64).view(np.uint64)[:, None, None]) & np.uint64((1 << l) - 1)
    assert np.array_equal(reconstruct(ys, yc, l), expect)


async def test_weight_above_public_bound_is_refused(nprng: np.random.Generator) -> None:
    l = 8
    x = nprng.integers(0, 1 << l, (2, 4, 4), dtype=np.uint64)
    w = np.full((2, 2, 3, 3), 9)  # 9 > 2^(4-1)
    kw = dict(out_channels=2, kernel=3, padding=1, l=l, weight_bits=4, planner=PLANNERS["cheetah-smallest"])

    async def server(p):
        return await conv2d(p, "c", x, weight=w, **kw)

    async def client(p):
        return await conv2d(p, "c", x, **kw)

    with pytest.raises(InputError, match="public bound"):
        await run_local(server, client)


def test_plan_errors() -> None:
    shape = ConvShape.make(64, 56, 56, 64, 3, padding=1)
    with pytest.raises(UndecryptableParameters, match="stat_bits"):
        conv_plan(shape, 37, planner=PLANNERS["cheetah"])  # full-range 37-bit weights cannot be hidden at q ~ 2^109
    plan = conv_plan(shape, 37, weight_bits=8, planner=PLANNERS["cheetah"])
    assert (plan.input_ciphertexts, plan.output_ciphertexts, plan.he.n) == (64, 64, 4096)
    assert plan.he.q.bit_length() == 109


@pytest.mark.parametrize("server_kw, client_kw, match", [
    ({"weight": np.ones((2, 2, 1, 1), np.int64)}, {}, r"c: weight must have shape \(2, 2, 3, 3\), got \(2, 2, 1, 1\)"),
    ({"weight": np.ones((2, 2, 3, 3), np.int64), "bias": np.ones(1, np.int64)}, {}, r"c: bias must have shape \(2,\)"),
    ({"weight": np.ones((2, 2, 3, 3), np.int64)}, {"bias": np.ones(2, np.int64)}, "c: the client must not pass a bias"),
])
async def test_conv_refuses_wrong_weight_and_bias(server_kw: dict, client_kw: dict, match: str) -> None:
    x = np.zeros((2, 4, 4), np.uint64)
    kw = dict(out_channels=2, kernel=3, padding=1, l=8, weight_bits=4, planner=PLANNERS["cheetah-smallest"])
    with pytest.raises(InputError, match=match):
        await run_local(lambda p: conv2d(p, "c", x, **server_kw, **kw), lambda p: conv2d(p, "c", x, **client_kw, **kw))
