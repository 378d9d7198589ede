"""Cost of the non-linear protocols per element: bytes (online / offline), rounds and time, beside the
silent-OT figures of ../shared/REFERENCE.md.

    python benchmarks/nonlinear.py [--n 16384] [--widths 8 16 37] [--ot iknp] [--ops relu trunc-exact ...]

For every ring width ``l`` and operation both parties run in one process over the in-memory transport
(after a warm-up that performs the base OTs of both directions).  Truncation is by ``f`` = 3, 6, 12
bits for ``l`` = 8, 16, 37 (``-msb0``: input known non-negative, e.g. after ReLU); requantization maps
an ``l``-bit accumulator to a ReLU-fused 4-bit output in a ``min(l, 16)``-bit ring, with a power-of-two
scale (``pow2``: a shift by ``l − 6``) or an 8-bit fixed-point multiplier (``fixed``: 181 / 2^(l+2));
max-pool has stride = kernel.  Reported per element (per *output* element for max-pool):

* **online / offline bytes** — from the channel's own accounting (``party.channel.stats()`` snapshots,
  ``select(phase=...)``), both directions; offline = OT-extension traffic (labels ``ot/...``);
  Offline bytes are those of the COTs the operation *consumed*: the engine generates COTs in batches,
  so the traffic seen during the run is corrected by the change of the COT buffer
  (``engine.buffered``) at the cost per COT measured in the warm-up (a ``precompute`` per direction);
* **rounds** — measured, not modelled: the operation runs again on 128 elements with every online
  message delayed by a fixed one-way latency ``--delay`` (offline COT generation left instant, as if
  precomputed); rounds = extra wall time / delay, best of 3 runs each way (one simultaneous exchange
  counts as one; a request and its reply as two);
* **µs** — wall time of the whole operation (online + OT extension) divided by the element count;
* **silent** — bits per element with silent OT from REFERENCE.md: *measured* where REFERENCE.md has a
  figure for that operation and width (Cheetah's C++ at ``l = 37``: ReLU 480, known-MSB truncation 20,
  exact truncation 458 bits), otherwise a *model* (``~``) from REFERENCE.md's primitive costs
  (millionaire ≈ 11 bits per compared bit, a COT with an ``l``-bit correlation ``l`` bits, a choice bit 1);
* **×silent** — our total (online + offline) bits over the silent figure: the price of IKNP; and
  **on/silent** — online bits alone over it (roughly what a silent-OT engine would leave us).  The
  requantization rows compare against the fixed-point baseline between two layers (ReLU + known-MSB
  truncation), which does not clip to 4 bits: requantization does strictly more work.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiompc.channel import Channel  # noqa: E402
from aiompc.crypto.prg import PRG  # noqa: E402
from aiompc.party import Party  # noqa: E402
from aiompc.ring import share  # noqa: E402
from aiompc.session import run_pair  # noqa: E402
from protocols.ot import get_engine  # noqa: E402
from protocols.nonlinear import maxpool2d, relu, requantize, truncate  # noqa: E402
from transports.base import Transport  # noqa: E402
from transports.memory import memory_pair  # noqa: E402

TRUNC_BITS = {8: 3, 16: 6, 37: 12}


# --------------------------------------------------------------------------- measuring rounds


def _online(frame: bytes | bytearray | memoryview) -> bool:
    """Whether a channel frame (``u16 label length | label | payload``) is online: engine labels
    (``ot/...``) are offline COT generation."""
    (n,) = struct.unpack_from("<H", frame)
    return not bytes(frame[2 : 2 + n]).startswith(b"ot/")


class DelayTransport(Transport):
    """One end of a memory pair whose online messages arrive ``delay`` seconds after they are sent
    (a fixed one-way latency; offline COT generation is left instantaneous, as if precomputed).
    Order per label is kept: every online message waits the same time."""

    def __init__(self, inner: Transport, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.max_message_size = inner.max_message_size
        self._pending: set[asyncio.Task[None]] = set()

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        if self.delay and _online(data):
            payload = bytes(data)
            loop = asyncio.get_running_loop()
            loop.call_later(self.delay, self._deliver, payload)
        else:
            await self.inner.send(data)

    def _deliver(self, payload: bytes) -> None:
        task = asyncio.ensure_future(self.inner.send(payload))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def recv(self) -> bytes:
        return await self.inner.recv()

    async def close(self) -> None:
        await self.inner.close()

    @property
    def closed(self) -> bool:
        return self.inner.closed


# --------------------------------------------------------------------------- reference figures


def silent_bits(op: str, l: int) -> tuple[float, bool]:
    """(bits per element with silent OT, measured?) from REFERENCE.md, see the module docstring."""
    f = TRUNC_BITS.get(l, l // 3)
    cmp_bits = lambda b: 11 * b  # noqa: E731  millionaire ≈ 11 bits per compared bit
    relu_model = cmp_bits(l - 1) + 2 * (l + 1)
    models = {
        "relu": relu_model,
        "trunc-approx": cmp_bits(l) + (f + 1),
        "trunc-exact": cmp_bits(l) + cmp_bits(f) + (l + 1) + (f + 1),
        "trunc-approx-msb0": 3 + (f + 1),  # one OT of a bit + an f-bit B2A
        "trunc-exact-msb0": 3 + (f + 1) + cmp_bits(f) + (l + 1),
        # the fixed-point baseline between two layers: ReLU then a known-MSB truncation
        "requant-pow2": relu_model + 3 + (f + 1),
        "requant-fixed": relu_model + 3 + (f + 1),
        "maxpool2x2": 3 * relu_model,
        "maxpool3x3": 8 * relu_model,
    }
    measured_37 = {"relu": 480, "trunc-exact": 458, "trunc-approx-msb0": 20, "requant-pow2": 500,
                   "requant-fixed": 500, "maxpool2x2": 3 * 480, "maxpool3x3": 8 * 480}
    if l == 37 and op in measured_37:
        return float(measured_37[op]), True
    return float(models[op]), False


# --------------------------------------------------------------------------- the operations


@dataclass(frozen=True)
class Op:
    name: str
    make_input: Callable[[int, int, np.random.Generator], np.ndarray]  # (n outputs, l, gen) -> plaintext
    run: Callable[[Party, str, np.ndarray, int], Awaitable[np.ndarray]]


def _signed(n: int, l: int, gen: np.random.Generator, headroom: int = 1) -> np.ndarray:
    q = 1 << (l - 1 - headroom)
    return gen.integers(-q, q, size=n)


def _positive(n: int, l: int, gen: np.random.Generator) -> np.ndarray:
    return gen.integers(0, 1 << (l - 1), size=n)


def _pool_input(k: int) -> Callable[[int, int, np.random.Generator], np.ndarray]:
    def make(n: int, l: int, gen: np.random.Generator) -> np.ndarray:
        side = max(1, int(np.sqrt(n / 16)))
        c = max(1, n // (side * side))
        return gen.integers(0, 1 << (l - 2), size=(c, side * k, side * k))

    return make


OPS = [
    Op("relu", _signed, lambda p, lab, x, l: relu(p, lab, x, l=l)),
    Op("trunc-exact", _signed, lambda p, lab, x, l: truncate(p, lab, x, l=l, f=TRUNC_BITS[l])),
    Op("trunc-approx", _signed, lambda p, lab, x, l: truncate(p, lab, x, l=l, f=TRUNC_BITS[l], exact=False)),
    Op("trunc-exact-msb0", _positive, lambda p, lab, x, l: truncate(p, lab, x, l=l, f=TRUNC_BITS[l], msb_known_zero=True)),
    Op("trunc-approx-msb0", _positive,
       lambda p, lab, x, l: truncate(p, lab, x, l=l, f=TRUNC_BITS[l], msb_known_zero=True, exact=False)),
    # between two layers of a 4-bit network: accumulator of l bits -> ReLU-fused 4-bit output, shared in
    # the next layer's ring (min(l, 16) bits); power-of-two scale, or an 8-bit fixed-point multiplier
    Op("requant-pow2", _signed,
       lambda p, lab, x, l: requantize(p, lab, x, l_in=l, multiplier=1, shift=l - 6, lo=0, hi=15, l_out=min(l, 16))),
    Op("requant-fixed", _signed,
       lambda p, lab, x, l: requantize(p, lab, x, l_in=l, multiplier=181, shift=l + 2, lo=0, hi=15, l_out=min(l, 16))),
    Op("maxpool2x2", _pool_input(2), lambda p, lab, x, l: maxpool2d(p, lab, x, l=l, kernel=2)),
    Op("maxpool3x3", _pool_input(3), lambda p, lab, x, l: maxpool2d(p, lab, x, l=l, kernel=3)),
]


PRECOMPUTE = 1 << 13  # COTs per direction generated in the warm-up to measure the cost of one COT
ROUNDS_ELEMENTS = 128  # elements of the latency-injected runs that count rounds
REPEATS = 3


async def run_once(op: Op, l: int, x: np.ndarray, ot: str, delay: float = 0.0) -> dict[str, float]:
    """Run ``op`` on the shared ``x`` once; bytes (online, offline) and seconds of the operation."""
    xs, xc = share(x, l, PRG())
    ts, tc = memory_pair(1 << 30)
    server = Party("server", Channel(DelayTransport(ts, delay)), options={"ot": ot})
    client = Party("client", Channel(DelayTransport(tc, delay)), options={"ot": ot})
    res: dict[str, Any] = {}

    async def side(p: Party) -> np.ndarray:
        mine = xs if p.is_server else xc
        engine = get_engine(p)
        # warm-up: base OTs in both directions, and the measured cost of one COT per direction
        await relu(p, "warmup", mine.reshape(-1)[:8], l=l)
        for direction in ("server", "client"):
            before = p.channel.stats()
            await engine.precompute(PRECOMPUTE, sender=direction)
            if p.is_server:
                cost = (p.channel.stats() - before).select(engine.label(direction), phase="offline")
                res[f"per_cot/{direction}"] = (cost.bytes_sent + cost.bytes_recv) / PRECOMPUTE
        # barrier: the client reports ready (its warm-up messages all delivered), the server takes its
        # snapshots and says go; both start when "go" lands (the server waits out the latency too)
        sync = p.sub("bench/sync")
        buffered = lambda d: (client if d == "server" else server).state["ot_engine"].buffered(d)  # noqa: E731
        if p.is_server:
            await sync.recv()
            await sync.send("go")
            res["buf0"] = {d: buffered(d) for d in ("server", "client")}
            res["before"] = p.channel.stats()
            await asyncio.sleep(delay)
            res["t0"] = time.perf_counter()
        else:
            await sync.send("ready")
            await sync.recv()
        out = await op.run(p, "op", mine, l)
        res[f"t1/{p.role}"] = time.perf_counter()
        return out

    ys, _ = await run_pair(server, client, side, side)
    stats = server.channel.stats() - res["before"]
    online = stats.select(phase="online")
    offline_bytes = 0.0
    for d in ("server", "client"):
        gen = stats.select(server.state["ot_engine"].label(d), phase="offline")
        # COTs consumed = generated during the op + what the buffer shrank by, at the measured cost each
        drop = res["buf0"][d] - (client if d == "server" else server).state["ot_engine"].buffered(d)
        offline_bytes += gen.bytes_sent + gen.bytes_recv + drop * res[f"per_cot/{d}"]
    return {
        "elems": float(np.asarray(ys).size),
        "online": float(online.bytes_sent + online.bytes_recv),
        "offline": offline_bytes,
        "seconds": max(res["t1/server"], res["t1/client"]) - res["t0"],
    }


async def measure(op: Op, l: int, n: int, ot: str, gen: np.random.Generator, delay: float) -> dict[str, Any]:
    """Per-element figures of ``op`` at width ``l`` on about ``n`` outputs, and its measured rounds."""
    big = await run_once(op, l, op.make_input(n, l, gen), ot)
    # rounds: the same small input with and without the injected latency; compute noise only ever adds
    # time, so the best of a few repeats of each is taken
    small = op.make_input(ROUNDS_ELEMENTS, l, gen)
    base = min([(await run_once(op, l, small, ot))["seconds"] for _ in range(REPEATS)])
    slow = min([(await run_once(op, l, small, ot, delay))["seconds"] for _ in range(REPEATS)])
    e = big["elems"]
    return {
        "online": big["online"] / e,
        "offline": big["offline"] / e,
        "rounds": round((slow - base) / delay),
        "us": big["seconds"] * 1e6 / e,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1 << 14, help="elements (outputs) per operation")
    ap.add_argument("--widths", type=int, nargs="+", default=[8, 16, 37])
    ap.add_argument("--ops", nargs="+", default=[o.name for o in OPS], choices=[o.name for o in OPS])
    ap.add_argument("--ot", default="iknp", help="OT engine (party option 'ot')")
    ap.add_argument("--delay", type=float, default=0.05, help="one-way latency (s) used to count rounds")
    args = ap.parse_args(argv)
    for l in args.widths:
        if l not in TRUNC_BITS:
            TRUNC_BITS[l] = max(1, l // 3)
    gen = np.random.default_rng(1)
    print(f"non-linear protocols, OT engine {args.ot!r}, about {args.n} elements per run; "
          "bytes and bits per element (max-pool: per output)\n")
    print("| op | l | online B | offline B | total bits | rounds | µs | silent bits | ×silent | on/silent |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.ops:
        op = next(o for o in OPS if o.name == name)
        for l in args.widths:
            r = asyncio.run(measure(op, l, args.n, args.ot, gen, args.delay))
            ref, measured = silent_bits(name, l)
            total_bits = 8 * (r["online"] + r["offline"])
            print(
                f"| {name} | {l} | {r['online']:.1f} | {r['offline']:.1f} | {total_bits:.0f} | {r['rounds']} | "
                f"{r['us']:.2f} | {'' if measured else '~'}{ref:.0f} | {total_bits / ref:.1f} | "
                f"{8 * r['online'] / ref:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
