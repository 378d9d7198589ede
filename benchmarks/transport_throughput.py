"""One-way throughput of each transport on loopback, as a Markdown table of MB/s (1 MB = 10**6 bytes).

For every message size (1 KiB .. 64 MiB) one task streams ``--bytes`` bytes of messages (at least
``--min-messages`` of them) through a connected pair while another receives them; the clock runs from
the first send to the last receive, framing excluded from the byte count.  Each cell stops early
after ``--seconds`` seconds and reports what it moved by then, so a full run is bounded in time.

    python benchmarks/transport_throughput.py [--loop uvloop|asyncio] [--bytes 268435456]

TCP and WebSocket use real sockets on 127.0.0.1.  Both endpoints share one event loop (one core), so
the figures are a lower bound on what two processes would reach.  The memory transport hands ``bytes``
objects over without copying, so its column measures per-message overhead only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import time
from typing import AsyncIterator, Callable

from aiompc.transports import tcp, websocket
from aiompc.transports.base import Server, Transport
from aiompc.transports.memory import memory_pair

KIB = 1024
MIB = 1024 * KIB
SIZES = [KIB, 16 * KIB, 256 * KIB, MIB, 4 * MIB, 16 * MIB, 64 * MIB]
LIMIT = 128 * MIB

PairFactory = Callable[[], contextlib.AbstractAsyncContextManager[tuple[Transport, Transport]]]


@contextlib.asynccontextmanager
async def _memory() -> AsyncIterator[tuple[Transport, Transport]]:
    a, b = memory_pair(LIMIT)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


@contextlib.asynccontextmanager
async def _network(kind: str) -> AsyncIterator[tuple[Transport, Transport]]:
    accepted: asyncio.Queue[Transport] = asyncio.Queue()
    done = asyncio.Event()

    async def handler(transport: Transport) -> None:
        accepted.put_nowait(transport)
        await done.wait()

    server: Server
    if kind == "tcp":
        server = await tcp.serve(handler, "127.0.0.1", 0, max_message_size=LIMIT)
        client: Transport = await tcp.connect("127.0.0.1", server.port, max_message_size=LIMIT)
    else:
        server = await websocket.serve(handler, "127.0.0.1", 0, max_message_size=LIMIT)
        client = await websocket.connect(f"ws://127.0.0.1:{server.port}/", max_message_size=LIMIT)
    try:
        yield client, await accepted.get()
    finally:
        done.set()
        await client.close()
        await server.close()


FACTORIES: dict[str, PairFactory] = {
    "memory": _memory,
    "tcp": lambda: _network("tcp"),
    "websocket": lambda: _network("websocket"),
}


async def measure(factory: PairFactory, size: int, total: int, min_messages: int, seconds: float) -> float:
    """MB/s moved from one end to the other with ``size``-byte messages."""
    payload = os.urandom(size)
    count = max(min_messages, total // size)
    async with factory() as (a, b):
        await asyncio.gather(a.send(payload), b.recv())  # warm up (buffers, TCP window)
        start = time.perf_counter()
        deadline = start + seconds

        async def produce() -> None:
            for _ in range(count):
                await a.send(payload)
                if time.perf_counter() > deadline:
                    break
            await a.send(b"")  # end marker

        async def consume() -> int:
            received = 0
            while message := await b.recv():
                received += len(message)
            return received

        _, received = await asyncio.gather(produce(), consume())
        elapsed = time.perf_counter() - start
    return received / elapsed / 1e6


def _size_label(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


async def main_async(args: argparse.Namespace) -> str:
    names = args.transports
    lines = [
        f"Loopback one-way throughput, MB/s (event loop: {args.loop}, Python {platform.python_version()}, "
        f"{args.bytes // MIB} MiB per cell, at most {args.seconds:g} s per cell)",
        "",
        "| message size | " + " | ".join(names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for size in SIZES:
        cells = []
        for name in names:
            rate = await measure(FACTORIES[name], size, args.bytes, args.min_messages, args.seconds)
            cells.append(f"{rate:,.0f}")
        lines.append(f"| {_size_label(size)} | " + " | ".join(cells) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    lines += ["", "memory: bytes objects are passed by reference (no copy); it shows per-message cost only."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--bytes", type=int, default=512 * MIB, help="bytes per (transport, size) cell")
    parser.add_argument("--min-messages", type=int, default=4, help="messages per cell at least")
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget per cell")
    parser.add_argument("--transports", nargs="+", choices=list(FACTORIES), default=list(FACTORIES))
    args = parser.parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        table = uvloop.run(main_async(args))
    else:
        table = asyncio.run(main_async(args))
    print(table)


if __name__ == "__main__":
    main()
