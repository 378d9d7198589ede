"""Long fuzz run of the wire decoder and the server's handshake checks (issue 23).

    python benchmarks/fuzz_wire.py --inputs 1000000 [--seed 1] [--memory-every 1000]

Feeds forged and mutated messages (:func:`aiompc.fuzzing.mutants`) to ``wire.decode`` (under the channel's
decode budget) and every decoded map to the hello checks.  Counts untyped exceptions (must be 0), the slowest
input (a hang would show here), and on every ``--memory-every``-th input the peak memory of the decode over
its size (tracemalloc).  Prints one Markdown summary; exits 1 on any untyped exception."""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
import tracemalloc

from aiompc.errors import AiompcError
from aiompc.fuzzing import check_decode, check_hello, mutants


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--memory-every", type=int, default=1000)
    args = ap.parse_args()
    gen = mutants(random.Random(args.seed))
    untyped = typed = values = hellos = 0
    slowest = (0.0, b"")
    worst_ratio = (0.0, 0, 0)
    start = time.perf_counter()
    for i in range(args.inputs):
        data = next(gen)
        measure = args.memory_every and i % args.memory_every == 0
        if measure:
            tracemalloc.start()
        t0 = time.perf_counter()
        try:
            got = check_decode(data)
            if isinstance(got, AiompcError):
                typed += 1
            else:
                values += 1
                if isinstance(got, dict):
                    hellos += 1
                    check_hello(got)
        except Exception:  # noqa: BLE001 - this is what we count
            untyped += 1
            if untyped <= 5:
                print(f"untyped exception on input {data!r}:", file=sys.stderr)
                traceback.print_exc()
        dt = time.perf_counter() - t0
        if dt > slowest[0]:
            slowest = (dt, data)
        if measure:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            ratio = peak / (len(data) + 1024)  # a constant for the interpreter's own small objects
            if ratio > worst_ratio[0]:
                worst_ratio = (ratio, peak, len(data))
    total = time.perf_counter() - start
    t0 = time.perf_counter()  # is the slowest input slow every time (a real cost) or was it the machine?
    check_decode(slowest[1])
    again = time.perf_counter() - t0
    print("| inputs | decoded to a value | typed errors | untyped exceptions | hello checks | slowest input | "
          "peak memory / (input size + 1 KiB), worst sampled | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.inputs:,} | {values:,} | {typed:,} | {untyped} | {hellos:,} | {slowest[0] * 1e3:.1f} ms "
          f"({len(slowest[1])} B; {again * 1e3:.2f} ms again) | {worst_ratio[0]:.0f}x ({worst_ratio[1]:,} B for {worst_ratio[2]} B) | {total:.0f} |")
    return 1 if untyped else 0


if __name__ == "__main__":
    sys.exit(main())
