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
   statistics) over the COTs they produced, COTs/s = those COTs over the wall time (per party: each
   party holds its half of every COT), COTs per party per CPU-second = 2 × COTs over the process's CPU
   time in that phase (both parties run in this process); median (min–max) of ``--runs`` sessions.
   IKNP: the same number of COTs after its base OTs.  The one-time setup is listed apart, and folded in
   as well.  ``--silent-only`` prints just this row:

       python benchmarks/ot.py --silent 3 --runs 5 --silent-only
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
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
    """Steady state of the silent engine: exactly ``extensions`` main-set extensions after the setup.

    Both parties start the steady phase together (a barrier after the setup) and the process's CPU time
    is read across it (both parties: they share this process), so CPU seconds exclude the setup."""
    times: dict[str, float] = {}
    out: dict[str, Any] = {}

    async def run(p: Party) -> None:
        e = get_engine(p)
        t0 = time.perf_counter()
        await e.precompute(1, sender="server")  # setup: base OTs, IKNP batch, bootstrap-set extension
        await p.sub("bench/start").exchange(0)
        if p.is_server:
            out["cpu0"] = time.process_time()
        t1 = time.perf_counter()
        mid = p.channel.stats()
        # the receiver (client) asks for one COT less than E main extensions add to its surplus, so
        # exactly E run (only the receiver's count matters to precompute)
        surplus = e.buffered("server") if p.is_client else 0
        await e.precompute(surplus + extensions * MAIN.gain - 1, sender="server")
        t2 = time.perf_counter()
        await p.sub("bench/end").exchange(0)
        if p.is_server:
            out["cpu1"] = time.process_time()
        times[p.role], times[p.role + "_setup"] = t2 - t1, t1 - t0
        if p.is_client:
            label = e.label("server")
            gen = (p.channel.stats() - mid).select(label, phase="offline")
            setup = mid.select("ot", phase="offline")
            out.update(history=e.history("server"), surplus=surplus, gen_bytes=gen.bytes_sent + gen.bytes_recv,
                       setup_bytes=setup.bytes_sent + setup.bytes_recv)

    await run_local(run, run, options={"ot": "silent"})
    if out["history"][1:] != ["main"] * extensions:
        raise RuntimeError(f"expected {extensions} main extensions after the bootstrap, ran {out['history']}")
    produced = extensions * MAIN.gain
    secs = max(times["server"], times["client"])
    cpu = out["cpu1"] - out["cpu0"]
    return {
        "cots": produced,
        "seconds": secs,
        "rate": produced / secs,
        "bits_per_cot": 8 * out["gen_bytes"] / produced,
        "setup_seconds": max(times["server_setup"], times["client_setup"]),
        "setup_bytes": out["setup_bytes"],
        "amortised": 8 * (out["gen_bytes"] + out["setup_bytes"]) / (produced + out["surplus"]),
        "cpu": cpu,  # process CPU seconds of the steady phase, both parties
        "per_cpu": 2 * produced / cpu,  # COTs per party per CPU-second
    }


def _spread(values: list[float], fmt: str = ",.0f") -> str:
    """``median (min–max)`` of the runs."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


async def silent_section(extensions: int, runs: int = 1, iknp: bool = True) -> None:
    """Print the steady-state table (section 3 of the module docstring): medians of ``runs`` sessions."""
    results = [await _measure_silent(extensions) for _ in range(runs)]
    load = os.getloadavg()[0]
    print(f"\n## Random COTs in steady state: silent (Ferret, {extensions} main extensions per session, "
          f"{runs} sessions; median (min–max)){' beside IKNP' if iknp else ''}\n")
    print(f"{os.cpu_count()} cores, load average {load:.1f} at the end; COTs / s is per party (each party gets "
          "every COT, its own half); CPU-s is the process's (both parties) during the steady phase.\n")
    print("| engine | COTs per session | wall s | COTs / s per party | CPU-s | COTs per party per CPU-s | "
          "bits / COT | with setup | issue 17 target | one-time setup |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    if iknp:
        ik = await _measure_cots(results[0]["cots"], "iknp")
        print(
            f"| iknp | {ik['cots']:,} | {ik['seconds']:.2f} | {ik['rate']:,.0f} | — | — | {8 * ik['bytes_per_cot']:.3f} | "
            f"{8 * (ik['bytes_per_cot'] + ik['setup_bytes'] / ik['cots']):.3f} | — | "
            f"base OTs: {ik['setup_bytes']:,} B, {ik['setup_seconds'] * 1000:.0f} ms |"
        )
    r0 = results[0]
    print(
        f"| silent | {r0['cots']:,} | {_spread([r['seconds'] for r in results], '.2f')} | "
        f"{_spread([r['rate'] for r in results])} | {_spread([r['cpu'] for r in results], '.2f')} | "
        f"{_spread([r['per_cpu'] for r in results])} | {r0['bits_per_cot']:.3f} | {r0['amortised']:.3f} | "
        f"≤ 0.5 bit, ≥ 5,000,000 / s | base OTs + IKNP + bootstrap extension: {r0['setup_bytes']:,} B, "
        f"{statistics.median([r['setup_seconds'] for r in results]) * 1000:.0f} ms |"
    )


async def main(args: argparse.Namespace) -> None:
    engine = "silent" if args.silent_only else args.engine
    print(f"# OT benchmark ({engine}; {platform.machine()}, {platform.python_version()}, numpy {np.__version__})\n")
    if args.silent_only:
        await silent_section(max(1, args.silent), args.runs, iknp=False)
        return
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
        await silent_section(args.silent, args.runs)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cots", type=int, default=1 << 22, help="random COTs to generate for the throughput row")
    ap.add_argument("--n", type=int, default=1 << 18, help="instances per flavour")
    ap.add_argument("--repeats", type=int, default=3, help="runs per flavour (bytes from the first, speed from the best)")
    ap.add_argument("--engine", default="iknp", help="OT engine kind (party.options['ot'])")
    ap.add_argument("--silent", type=int, default=0, metavar="E",
                    help="also compare silent OT (E main-set extensions, steady state) with IKNP; 0 skips")
    ap.add_argument("--runs", type=int, default=3, help="sessions of the silent steady-state row (median, min–max)")
    ap.add_argument("--silent-only", action="store_true", help="print only the silent steady-state row (no IKNP)")
    import aiompc

    aiompc.run(main(ap.parse_args()))
