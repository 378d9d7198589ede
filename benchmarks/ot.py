"""OT benchmark: random-COT throughput of the engine and the measured cost of every OT flavour.

    python benchmarks/ot.py [--cots 4194304] [--n 262144] [--repeats 3] [--engine iknp] [--silent 3]

Both parties run in one process over the in-memory transport (so they share the machine's cores).
All byte figures come from the channel statistics (frame headers included), never from a formula;
the "expected" columns are the sizes REFERENCE.md gives for a flavour on top of a random COT
(IKNP: 128 bits per COT, offline).  Output: two Markdown tables.

1. Random COTs: ``engine.precompute(--cots)`` after the one-time setup (base OTs, also reported):
   COTs per second and offline bytes per COT.
2. Flavours, ``--n`` instances each, starting from an empty buffer: online bits per instance (both
   directions: receiver→sender / sender→receiver), offline bits per instance (COTs generated on
   demand), instances per second including generation (best of ``--repeats`` runs; the machine's
   other load makes single runs noisy).
3. With ``--silent E`` (E > 0): random COTs in steady state, the silent (Ferret) engine beside IKNP.
   Silent: after its one-time setup (base OTs, one IKNP batch, the bootstrap-set extension) exactly
   ``E`` main-set extensions; bits per COT = the bytes of those extensions (both directions, channel
   statistics) over the COTs they produced, COTs/s = those COTs over the wall time.  IKNP: the same
   number of COTs after its base OTs.  The one-time setup is listed apart, and folded in as well.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiompc import run_local  # noqa: E402
from aiompc.channel import Stats  # noqa: E402
from aiompc.crypto.ferret import MAIN  # noqa: E402
from aiompc.party import Party  # noqa: E402
from aiompc.protocols.ot import bit_triples, chosen_ot, correlated_ot, get_engine, one_of_n_ot, random_ot  # noqa: E402

Flavour = Callable[[Party, int], Awaitable[Any]]


def _flavours(n: int) -> list[tuple[str, str, Flavour]]:
    """(name, expected bits per instance from REFERENCE.md, coroutine run by both parties)."""
    z = np.zeros(n, dtype=np.uint64)
    c = np.zeros(n, dtype=np.uint8)

    def chosen(bits: int) -> Flavour:
        async def run(p: Party, _: int) -> Any:
            if p.is_server:
                return await chosen_ot(p, "f", sender="server", bits=bits, messages=(z, z))
            return await chosen_ot(p, "f", sender="server", bits=bits, choices=c)

        return run

    def correlated(bits: int) -> Flavour:
        async def run(p: Party, _: int) -> Any:
            if p.is_server:
                return await correlated_ot(p, "f", sender="server", bits=bits, correlation=z)
            return await correlated_ot(p, "f", sender="server", bits=bits, choices=c)

        return run

    def one_of_n(N: int, bits: int) -> Flavour:
        msgs = np.zeros((n, N), dtype=np.uint64)

        async def run(p: Party, _: int) -> Any:
            if p.is_server:
                return await one_of_n_ot(p, "f", sender="server", bits=bits, n_choices=N, messages=msgs)
            return await one_of_n_ot(p, "f", sender="server", bits=bits, n_choices=N, choices=c)

        return run

    async def rand(p: Party, _: int) -> Any:
        return await random_ot(p, "f", sender="server", n=n, bits=32)

    async def triples(p: Party, _: int) -> Any:
        return await bit_triples(p, "f", n)

    return [
        ("chosen 1-of-2, l=1", "1 + 2·1 = 3", chosen(1)),
        ("chosen 1-of-2, l=8", "1 + 2·8 = 17", chosen(8)),
        ("chosen 1-of-2, l=37", "1 + 2·37 = 75", chosen(37)),
        ("correlated, l=8", "1 + 8 = 9", correlated(8)),
        ("correlated, l=37", "1 + 37 = 38", correlated(37)),
        ("1-of-16, l=2 (millionaire leaf)", "4 + 16·2 = 36", one_of_n(16, 2)),
        ("1-of-4, l=8", "2 + 4·8 = 34", one_of_n(4, 8)),
        ("1-of-256, l=1", "8 + 256·1 = 264", one_of_n(256, 1)),
        ("random OT, l=32", "0", rand),
        ("bit triple (2 random OTs)", "0", triples),
    ]


async def _measure_cots(total: int, engine: str) -> dict[str, float]:
    times: dict[str, float] = {}

    async def run(p: Party) -> tuple[Stats, Stats]:
        e = get_engine(p)
        t0 = time.perf_counter()
        await e.precompute(128, sender="server")  # setup: base OTs + a tiny batch
        t1 = time.perf_counter()
        mid = p.channel.stats()
        await e.precompute(total, sender="server")
        t2 = time.perf_counter()
        times[p.role] = t2 - t1
        times[p.role + "_setup"] = t1 - t0
        return p.channel.stats() - mid, mid

    (gen, setup), _ = await run_local(run, run, options={"ot": engine})
    gen_bytes = gen.bytes_sent + gen.bytes_recv
    setup_bytes = setup.select(phase="offline").bytes_sent + setup.select(phase="offline").bytes_recv
    secs = max(times["server"], times["client"])
    return {
        "cots": total,
        "seconds": secs,
        "rate": total / secs,
        "bytes_per_cot": gen_bytes / total,
        "setup_seconds": max(times["server_setup"], times["client_setup"]),
        "setup_bytes": setup_bytes,
    }


async def _measure_flavour(fn: Flavour, n: int, engine: str, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"server": [], "client": []}

    async def run(p: Party) -> Stats:
        e = get_engine(p)
        for sender in ("server", "client"):  # setup outside the measurement, leaving the buffer empty
            await e.precompute(128, sender=sender)
            await e.cots(f"warm-up/{sender}", 128, sender=sender)
        for i in range(repeats):
            await p.sub("bench/sync").exchange(i)  # both start together (the statistics exclude it)
            if i == 0:
                before = p.channel.stats()
            t0 = time.perf_counter()
            await fn(p, n)
            times[p.role].append(time.perf_counter() - t0)
            if i == 0:
                first = p.channel.stats() - before
        return first

    delta, _ = await run_local(run, run, options={"ot": engine})  # server's view; the server is the OT sender
    online, offline = delta.select(phase="online"), delta.select(phase="offline")
    return {
        "up": 8 * online.bytes_recv / n,  # bits receiver -> sender
        "down": 8 * online.bytes_sent / n,  # bits sender -> receiver
        "offline": 8 * (offline.bytes_sent + offline.bytes_recv) / n,
        "rate": n / min(max(s, c) for s, c in zip(times["server"], times["client"])),
    }


# --------------------------------------------------------------------------- silent OT beside IKNP


async def _measure_silent(extensions: int) -> dict[str, float]:
    """Steady state of the silent engine: exactly ``extensions`` main-set extensions after the setup."""
    times: dict[str, float] = {}
    out: dict[str, Any] = {}

    async def run(p: Party) -> None:
        e = get_engine(p)
        t0 = time.perf_counter()
        await e.precompute(1, sender="server")  # setup: base OTs, IKNP batch, bootstrap-set extension
        t1 = time.perf_counter()
        mid = p.channel.stats()
        # the receiver (client) asks for one COT less than E main extensions add to its surplus, so
        # exactly E run (only the receiver's count matters to precompute)
        surplus = e.buffered("server") if p.is_client else 0
        await e.precompute(surplus + extensions * MAIN.gain - 1, sender="server")
        t2 = time.perf_counter()
        times[p.role], times[p.role + "_setup"] = t2 - t1, t1 - t0
        if p.is_client:
            label = e.label("server")
            gen = (p.channel.stats() - mid).select(label, phase="offline")
            setup = mid.select("ot", phase="offline")
            out.update(history=e.history("server"), surplus=surplus, gen_bytes=gen.bytes_sent + gen.bytes_recv,
                       setup_bytes=setup.bytes_sent + setup.bytes_recv)

    cpu0 = time.process_time()
    await run_local(run, run, options={"ot": "silent"})
    cpu = time.process_time() - cpu0
    if out["history"][1:] != ["main"] * extensions:
        raise RuntimeError(f"expected {extensions} main extensions after the bootstrap, ran {out['history']}")
    produced = extensions * MAIN.gain
    secs = max(times["server"], times["client"])
    return {
        "cots": produced,
        "seconds": secs,
        "rate": produced / secs,
        "bits_per_cot": 8 * out["gen_bytes"] / produced,
        "setup_seconds": max(times["server_setup"], times["client_setup"]),
        "setup_bytes": out["setup_bytes"],
        "amortised": 8 * (out["gen_bytes"] + out["setup_bytes"]) / (produced + out["surplus"]),
        "cpu": cpu,  # process CPU seconds, both parties, setup included
    }


async def silent_section(extensions: int) -> None:
    """Print the steady-state comparison table (section 3 of the module docstring)."""
    silent = await _measure_silent(extensions)
    iknp = await _measure_cots(silent["cots"], "iknp")
    print(f"\n## Random COTs in steady state: silent (Ferret, {extensions} main extensions) beside IKNP\n")
    print("| engine | COTs | seconds | COTs / s | bits / COT | with setup | issue 10 target | one-time setup |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    print(
        f"| iknp | {iknp['cots']:,} | {iknp['seconds']:.2f} | {iknp['rate']:,.0f} | {8 * iknp['bytes_per_cot']:.3f} | "
        f"{8 * (iknp['bytes_per_cot'] + iknp['setup_bytes'] / iknp['cots']):.3f} | — | "
        f"base OTs: {iknp['setup_bytes']:,} B, {iknp['setup_seconds'] * 1000:.0f} ms |"
    )
    print(
        f"| silent | {silent['cots']:,} | {silent['seconds']:.2f} | {silent['rate']:,.0f} | "
        f"{silent['bits_per_cot']:.3f} | {silent['amortised']:.3f} | ≤ 0.5 bit, ≥ 1,000,000 / s | "
        f"base OTs + IKNP + bootstrap extension: {silent['setup_bytes']:,} B, {silent['setup_seconds'] * 1000:.0f} ms |"
    )
    print(
        f"\nsilent: {silent['cpu']:.2f} CPU-s in the process (both parties, setup included) for {silent['cots']:,} "
        f"COTs each: {2 * silent['cots'] / silent['cpu']:,.0f} COTs per party per CPU-second"
    )


async def main(args: argparse.Namespace) -> None:
    print(f"# OT benchmark ({args.engine}; {platform.machine()}, {platform.python_version()}, numpy {np.__version__})\n")
    cot = await _measure_cots(args.cots, args.engine)
    # silent: the main set's message over its net COTs (see --silent for the measured steady state)
    expected = "16 (128 bits)" if args.engine == "iknp" else f"{MAIN.message_bytes / MAIN.gain:.3f} (steady state)"
    print("## Random correlated OTs\n")
    print("| COTs | seconds | COTs / s | offline bytes / COT | expected | setup (base OTs) |")
    print("|---:|---:|---:|---:|---:|---|")
    print(
        f"| {cot['cots']:,} | {cot['seconds']:.2f} | {cot['rate']:,.0f} | {cot['bytes_per_cot']:.3f} | {expected} | "
        f"{cot['setup_bytes']:,} B, {cot['setup_seconds'] * 1000:.0f} ms |"
    )
    print(f"\n## Flavours ({args.n:,} instances each; bits per instance, measured)\n")
    print("| flavour | online R→S | online S→R | online total | expected (REFERENCE.md) | offline (COTs) | instances / s |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for name, expected, fn in _flavours(args.n):
        r = await _measure_flavour(fn, args.n, args.engine, args.repeats)
        print(
            f"| {name} | {r['up']:.2f} | {r['down']:.2f} | {r['up'] + r['down']:.2f} | {expected} | "
            f"{r['offline']:.1f} | {r['rate']:,.0f} |"
        )


    if args.silent > 0:
        await silent_section(args.silent)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cots", type=int, default=1 << 22, help="random COTs to generate for the throughput row")
    ap.add_argument("--n", type=int, default=1 << 18, help="instances per flavour")
    ap.add_argument("--repeats", type=int, default=3, help="runs per flavour (bytes from the first, speed from the best)")
    ap.add_argument("--engine", default="iknp", help="OT engine kind (party.options['ot'])")
    ap.add_argument("--silent", type=int, default=0, metavar="E",
                    help="also compare silent OT (E main-set extensions, steady state) with IKNP; 0 skips")
    import aiompc

    aiompc.run(main(ap.parse_args()))
