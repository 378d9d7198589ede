"""Compiled kernels against the numpy code they replaced: Markdown tables on stdout.

Table 1, NTT: microseconds per polynomial per prime (batch of 16 polynomials), median of ``--repeat``
runs, wall and CPU time, for the numba kernel (``aiompc.crypto.he.ntt``) and the numpy reference it
replaced (``tests/kernels/ntt_reference.py``, kept there as the tests' plain reference).

Table 2, JIT: the first call of each kernel in a fresh process, once with an empty numba cache (compile
time) and once with the cache the first run wrote (load time), against the steady-state call.

Usage: ``python benchmarks/kernels.py [--repeat R] [--no-jit]``.  Single thread.  The load average is
printed: on a shared machine the numbers are only comparable within one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from aiompc.crypto.he import cheetah_params
from aiompc.crypto.he.ntt import NTT
from aiompc.crypto.he.primes import ntt_primes_below

ROOT = Path(__file__).resolve().parent.parent
BATCH = 16


def load_reference(name: str) -> ModuleType | None:
    """A reference module from ``tests/kernels`` (None when the tests are not checked out beside)."""
    path = ROOT / "tests" / "kernels" / f"{name}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def median_time(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall and median CPU seconds of ``fn`` over ``repeat`` runs, after one warm-up."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def ntt_table(repeat: int) -> None:
    ref_mod = load_reference("ntt_reference")
    cheetah = cheetah_params()
    rows: list[tuple[str, int, tuple[int, ...]]] = [
        (f"N={n}, 2 × 27-bit", n, tuple(p for _, p in zip(range(2), ntt_primes_below(n, 1 << 27))))
        for n in (2048, 4096, 8192)
    ]
    rows.append(("Cheetah N=4096, 4 primes", cheetah.n, cheetah.primes))
    rows.append(("N=4096, 2 × 30-bit", 4096, tuple(p for _, p in zip(range(2), ntt_primes_below(4096, 1 << 30)))))
    print(f"\n### NTT, µs per polynomial per prime (batch {BATCH}, median of {repeat}; wall / CPU)\n")
    print("| parameters | kernel fwd | kernel inv | numpy fwd (before) | numpy inv (before) | speed-up fwd |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for name, n, primes in rows:
        a = np.stack([rng.integers(0, p, (BATCH, n)) for p in primes], axis=1).astype(np.uint64)
        per = BATCH * len(primes)
        ntt = NTT(n, primes)
        fa = ntt.forward(a)
        kf = median_time(lambda: ntt.forward(a), repeat)
        ki = median_time(lambda: ntt.inverse(fa), repeat)
        if ref_mod is not None:
            ref = ref_mod.NTT(n, primes)
            assert np.array_equal(ref.forward(a), fa), "kernel and reference disagree"
            rf = median_time(lambda: ref.forward(a), repeat)
            ri = median_time(lambda: ref.inverse(fa), repeat)
        else:
            rf = ri = (float("nan"), float("nan"))

        def cell(x: tuple[float, float]) -> str:
            return "n/a" if x[0] != x[0] else f"{x[0] / per * 1e6:.1f} / {x[1] / per * 1e6:.1f}"

        print(f"| {name} | {cell(kf)} | {cell(ki)} | {cell(rf)} | {cell(ri)} | {rf[0] / kf[0]:.1f}× |", flush=True)


_FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
from aiompc.crypto.he.ntt import NTT
from aiompc.crypto.he.primes import ntt_primes_below
imported = time.perf_counter() - t0
n = 4096
primes = tuple(p for _, p in zip(range(2), ntt_primes_below(n, 1 << 27)))
ntt = NTT(n, primes)
a = np.zeros((1, 2, n), dtype=np.uint64)
t0 = time.perf_counter(); fa = ntt.forward(a); first_f = time.perf_counter() - t0
t0 = time.perf_counter(); ntt.inverse(fa); first_i = time.perf_counter() - t0
t0 = time.perf_counter(); ntt.forward(a); steady = time.perf_counter() - t0
print(f"{imported} {first_f} {first_i} {steady}")
"""


def jit_table() -> None:
    print("\n### First call in a fresh process (NTT kernels, N=4096, one polynomial × 2 primes), seconds\n")
    print("| numba cache | import | first forward | first inverse | steady forward |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("empty (compile)", "warm (load)"):
            out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True, check=True)
            imp, ff, fi, st = (float(x) for x in out.stdout.split())
            print(f"| {label} | {imp:.3f} | {ff:.3f} | {fi:.3f} | {st:.6f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--no-jit", action="store_true", help="skip the first-call (compile time) table")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    ntt_table(args.repeat)
    if not args.no_jit:
        jit_table()


if __name__ == "__main__":
    main()
