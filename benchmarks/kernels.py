"""Compiled kernels against the numpy code they replaced: Markdown tables on stdout.

Table 1, NTT: microseconds per polynomial per prime (batch of 16 polynomials), median of ``--repeat``
runs, wall and CPU time, for the numba kernel (``aiompc.crypto.he.ntt``) and the numpy reference it
replaced (``tests/kernels/ntt_reference.py``, kept there as the tests' plain reference).

Table 2, other kernels beside the numpy code they replaced (kept in ``tests/kernels/*_reference.py``):
signed reduction + forward NTT, RNS multiply-accumulate (µs per ciphertext × plaintext pair), Ferret's
LPN encoding (ns per output row, d = 10, on the bootstrap and main sets' table sizes).

Table 3, JIT: the first call of each kernel in a fresh process, once with an empty numba cache (compile
time) and once with the cache the first run wrote (load time), against the steady-state call.

Usage: ``python benchmarks/kernels.py [--repeat R] [--no-jit]``.  Single thread.  ``load average`` and
the CPU column matter on a shared machine: wall time includes waiting for a core.  The load average is
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
    print("| parameters | kernel fwd | kernel inv | numpy fwd (before) | numpy inv (before) | speed-up fwd (CPU) |")
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

        print(f"| {name} | {cell(kf)} | {cell(ki)} | {cell(rf)} | {cell(ri)} | {rf[1] / kf[1]:.1f}× |", flush=True)


def other_table(repeat: int) -> None:
    from aiompc.crypto.ferret.params import BOOTSTRAP, MAIN
    from aiompc.kernels.lpn import PREFETCH_AHEAD
    from aiompc.kernels.lpn import lpn_encode_rows
    from aiompc.kernels.rns import mac_into

    rng = np.random.default_rng(1)
    print(f"\n### Other kernels (median of {repeat}; wall / CPU)\n")
    print("| kernel | unit | compiled | numpy (before) | speed-up (CPU) |")
    print("|---|---|---|---|---|")

    def row(name: str, unit: str, scale: float, new: tuple[float, float], old: tuple[float, float] | None) -> None:
        old_s = "n/a" if old is None else f"{old[0] * scale:.1f} / {old[1] * scale:.1f}"
        up = "n/a" if old is None else f"{old[1] / new[1]:.1f}×"
        print(f"| {name} | {unit} | {new[0] * scale:.1f} / {new[1] * scale:.1f} | {old_s} | {up} |", flush=True)

    cheetah = cheetah_params()
    n, primes = cheetah.n, cheetah.primes
    col = np.array(primes, dtype=np.uint64).reshape(-1, 1)
    ntt_ref = load_reference("ntt_reference")
    x = rng.integers(-(1 << 36), 1 << 36, (BATCH, n), dtype=np.int64)
    ntt = NTT(n, primes)
    new = median_time(lambda: ntt.forward_signed(x), repeat)
    old = None
    if ntt_ref is not None:
        ref = ntt_ref.NTT(n, primes)
        old = median_time(lambda: ref.forward((x[:, None, :] % col.astype(np.int64)).astype(np.uint64)), repeat)
    row("reduce_signed + forward NTT (Cheetah, 4 primes)", "µs / poly / prime", 1e6 / (BATCH * len(primes)), new, old)

    rns_ref = load_reference("rns_reference")
    n_out, n_in = 8, 32
    xc = rng.integers(0, 1 << 62, (2, n_in, len(primes), n), dtype=np.uint64) % col
    w = rng.integers(0, 1 << 62, (n_out, n_in, len(primes), n), dtype=np.uint64) % col
    out = np.empty((2, n_out, len(primes), n), dtype=np.uint64)
    p_arr = np.array(primes, dtype=np.uint64)
    new = median_time(lambda: mac_into(xc, w, p_arr, out), repeat)
    old = None if rns_ref is None else median_time(lambda: rns_ref.multiply_accumulate_reference(xc, w, primes), repeat)
    row(f"multiply-accumulate (Cheetah, {n_out}×{n_in})", "µs / (ct, pt) pair", 1e6 / (n_out * n_in), new, old)

    lpn_ref = load_reference("lpn_reference")
    m, d = 1 << 16, 10
    words = rng.integers(0, 1 << 32, (m, d), dtype=np.uint32)
    for pset, ahead in ((BOOTSTRAP, 0), (MAIN, PREFETCH_AHEAD)):
        table = rng.integers(0, 1 << 63, (pset.k, 2), dtype=np.uint64)
        o = np.zeros((m, 2), dtype=np.uint64)
        new = median_time(lambda: lpn_encode_rows(words, pset.k, table, o, ahead), repeat)
        old = None if lpn_ref is None else median_time(lambda: lpn_ref.lpn_encode_rows_reference(words, pset.k, table, o), repeat)
        row(f"LPN encode, {pset.name} set (k = {pset.k:,}, prefetch {ahead})", "ns / row", 1e9 / m, new, old)


_FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
from aiompc.crypto.he.ntt import NTT
from aiompc.crypto.he.primes import ntt_primes_below
imported = time.perf_counter() - t0
from aiompc.crypto.he.rns import get_basis, reduce_signed
from aiompc.kernels.lpn import lpn_encode_rows
from aiompc.kernels.rns import mac_into
n = 4096
primes = tuple(p for _, p in zip(range(2), ntt_primes_below(n, 1 << 27)))
ntt = NTT(n, primes)
a = np.zeros((1, 2, n), dtype=np.uint64)
calls = [
    lambda: ntt.forward(a), lambda: ntt.inverse(a), lambda: ntt.forward_signed(np.zeros((1, n), np.int64)),
    lambda: reduce_signed(np.zeros((1, n), np.int64), get_basis(primes)),
    lambda: mac_into(np.zeros((2, 1, 2, n), np.uint64), np.zeros((1, 1, 2, n), np.uint64), np.array(primes, np.uint64),
                     np.zeros((2, 1, 2, n), np.uint64)),
    lambda: lpn_encode_rows(np.zeros((4, 10), np.uint32), 8, np.zeros((8, 2), np.uint64), np.zeros((4, 2), np.uint64), 0),
]
firsts, steadies = [], []
for fn in calls:
    t0 = time.perf_counter(); fn(); firsts.append(time.perf_counter() - t0)
    t0 = time.perf_counter(); fn(); steadies.append(time.perf_counter() - t0)
print(imported, *firsts, *steadies)
"""
_KERNELS = ["NTT fwd", "NTT inv", "fwd signed", "reduce_signed", "MAC", "LPN"]


def jit_table() -> None:
    print("\n### First call of each kernel in a fresh process, seconds (import = importing the HE NTT module)\n")
    print("| numba cache | import | " + " | ".join(_KERNELS) + " | steady total |")
    print("|---|---|" + "---|" * (len(_KERNELS) + 1))
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("empty (compile)", "warm (load)"):
            out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True, check=True)
            vals = [float(x) for x in out.stdout.split()]
            imp, firsts, steadies = vals[0], vals[1 : 1 + len(_KERNELS)], vals[1 + len(_KERNELS) :]
            cells = " | ".join(f"{f:.2f}" for f in firsts)
            print(f"| {label} | {imp:.2f} | {cells} | {sum(steadies):.4f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--no-jit", action="store_true", help="skip the first-call (compile time) table")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    ntt_table(args.repeat)
    other_table(args.repeat)
    if not args.no_jit:
        jit_table()


if __name__ == "__main__":
    main()
