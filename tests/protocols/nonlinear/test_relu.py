"""DReLU, shifted DReLU and ReLU against numpy on random and edge values."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.party import Party
from nonlinear_helpers import WIDTHS, Shared, opened, run_both, signed_edges, signed_values
from aiompc.protocols.nonlinear.relu import drelu, drelu_shifted, relu


@pytest.mark.parametrize("l", (1, 2) + WIDTHS)
async def test_drelu_and_relu(l: int, gen: np.random.Generator) -> None:
    x = signed_values(l, 400, gen).reshape(-1, 1) if l > 2 else signed_edges(l)
    xs = Shared(x, l)

    async def job(p: Party):
        return await drelu(p, "d", xs.mine(p), l=l), await relu(p, "r", xs.mine(p), l=l)

    s, c = await run_both(job)
    np.testing.assert_array_equal(s[0] ^ c[0], (x >= 0).astype(np.uint8))
    np.testing.assert_array_equal(opened(s[1], c[1], l), np.maximum(x, 0))
    assert s[1].shape == x.shape


@pytest.mark.parametrize("l", [4, 16, 37])
async def test_drelu_shifted(l: int, gen: np.random.Generator) -> None:
    # values and offsets chosen so that x - t never overflows: x in the middle half of the range
    q = 1 << (l - 2)
    x = np.concatenate([np.arange(-q, q, max(1, q // 64)), gen.integers(-q, q, 200)])
    offsets = [0, 3, -q // 2, q - 1]
    x = np.concatenate([x, np.array(offsets) - 1, np.array(offsets)])  # both sides of every threshold
    xs = Shared(x, l)

    async def job(p: Party):
        return await drelu_shifted(p, "ds", xs.mine(p), l=l, offsets=offsets)

    s, c = await run_both(job)
    want = (x[None, :] >= np.array(offsets)[:, None]).astype(np.uint8)
    np.testing.assert_array_equal(s ^ c, want)
