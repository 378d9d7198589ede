"""Bytes, ciphertexts and seconds of the HE linear layers under the `cheetah` plan (both parties, one process).

For each layer: both parties run the protocol over the in-memory transport (`aiompc.run_local`); bytes
in each direction come from the channel statistics under the layer's label (the once-per-session public key
is reported separately); seconds are each party's wall time for its call (they overlap: the parties run
concurrently on the machine's cores); `CPU s both` is the process's CPU time for the layer, both parties
together (including the session's key exchange).  Reference C++ figures (REFERENCE.md, same kind of machine) are
printed beside where they exist.

Weights are random signed integers of `--weight-bits` bits (12-bit fixed point by default, as Cheetah's
scale 2^12 gives).  Cheetah's q ~ 2^109 at N = 4096 cannot flood such products with 40 bits of
statistical security for every layer (see the HE core's noise module); each row shows the statistical
security `stat` the flooding reaches (the largest <= 40 that decrypts).

    python benchmarks/linear_layers.py [--layers resnet18|big|fc|all] [--weight-bits 12] [--markdown] [--prepared]

With ``--prepared`` the server's weight plaintexts are prepared before the call, as a server prepares its model
once (:func:`aiompc.nn.prepare.prepare_model`); that one-time work is the column ``prep s`` (wall, CPU in
brackets) and is not in the layer's seconds.  Without it the layer prepares them itself (``prep s``: –).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import numpy as np

from aiompc.crypto.prg import PRG
from aiompc.ring import reconstruct, share
from aiompc.session import run_local
from aiompc.protocols.linear.engine import run_linear
from aiompc.protocols.linear.prepared import prepare_weights, weight_key
from aiompc.protocols.linear.weight_cache import STATE_KEY, WeightCache
from aiompc.protocols.linear.plan import CheetahBaselinePlanner, LinearPlan
from aiompc.protocols.linear.reference import conv2d_ref, matmul_ref
from aiompc.protocols.linear.tiling import ConvShape, MatmulShape

MIB = 1 << 20


@dataclass(frozen=True)
class Layer:
    name: str
    shape: ConvShape | MatmulShape
    count: int = 1  # occurrences in the network
    ref: tuple[float, float, float] | None = None  # MiB c->s, MiB s->c, seconds


def resnet18_cifar() -> list[Layer]:
    """The distinct 3x3 convolutions of ResNet-18 on 32x32 inputs (CIFAR variant), with multiplicities."""
    c = ConvShape.make
    return [
        Layer("conv1 3x32x32->64", c(3, 32, 32, 64, 3, padding=1)),
        Layer("64x32x32->64", c(64, 32, 32, 64, 3, padding=1), 4),
        Layer("64x32x32->128 s2", c(64, 32, 32, 128, 3, stride=2, padding=1)),
        Layer("128x16x16->128", c(128, 16, 16, 128, 3, padding=1), 3),
        Layer("128x16x16->256 s2", c(128, 16, 16, 256, 3, stride=2, padding=1)),
        Layer("256x8x8->256", c(256, 8, 8, 256, 3, padding=1), 3),
        Layer("256x8x8->512 s2", c(256, 8, 8, 512, 3, stride=2, padding=1)),
        Layer("512x4x4->512", c(512, 4, 4, 512, 3, padding=1), 3),
    ]


def big_layers() -> list[Layer]:
    c = ConvShape.make
    return [
        Layer("64x56x56->64", c(64, 56, 56, 64, 3, padding=1), ref=(3.81, 3.10, 0.45)),
        Layer("256x14x14->256", c(256, 14, 14, 256, 3, padding=1)),
        Layer("bn 64x56x56 (dw 1x1)", c(64, 56, 56, 64, 1, groups=64), ref=(3.81, 3.10, 0.17)),
    ]


def fc_layers() -> list[Layer]:
    return [
        Layer("fc 512->100", MatmulShape(1, 512, 100)),
        Layer("fc 2048->1001", MatmulShape(1, 2048, 1001), ref=(1.19, 0.76, 0.16)),
    ]


def plan_for(shape: ConvShape | MatmulShape, l: int, weight_bits: int) -> LinearPlan:
    """Cheetah's plan with the strongest flooding (<= 40 bits) that still decrypts."""
    return CheetahBaselinePlanner()(shape, l, weight_bits)


