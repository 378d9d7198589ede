"""One layer, measured: the quantized planner without and with output packing, bytes from the channel statistics.

For a convolution (default ResNet-18's ``512x4x4 -> 512``, 4-bit weights and activations, ``l`` = the
accumulator ring the secure engine would use) the script runs the layer over the in-memory transport with

* ``unpacked``  — ``QuantizedPlanner(output_packing=False)`` (the quantized mode before output packing);
* ``packed, 0.2 MB/s`` — ``QuantizedPlanner(key_share=0, compute_rate=0.2e6)``: packing charged 0.2 MB per
  second of key switching (here the channel-interleaved layout: one key switch per output ciphertext);
* ``packed, bytes only`` — ``QuantizedPlanner(key_share=0, compute_rate=0)``: the fewest bytes whatever the
  compute (here Cheetah's tiling with every output coefficient a leaf: one key switch per output);
* ``default``   — the shipped ``QuantizedPlanner()`` (packs only where the saving pays for its keys and compute);

and prints per row the layer label's bytes in each direction, the once-per-session Galois-key bytes (label
``he-galois/...``) and the wall seconds of the call (both parties in one process, one core each at most).

    python benchmarks/output_packing.py [--shape 512,4,4,512] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from aiompc.crypto.prg import PRG
from aiompc.nn.bounds import linear_channel_ranges, width_for_range
from aiompc.protocols.linear.conv import conv2d, conv_plan
from aiompc.protocols.linear.costs import plan_cost
from aiompc.protocols.linear.quantized import QuantizedPlanner
from aiompc.protocols.linear.reference import conv2d_ref
from aiompc.protocols.linear.tiling import ConvShape
from aiompc.ring import reconstruct, share, to_signed
from aiompc.session import run_local

MIB = 2**20


async def run(planner: QuantizedPlanner, shape: ConvShape, l: int, x: np.ndarray, w: np.ndarray) -> dict[str, object]:
    xs, xc = share(x, l, PRG())
    kw = dict(out_channels=shape.out_channels, kernel=shape.kernel, stride=shape.stride, padding=shape.padding,
              groups=shape.groups, l=l, weight_bits=4, planner=planner)

    async def server(p):
        return await conv2d(p, "layer", xs, weight=w, **kw)

    async def client(p):
        return await conv2d(p, "layer", xc, **kw), p.channel.stats()

    t0 = time.perf_counter()
    ys, (yc, stats) = await run_local(server, client)
    seconds = time.perf_counter() - t0
    exact = np.array_equal(to_signed(reconstruct(ys, yc, l), l), conv2d_ref(x, w, shape, 64).view(np.int64))
    plan = conv_plan(shape, l, weight_bits=4, planner=planner)
    layer, keys = stats.select("layer"), stats.select("he-galois")
    cost = plan_cost(plan, "layer")
    return {"plan": plan.describe(), "c2s": layer.bytes_sent, "s2c": layer.bytes_recv, "keys": keys.bytes_sent,
            "seconds": seconds, "exact": exact, "model": (cost.upload, cost.download) == (layer.bytes_sent, layer.bytes_recv)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="512,4,4,512", help="C,H,W,M of a 3x3 conv with padding 1")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    c, h, w_, m = (int(v) for v in args.shape.split(","))
    shape = ConvShape.make(c, h, w_, m, 3, padding=1)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 16, shape.in_shape)
    w = rng.integers(-8, 8, shape.weight_shape)
    lo, hi = linear_channel_ranges(w.reshape(m, -1), None, 0, 15)
    bits, signed = width_for_range(int(lo.min()), int(hi.max()))
    l = bits if signed else bits + 1
    rows = [("unpacked", QuantizedPlanner(output_packing=False)),
            ("packed, 0.2 MB/s", QuantizedPlanner(key_share=0.0, compute_rate=0.2e6)),
            ("packed, bytes only", QuantizedPlanner(key_share=0.0, compute_rate=0.0)),
            ("default", QuantizedPlanner())]
    print(f"conv {shape}, l = {l}, 4-bit weights and activations")
    print("| planner | MiB c→s | MiB s→c | MiB layer | one-time key MiB | seconds | exact | model = stats | plan |")
    print("|---|---:|---:|---:|---:|---:|---|---|---|")
    for name, planner in rows:
        r = await run(planner, shape, l, x, w)
        total = (r["c2s"] + r["s2c"]) / MIB  # type: ignore[operator]
        print(f"| {name} | {r['c2s'] / MIB:.3f} | {r['s2c'] / MIB:.3f} | {total:.3f} | {r['keys'] / MIB:.3f} | "  # type: ignore[operator]
              f"{r['seconds']:.2f} | {r['exact']} | {r['model']} | {r['plan']} |")


if __name__ == "__main__":
    asyncio.run(main())
