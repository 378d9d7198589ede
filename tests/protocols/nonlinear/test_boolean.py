"""AND, B2A, multiplexer and cross products against plaintext references."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.ring import mask
from nonlinear_helpers import Shared, opened, run_both
from aiompc.protocols.nonlinear.boolean import and_, b2a, cross_and, cross_or, fetch_triples, mux


def xor_share(bits: np.ndarray, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    r = gen.integers(0, 2, size=bits.shape, dtype=np.uint8)
    return r, (bits.astype(np.uint8) ^ r)


async def test_and_all_combinations_and_shapes(gen: np.random.Generator) -> None:
    x = np.array([0, 0, 1, 1] * 50, dtype=np.uint8).reshape(10, 20)
    y = np.array([0, 1, 0, 1] * 50, dtype=np.uint8).reshape(10, 20)
    xs, ys = xor_share(x, gen), xor_share(y, gen)

    async def job(p: Party):
        i = 0 if p.is_server else 1
        z1 = await and_(p, "and", xs[i], ys[i])
        pool = await fetch_triples(p, "pool", 400)
        z2 = await and_(p, "and2", xs[i], ys[i], triples=pool)
        z3 = await and_(p, "and3", ys[i], xs[i], triples=pool)
        empty = await and_(p, "and4", np.zeros(0, np.uint8), np.zeros(0, np.uint8))
        return z1, z2, z3, empty, pool.remaining

    s, c = await run_both(job)
    for k in range(3):
        np.testing.assert_array_equal(s[k] ^ c[k], x & y)
    assert s[3].size == 0 and s[4] == 0


@pytest.mark.parametrize("l", [1, 4, 8, 37, 64])
async def test_b2a(l: int, gen: np.random.Generator) -> None:
    bits = gen.integers(0, 2, size=500, dtype=np.uint8)
    bs = xor_share(bits, gen)

    async def job(p: Party):
        i = 0 if p.is_server else 1
        return await b2a(p, "b2a", bs[i], l=l), await b2a(p, "b2a_c", bs[i].reshape(20, 25), l=l, sender="client")

    s, c = await run_both(job)
    np.testing.assert_array_equal(opened(s[0], c[0], l, signed=False), bits)
    np.testing.assert_array_equal(opened(s[1], c[1], l, signed=False), bits.reshape(20, 25))


@pytest.mark.parametrize("l", [4, 16, 64])
async def test_mux_and_cross_products(l: int, gen: np.random.Generator) -> None:
    n = 400
    sel = gen.integers(0, 2, size=n, dtype=np.uint8)
    ss = xor_share(sel, gen)
    top = (1 << l) - 1
    vals = gen.integers(0, 2**63, size=(n, 3), dtype=np.uint64) & mask(l)
    vals[:4, 0] = [0, 1, top, top - 1]
    xv = Shared(vals, l)
    own_bits = gen.integers(0, 2, size=(2, n), dtype=np.uint8)

    async def job(p: Party):
        i = 0 if p.is_server else 1
        one = await mux(p, "mux1", ss[i], xv.mine(p)[:, 0], l=l)
        many = await mux(p, "mux3", ss[i], xv.mine(p), l=l)
        prod = await cross_and(p, "and", own_bits[i], l=l)
        orr = await cross_or(p, "or", own_bits[i], l=l, sender="client")
        return one, many, prod, orr

    s, c = await run_both(job)
    want = vals * sel[:, None].astype(np.uint64)
    np.testing.assert_array_equal(opened(s[0], c[0], l, signed=False), want[:, 0])
    np.testing.assert_array_equal(opened(s[1], c[1], l, signed=False), want)
    np.testing.assert_array_equal(opened(s[2], c[2], l, signed=False), own_bits[0] & own_bits[1])
    np.testing.assert_array_equal(opened(s[3], c[3], l, signed=False), own_bits[0] | own_bits[1])


async def test_non_bits_are_rejected() -> None:
    async def job(p: Party):
        with pytest.raises(InputError):
            await and_(p, "bad", np.array([2], np.uint8), np.array([1], np.uint8))
        with pytest.raises(InputError):
            await mux(p, "bad2", np.array([1, 0], np.uint8), np.zeros(3, np.uint64), l=8)
        return True

    assert await run_both(job) == (True, True)
