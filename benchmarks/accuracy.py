"""Accuracy per mode on the shipped trained models over the digits test split (BENCHMARKS.md, issue 20).

For each model of :data:`aiompc.nn.zoo.SHIPPED_MODELS`, :func:`aiompc.nn.evaluate.evaluate` runs the float
model, the plaintext integer model and the secure protocol in ``quantized`` mode with exact and with
approximate requantization (and, unless ``--no-cheetah``, Cheetah's own fixed-point protocol for the bytes
beside it) on the first ``--samples`` test images (all 450 by default).  Prints one Markdown table per
model plus a summary table (accuracy of each mode, the approximate-minus-exact delta, bytes per sample),
the machine's load average and the command; ``--json F`` writes every report.

Usage: ``nice python benchmarks/accuracy.py [--samples N] [--models digits_cnn,...] [--no-cheetah] [--json F]``.
Times are wall clock and CPU of both parties in one process; they are comparable only on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from aiompc.nn.evaluate import EvalReport, evaluate
from aiompc.nn.zoo import SHIPPED_MODELS, shipped_model


def summary(reports: list[tuple[str, EvalReport]]) -> str:
    """One row per model: float / int / secure exact / secure approx accuracy, delta and bytes."""
    rows = ["| model | samples | float | plaintext int | secure exact | secure approx | approx − exact | "
            "approx top-1 = exact | KiB/sample exact | KiB/sample approx | KiB/sample cheetah |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in reports:
        ex, ap = r["quantized"], r["quantized:approx"]
        same = float((ex.predictions == ap.predictions).mean())
        try:
            ch = f"{r['cheetah'].bytes_per_sample / 1024:.0f}"
        except KeyError:
            ch = "–"
        rows.append(f"| {name} | {r.samples} | {100 * r['plaintext-float'].accuracy:.2f}% | "
                    f"{100 * r['plaintext-int'].accuracy:.2f}% | {100 * ex.accuracy:.2f}% | {100 * ap.accuracy:.2f}% | "
                    f"{100 * (ap.accuracy - ex.accuracy):+.2f} pt | {100 * same:.2f}% | {ex.bytes_per_sample / 1024:.0f} | "
                    f"{ap.bytes_per_sample / 1024:.0f} | {ch} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=None, help="first N test samples (default: all 450)")
    ap.add_argument("--models", default=",".join(SHIPPED_MODELS))
    ap.add_argument("--no-cheetah", action="store_true", help="skip Cheetah's fixed-point protocol")
    ap.add_argument("--json", help="write all reports to this file")
    args = ap.parse_args()
    modes = "plaintext-float,plaintext-int,quantized,quantized:approx" + ("" if args.no_cheetah else ",cheetah")
    reports = []
    for name in args.models.split(","):
        t0 = time.perf_counter()
        r = evaluate(shipped_model(name), "digits", samples=args.samples, modes=modes)
        reports.append((name, r))
        print(r.markdown().split("\n\ntop-1:")[0])
        print(f"({time.perf_counter() - t0:.0f} s)\n", flush=True)
    print(summary(reports))
    print(f"\nload average {os.getloadavg()[0]:.2f} (2 cores); command: {' '.join(sys.argv)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({name: r.to_dict() for name, r in reports}, f, indent=1)


if __name__ == "__main__":
    main()
