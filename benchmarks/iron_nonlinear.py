"""Bytes per element of Iron's fixed-point Softmax / GELU / LayerNorm (the ``cheetah`` baseline, issue 25).

Runs :mod:`aiompc.protocols.nonlinear.iron` on random inputs in one in-memory session (both parties in this
process) and prints, per case, the bytes counted on the channel (online phase, both directions) per element
and per row, the split by step (label prefix), rounds, wall and CPU seconds; checks each result against
:mod:`aiompc.fxmath` bit for bit (exact) or within the approximate bound.  ``--json F`` writes the rows.

Usage: ``PYTHONPATH=. nice python benchmarks/iron_nonlinear.py [--exact-only] [--json F]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any, Callable

import numpy as np

from aiompc import fxmath as fx
from aiompc import run_local
from aiompc.crypto.prg import PRG
from aiompc.party import Party
from aiompc.protocols.nonlinear.iron import gelu_fx, layernorm_fx, softmax_fx
from aiompc.ring import from_signed, reconstruct, share, to_signed

F, L = 12, 37


def _cases() -> list[tuple[str, Callable[..., Any], Callable[..., np.ndarray], np.ndarray]]:
    g = np.random.default_rng(0)  # plaintext benchmark inputs only
    ints = lambda a: np.round(a * 2.0**F).astype(np.int64)  # noqa: E731
    return [
        ("softmax n=32 (32 rows)", softmax_fx, fx.softmax_fixed, ints(g.normal(0, 3, (32, 32)))),
        ("softmax n=128 (128 rows)", softmax_fx, fx.softmax_fixed, ints(g.normal(0, 3, (128, 128)))),
        ("gelu (4096 values)", gelu_fx, fx.gelu_fixed, ints(g.normal(0, 2, 4096))),
        ("layernorm H=128 (32 rows)", layernorm_fx, fx.layernorm_fixed, ints(g.normal(0, 1.5, (32, 128)))),
        ("layernorm H=768 (32 rows)", layernorm_fx, fx.layernorm_fixed, ints(g.normal(0, 1.5, (32, 768)))),
    ]


async def _measure(fn: Callable[..., Any], x: np.ndarray, exact: bool) -> tuple[np.ndarray, dict[str, Any]]:
    s, c = share(from_signed(x, L), L, PRG())

    async def job(party: Party) -> Any:
        out = await fn(party, "op", s if party.is_server else c, f=F, l=L, exact=exact)
        st = party.channel.stats().select("op", phase="online")
        steps: dict[str, int] = {}
        for k, v in st.labels.items():
            step = k.split("/")[1] if k.count("/") >= 1 else k
            steps[step] = steps.get(step, 0) + v.bytes_sent + v.bytes_recv
        return out, {"bytes": st.bytes_sent + st.bytes_recv, "rounds": st.rounds, "steps": steps}

    (ys, info), (yc, _) = await run_local(job, job)
    return to_signed(reconstruct(ys, yc, L), L), info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exact-only", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    print("| function | mode | elements | bytes/element | bytes/row | rounds (sum over labels) | wall s | CPU s | top steps (bytes/element) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for name, fn, ref, x in _cases():
        for exact in (True,) if args.exact_only else (True, False):
            t0, c0 = time.perf_counter(), time.process_time()
            y, info = asyncio.run(_measure(fn, x, exact))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            want = ref(x, f=F, l=L)
            ok = bool(np.array_equal(y, want)) if exact else bool(np.abs(y - want).max() <= 6 + np.abs(want).max() / 8)
            n = x.size
            per_row = info["bytes"] / (n // x.shape[-1]) if x.ndim > 1 else float("nan")
            top = sorted(info["steps"].items(), key=lambda kv: -kv[1])[:4]
            tops = ", ".join(f"{k} {v / n:.0f}" for k, v in top)
            mode = "exact" if exact else "approx"
            print(f"| {name} | {mode} | {n} | {info['bytes'] / n:.0f} | {per_row:.0f} | {info['rounds']} | "
                  f"{wall:.1f} | {cpu:.1f} | {tops} |" + ("" if ok else " **MISMATCH**"))
            rows.append({"case": name, "mode": mode, "elements": n, "bytes": info["bytes"], "rounds": info["rounds"],
                         "steps": info["steps"], "wall_s": wall, "cpu_s": cpu, "matches_reference": ok})
    print(f"\nload average {os.getloadavg()}; f={F}, l={L}; online bytes both directions, from the channel")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
