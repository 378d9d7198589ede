"""What 40 bits of statistical security *per inference* cost against 40 bits *per result ciphertext*.

For each network (default ResNet-18 and ResNet-50) and batch, the script plans the quantized mode's HE layers
both ways (:func:`aiompc.nn.stat_budget.plan_inference`: scope ``ciphertext`` — 40 bits per result
ciphertext, the Cheetah baseline's level — and ``inference`` — all result ciphertexts of the call together
within ``2^-40``, two-uniform floods composed in quadrature, :mod:`aiompc.protocols.linear.stat_sum`) and
prints, from the byte model (:func:`~aiompc.protocols.linear.costs.plan_cost`, equal to the channel statistics),
the per-ciphertext levels planned (one uniform / two uniforms / fail bits), the result ciphertexts (of which
flooded with two uniforms), the achieved levels (all results together and the weakest one), the linear-layer MiB (every HE call of the inference, frames included),
the once-per-session key MiB (public keys and output packing's Galois keys), and the planning CPU seconds
(first pass; both scopes share the 40-bit searches).  The Cheetah baseline is printed for reference (per
ciphertext: its parameters hold no more).

    PYTHONPATH=. python benchmarks/stat_scope.py [--networks resnet18,resnet50] [--batch 1] [--json F]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from aiompc.nn.bench import load_bench_model
from aiompc.nn.ir import Linear
from aiompc.nn.modes import engine_config
from aiompc.nn.stat_budget import InferencePlan, plan_inference
from aiompc.protocols.linear.costs import plan_cost
from aiompc.protocols.linear.key_sets import session_key_bytes

MIB = 2**20


def model_bytes(graph: Any, inference: InferencePlan) -> tuple[int, int]:
    """``(linear bytes, key bytes)`` of one inference under the byte model (labels as the engine names them)."""
    fc = {n.name for n in graph.nodes if isinstance(n, Linear)}
    linear = 0
    for call, count in zip(inference.calls, inference.counts):
        label = f"b0/{call.node}" if call.node in fc else f"b0/{call.node}/b0"
        linear += count * plan_cost(call.plan, label).total  # b0..b9: equal label lengths for batch <= 10
    return linear, session_key_bytes(c.plan for c in inference.calls)  # a key set per (N, primes), any l


def row(name: str, mode: str, scope: str | None, batch: int) -> dict[str, Any]:
    graph = load_bench_model(name).graph(mode)
    cpu = time.process_time()
    inference = plan_inference(graph, engine_config(mode, stat_scope=scope), batch)
    cpu = time.process_time() - cpu
    linear, keys = model_bytes(graph, inference)
    return {"network": name, "mode": mode, "batch": batch, **inference.summary(), "linear_mib": round(linear / MIB, 2),
            "key_mib": round(keys / MIB, 2), "plan_cpu": round(cpu, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default="resnet18,resnet50")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--json", metavar="F")
    args = ap.parse_args()
    rows = []
    print("| network | mode | scope | bits/ct planned (1 uniform / 2 uniforms / fail) | results (2 uniforms) | "
          "bits all together | weakest | linear MiB | keys MiB | plan CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.networks.split(","):
        for mode, scope in (("cheetah", None), ("quantized", "ciphertext"), ("quantized", "inference")):
            r = row(name, mode, scope, args.batch)
            rows.append(r)
            levels = f"{r['uniform_bits']} / {r['tent_bits']} / {r['fail_bits']}"
            print(f"| {name} | {mode} | {r['scope']} | {levels} | {r['results']} ({r['tent_results']}) | {r['security']} | "
                  f"{r['weakest']} | {r['linear_mib']} | {r['key_mib']} | {r['plan_cpu']} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
