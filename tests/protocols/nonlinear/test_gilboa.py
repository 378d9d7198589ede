"""Gilboa's OT product: shares of X @ Y mod 2^l equal numpy's product bit for bit; payload bytes as modelled."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.protocols.linear.matmul import CrossShape, ot_cross_bits
from aiompc.protocols.nonlinear.gilboa import gilboa_product
from aiompc.ring import reconstruct
from aiompc.session import run_local


def operands(kind: str, shape: tuple[int, int, int, int], l: int, rng: np.random.Generator):
    g, r, k, c = shape
    if kind == "extremes":
        vals = np.array([0, 1, 1 << (l - 1), (1 << (l - 1)) - 1, (1 << l) - 1], dtype=np.uint64)
        return vals[rng.integers(0, 5, (g, r, k))], vals[rng.integers(0, 5, (g, k, c))]
    return rng.integers(0, 1 << l, (g, r, k), dtype=np.uint64), rng.integers(0, 1 << l, (g, k, c), dtype=np.uint64)


@pytest.mark.parametrize("l, shape, kind", [(16, (2, 3, 4, 5), "random"), (37, (1, 1, 1, 1), "extremes"),
                                            (8, (3, 2, 5, 1), "extremes"), (1, (1, 2, 2, 2), "random"),
                                            (60, (1, 2, 3, 2), "random")])
async def test_gilboa_product_exact(l: int, shape, kind: str, nprng) -> None:
    x, y = operands(kind, shape, l, nprng)

    async def server(p):
        return await gilboa_product(p, "g", l=l, shape=shape, y=y)

    async def client(p):
        return await gilboa_product(p, "g", l=l, shape=shape, x=x), p.channel.stats().select("g")

    ys, (yc, stats) = await run_local(server, client)
    assert np.array_equal(reconstruct(ys, yc, l), np.matmul(x, y) & np.uint64((1 << l) - 1))
    # payload as modelled (choice bits up, (l - i)-bit correlations down), within the frames and headers
    payload = ot_cross_bits(CrossShape(*shape), l, 0.0) / 8
    measured = stats.bytes_sent + stats.bytes_recv
    messages = 2 * l
    assert payload <= measured <= payload + 64 * messages + 2 * l  # per message: frame + array header; bit rounding


async def test_gilboa_rejects_wrong_operands(nprng) -> None:
    x = np.zeros((1, 2, 3), np.uint64)
    with pytest.raises(InputError):
        await run_local(lambda p: gilboa_product(p, "g", l=8, shape=(1, 2, 3, 4), x=x),
                        lambda p: gilboa_product(p, "g", l=8, shape=(1, 2, 3, 4), x=x))
