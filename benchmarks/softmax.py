"""Bytes of the quantized Softmax on shares (``softmax_q``), per element and per step, from the channel.

    PYTHONPATH=. python benchmarks/softmax.py [--n 32 128] [--elements 4096] [--scale 0.125] [--out-bits 8]
                                              [--l-in 9] [--value-bits 8] [--ot silent]

Both parties run in one process over the in-memory transport; the logits are random signed ``value_bits``-bit
values shared mod ``2^l_in`` (default: 8-bit attention scores in a 9-bit ring), rows of ``n``.  Reported: the
online bits per element (both directions, ``select(phase="online")`` of the channel's own accounting) in
total and per step label (``max``: the max tree, ``clip``, ``exp``: the exp look-up, ``ext_e``: its extension to
the row ring, ``row``: the per-row reciprocal, ``prod``: the product ``e·r``, ``out``: the final
requantization), the wall / CPU seconds of the run (both parties in one process), and the **rounds**: the
same Softmax on 4 rows again with every online message delayed by ``--delay`` seconds one way
(``DelayTransport`` of benchmarks/nonlinear.py; COT generation is not delayed), rounds = extra wall time / delay
(best of 2 runs each way; a request and its reply count as two).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiompc import run_local  # noqa: E402
from aiompc.channel import Channel  # noqa: E402
from aiompc.crypto.prg import PRG  # noqa: E402
from aiompc.session import run_pair  # noqa: E402
from aiompc.transports.memory import memory_pair  # noqa: E402
from benchmarks.nonlinear import DelayTransport  # noqa: E402
from aiompc.party import Party  # noqa: E402
from aiompc.protocols.nonlinear.softmax import SoftmaxWidths, softmax_q  # noqa: E402
from aiompc.qmath import softmax_int  # noqa: E402
from aiompc.qtables import softmax_params  # noqa: E402
from aiompc.ring import from_signed, reconstruct, share  # noqa: E402

STEPS = ("ext_z", "max", "clip", "exp", "ext_e", "row", "prod", "out")


async def measure(n: int, elements: int, scale: float, out_bits: int, l_in: int, value_bits: int) -> dict:
    params, _ = softmax_params(scale, n, out_bits=out_bits)
    rows = max(1, elements // n)
    gen = np.random.default_rng(n)  # test data only; the protocol's secrets come from its PRG
    z = gen.integers(-(1 << (value_bits - 1)), 1 << (value_bits - 1), (rows, n))
    zs, zc = share(from_signed(z, l_in), l_in, PRG())

    async def job(p: Party) -> tuple[np.ndarray, dict[str, int]]:
        await softmax_q(p, "warm", (zs if p.is_server else zc)[:1], params=params, l_in=l_in, l_out=out_bits,
                        value_bits=value_bits)  # base OTs of both directions
        before = p.channel.stats()
        out = await softmax_q(p, "sm", zs if p.is_server else zc, params=params, l_in=l_in, l_out=out_bits,
                              value_bits=value_bits)
        d = p.channel.stats() - before
        sizes = {s: d.select(f"sm/{s}", phase="online") for s in STEPS}
        total = d.select("sm", phase="online")
        return out, {**{s: v.bytes_sent + v.bytes_recv for s, v in sizes.items()},
                     "total": total.bytes_sent + total.bytes_recv}

    t0, c0 = time.perf_counter(), time.process_time()
    (s, bs), (c, _) = await run_local(job, job)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert np.array_equal(reconstruct(s, c, out_bits).astype(np.int64), softmax_int(z, params)), "mismatch"
    wd = SoftmaxWidths(params, n, l_in=l_in, l_out=out_bits, value_bits=value_bits)
    return {"n": n, "k": params.exp_bits, "kr": params.recip_bits, "q": params.octaves, "L": wd.L, "l_e": wd.l_e,
            "bits": {key: 8 * v / z.size for key, v in bs.items()}, "wall": wall, "cpu": cpu}


async def rounds(n: int, scale: float, out_bits: int, l_in: int, value_bits: int, delay: float) -> int:
    """Message rounds of one softmax_q on 4 rows of ``n``: (delayed − undelayed wall time) / one-way delay."""
    params, _ = softmax_params(scale, n, out_bits=out_bits)
    z = np.random.default_rng(1).integers(-(1 << (value_bits - 1)), 1 << (value_bits - 1), (4, n))
    zs, zc = share(from_signed(z, l_in), l_in, PRG())
    ts, tc = memory_pair(1 << 30)
    wires = DelayTransport(ts, 0.0), DelayTransport(tc, 0.0)
    times: dict[float, list[float]] = {0.0: [], delay: []}

    async def side(p: Party) -> None:
        mine = zs if p.is_server else zc
        await softmax_q(p, "warm", mine, params=params, l_in=l_in, l_out=out_bits, value_bits=value_bits)
        for i, lat in enumerate([0.0, delay, 0.0, delay]):
            sync = p.sub(f"sync{i}")
            if p.is_server:
                await sync.recv()
                for w in wires:
                    w.delay = lat
                await sync.send("go")
                await asyncio.sleep(lat)
            else:
                await sync.send("ready")
                await sync.recv()
            t0 = time.perf_counter()
            await softmax_q(p, f"r{i}", mine, params=params, l_in=l_in, l_out=out_bits, value_bits=value_bits)
            if p.is_server:
                await sync.recv()
                times[lat].append(time.perf_counter() - t0)
            else:
                await sync.send("done")

    server, client = Party("server", Channel(wires[0])), Party("client", Channel(wires[1]))
    await run_pair(server, client, side, side)
    return round((min(times[delay]) - min(times[0.0])) / delay)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--elements", type=int, default=4096)
    ap.add_argument("--scale", type=float, default=0.125)
    ap.add_argument("--out-bits", type=int, default=8)
    ap.add_argument("--l-in", type=int, default=9)
    ap.add_argument("--value-bits", type=int, default=8)
    ap.add_argument("--ot", default=None, help="OT engine (default: the library's)")
    ap.add_argument("--delay", type=float, default=0.02, help="one-way latency (s) used to count rounds; 0: skip")
    a = ap.parse_args()
    if a.ot:
        from aiompc.protocols.ot import engines

        engines.DEFAULT_ENGINE = a.ot
    print(f"softmax_q: {a.value_bits}-bit logits in a {a.l_in}-bit ring, scale {a.scale}, {a.out_bits}-bit output; "
          "online bits per element")
    print(f"{'n':>5} {'k':>2} {'kr':>2} {'q':>2} {'L':>3} {'total':>7} " + " ".join(f"{s:>6}" for s in STEPS)
          + "   wall s   cpu s  rounds")
    for n in a.n:
        r = asyncio.run(measure(n, a.elements, a.scale, a.out_bits, a.l_in, a.value_bits))
        rr = asyncio.run(rounds(n, a.scale, a.out_bits, a.l_in, a.value_bits, a.delay)) if a.delay else "-"
        b = r["bits"]
        print(f"{n:>5} {r['k']:>2} {r['kr']:>2} {r['q']:>2} {r['L']:>3} {b['total']:>7.0f} "
              + " ".join(f"{b[s]:>6.0f}" for s in STEPS) + f"   {r['wall']:6.2f}  {r['cpu']:6.2f}  {rr:>6}")


if __name__ == "__main__":
    main()
