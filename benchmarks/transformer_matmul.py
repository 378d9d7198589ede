"""Bytes and seconds of the transformer matrix products: constant-weight MatMul (``fc`` over tokens) and the
product of two shared activations (``matmul_shared``, attention's Q·Kᵀ and P·V), BERT-tiny and BERT-base shapes.

Both parties run in one process over the in-memory transport (``aiompc.run_local``).  Each product runs twice in
one session: a warm-up call (session keys, Galois keys, compiled kernels, the constant weights' plaintexts in the
session's cache where they fit — a server prepares its model once) and the measured call.  Bytes come from the
channel statistics under the measured call's label (the once-per-session keys apart); ``plan s`` is the planning
time (wall, first time: the planners cache per shape); ``wall s`` the measured call's wall time, ``CPU s`` the
process CPU time of both parties together over it (a shared product prepares its plaintexts — the server's share —
in every call; a constant-weight layer too large for the cache, e.g. BERT-base's FFN, transforms its weight blocks
per call).

Settings: ``cheetah`` = the ``cheetah`` planner (Iron's matrix packing at N = 4096, q ~ 2^109, l = 37, weights of
``--cheetah-weight-bits``, 10 by default: BERT weights of std 0.02 at 2^12); ``quantized`` = the cost-driven
planner with 8-bit weights and activations, ``l`` = the accumulator width ``16 + ceil(log2 K)``; shared
products at ``l = 37`` (cheetah) and ``--quantized-l`` (24) in the quantized setting.

    PYTHONPATH=. python benchmarks/transformer_matmul.py [--models tiny,base] [--seq 32,128] [--which fc,shared]
        [--planners cheetah,quantized] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from typing import Any

import numpy as np

from aiompc.crypto.prg import PRG
from aiompc.protocols.linear.fc import fc, fc_plan
from aiompc.protocols.linear.matmul import matmul_shared, matmul_shared_plan, shared_matmul_bytes
from aiompc.protocols.linear.costs import plan_cost
from aiompc.protocols.linear.planners import PLANNERS
from aiompc.protocols.linear.reference import matmul_ref
from aiompc.protocols.linear.tiling import MatmulShape
from aiompc.ring import reconstruct, share
from aiompc.session import run_local

MIB = 1 << 20
MODELS = {"tiny": dict(hidden=128, heads=2, ffn=512), "base": dict(hidden=768, heads=12, ffn=3072)}


def fc_shapes(model: str, seq: int) -> list[tuple[str, MatmulShape, int]]:
    """``(name, shape, count per layer)``: QKV (3 products), attention output, FFN up and down."""
    m = MODELS[model]
    h, f = m["hidden"], m["ffn"]
    return [(f"{h}x{h} (QKV, out)", MatmulShape(seq, h, h), 4), (f"{h}x{f} (FFN up)", MatmulShape(seq, h, f), 1),
            (f"{f}x{h} (FFN down)", MatmulShape(seq, f, h), 1)]


def shared_shapes(model: str, seq: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    m = MODELS[model]
    d = m["hidden"] // m["heads"]
    return [("Q·Kᵀ", (m["heads"], seq, d, seq)), ("P·V", (m["heads"], seq, seq, d))]


def setting(planner: str, k: int, args: argparse.Namespace) -> tuple[int, int]:
    """``(l, weight_bits)`` of a constant-weight product with inner dimension ``k``."""
    if planner.startswith("cheetah"):
        return 37, args.cheetah_weight_bits
    return 16 + math.ceil(math.log2(k)), 8


def spans(marks: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """Wall and CPU seconds from the first party's start of the measured call to the last party's end."""
    start = min(marks["s0"], marks["c0"])
    end = max(marks["s1"], marks["c1"])
    return end[0] - start[0], end[1] - start[1]


async def run_fc(shape: MatmulShape, planner: str, l: int, wb: int, rng: np.random.Generator) -> dict[str, Any]:
    t0 = time.perf_counter()
    plan = fc_plan(shape, l, weight_bits=wb, planner=PLANNERS[planner])
    plan_s = time.perf_counter() - t0
    x = rng.integers(0, 1 << l, (shape.batch, shape.in_features), dtype=np.uint64)
    w = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), (shape.out_features, shape.in_features))
    xs, xc = share(x, l, PRG())

    marks: dict[str, tuple[float, float]] = {}

    async def server(p):
        await fc(p, "warm", xs, out_features=shape.out_features, l=l, weight=w, plan=plan)
        marks["s0"] = (time.perf_counter(), time.process_time())
        y = await fc(p, "mm", xs, out_features=shape.out_features, l=l, weight=w, plan=plan)
        marks["s1"] = (time.perf_counter(), time.process_time())
        return y

    async def client(p):
        await fc(p, "warm", xc, out_features=shape.out_features, l=l, plan=plan)
        marks["c0"] = (time.perf_counter(), time.process_time())
        y = await fc(p, "mm", xc, out_features=shape.out_features, l=l, plan=plan)
        marks["c1"] = (time.perf_counter(), time.process_time())
        return y, p.channel.stats()

    ys, (yc, st) = await run_local(server, client)
    wall, cpu = spans(marks)
    lab = st.select("mm")
    cost = plan_cost(plan, "mm")
    return dict(plan=plan.describe(), up=lab.bytes_sent, down=lab.bytes_recv, modelled=cost.total,
                plan_s=plan_s, wall=wall, cpu=cpu,
                exact=bool(np.array_equal(reconstruct(ys, yc, l), matmul_ref(x, w, l))))


async def run_shared(dims: tuple[int, int, int, int], planner: str, l: int, rng: np.random.Generator) -> dict[str, Any]:
    g, s, k, t = dims
    t0 = time.perf_counter()
    plan = matmul_shared_plan(g, s, k, t, l, PLANNERS[planner])
    plan_s = time.perf_counter() - t0
    a = rng.integers(0, 1 << l, (g, s, k), dtype=np.uint64)
    b = rng.integers(0, 1 << l, (g, k, t), dtype=np.uint64)
    a_s, a_c = share(a, l, PRG())
    b_s, b_c = share(b, l, PRG())

    marks: dict[str, tuple[float, float]] = {}

    async def server(p):
        await matmul_shared(p, "warm", a_s, b_s, l=l, plan=plan)
        marks["s0"] = (time.perf_counter(), time.process_time())
        y = await matmul_shared(p, "mm", a_s, b_s, l=l, plan=plan)
        marks["s1"] = (time.perf_counter(), time.process_time())
        return y

    async def client(p):
        await matmul_shared(p, "warm", a_c, b_c, l=l, plan=plan)
        marks["c0"] = (time.perf_counter(), time.process_time())
        y = await matmul_shared(p, "mm", a_c, b_c, l=l, plan=plan)
        marks["c1"] = (time.perf_counter(), time.process_time())
        return y, p.channel.stats()

    ys, (yc, st) = await run_local(server, client)
    wall, cpu = spans(marks)
    lab = st.select("mm")
    up, down = shared_matmul_bytes(plan, "mm")
    exact = bool(np.array_equal(reconstruct(ys, yc, l), np.matmul(a, b) & np.uint64((1 << l) - 1)))
    return dict(plan=plan.describe(), summary=plan.summary(), up=lab.bytes_sent, down=lab.bytes_recv, modelled=up + down,
                plan_s=plan_s, wall=wall, cpu=cpu, exact=exact)


def line(kind: str, model: str, seq: int, name: str, planner: str, l: int, r: dict[str, Any]) -> str:
    return (f"| {model} S={seq} | {kind} {name} | {planner} l={l} | {r['up'] / MIB:.2f} | {r['down'] / MIB:.2f} | "
            f"{'=' if r['modelled'] == r['up'] + r['down'] else 'NO'} | {r['plan_s']:.2f} | {r['wall']:.2f} | "
            f"{r['cpu']:.2f} | {'yes' if r['exact'] else 'NO'} |")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,base")
    ap.add_argument("--seq", default="32,128")
    ap.add_argument("--which", default="fc,shared")
    ap.add_argument("--planners", default="cheetah,quantized")
    ap.add_argument("--cheetah-weight-bits", type=int, default=10)
    ap.add_argument("--quantized-l", type=int, default=24)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    rows: list[dict[str, Any]] = []
    print("| shape | product | planner | MiB c->s | MiB s->c | model | plan s | wall s | CPU s | exact |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        for seq in (int(v) for v in args.seq.split(",")):
            if model == "base" and seq != 128:
                continue
            for planner in args.planners.split(","):
                if "fc" in args.which:
                    for name, shape, count in fc_shapes(model, seq):
                        l, wb = setting(planner, shape.in_features, args)
                        r = await run_fc(shape, planner, l, wb, rng)
                        print(line("fc", model, seq, name, planner, l, r), flush=True)
                        rows.append(dict(kind="fc", model=model, seq=seq, name=name, planner=planner, l=l, wb=wb,
                                         count=count, **r))
                if "shared" in args.which:
                    for name, dims in shared_shapes(model, seq):
                        l = 37 if planner.startswith("cheetah") else args.quantized_l
                        r = await run_shared(dims, planner, l, rng)
                        print(line("shared", model, seq, name, planner, l, r), flush=True)
                        rows.append(dict(kind="shared", model=model, seq=seq, name=name, planner=planner, l=l, **r))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    asyncio.run(main())
