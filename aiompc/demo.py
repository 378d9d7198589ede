"""``aiompc demo``: the README's main job.

Until the model pipeline lands this runs the secure-sum protocol over a real loopback connection and
prints the result and the communication table.
"""

from __future__ import annotations

import argparse

import numpy as np

import aiompc
from aiompc import ring, wire
from aiompc.party import Party
from aiompc.session import connect, listen

L = 32


async def secure_sum(party: Party, x: np.ndarray, l: int = L) -> np.ndarray:
    """Both parties call this with their own vector of l-bit values; both learn only the sum mod 2^l."""
    mine, theirs = ring.share(x, l, party.rng)
    peer_share = await party.sub("sum").exchange(wire.Packed(theirs, l))
    total_share = ring.reconstruct(mine, peer_share, l)
    other_total = await party.sub("sum/open").exchange(wire.Packed(total_share, l))
    return ring.reconstruct(total_share, other_total, l)


async def _demo(transport: str) -> int:
    xs = np.arange(1, 9, dtype=np.uint64) * 1000
    xc = np.arange(1, 9, dtype=np.uint64)
    scheme, path = ("ws", "/aiompc") if transport == "ws" else ("tcp", "")

    async def handler(p: Party) -> None:
        await secure_sum(p, xs)

    async with await listen(handler, f"{scheme}://127.0.0.1:0{path}") as server:
        async with connect(server.url) as party:
            total = await secure_sum(party, xc)
            print(f"secure sum over {server.url}: {total.tolist()}")
            print(party.channel.stats().table())
    return 0 if np.array_equal(total, xs + xc) else 1


def main(args: argparse.Namespace) -> int:
    return aiompc.run(_demo(args.transport))
