"""Cost of the non-linear protocols per element: bytes (online / offline), rounds and time, beside the
silent-OT figures of ../shared/REFERENCE.md.

    python benchmarks/nonlinear.py [--n 16384] [--widths 8 16 37] [--ot iknp] [--ops relu trunc-exact ...]

For every ring width ``l`` and operation both parties run in one process over the in-memory transport
(after a warm-up that performs the base OTs of both directions).  Truncation is by ``f`` = 3, 6, 12
bits for ``l`` = 8, 16, 37 (``-msb0``: input known non-negative, e.g. after ReLU); requantization maps
an ``l``-bit accumulator to a ReLU-fused 4-bit output in a ``min(l, 16)``-bit ring, with a power-of-two
scale (``pow2``: a shift by ``l − 6``) or an 8-bit fixed-point multiplier (``fixed``: 181 / 2^(l+2));
max-pool has stride = kernel.  Reported per element (per *output* element for max-pool):

* **online / offline bytes** — online: from the channel's own accounting (``party.channel.stats()``
  snapshots, ``select(phase="online")``), both directions.  Offline: the engine generates COTs in
  batches (Ferret: millions at a time), so a run's offline traffic is not its own; instead the row's
  session precomputes the COTs the run will need and measures the bytes and seconds per generated COT
  of each direction at that scale (``select(phase="offline")`` on the engine's label, and the growth of
  ``engine.buffered``; Ferret chooses its extension size by demand, so a small run pays the bootstrap
  set's price and a large one the main set's — ``--session-cots`` announces a network's demand, as
  :func:`aiompc.nn.secure.run_secure` does, to price the COTs as inside a network), then counts the COTs the operation consumed (the
  shrinking of the precomputed buffer) — **COTs** per element — and charges them at that cost;
* **rounds** — measured, not modelled: the operation runs again on 128 elements with every online
  message delayed by a fixed one-way latency ``--delay`` (COTs precomputed); rounds = extra wall time
  / delay, best of 3 runs each way (one simultaneous exchange counts as one; a request and its reply
  as two);
* **online µs** — wall time of the operation with its COTs precomputed, per element; **offline µs** —
  its COTs at the measured generation time per COT;
* **silent** — bits per element with silent OT from REFERENCE.md: *measured* where REFERENCE.md has a
  figure for that operation and width (Cheetah's C++ at ``l = 37``: ReLU 480, known-MSB truncation 20,
  exact truncation 458 bits), otherwise a *model* (``~``) from REFERENCE.md's primitive costs
  (millionaire ≈ 11 bits per compared bit, a COT with an ``l``-bit correlation ``l`` bits, a choice bit 1);
* **×silent** — our total (online + offline) bits over the silent figure: the price of IKNP; and
  **on/silent** — online bits alone over it (what a silent-OT engine leaves: ``--ot silent``).
  A ``*`` after the offline bytes means the buffer ran dry during the run (then refilled traffic is
  converted at the measured cost per COT).  The requantization rows compare against the fixed-point
  baseline between two layers (ReLU + known-MSB truncation), which does not clip to 4 bits:
  requantization does strictly more work.
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
from aiompc.protocols.ot import get_engine  # noqa: E402
from aiompc.protocols.nonlinear import maxpool2d, relu, requantize, truncate  # noqa: E402
from aiompc.transports.base import Transport  # noqa: E402
from aiompc.transports.memory import memory_pair  # noqa: E402

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
        **{f"requant{b}-{k}{a}": relu_model + 3 + (f + 1) for b in (4, 8) for k in ("narrow", "wide")
           for a in ("", "-approx")},
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
    ring: Callable[[int], int] = lambda l: l  # the ring the input is shared in, for the row's width l


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


NARROW_SHIFT = {12: 8, 16: 10, 18: 12}  # 4-bit outputs: shift 8-12 as in the issue; 8-bit outputs: l - 8


def _narrow_params(b: int, kind: str, l: int) -> dict[str, Any]:
    s = NARROW_SHIFT.get(l, l - 6) if b == 4 else l - 8
    x_range = (-(1 << (l - 1)), (1 << (l - 1)) - 1)
    l_in = l + 1 if kind == "narrow" else l
    return dict(l_in=l_in, multiplier=1, shift=s, lo=0, hi=(1 << b) - 1, l_out=l, x_range=x_range)


def _declared(b: int, kind: str) -> Callable[[int, int, np.random.Generator], np.ndarray]:
    def make(n: int, l: int, gen: np.random.Generator) -> np.ndarray:
        lo_x, hi_x = _narrow_params(b, kind, l)["x_range"]
        return gen.integers(lo_x, hi_x + 1, size=n)

    return make


def _narrow_run(b: int, kind: str, exact: bool) -> Callable[[Party, str, np.ndarray, int], Awaitable[np.ndarray]]:
    def run(p: Party, lab: str, x: np.ndarray, l: int) -> Awaitable[np.ndarray]:
        return requantize(p, lab, x, exact=exact, **_narrow_params(b, kind, l))  # shares mod 2^l_in (Op.ring)

    return run


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
    # issue 18: a w4a4 (or w8a8) network's requantization, signed l-bit accumulator -> ReLU-fused 4-bit
    # (8-bit) output in the next layer's l-bit ring, nearest rounding.  "-narrow": as the engine runs it,
    # the accumulator shared with one bit more than its width (rings.plan_rings), so the narrow-ring
    # protocol applies; "-wide": shared in exactly l bits (nearest rounding over the whole signed range has
    # 2^(l-s) + 1 outputs), so the wrap-based protocol runs -- the protocol before issue 18.  Inputs drawn
    # over the whole l-bit range.
    *[Op(f"requant{b}-{kind}{'-approx' if not exact else ''}", _declared(b, kind),
         _narrow_run(b, kind, exact), (lambda l: l + 1) if kind == "narrow" else (lambda l: l))
      for b in (4, 8) for kind in ("narrow", "wide") for exact in (True, False)],
    Op("maxpool2x2", _pool_input(2), lambda p, lab, x, l: maxpool2d(p, lab, x, l=l, kernel=2)),
    Op("maxpool3x3", _pool_input(3), lambda p, lab, x, l: maxpool2d(p, lab, x, l=l, kernel=3)),
]


CALIBRATE = 1 << 16  # COTs per direction generated first: measures the cost of one COT, feeds the small runs
ROUNDS_ELEMENTS = 128  # elements of the runs that calibrate COT use and count rounds
REPEATS = 3
DIRECTIONS = ("server", "client")


async def bench_row(op: Op, l: int, n: int, ot: str, delay: float, gen: np.random.Generator,
                    session_cots: int = 0) -> dict[str, float]:
    """Everything of one table row in one session (the OT engine's setup is paid once):

    1. warm-up (base OTs of both directions), then a ``precompute`` per direction: bytes and seconds
       per generated COT, measured;
    2. ``op`` on 128 elements: COTs consumed per element, per direction;
    3. enough COTs precomputed for ``n`` elements, then ``op`` on ``n`` elements, timed: online bytes
       from the channel, offline bytes/time = COTs consumed × the measured cost per COT;
    4. ``op`` on 128 elements, 3 times without and 3 times with the injected latency: rounds.
    """
    small, big = op.make_input(ROUNDS_ELEMENTS, l, gen), op.make_input(n, l, gen)
    shares = {"small": share(small, op.ring(l), PRG()), "big": share(big, op.ring(l), PRG())}
    ts, tc = memory_pair(1 << 30)
    wires = DelayTransport(ts, 0.0), DelayTransport(tc, 0.0)
    server = Party("server", Channel(wires[0]), options={"ot": ot})
    client = Party("client", Channel(wires[1]), options={"ot": ot})
    res: dict[str, Any] = {}

    def receiver(d: str) -> Any:  # the engine of the party that receives in direction d
        return (client if d == "server" else server).state["ot_engine"]

    async def precompute(p: Party, per_direction: dict[str, int], tag: str) -> None:
        engine = get_engine(p)
        for d in DIRECTIONS:
            is_receiver = p.role != d
            if is_receiver:
                b0, t0 = engine.buffered(d), time.perf_counter()
            before = p.channel.stats()
            await engine.precompute(max(1, per_direction[d]), sender=d)
            if is_receiver:
                res[f"{tag}/{d}/made"] = engine.buffered(d) - b0
                res[f"{tag}/{d}/sec"] = time.perf_counter() - t0
            if p.is_server:
                cost = (p.channel.stats() - before).select(engine.label(d), phase="offline")
                res[f"{tag}/{d}/bytes"] = cost.bytes_sent + cost.bytes_recv

    async def step(p: Party, tag: str, which: str, latency: float) -> None:
        """A barrier, ``op`` on ``which``, a closing barrier; the server records figures in res[tag]."""
        sync = p.sub(f"bench/{tag}")
        if p.is_server:
            await sync.recv()
            for w in wires:
                w.delay = latency
            await sync.send("go")  # lands after `latency`; the server waits it out too
            rec = res[tag] = {"buf0": {d: receiver(d).buffered(d) for d in DIRECTIONS}, "before": p.channel.stats()}
            await asyncio.sleep(latency)
            rec["t0"] = time.perf_counter()
        else:
            await sync.send("ready")
            await sync.recv()
        out = await op.run(p, f"op/{tag}", shares[which][0 if p.is_server else 1], l)
        res[tag][f"t1/{p.role}"] = time.perf_counter()
        if p.is_server:
            await sync.recv()
            rec = res[tag]
            stats = p.channel.stats() - rec["before"]
            rec["elems"] = int(np.asarray(out).size)
            rec["online"] = stats.select(phase="online")
            rec["consumed"] = {}
            for d in DIRECTIONS:
                made = stats.select(receiver(d).label(d), phase="offline")
                refill = (made.bytes_sent + made.bytes_recv) / res[f"cal/{d}/bytes"] * res[f"cal/{d}/made"]
                rec["consumed"][d] = rec["buf0"][d] + refill - receiver(d).buffered(d)
                rec["refilled"] = rec.get("refilled", False) or refill > 0
            rec["seconds"] = max(rec["t1/server"], rec["t1/client"]) - rec["t0"]
            await sync.send("done")
        else:
            await sync.send("finished")
            await sync.recv()

    async def side(p: Party) -> None:
        get_engine(p).expect(session_cots)  # the demand of the session the operation is part of
        await relu(p, "warmup", shares["small"][0 if p.is_server else 1].reshape(-1)[:8], l=l)
        await precompute(p, {d: CALIBRATE for d in DIRECTIONS}, "cal")
        await step(p, "calib", "small", 0.0)
        per_elem = {d: res["calib"]["consumed"][d] / res["calib"]["elems"] for d in DIRECTIONS}
        await precompute(p, {d: int(per_elem[d] * n * 1.25) + 4096 for d in DIRECTIONS}, "big")
        await step(p, "big", "big", 0.0)
        await precompute(p, {d: int(per_elem[d] * ROUNDS_ELEMENTS * 2 * REPEATS * 1.25) + 4096 for d in DIRECTIONS}, "small")
        for i in range(REPEATS):
            await step(p, f"base{i}", "small", 0.0)
            await step(p, f"slow{i}", "small", delay)

    await run_pair(server, client, side, side)
    big_run = res["big"]
    e = big_run["elems"]
    # the price of a COT at the scale of this run: what the precompute for the big run cost per COT made
    # (Ferret picks its extension size by demand, so small calibration batches would overstate it); if
    # the calibration's extension already covered the big run (silent OT makes millions at once), its price
    def per_cot(key: str, d: str) -> float:
        for stage in ("big", "cal"):
            if res[f"{stage}/{d}/made"]:
                return res[f"{stage}/{d}/{key}"] / res[f"{stage}/{d}/made"]
        return 0.0  # no COT of this direction was ever made: none is consumed either

    per_cot_bytes = {d: per_cot("bytes", d) for d in DIRECTIONS}
    per_cot_sec = {d: per_cot("sec", d) for d in DIRECTIONS}
    base = min(res[f"base{i}"]["seconds"] for i in range(REPEATS))
    slow = min(res[f"slow{i}"]["seconds"] for i in range(REPEATS))
    return {
        "online": (big_run["online"].bytes_sent + big_run["online"].bytes_recv) / e,
        "offline": sum(big_run["consumed"][d] * per_cot_bytes[d] for d in DIRECTIONS) / e,
        "cots": sum(big_run["consumed"].values()) / e,
        "rounds": round((slow - base) / delay),
        "us": big_run["seconds"] * 1e6 / e,
        "offline_us": sum(big_run["consumed"][d] * per_cot_sec[d] for d in DIRECTIONS) * 1e6 / e,
        "refilled": float(big_run["refilled"]),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1 << 14, help="elements (outputs) per operation")
    ap.add_argument("--widths", type=int, nargs="+", default=[8, 16, 37])
    ap.add_argument("--ops", nargs="+", default=[o.name for o in OPS], choices=[o.name for o in OPS])
    ap.add_argument("--ot", default="iknp", help="OT engine (party option 'ot')")
    ap.add_argument("--delay", type=float, default=0.05, help="one-way latency (s) used to count rounds")
    ap.add_argument("--session-cots", type=int, default=0,
                    help="COTs per direction the session is announced to need (OTEngine.expect, as run_secure does "
                         "for a network): with silent OT, > 1.2e6 prices the COTs at Ferret's main set, as inside "
                         "a network (ResNet-18 draws about 2e7); 0 (default): the run's own demand decides")
    args = ap.parse_args(argv)
    for l in args.widths:
        if l not in TRUNC_BITS:
            TRUNC_BITS[l] = max(1, l // 3)
    gen = np.random.default_rng(1)
    print(f"non-linear protocols, OT engine {args.ot!r}, about {args.n} elements per run; "
          "bytes and bits per element (max-pool: per output)\n")
    print("| op | l | online B | offline B | COTs | total bits | rounds | online µs | offline µs | silent bits "
          "| ×silent | on/silent |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.ops:
        op = next(o for o in OPS if o.name == name)
        for l in args.widths:
            r = asyncio.run(bench_row(op, l, args.n, args.ot, args.delay, gen, args.session_cots))
            ref, measured = silent_bits(name, l)
            total_bits = 8 * (r["online"] + r["offline"])
            print(
                f"| {name} | {l} | {r['online']:.1f} | {r['offline']:.1f}{'*' if r['refilled'] else ''} | "
                f"{r['cots']:.0f} | {total_bits:.0f} | {r['rounds']} | {r['us']:.2f} | {r['offline_us']:.2f} | "
                f"{'' if measured else '~'}{ref:.0f} | {total_bits / ref:.1f} | "
                f"{8 * r['online'] / ref:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
