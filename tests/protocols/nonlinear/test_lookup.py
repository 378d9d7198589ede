"""Exact table look-up on shares against the table itself, on random and edge inputs, in memory and over TCP."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.protocols.nonlinear.lookup import lookup, rotated_tables
from aiompc.ring import mask, reconstruct
from nonlinear_helpers import Shared, run_both, run_over_tcp


def _gelu_table(k: int) -> np.ndarray:
    """A signed quantized GELU of a signed ``k``-bit input (scale 2^-(k-3)), output scale 2^-6: a real table."""
    x = np.where(np.arange(1 << k) >= 1 << (k - 1), np.arange(1 << k) - (1 << k), np.arange(1 << k))  # signed
    v = x / 2.0 ** (k - 3)
    return np.round(0.5 * v * (1 + np.tanh(0.7978845608 * (v + 0.044715 * v**3))) * 64).astype(np.int64)


@pytest.mark.parametrize("k,l_out", [(1, 1), (2, 5), (4, 16), (6, 12), (8, 16), (8, 64)])
async def test_lookup_equals_the_table(k: int, l_out: int, gen: np.random.Generator) -> None:
    table = gen.integers(-(1 << 40), 1 << 40, 1 << k)
    if k >= 4:
        table[: 1 << (k - 2)] = _gelu_table(k)[: 1 << (k - 2)]
    edges = np.array([0, 1, (1 << k) - 1, 1 << (k - 1), (1 << (k - 1)) - 1], dtype=np.uint64) & np.uint64((1 << k) - 1)
    x = np.concatenate([np.arange(1 << k, dtype=np.uint64), edges, gen.integers(0, 1 << k, 300).astype(np.uint64)])
    x = x.reshape(-1, 1) if k % 2 else x
    xs = Shared(x, k)

    async def job(p: Party):
        return await lookup(p, "lut", xs.mine(p), k=k, l_out=l_out, table=table if p.is_server else None)

    s, c = await run_both(job)
    assert s.shape == c.shape == x.shape
    want = table.astype(np.uint64)[x.astype(np.int64)] & mask(l_out)
    np.testing.assert_array_equal(reconstruct(s, c, l_out), want)


async def test_lookup_over_tcp_and_masks_are_fresh(gen: np.random.Generator) -> None:
    k, l_out = 4, 16
    table = _gelu_table(k)
    x = np.zeros(64, dtype=np.uint64)  # one value many times: the client's outputs must still look uniform
    xs = Shared(x, k)

    async def job(p: Party):
        return await lookup(p, "lut", xs.mine(p), k=k, l_out=l_out, table=table if p.is_server else None)

    s, c = await run_over_tcp(job)
    np.testing.assert_array_equal(reconstruct(s, c, l_out), np.full(64, table[0], dtype=np.int64).astype(np.uint64)
                                  & np.uint64(0xFFFF))
    assert len(np.unique(c)) > 48  # fresh masks per element: the client's 16-bit shares of one value differ


def test_rotated_tables_plain_reference() -> None:
    k, l_out = 3, 8
    table = np.arange(8, dtype=np.uint64) * 10
    xs = np.array([0, 5], dtype=np.uint64)
    r = np.array([1, 2], dtype=np.uint64)
    m = rotated_tables(table, xs, r, k, l_out)
    want = [[(10 * ((j + int(x)) % 8) - int(ri)) % 256 for j in range(8)] for x, ri in zip(xs, r)]
    np.testing.assert_array_equal(m, np.array(want, dtype=np.uint64))


async def test_empty_input() -> None:
    async def job(p: Party):
        return await lookup(p, "lut", np.zeros((0, 3), dtype=np.uint64), k=3, l_out=8,
                            table=np.arange(8) if p.is_server else None)

    s, c = await run_both(job)
    assert s.shape == c.shape == (0, 3)


@pytest.mark.parametrize("kwargs,match", [
    ({"k": 0}, "k must be"), ({"k": 9}, "k must be"),
    ({"table": np.arange(7)}, "must be 8 integers"), ({"table": np.linspace(0, 1, 8)}, "must be 8 integers"),
    ({"x": np.array([8], dtype=np.uint64)}, "below 2"), ({"x": np.array([-1])}, "unsigned"),
])
async def test_bad_input_is_a_typed_error(kwargs: dict, match: str) -> None:
    args = {"x": np.array([1, 2], dtype=np.uint64), "k": 3, "table": np.arange(8)}
    args.update(kwargs)

    async def job(p: Party):
        if not p.is_server:
            return None  # the server refuses before any message
        return await lookup(p, "lut", args["x"], k=args["k"], l_out=8, table=args["table"])

    with pytest.raises(InputError, match=match):
        await run_both(job)
