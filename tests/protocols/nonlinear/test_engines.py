"""The suite really runs on each OT engine: the sessions' engine is the parametrised one, in memory and over TCP."""

from __future__ import annotations

import numpy as np

from aiompc.party import Party
from nonlinear_helpers import Shared, opened, run_both, run_over_tcp
from aiompc.protocols.nonlinear import relu


async def test_sessions_use_the_parametrised_engine(ot_kind: str, gen: np.random.Generator) -> None:
    x = gen.integers(-100, 100, size=50)
    sx = Shared(x, 8)

    async def job(p: Party) -> tuple[np.ndarray, str, int]:
        y = await relu(p, "r", sx.mine(p), l=8)
        generated = p.channel.stats().select(f"ot/{ot_kind}", phase="offline").messages
        return y, p.state["ot_engine"].kind, generated

    for run in (run_both, run_over_tcp):
        (ys, kind_s, gen_s), (yc, kind_c, gen_c) = await run(job)
        assert kind_s == kind_c == ot_kind
        assert gen_s > 0 and gen_c > 0  # the COTs came from that engine's own generation messages
        np.testing.assert_array_equal(opened(ys, yc, 8), np.maximum(x, 0))
