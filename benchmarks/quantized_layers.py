"""ResNet-18 (32x32 inputs) 3x3 convolutions at w4a4: Cheetah's parameter set vs the quantized mode, one run.

For each 3x3 conv of ResNet-18 on CIFAR shapes (with its multiplicity in the network) the script builds
4-bit weights (uniform in [-8, 7]; a trained network's are smaller, so its accumulators are narrower) and
4-bit unsigned activations, sets ``l`` to the accumulator width the secure engine would give the layer (the
signed width of the exact range :func:`aiompc.nn.bounds.linear_channel_ranges`, at most HEQuant's bound + 1),
and compares:

* ``cheetah``   — the engine's cheetah mode: ``l = 37``, ``N = 4096``, ``q ~ 2^109``, Cheetah's tiling
  (:class:`~aiompc.protocols.linear.plan.CheetahBaselinePlanner`, flooding <= 40 bits);
* ``rule@l``    — Cheetah's closed-form tiling with the smallest secure ``q`` for the layer's ``l``
  (``cheetah-smallest``): the search must never do worse than this;
* ``exact``     — the quantized planner at ``l`` (40-bit flooding), output bit for bit;
* ``approx``    — the quantized planner with the output truncated at decryption to ``--keep`` bits
  (``out_shift = l - keep``: the truncation of the following requantization, each value within one unit);
* ``packed``    — ``approx`` plus Kronecker packing of input channels where it pays
  (:func:`~aiompc.protocols.linear.quantized.choose_packing`, ``k`` slots of ``l`` bits): its HE bytes, and apart
  (column ``widen``) the extra bytes the previous requantization pays to write the slot-``i`` channels in
  ``(k - i)·l``-bit rings, at a rate per element and ring bit measured here with
  :func:`aiompc.protocols.nonlinear.requantize` (``exact=False``); the ``packed`` ratio counts both.

Bytes per direction are *measured* (channel statistics of a run over the in-memory transport, the layer's
label only; the once-per-session public key is listed apart) for the layers given by ``--measure``, and
*modelled* for the others by :mod:`aiompc.protocols.linear.costs`, which the measured rows check byte for byte
(column ``model``: ``=`` when equal).  Totals count each layer with its multiplicity.  The weight cache's
effect is shown by running one layer three times in one session (first call prepares the weights).

    python benchmarks/quantized_layers.py [--measure all|none|0,6] [--keep 8] [--markdown]

Running every layer end to end takes a few minutes on a 2-core machine (the cheetah rows dominate).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import numpy as np

from aiompc.crypto.prg import PRG
from aiompc.nn.bounds import heq_acc_bits, linear_channel_ranges, width_for_range
from aiompc.ring import reconstruct, share, to_signed
from aiompc.session import run_local
from aiompc.protocols.linear.costs import LayerCost, key_bytes, plan_cost
from aiompc.protocols.linear.engine import client_key, prepared_weights, run_linear, server_key
from aiompc.protocols.linear.plan import CheetahBaselinePlanner, CheetahPlanner, LinearPlan
from aiompc.protocols.linear.kronecker import unpack_offset
from aiompc.protocols.linear.quantized import QuantizedPlanner, choose_packing
from aiompc.protocols.nonlinear import requantize
from aiompc.protocols.linear.reference import conv2d_ref
from aiompc.protocols.linear.tiling import ConvShape
from aiompc.protocols.linear.weight_cache import STATE_KEY

MB = 1e6
W_BITS, A_BITS = 4, 4


@dataclass(frozen=True)
class Layer:
    name: str
    shape: ConvShape
    count: int


def resnet18_cifar() -> list[Layer]:
    c = ConvShape.make
    return [
        Layer("64x32x32->64", c(64, 32, 32, 64, 3, padding=1), 4),
        Layer("64x32x32->128 s2", c(64, 32, 32, 128, 3, stride=2, padding=1), 1),
        Layer("128x16x16->128", c(128, 16, 16, 128, 3, padding=1), 3),
        Layer("128x16x16->256 s2", c(128, 16, 16, 256, 3, stride=2, padding=1), 1),
        Layer("256x8x8->256", c(256, 8, 8, 256, 3, padding=1), 3),
        Layer("256x8x8->512 s2", c(256, 8, 8, 512, 3, stride=2, padding=1), 1),
        Layer("512x4x4->512", c(512, 4, 4, 512, 3, padding=1), 3),
    ]


def acc_ring(w: np.ndarray) -> int:
    lo, hi = linear_channel_ranges(w, None, 0, (1 << A_BITS) - 1)
    bits, signed = width_for_range(int(lo.min()), int(hi.max()))
    return bits if signed else bits + 1


@dataclass
class Run:
    plan: LinearPlan
    model: LayerCost
    up: int | None = None
    down: int | None = None
    server: float | None = None
    client: float | None = None
    errors: dict[int, int] | None = None
    widening: float = 0.0

    @property
    def measured(self) -> bool:
        return self.up is not None

    @property
    def total(self) -> float:
        he = (self.up + self.down) if self.measured else self.model.total  # type: ignore[operator]
        return he + self.widening


async def measure(run: Run, x: np.ndarray, w: np.ndarray, shape: ConvShape) -> None:
    """One call of the layer under ``run.plan`` (after the session's key exchange); fills in the run."""
    plan = run.plan
    l = plan.l
    pack = getattr(plan.layout, "pack", 1)
    slot = l // pack
    xs, xc = share(x, l, PRG())
    times: dict[str, float] = {}
    offset = unpack_offset(pack, slot) if pack > 1 else None

    async def party_fn(p, role, xsh, weight):
        # the session's key exchange and the (cached) weight preparation are not part of the call's time
        if weight is None:
            await client_key(p, plan.he)
        else:
            await server_key(p, plan.he)
            await prepared_weights(p, plan, weight)
        t0 = time.perf_counter()
        y = await run_linear(p, "layer", plan, xsh, weight, offset=offset if weight is not None else None)
        times[role] = time.perf_counter() - t0
        return y, p.channel.stats()

    (ys, _), (yc, st) = await run_local(lambda p: party_fn(p, "server", xs, w),
                                        lambda p: party_fn(p, "client", xc, None))
    lab = st.select("layer")
    run.up, run.down = lab.bytes_sent, lab.bytes_recv
    run.server, run.client = times["server"], times["client"]
    exact = conv2d_ref(x, w, shape, 64).view(np.int64)
    got = to_signed(reconstruct(ys, yc, plan.out_bits), plan.out_bits)
    err = got - (exact >> (plan.out_shift - (pack - 1) * slot))
    values, counts = np.unique(err, return_counts=True)
    run.errors = {int(v): int(c) for v, c in zip(values, counts)}


async def cache_effect(plan: LinearPlan, x: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """Server seconds of the first call (prepares the weights) and the best of two later calls (cache hits),
    and the MB of prepared weights the cache holds."""
    l = plan.l
    xs, xc = share(x, l, PRG())
    times: list[float] = []

    async def server(p):
        await server_key(p, plan.he)
        for i in range(3):
            t0 = time.perf_counter()
            await run_linear(p, f"call{i}", plan, xs, w)
            times.append(time.perf_counter() - t0)
        return p.state[STATE_KEY]

    async def client(p):
        await client_key(p, plan.he)
        for i in range(3):
            await run_linear(p, f"call{i}", plan, xc)

    cache, _ = await run_local(server, client)
    assert cache.hits >= 2
    return times[0], min(times[1:]), cache.nbytes / MB


async def widening_rate(elements: int = 4096, l_in: int = 18, extra: int = 18) -> float:
    """Online bits per element and extra output-ring bit of a requantization (``exact=False``, 4-bit ReLU
    output), from two runs writing ``l_in`` and ``l_in + extra`` bit rings."""
    x = np.random.default_rng(0).integers(-(1 << 15), 1 << 15, elements)
    xs, xc = share(x, l_in, PRG())
    sizes = []
    for l_out in (l_in, l_in + extra):
        kw = dict(l_in=l_in, multiplier=1, shift=10, lo=0, hi=15, l_out=l_out, exact=False)

        async def server(p, kw=kw):
            await requantize(p, "rq", xs, **kw)

        async def client(p, kw=kw):
            await requantize(p, "rq", xc, **kw)
            return p.channel.stats().select("rq")

        _, st = await run_local(server, client)
        sizes.append(st.bytes_sent + st.bytes_recv)
    return 8 * (sizes[1] - sizes[0]) / (elements * extra)


def describe(plan: LinearPlan) -> str:
    t = plan.layout.tiling  # type: ignore[attr-defined]
    compact = "c" if t.compact else ""
    pack = getattr(plan.layout, "pack", 1)
    packed = f"k{pack} " if pack > 1 else ""
    return (f"{packed}{t.channels}x{t.tile_h}x{t.tile_w}{compact}/op{t.out_pack} N={plan.he.n} q={plan.he.q.bit_length()} "
            f"c0/c1={plan.output.bits0}/{plan.output.bits1} ct={plan.input_ciphertexts}/{plan.output_ciphertexts}")


def fmt(run: Run) -> str:
    up = run.up if run.measured else run.model.upload
    down = run.down if run.measured else run.model.download
    tag = "m" if run.measured else "~"
    return f"{up / MB:6.2f}/{down / MB:6.2f}{tag}"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure", default="all", help="layers run end to end: all, none, or indices like 0,6")
    ap.add_argument("--keep", type=int, default=8, help="output bits kept by the approximate mode")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    layers = resnet18_cifar()
    if args.measure == "all":
        measured = set(range(len(layers)))
    elif args.measure == "none":
        measured = set()
    else:
        measured = {int(i) for i in args.measure.split(",")}
    rng = np.random.default_rng(args.seed)
    modes = ["cheetah", "rule@l", "exact", "approx", "packed"]
    totals = {m: 0.0 for m in modes}
    head = ["layer", "l", "HEQ", *[f"{m} MB up/down" for m in modes], "widen", "x exact", "x approx", "x packed",
            "model", "approx errors", "packed errors"]
    widths = [22, 3, 4, 17, 17, 17, 17, 17, 6, 8, 9, 9, 6, 26, 26]
    rate = await widening_rate()

    def line(cells: list[str]) -> str:
        if args.markdown:
            return "| " + " | ".join(cells) + " |"
        return " ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths)))

    print(f"ResNet-18 CIFAR 3x3 convs, w{W_BITS}a{A_BITS}, 40-bit flooding; m = measured, ~ = modelled; "
          f"approx keeps {args.keep} output bits; input widening {rate:.2f} bits per element and ring bit "
          "(measured)\n")
    print(line(head))
    if args.markdown:
        print("|" + "---|" * len(head))
    keys: dict[str, int] = {}
    timing: list[str] = []
    chosen: list[str] = []
    for i, layer in enumerate(layers):
        s = layer.shape
        w = rng.integers(-(1 << (W_BITS - 1)), 1 << (W_BITS - 1), s.weight_shape)
        x = rng.integers(0, 1 << A_BITS, s.in_shape)
        l = acc_ring(w)
        plans = {
            "cheetah": CheetahBaselinePlanner()(s, 37, W_BITS),
            "rule@l": CheetahPlanner(he="smallest")(s, l, W_BITS),
            "exact": QuantizedPlanner()(s, l, W_BITS),
            "approx": QuantizedPlanner()(s, l, W_BITS, out_shift=max(0, l - args.keep)),
        }
        best = choose_packing(QuantizedPlanner(), s, l, W_BITS, max(0, l - args.keep), input_bit_cost=rate)[0]
        plans["packed"] = best.plan
        runs = {m: Run(p, plan_cost(p, "layer")) for m, p in plans.items()}
        runs["packed"].widening = best.widening
        for m, p in plans.items():
            keys[m] = max(keys.get(m, 0), key_bytes(p.he))
        if i in measured:
            for m, run in runs.items():
                await measure(run, x, w, s)
                timing.append(f"  {layer.name:18s} {m:8s} server {run.server:6.2f} s  client {run.client:6.2f} s")
        for m in modes:
            totals[m] += layer.count * runs[m].total
        assert runs["exact"].total <= runs["rule@l"].total, "the search did worse than Cheetah's rule"
        model_ok = all(r.up == r.model.upload and r.down == r.model.download for r in runs.values() if r.measured)
        exact_ok = all(r.errors == {0: int(np.prod(s.out_shape))} for m, r in runs.items()
                       if r.measured and m in ("cheetah", "rule@l", "exact"))

        def errs(m: str) -> str:
            e = runs[m].errors
            return "-" if e is None else " ".join(f"{k:+d}:{v}" for k, v in sorted(e.items()))

        err_s = errs("approx") + ("" if exact_ok else " (EXACT MODES WRONG)")
        cells = [f"{layer.name} x{layer.count}", str(l), str(heq_acc_bits(w, A_BITS)),
                 *[fmt(runs[m]) for m in modes], f"{runs['packed'].widening / MB:.2f}",
                 *[f"{runs['cheetah'].total / runs[m].total:.2f}" for m in ("exact", "approx", "packed")],
                 ("=" if model_ok else "DIFF") if i in measured else "-", err_s, errs("packed")]
        print(line(cells), flush=True)
        chosen.append("\n".join(f"  {layer.name if j == 0 else '':18s} {m:7s} {describe(plans[m])}"
                                 for j, m in enumerate(("cheetah", "exact", "approx", "packed"))))
    print()
    print("whole network (multiplicities): " + ", ".join(f"{m} {totals[m] / MB:.1f} MB" for m in modes))
    print(f"ratio cheetah / quantized: exact {totals['cheetah'] / totals['exact']:.2f}x, "
          f"approx {totals['cheetah'] / totals['approx']:.2f}x, packed {totals['cheetah'] / totals['packed']:.2f}x "
          f"(input widening included); rule@l / exact {totals['rule@l'] / totals['exact']:.2f}x")
    print("public key once per session and parameter set: " + ", ".join(f"{m} {v / 1e3:.0f} kB" for m, v in keys.items()))
    print("\nplans (C_w x H_w x W_w, c = compact, op = output channels per ciphertext; ct = in/out ciphertexts):")
    print("\n".join(chosen))
    if timing:
        print("\nwall time of one call (both parties in one process on this machine, weights already prepared):")
        print("\n".join(timing))
    # the weight cache: three calls of the deepest layer in one session
    layer = layers[-1]
    w = rng.integers(-8, 8, layer.shape.weight_shape)
    x = rng.integers(0, 16, layer.shape.in_shape)
    for name, plan in (("exact", QuantizedPlanner()(layer.shape, acc_ring(w), W_BITS)),
                       ("cheetah", CheetahBaselinePlanner()(layer.shape, 37, W_BITS))):
        first, later, held = await cache_effect(plan, x, w)
        print(f"weight cache, {layer.name} {name}: server {first:.2f} s first call, {later:.2f} s later calls "
              f"({first / later:.1f}x), {held:.0f} MB of prepared weights held")


if __name__ == "__main__":
    asyncio.run(main())
