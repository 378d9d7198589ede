"""The cross-term method table: matmul_shared with HE and OT to choose from picks the cheaper per cross term,
says which, and stays exact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiompc.crypto.prg import PRG
from aiompc.protocols.linear.matmul import STATE_KEY, matmul_shared
from aiompc.protocols.linear.planners import PLANNERS
from aiompc.protocols.products import CROSS_METHODS, cot_bits
from aiompc.ring import reconstruct, share
from aiompc.session import run_local


@pytest.mark.parametrize("l, lead, s, k, t, expect", [
    (16, (1,), 1, 1, 1, ("ot", "ot")),  # a few elements: OT is a few hundred bits, HE a ciphertext each way
    (12, (2,), 2, 1, 40, None),  # whatever the model says; exact either way
    (37, (2,), 16, 16, 16, ("he", "he")),  # attention-like: HE
])
async def test_matmul_shared_chooses_the_cheaper_method(l: int, lead, s: int, k: int, t: int, expect, nprng) -> None:
    a = nprng.integers(0, 1 << l, (*lead, s, k), dtype=np.uint64)
    b = nprng.integers(0, 1 << l, (*lead, k, t), dtype=np.uint64)
    a[..., 0, 0] = 1 << (l - 1)
    a_s, a_c = share(a, l, PRG())
    b_s, b_c = share(b, l, PRG())
    planner = PLANNERS["cheetah"] if l == 37 else PLANNERS["cheetah-smallest"]

    async def server(p):
        return await matmul_shared(p, "mm", a_s, b_s, l=l, planner=planner, methods=CROSS_METHODS, cot_bits=cot_bits(p))

    async def client(p):
        y = await matmul_shared(p, "mm", a_c, b_c, l=l, planner=planner, methods=CROSS_METHODS, cot_bits=cot_bits(p))
        return y, p.state[STATE_KEY]["mm"]

    ys, (yc, plan) = await run_local(server, client)
    assert np.array_equal(reconstruct(ys, yc, l), np.matmul(a, b) & np.uint64((1 << l) - 1))
    for cross in (plan.ac_bs, plan.bc_as):
        he = cross.he_bytes if cross.he_bytes is not None else float("inf")
        assert cross.method == ("ot" if math.ceil(cross.ot_bits / 8) < he else "he")
    if expect is not None:
        assert plan.methods == expect
