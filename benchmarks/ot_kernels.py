"""Throughput of the OT data movement under the non-linear protocols: elements per CPU second, one thread.

Rows (median of ``--repeat`` runs, CPU and wall milliseconds beside million elements per CPU second):

* ``rotated_tables`` — the server's look-up messages (table rotated by its share, masked), per element;
* ``1-of-N sender`` / ``1-of-N receiver`` — :func:`~aiompc.protocols.ot.flavours.one_of_n_ot`'s masking and
  unmasking from the COTs (hashing included), per instance: the millionaire's leaves (N = 16, 1–3 bits), the
  look-ups of Iron's exp digits (N = 256, 14 and 37 bits) and of a 4-bit table;
* ``widths sender`` / ``widths receiver`` — :func:`~aiompc.protocols.ot.flavours.correlated_ot_widths` (Gilboa's
  products: ``l`` COTs of widths ``l, l−1, …``), per COT;
* ``pack`` / ``unpack`` — bit packing of a message, per value.

Inputs are random (not secrets: the generator is numpy's); the COTs are random blocks.  The functions are the
ones the protocols call, so running this file with another checkout first on ``PYTHONPATH`` times that
checkout (rows whose function it lacks are skipped).

Usage: ``PYTHONPATH=. python benchmarks/ot_kernels.py [--repeat R] [--scale S]``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from collections.abc import Callable

import numpy as np

from aiompc.kernels.bitpack import pack_bits, unpack_bits
from aiompc.protocols.ot import flavours
from aiompc.protocols.ot.engine import ReceiverCOTs, SenderCOTs

lookup_module = importlib.import_module("aiompc.protocols.nonlinear.lookup")


def median_time(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median (CPU, wall) seconds of ``fn()`` over ``repeat`` calls after one warm-up call."""
    fn()
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return float(np.median(cpu)), float(np.median(wall))


def _cots(g: np.random.Generator, rows: int) -> tuple[SenderCOTs, ReceiverCOTs, np.ndarray]:
    q = g.integers(0, 2**64 - 1, (rows, 2), dtype=np.uint64, endpoint=True)
    delta = g.integers(0, 2**64 - 1, 2, dtype=np.uint64, endpoint=True) | np.array([1, 0], np.uint64)
    tweaks = np.arange(rows, dtype=np.uint64)
    d = g.integers(0, 2, rows).astype(np.uint8)
    e = g.integers(0, 2, rows).astype(np.uint8)
    return SenderCOTs(q, delta, tweaks), ReceiverCOTs(e, q ^ (e.astype(np.uint64)[:, None] * delta), tweaks), d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every size by this")
    a = ap.parse_args()
    g = np.random.default_rng(0)
    print("| function | case | elements | CPU ms | wall ms | M elements / CPU s |")
    print("|---|---|---:|---:|---:|---:|")

    def row(name: str, case: str, n: int, fn: Callable[[], object]) -> None:
        cpu, wall = median_time(fn, a.repeat)
        print(f"| {name} | {case} | {n} | {cpu * 1e3:.2f} | {wall * 1e3:.2f} | {n / cpu / 1e6:.3f} |", flush=True)

    for k, bits in [(8, 37), (8, 14), (4, 16)]:
        n = int(16384 * a.scale)
        table = g.integers(0, 1 << bits, 1 << k, dtype=np.uint64)
        xs, r = g.integers(0, 1 << k, n, dtype=np.uint64), g.integers(0, 1 << bits, n, dtype=np.uint64)
        row("rotated_tables", f"k={k}, l_out={bits}", n, lambda: lookup_module.rotated_tables(table, xs, r, k, bits))
    for N, bits, n0 in [(16, 2, 262144), (16, 1, 65536), (256, 14, 16384), (256, 37, 16384), (16, 16, 65536)]:
        n, m = int(n0 * a.scale), (N - 1).bit_length()
        sender, receiver, d = _cots(g, n * m)
        msgs = g.integers(0, 1 << bits, (n, N), dtype=np.uint64)
        row("1-of-N sender", f"N={N}, {bits} bits", n, lambda: flavours._one_of_n_mask(sender, d, msgs, N, m, bits))
        y = flavours._one_of_n_mask(sender, d, msgs, N, m, bits)
        c = g.integers(0, N, n)
        row("1-of-N receiver", f"N={N}, {bits} bits", n, lambda: flavours._one_of_n_unmask(receiver, c, y, m, bits))
    if hasattr(flavours, "_widths_mask"):
        for l, L, n0 in [(37, 37, 16384), (16, 16, 32768), (37, 9, 65536)]:
            n = int(n0 * a.scale)
            widths = tuple(l - i for i in range(L))
            masks = np.array([(1 << w) - 1 for w in widths], dtype=np.uint64)
            sender, receiver, d = _cots(g, n * L)
            corr = g.integers(0, 1 << 62, (n, L), dtype=np.uint64) & masks
            row("widths sender", f"l={l}, {L} COTs", n * L, lambda: flavours._widths_mask(sender, d, corr, masks))
            _, y = flavours._widths_mask(sender, d, corr, masks)
            cc = g.integers(0, 2, (n, L)).astype(np.uint8)
            row("widths receiver", f"l={l}, {L} COTs", n * L, lambda: flavours._widths_unmask(receiver, cc, y, masks))
    for bits in (1, 2, 13, 37):
        n = int((1 << 22) * a.scale)
        v = g.integers(0, 1 << bits, n, dtype=np.uint64)
        row("pack", f"{bits} bits", n, lambda: pack_bits(v, bits))
        packed = pack_bits(v, bits)
        row("unpack", f"{bits} bits", n, lambda: unpack_bits(packed, bits, n))
    print(f"\nload average {os.getloadavg()}")


if __name__ == "__main__":
    main()
