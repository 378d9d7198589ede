"""Secure sum: server and client each hold a private vector; both learn only the sum.

Each party splits its vector into two random shares mod 2^l and sends one share to the other; each then
adds the shares it holds locally, and the parties open the sum by exchanging their result shares.
Prints the result and the communication table (from the channel statistics).

    python examples/secure_sum.py --transport {memory,tcp,ws} [--size N] [--bits L]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import numpy as np

import aiompc
import aiompc.wire
from aiompc import ring
from aiompc.party import Party
from aiompc.session import connect, listen, run_local

L_DEFAULT = 32


async def secure_sum(party: Party, x: np.ndarray, l: int) -> np.ndarray:
    """Both parties call this with their own vector of l-bit values; both learn only the sum mod 2^l.

    Cost: each party sends two messages of ``len(x)·l`` bits (bit-packed) plus framing; 2 rounds.
    """
    mine, theirs = ring.share(x, l, party.rng)
    peer_share = await party.sub("sum").exchange(aiompc.wire.Packed(theirs, l))
    total_share = ring.reconstruct(mine, peer_share, l)
    other_total = await party.sub("sum/open").exchange(aiompc.wire.Packed(total_share, l))
    return ring.reconstruct(total_share, other_total, l)


async def run(transport: str, size: int, l: int) -> tuple[np.ndarray, str]:
    gen = np.random.default_rng(7)  # demo inputs only, not secrets of the protocol
    xs = gen.integers(0, 1 << 20, size).astype(np.uint64)
    xc = gen.integers(0, 1 << 20, size).astype(np.uint64)

    async def server_fn(p: Party) -> np.ndarray:
        return await secure_sum(p, xs, l)

    if transport == "memory":
        (res_s, (res_c, table)) = await run_local(server_fn, lambda p: _client(p, xc, l))
    else:
        done: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()

        async def handler(p: Party) -> None:
            done.set_result(await server_fn(p))

        scheme = "tcp" if transport == "tcp" else "ws"
        path = "/aiompc" if scheme == "ws" else ""
        server = await listen(handler, f"{scheme}://127.0.0.1:0{path}")
        async with server:
            async with connect(server.url) as party:
                res_c, table = await _client(party, xc, l)
            res_s = await done
    assert np.array_equal(res_s, res_c)
    expected = (xs + xc) & ring.mask(l)
    if not np.array_equal(res_c, expected):
        raise SystemExit("secure sum differs from the plaintext sum")
    return res_c, table


async def _client(p: Party, x: np.ndarray, l: int) -> tuple[np.ndarray, str]:
    res = await secure_sum(p, x, l)
    return res, p.channel.stats().table()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transport", choices=("memory", "tcp", "ws"), default="tcp")
    ap.add_argument("--size", type=int, default=8)
    ap.add_argument("--bits", type=int, default=L_DEFAULT)
    args = ap.parse_args(argv)
    result, table = aiompc.run(run(args.transport, args.size, args.bits))
    print(f"secure sum over {args.transport}: {result[:8].tolist()}{' ...' if result.size > 8 else ''}")
    print("matches the plaintext sum")
    print("\nclient's communication:\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
