"""Micro-benchmarks of the HE core (aiompc.crypto.he): one Markdown table on stdout.

Rows: N ∈ {2048, 4096, 8192} × {1, 2} RNS primes (plus the Cheetah set, 4 primes, log2 q ≈ 109).
Columns (microseconds, best of several repetitions, single thread):

* ``ntt fwd`` / ``ntt inv`` — one negacyclic transform of one polynomial modulo one prime, amortised over
  a batch of 16 polynomials;
* ``mac/ct`` — :func:`multiply_accumulate` per (ciphertext, plaintext) pair, 8 outputs × 32 inputs;
* ``encrypt`` / ``decrypt`` — per ciphertext (batch of 16; decrypt takes NTT-form ciphertexts);
* ``finalize`` — per ciphertext: re-randomise + flood + switch to 2^62 + drop bits;
* ``dec result`` — client decryption of one finalized result;
* ``serialize`` — ``to_bytes`` + ``from_bytes`` of one seeded upload ciphertext; ``bytes`` is its size.

Usage: ``python benchmarks/he_micro.py [--repeat R] [--clock wall|cpu]``.  The machine's load average is printed too:
the numbers are only comparable on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from aiompc.crypto.he import (
    HEParams,
    PlainNTT,
    SeededCiphertext,
    ServerPipeline,
    cheetah_params,
    decrypt,
    decrypt_result,
    encrypt_symmetric,
    finalize,
    get_ntt,
    keygen,
    multiply_accumulate,
    plan_output,
    public_key,
)
from aiompc.crypto.he.params import SECURITY_TABLE
from aiompc.crypto.he.primes import ntt_primes_below
from aiompc.crypto.prg import PRG
from aiompc.errors import UndecryptableParameters

BATCH = 16
MAC_OUT, MAC_IN = 8, 32


CLOCK = time.perf_counter
"""The clock of :func:`best_of`: wall time, or with ``--clock cpu`` this thread's CPU time (every step here runs
in the calling thread, so that is its whole cost; on a loaded machine it is far steadier than wall time)."""


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Minimum time of ``fn`` on :data:`CLOCK` over ``repeat`` runs (after one warm-up), in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
    return best


def make_params(n: int, count: int, l: int = 16) -> HEParams:
    bits = min(30, SECURITY_TABLE[n] // count)
    primes = tuple(p for _, p in zip(range(count), ntt_primes_below(n, 1 << bits)))
    return HEParams(n, primes, l)


def bench(params: HEParams, repeat: int) -> dict[str, float]:
    n, k = params.n, params.levels
    prg = PRG(b"\x42" * 32)
    sk = keygen(params, prg)
    pk = public_key(sk, prg)
    rng = np.random.default_rng(0)
    ntt = get_ntt(n, params.primes)
    polys = np.stack([rng.integers(0, p, (BATCH, n)) for p in params.primes], axis=1).astype(np.uint64)
    fwd = best_of(lambda: ntt.forward(polys), repeat) / (BATCH * k)
    evals = ntt.forward(polys)
    inv = best_of(lambda: ntt.inverse(evals), repeat) / (BATCH * k)

    m = rng.integers(0, params.t, (BATCH, n), dtype=np.uint64)
    enc = best_of(lambda: encrypt_symmetric(sk, m, prg), repeat) / BATCH
    up = encrypt_symmetric(sk, m, prg)
    ct = up.expand()
    dec = best_of(lambda: decrypt(sk, ct), repeat) / BATCH

    inputs = encrypt_symmetric(sk, rng.integers(0, params.t, (MAC_IN, n), dtype=np.uint64), prg).expand()
    w = np.zeros((MAC_OUT, MAC_IN, n), dtype=np.int64)
    w[..., :9] = rng.integers(-7, 8, (MAC_OUT, MAC_IN, 9))
    weights = PlainNTT.encode(params, w)
    mac = best_of(lambda: multiply_accumulate(inputs, weights), repeat) / (MAC_OUT * MAC_IN)

    acc = multiply_accumulate(inputs, weights)
    visible = min(n, 256)
    pipe = ServerPipeline(7, 9, MAC_IN, visible=visible, flood=params.log2_q > 80)
    try:
        plan = plan_output(params, pipe)
        positions = np.arange(visible)
        fin = best_of(lambda: finalize(acc, pk, plan, prg, positions), repeat) / MAC_OUT
        res = finalize(acc, pk, plan, prg, positions)
        dres = best_of(lambda: decrypt_result(sk, res), repeat) / MAC_OUT
    except UndecryptableParameters:  # too small a modulus for this pipeline: not applicable
        fin = dres = float("nan")

    one = SeededCiphertext(params, up.c0[:1], up.seed)
    data = one.to_bytes()
    ser = best_of(lambda: SeededCiphertext.from_bytes(params, one.to_bytes()), repeat)
    return {"ntt fwd": fwd, "ntt inv": inv, "mac/ct": mac, "encrypt": enc, "decrypt": dec,
            "finalize": fin, "dec result": dres, "serialize": ser, "bytes": len(data)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time (default) or the thread's CPU time (steadier on a loaded machine)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    rows = [(f"N={n}, {c} prime{'s' if c > 1 else ''}", make_params(n, c)) for n in (2048, 4096, 8192) for c in (1, 2)]
    rows.append(("Cheetah N=4096, 4 primes", cheetah_params()))
    cols = ["ntt fwd", "ntt inv", "mac/ct", "encrypt", "decrypt", "finalize", "dec result", "serialize"]
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; times in µs (best of {args.repeat}, "
          f"{'thread CPU' if args.clock == 'cpu' else 'wall'} time)\n")
    print("| parameters | log2 q | " + " | ".join(cols) + " | upload bytes |")
    print("|---|---|" + "---|" * (len(cols) + 1))
    for name, params in rows:
        r = bench(params, args.repeat)
        cells = " | ".join("n/a" if r[c] != r[c] else f"{r[c] * 1e6:.0f}" for c in cols)
        print(f"| {name} | {params.log2_q:.1f} | {cells} | {r['bytes']} |", flush=True)


if __name__ == "__main__":
    main()