async def measure(layer: Layer, l: int, weight_bits: int, rng: np.random.Generator,
                  prepared: bool = False) -> dict[str, object]:
    plan = plan_for(layer.shape, l, weight_bits)
    lay = plan.layout
    x = rng.integers(0, 1 << l, lay.in_shape, dtype=np.uint64)
    s = layer.shape
    wshape = s.weight_shape if isinstance(s, ConvShape) else (s.out_features, s.in_features)
    half = 1 << (weight_bits - 1)
    w = rng.integers(-half, half, wshape)
    xs, xc = share(x, l, PRG())
    times: dict[str, float] = {}
    cache = WeightCache(1 << 40)
    prep = None
    if prepared:
        t0, c0 = time.perf_counter(), time.process_time()
        cache.put(weight_key(plan, w), prepare_weights(plan, w))
        prep = (time.perf_counter() - t0, time.process_time() - c0)

    async def warm_and_run(p, role, share_, weight):
        p.state[STATE_KEY] = cache
        t0 = time.perf_counter()
        y = await run_linear(p, "layer", plan, share_, weight)
        times[role] = time.perf_counter() - t0
        return y, p.channel.stats()

    cpu0 = time.process_time()
    (ys, st_s), (yc, st_c) = await run_local(
        lambda p: warm_and_run(p, "server", xs, w), lambda p: warm_and_run(p, "client", xc, None)
    )
    cpu = time.process_time() - cpu0  # both parties (one process), the session's key exchange included
    ref = conv2d_ref(x, w, s, l) if isinstance(s, ConvShape) else matmul_ref(x, w, l)
    exact = bool(np.array_equal(reconstruct(ys, yc, l), ref))
    lab = st_c.select("layer")
    keys = st_c.select("he-keys")
    return dict(plan=plan, up=lab.bytes_sent, down=lab.bytes_recv, keys=keys.bytes_sent, rounds=lab.rounds,
                server=times["server"], client=times["client"], cpu=cpu, exact=exact, prep=prep)


def row(layer: Layer, r: dict[str, object], md: bool) -> str:
    plan: LinearPlan = r["plan"]  # type: ignore[assignment]
    ref = layer.ref
    cells = [
        layer.name + (f" (x{layer.count})" if layer.count > 1 else ""),
        f"{plan.input_ciphertexts}/{plan.output_ciphertexts}",
        f"{r['up'] / MIB:.2f}",
        f"{r['down'] / MIB:.2f}",
        f"{ref[0]:.2f}/{ref[1]:.2f}" if ref else "-",
        f"{r['server']:.2f}",
        f"{r['client']:.2f}",
        f"{r['cpu']:.2f}",
        f"{r['prep'][0]:.2f} ({r['prep'][1]:.2f})" if r["prep"] else "-",
        f"{ref[2]:.2f}" if ref else "-",
        f"{plan.output.bits0}/{plan.output.bits1}",
        str(plan.pipeline.stat_bits),
        "yes" if r["exact"] else "NO",
    ]
    return ("| " + " | ".join(cells) + " |") if md else "  ".join(f"{c:>14}" if i else f"{c:<26}" for i, c in enumerate(cells))


HEADER = ["layer", "ct in/out", "MiB c->s", "MiB s->c", "C++ MiB", "s server", "s client", "CPU s both", "prep s",
          "C++ s",
          "c0/c1 bits", "stat", "exact"]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", choices=["resnet18", "big", "fc", "all"], default="all")
    ap.add_argument("--l", type=int, default=37)
    ap.add_argument("--weight-bits", type=int, default=12)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--prepared", action="store_true", help="prepare the weights before the call (reported apart)")
    ap.add_argument("--repeat", type=int, default=1, help="measure each layer this many times (one row each)")
    args = ap.parse_args()
    layers = {"resnet18": resnet18_cifar, "big": big_layers, "fc": fc_layers}
    chosen = [f for k, f in layers.items() if args.layers in (k, "all")]
    rng = np.random.default_rng(1)
    md = args.markdown
    print(f"cheetah plan: l = {args.l}, N = 4096, q ~ 2^109, {args.weight_bits}-bit weights")
    print(("| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER)) if md else
          "  ".join(f"{h:>14}" if i else f"{h:<26}" for i, h in enumerate(HEADER)))
    totals = [0.0, 0.0, 0.0]
    keys = 0
    for group in chosen:
        for layer in group():
            for _ in range(args.repeat):
                r = await measure(layer, args.l, args.weight_bits, rng, args.prepared)
                keys = int(r["keys"])  # type: ignore[arg-type]
                print(row(layer, r, md), flush=True)
            if group is resnet18_cifar:
                totals[0] += layer.count * int(r["up"])  # type: ignore[arg-type]
                totals[1] += layer.count * int(r["down"])  # type: ignore[arg-type]
                totals[2] += layer.count * float(r["server"])  # type: ignore[arg-type]
    if resnet18_cifar in chosen:
        print(f"ResNet-18 (32x32) 3x3 convs in all: {totals[0] / MIB:.1f} MiB c->s, {totals[1] / MIB:.1f} MiB s->c, "
              f"{totals[2]:.1f} s server")
    print(f"once per session: public key {keys / 1024:.1f} KiB c->s")


if __name__ == "__main__":
    asyncio.run(main())
