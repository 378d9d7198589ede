"""Helpers for the non-linear protocol tests: share, run both parties (in memory or over TCP), reconstruct, edge values.

Many cases run inside one session (distinct labels), so the OT base setup is paid once per test.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import numpy as np

from aiompc import run_local
from aiompc.crypto.prg import PRG
from aiompc.party import Party
from aiompc.ring import from_signed, reconstruct, share, to_signed
from aiompc.session import connect, listen

WIDTHS = (4, 8, 16, 37, 64)


class Shared:
    """A value shared mod ``2^l``; ``mine(party)`` gives that party's share."""

    def __init__(self, x: np.ndarray, l: int) -> None:
        self.l = l
        self.s, self.c = share(np.asarray(x), l, PRG())

    def mine(self, party: Party) -> np.ndarray:
        return self.s if party.is_server else self.c


async def run_both(job: Callable[[Party], Awaitable[Any]]) -> tuple[Any, Any]:
    """Run the same coroutine function on both sides of one in-memory session."""
    return await run_local(job, job)


async def run_over_tcp(job: Callable[[Party], Awaitable[Any]]) -> tuple[Any, Any]:
    """Run ``job`` as the server of a listening session and as the connecting client; both results."""
    loop = asyncio.get_running_loop()
    server_result: asyncio.Future[Any] = loop.create_future()

    async def handler(party: Party) -> None:
        try:
            server_result.set_result(await job(party))
        except BaseException as exc:  # surfaced to the test below, not just logged by the server
            server_result.set_exception(exc)
            raise

    server = await listen(handler, "tcp://127.0.0.1:0")
    try:
        async with connect(server.url) as party:
            client = await job(party)
        return await asyncio.wait_for(server_result, 60), client
    finally:
        await server.close()


def opened(s: np.ndarray, c: np.ndarray, l: int, *, signed: bool = True) -> np.ndarray:
    v = reconstruct(s, c, l)
    return to_signed(v, l) if signed else v.astype(np.uint64)


def signed_edges(l: int) -> np.ndarray:
    """0, ±1, ±2, the extremes of the signed range and their neighbours (as int64)."""
    lo, hi = -(1 << (l - 1)), (1 << (l - 1)) - 1
    vals = {0, 1, -1, 2, -2, lo, lo + 1, hi, hi - 1, lo // 2, hi // 2, hi // 2 + 1}
    return np.array(sorted(v for v in vals if lo <= v <= hi), dtype=np.int64)


def signed_values(l: int, n: int, gen: np.random.Generator) -> np.ndarray:
    """Edge values plus ``n`` uniform signed ``l``-bit values (int64)."""
    raw = gen.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + gen.integers(0, 2, size=n, dtype=np.uint64)
    rand = to_signed(raw & np.uint64((1 << l) - 1 if l < 64 else 2**64 - 1), l)
    return np.concatenate([signed_edges(l), rand])


def ring(x: np.ndarray, l: int) -> np.ndarray:
    return from_signed(np.asarray(x, dtype=np.int64), l)
