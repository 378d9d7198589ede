"""Secure fc (vector and batch): reconstructed output == plaintext integer reference mod 2^l."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.protocols.linear.planners import PLANNERS
from aiompc.crypto.prg import PRG
from aiompc.ring import reconstruct, share
from aiompc.session import run_local
from aiompc.protocols.linear.fc import fc, fc_plan
from aiompc.protocols.linear.reference import matmul_ref
from aiompc.protocols.linear.tiling import MatmulShape

CASES = [
    # batch (0 = vector), in, out, l, weight_bits, planner
    (0, 300, 7, 16, 16, "cheetah-smallest"),
    (0, 5000, 3, 8, 8, "cheetah-smallest"),  # in > N: several inner blocks accumulate
    (0, 64, 200, 8, 6, "cheetah-smallest"),
    (4, 100, 30, 16, 10, "cheetah-smallest"),
    (3, 512, 10, 37, 13, "cheetah"),
    (0, 512, 100, 37, 9, "cheetah"),
]


@pytest.mark.parametrize("batch, n_in, n_out, l, wb, planner", CASES)
async def test_fc_exact(batch: int, n_in: int, n_out: int, l: int, wb: int, planner: str, nprng) -> None:
    shape = (n_in,) if batch == 0 else (batch, n_in)
    x = nprng.integers(0, 1 << l, shape, dtype=np.uint64)
    w = nprng.integers(-(1 << (wb - 1)), 1 << (wb - 1), (n_out, n_in))
    b = nprng.integers(-9, 9, n_out)
    xs, xc = share(x, l, PRG())
    kw = dict(out_features=n_out, l=l, weight_bits=wb, planner=PLANNERS[planner])

    async def server(p):
        return await fc(p, "fc", xs, weight=w, bias=b, **kw)

    async def client(p):
        return await fc(p, "fc", xc, **kw), p.channel.stats().select("fc")

    ys, (yc, stats) = await run_local(server, client)
    expect = (matmul_ref(x, w, l) + b.astype(np.int64).view(np.uint64)) & np.uint64((1 << l) - 1)
    assert ys.shape == expect.shape
    assert np.array_equal(reconstruct(ys, yc, l), expect)
    plan = fc_plan(MatmulShape(max(batch, 1), n_in, n_out), l, weight_bits=wb, planner=PLANNERS[planner])
    assert len(stats.labels) == plan.layout.units


async def test_fc_over_tcp(nprng, tcp) -> None:
    l = 16
    x = nprng.integers(0, 1 << l, 200, dtype=np.uint64)
    w = nprng.integers(-512, 512, (50, 200))
    xs, xc = share(x, l, PRG())

    async def server(p):
        return await fc(p, "fc", xs, out_features=50, l=l, weight=w, weight_bits=11, planner=PLANNERS["cheetah-smallest"])

    async def client(p):
        return await fc(p, "fc", xc, out_features=50, l=l, weight_bits=11, planner=PLANNERS["cheetah-smallest"])

    ys, yc = await tcp(server, client)
    assert np.array_equal(reconstruct(ys, yc, l), matmul_ref(x, w, l))


@pytest.mark.parametrize("server_kw, client_kw, match", [
    ({"weight": np.ones((3, 4), np.int64)}, {}, r"fc: weight must have shape \(2, 5\), got \(3, 4\)"),
    ({"weight": np.ones((2, 5), np.int64), "bias": np.ones(3, np.int64)}, {}, r"fc: bias must have shape \(2,\)"),
    ({"weight": np.ones((2, 5), np.int64)}, {"bias": np.ones(2, np.int64)}, "fc: the client must not pass a bias"),
])
async def test_fc_refuses_wrong_weight_and_bias(server_kw: dict, client_kw: dict, match: str) -> None:
    x = np.zeros(5, np.uint64)
    kw = dict(out_features=2, l=8, weight_bits=4, planner=PLANNERS["cheetah-smallest"])
    with pytest.raises(InputError, match=match):
        await run_local(lambda p: fc(p, "fc", x, **server_kw, **kw), lambda p: fc(p, "fc", x, **client_kw, **kw))
