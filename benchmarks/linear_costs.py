"""Calibrate the compute model of the HE linear layers (:data:`aiompc.protocols.linear.costs.COMPUTE`).

Each step of a linear-layer call is timed on the current code (process CPU seconds, best of ``--repeat``
after a warm-up, one thread) at the parameter sets the quantized planner picks for ResNet-18 (``N = 4096``
and ``8192``, three primes near ``2^29``) and divided by the model's unit (``N·L`` per ciphertext, ``N·L²``
per key switch, ``N`` per decrypted result), so the printed constants are directly comparable with the table
in ``costs.py``:

* ``encrypt`` — client, symmetric seeded encryption, per input ciphertext;
* ``absorb`` — server, parse + expand the seed + add its share + forward NTT, per input ciphertext;
* ``mac`` — server, one (output, input) product-accumulate in NTT form;
* ``finalize`` — server, re-randomise + flood + switch + drop + serialize, per output ciphertext;
* ``refresh`` — server, output packing's re-randomisation (``(b·u, a·u + e1)``, no flooding), per output
  ciphertext;
* ``keyswitch`` — server, one automorphism with key switch inside the packing tree (strided, 64 leaves);
* ``decrypt`` — client, one result ciphertext with 256 visible coefficients (per ``N``);
* ``prepare`` — server, the weight plaintexts of a layer to NTT form, per (output, input) polynomial pair
  (cached across the samples of a session; paid once per weight array and plan).

    python benchmarks/linear_costs.py [--repeat 5]

The machine is shared: the load average is printed; compare constants measured side by side only.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from aiompc.crypto.he import (
    PlainNTT,
    SeededCiphertext,
    ServerPipeline,
    add_plain,
    decrypt_result,
    encrypt_symmetric,
    finalize,
    keygen,
    multiply_accumulate,
    params_for_modulus,
    plan_output,
    public_key,
)
from aiompc.crypto.he.galois import galois_keys
from aiompc.crypto.he.packing import pack_leaves, refresh, tree_elements
from aiompc.crypto.prg import PRG
from aiompc.protocols.linear.costs import COMPUTE
from aiompc.protocols.linear.layouts import ConvLayout
from aiompc.protocols.linear.plan import make_plan
from aiompc.protocols.linear.prepared import prepare_weights
from aiompc.protocols.linear.tiling import ConvShape, ConvTiling

BATCH, MAC_OUT, MAC_IN, LEAVES = 8, 8, 16, 64


def cpu_best(fn: Callable[[], object], repeat: int) -> float:
    """Minimum process CPU seconds of ``fn`` over ``repeat`` runs after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def calibrate(n: int, log2_q: float, l: int, repeat: int) -> dict[str, float]:
    """Measured constants (seconds per model unit) at ring degree ``n`` and ``log2 q``."""
    params = params_for_modulus(n, log2_q, l)
    L = params.levels
    prg = PRG(b"\x17" * 32)
    sk = keygen(params, prg)
    pk = public_key(sk, prg)
    rng = np.random.default_rng(0)
    m = rng.integers(0, params.t, (BATCH, n), dtype=np.uint64)
    nl = n * L
    out: dict[str, float] = {}
    out["encrypt"] = cpu_best(lambda: encrypt_symmetric(sk, m, prg), repeat) / (BATCH * nl)
    data = encrypt_symmetric(sk, m, prg).to_bytes()
    out["absorb"] = cpu_best(lambda: add_plain(SeededCiphertext.from_bytes(params, data).expand(), m).to_ntt(),
                             repeat) / (BATCH * nl)
    inputs = encrypt_symmetric(sk, rng.integers(0, params.t, (MAC_IN, n), dtype=np.uint64), prg).expand().to_ntt()
    w = rng.integers(-7, 8, (MAC_OUT, MAC_IN, n))
    weights = PlainNTT.encode(params, w)
    out["mac"] = cpu_best(lambda: multiply_accumulate(inputs, weights), repeat) / (MAC_OUT * MAC_IN * nl)
    acc = multiply_accumulate(inputs, weights)
    visible = 256
    plan = plan_output(params, ServerPipeline(8, 9 * MAC_IN, 1, visible=visible))
    positions = np.arange(visible)
    out["finalize"] = cpu_best(lambda: finalize(acc, pk, plan, prg, positions).to_bytes(), repeat) / (MAC_OUT * nl)
    out["refresh"] = cpu_best(lambda: refresh(acc, pk, prg), repeat) / (MAC_OUT * nl)
    res = finalize(acc, pk, plan, prg, positions)
    out["decrypt"] = cpu_best(lambda: decrypt_result(sk, res), repeat) / (MAC_OUT * n)
    stride = n.bit_length() - 1
    gk = galois_keys(sk, tree_elements(n, LEAVES, stride), prg)
    leaves = encrypt_symmetric(sk, rng.integers(0, params.t, (LEAVES, n), dtype=np.uint64), prg).expand().to_ntt()
    out["keyswitch"] = cpu_best(lambda: pack_leaves(lambda ids: leaves.data[:, ids], LEAVES, params, gk, stride),
                                repeat) / ((LEAVES - 1) * n * L * L)
    shape = ConvShape.make(128, 4, 4, 32, 3, padding=1)
    layout = ConvLayout(ConvTiling(shape, n, min(128, n // 36), 6, 6))
    plan = make_plan(layout, l, 4)
    wts = rng.integers(-8, 8, shape.weight_shape)
    pairs = layout.inputs * layout.outputs
    out["prepare"] = cpu_best(lambda: prepare_weights(plan, wts), repeat) / (pairs * n * plan.he.levels)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; CPU seconds per model unit "
          f"(best of {args.repeat}), ×1e-9\n")
    rows = [("N=4096, log2 q≈84", calibrate(4096, 84, 17, args.repeat)),
            ("N=8192, log2 q≈87", calibrate(8192, 87, 17, args.repeat))]
    keys = list(COMPUTE)
    print("| parameters | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    print("| model (costs.COMPUTE) | " + " | ".join(f"{COMPUTE[k] * 1e9:.1f}" for k in keys) + " |")
    for name, r in rows:
        print(f"| {name} | " + " | ".join(f"{r[k] * 1e9:.1f}" if k in r else "–" for k in keys) + " |")


if __name__ == "__main__":
    main()
