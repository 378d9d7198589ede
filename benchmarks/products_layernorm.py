"""Products of shares and the quantized LayerNorm: online/offline bytes from the channel, wall and CPU seconds.

    PYTHONPATH=. python benchmarks/products_layernorm.py [--n 65536] [--seq 128] [--hidden 128,768] [--engine silent]

Both parties in one process over the in-memory transport (they share the machine's cores).  Rows:

* ``multiply`` / ``multiply x_bits=8`` / ``multiply_private w_bits=8`` / ``square x_bits=8`` at l = 16, 24, 37:
  ``--n`` elements each, online bits per element (both directions);
* ``layernorm_q`` of a ``(seq, hidden)`` token tensor of 8-bit values (default :func:`aiompc.qmath.layernorm_params`):
  online bits per element.

Wall and process CPU seconds (both parties, one process) cover the call including the generation of its COTs
(offline, under a bit per COT for silent OT; not counted in the online bits); the engine's one-time setup is
excluded by a first small call.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any, Awaitable, Callable

import numpy as np

from aiompc import run_local
from aiompc.crypto.prg import PRG
from aiompc.party import Party
from aiompc.protocols.nonlinear.layernorm import layernorm_q
from aiompc.protocols.nonlinear.multiply import multiply, multiply_private, square
from aiompc.qtables import layernorm_params
from aiompc.ring import from_signed, share


async def _measure(label: str, call: Callable[[Party], Awaitable[Any]], elements: int, engine: str) -> dict[str, float]:
    """Run ``call`` on both parties after a warm-up; bits per element and seconds (server's view)."""

    async def job(p: Party) -> dict[str, float]:
        await multiply(p, "warm", np.zeros(64, np.uint64), np.zeros(64, np.uint64), l=8)
        t0, c0 = time.perf_counter(), time.process_time()
        await call(p)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        on = p.channel.stats().select(label, phase="online")  # the call's own labels: complete at its end
        return {"online": (on.bytes_sent + on.bytes_recv) * 8 / elements, "wall": wall, "cpu": cpu}

    s, _ = await run_local(job, job, options={"ot": engine})
    return s


async def main(args: argparse.Namespace) -> None:
    n = args.n
    gen = np.random.default_rng(1)
    print("| protocol | l | online bits/element | wall s | CPU s (both parties) |")
    print("|---|---:|---:|---:|---:|")
    for l in (16, 24, 37):
        x = from_signed(gen.integers(-128, 128, n), l)
        y = from_signed(gen.integers(-(1 << (l - 2)), 1 << (l - 2), n), l)
        xs, ys = share(x, l, PRG()), share(y, l, PRG())
        w = gen.integers(-128, 128, n)

        def mine(p: Party, pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
            return pair[0] if p.is_server else pair[1]

        rows: list[tuple[str, Callable[[Party], Awaitable[Any]]]] = [
            ("multiply", lambda p: multiply(p, "b", mine(p, xs), mine(p, ys), l=l)),
            ("multiply x_bits=8", lambda p: multiply(p, "b", mine(p, xs), mine(p, ys), l=l, x_bits=8)),
            ("multiply_private", lambda p: multiply_private(p, "b", mine(p, ys), w if p.is_server else None, l=l)),
            ("multiply_private w_bits=8", lambda p: multiply_private(p, "b", mine(p, ys), w if p.is_server else None,
                                                                     l=l, w_bits=8)),
            ("square", lambda p: square(p, "b", mine(p, xs), l=l)),
            ("square x_bits=8", lambda p: square(p, "b", mine(p, xs), l=l, x_bits=8)),
        ]
        for name, call in rows:
            r = await _measure("b", call, n, args.engine)
            print(f"| {name} | {l} | {r['online']:.1f} | {r['wall']:.2f} | {r['cpu']:.2f} |")
    print()
    print("| layernorm_q | seq x hidden | online bits/element | wall s | CPU s (both parties) |")
    print("|---|---|---:|---:|---:|")
    for H in (int(h) for h in args.hidden.split(",")):
        params, _ = layernorm_params(0.05, H)
        x = np.clip(np.round(gen.normal(0, 30, (args.seq, H))), -128, 127).astype(np.int64)
        xs8 = share(from_signed(x, 8), 8, PRG())
        r = await _measure("ln", lambda p: layernorm_q(p, "ln", xs8[0] if p.is_server else xs8[1], params=params,
                                                       l_in=8, l_out=8), x.size, args.engine)
        print(f"| layernorm_q | {args.seq} x {H} | {r['online']:.0f} | {r['wall']:.2f} | {r['cpu']:.2f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=65536)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--hidden", default="128,768")
    ap.add_argument("--engine", default="silent")
    asyncio.run(main(ap.parse_args()))
