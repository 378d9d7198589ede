"""Where a network's HE linear bytes go, layer by layer, from the byte model (equal to the channel statistics).

For a built-in network in the ``quantized`` mode (or ``cheetah``), every HE layer's plan as the engine derives it
(:func:`aiompc.nn.prepare.linear_calls`: the same planner, shapes, rings and folds as a run), priced by
:func:`aiompc.protocols.linear.costs.plan_cost` under the engine's labels and the TCP framing of ``aiompc bench`` — the model that ``tests/protocols/linear``
checks byte for byte against the channel statistics: a one-sample run's per-layer bytes and ``linear MiB`` equal it.  Per layer: the layout chosen, ``N``,
``log2 q``, the bits kept per result coefficient (``c0``/``c1``), whether outputs are packed, upload and
download, bits per input and per output value, the raw share bits (every input and output share at its ring
width) and the modelled CPU seconds.  The totals end with two floors:

* **at these q** — one input value per upload coefficient at the layer's ``log2 q`` and every output packed
  (``c0 + c1`` bits per output value): what a perfect layout could reach with these parameters;
* **of the encoding** — the same with the smallest ``q`` 40-bit flooding allows whatever the layout and the
  weights: ``log2 q >= l + 1 + 40 + log2(hidden)`` with ``hidden`` at least the re-randomisation noise
  (``z·s_e·sqrt(2N + 1)`` ≈ ``2^11`` at ``N = 4096``, :mod:`aiompc.crypto.he.noise`), i.e. ``l + 52`` bits per
  upload coefficient, and ``l + 1`` bits per kept ``c0`` and ``c1`` coefficient.  A target below it cannot be
  met by layouts alone in this encoding (coefficient encoding, 40-bit flooding, one value per coefficient).

    PYTHONPATH=. python benchmarks/layer_table.py resnet18 [--mode quantized] [--json F] [--markdown F]

Planning only (no HE is run): seconds per network, ResNet-50's plans in under a minute.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MIB = float(1 << 20)
ENCODING_FLOOR_BITS = 52  # 1 (rounding) + 40 (flooding) + 11 (re-randomisation noise at N = 4096), above l


def _shape(layout: Any) -> str:
    s = getattr(layout, "conv_shape", None)
    if s is not None:
        k = "x".join(map(str, s.kernel))
        st = f" s{s.stride[0]}" if s.stride != (1, 1) else ""
        g = f" g{s.groups}" if s.groups != 1 else ""
        return f"{s.in_channels}x{s.height}x{s.width}→{s.out_channels} {k}{st}{g}"
    t = layout.tiling.shape
    return f"fc {t.batch}x{t.in_features}→{t.out_features}"


def layer_rows(network: str, mode: str = "quantized") -> list[dict[str, Any]]:
    """One dict per HE layer of ``network`` in ``mode`` (see the module docstring)."""
    sys.path.insert(0, str(ROOT))
    from aiompc.nn.bench import engine_config, load_bench_model
    from aiompc.nn.prepare import linear_calls
    from aiompc.protocols.linear.costs import plan_cost
    from aiompc.protocols.linear.key_sets import key_groups, session_key_bytes
    from aiompc.transports.tcp import FRAME_OVERHEAD

    def overhead(size: int, direction: str) -> int:  # the bench's loopback TCP: an 8-byte length prefix
        return FRAME_OVERHEAD

    model = load_bench_model(network)
    calls = linear_calls(model.graph(mode), engine_config(mode))
    keys = session_key_bytes((c.plan for c in calls), overhead)
    rows = []
    for call in calls:
        p, lay = call.plan, call.plan.layout
        # the engine's label (aiompc.nn.service: batch "b0"; node_runners: a convolution runs per sample, ".../b0")
        label = f"b0/{call.node}" + ("/b0" if getattr(lay, "conv_shape", None) is not None else "")
        cost = plan_cost(p, label, overhead)
        n_in, n_out = int(np.prod(lay.in_shape)), int(np.prod(lay.out_shape))
        raw = (n_in * p.l + n_out * p.out_bits) / 8
        rows.append({
            "layer": call.node, "shape": _shape(lay), "l": p.l, "out_bits": p.out_bits,
            "layout": type(lay).__name__, "tiling": lay.tiling.describe(), "n": p.he.n,
            "log2_q": round(p.he.log2_q, 2), "bits0": p.output.bits0, "bits1": p.output.bits1,
            "packed": p.output_packing, "upload": cost.upload, "download": cost.download,
            "in_values": n_in, "out_values": n_out, "raw_bytes": raw,
            "cpu_model": round(cost.server_seconds + cost.client_seconds, 4),
            "floor_at_q": (n_in * p.he.log2_q + n_out * (p.output.bits0 + p.output.bits1)) / 8,
            "floor_encoding": (n_in * (p.l + ENCODING_FLOOR_BITS) + n_out * 2 * (p.out_bits + 1)) / 8,
        })
    # the one-time keys of the whole network (a public key per key set, a Galois key per (key set, element)),
    # on the first row so that the rows stay one per layer
    if rows:
        rows[0]["session_keys"] = keys
        rows[0]["key_sets"] = len(key_groups(c.plan for c in calls))
    return rows


def totals(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("upload", "download", "raw_bytes", "floor_at_q", "floor_encoding", "cpu_model")
    out = {k: float(sum(r[k] for r in rows)) for k in keys}
    out["total"] = out["upload"] + out["download"]
    out["keys"] = float(sum(r.get("session_keys", 0) for r in rows))
    out["key_sets"] = float(sum(r.get("key_sets", 0) for r in rows))
    return out


def markdown(network: str, mode: str, rows: list[dict[str, Any]]) -> str:
    head = ("| layer | shape | l | layout | N | log2 q | c0/c1 bits | packed | up kB | down kB | bits per input | "
            "bits per output | raw share kB | ÷ raw | model CPU s |\n|---|---|---:|---|---:|---:|---:|---|---:|---:|"
            "---:|---:|---:|---:|---:|")
    lines = [f"**{network}, {mode}: HE layers from the byte model (= channel statistics)**", "", head]
    for r in rows:
        tot = r["upload"] + r["download"]
        lines.append(
            f"| {r['layer']} | {r['shape']} | {r['l']} | {r['layout']} ({r['tiling'].split(':')[0]}) | {r['n']} "
            f"| {r['log2_q']:.1f} | {r['bits0']}/{r['bits1']} | {'yes' if r['packed'] else 'no'} "
            f"| {r['upload'] / 1e3:.1f} | {r['download'] / 1e3:.1f} | {8 * r['upload'] / r['in_values']:.0f} "
            f"| {8 * r['download'] / r['out_values']:.0f} | {r['raw_bytes'] / 1e3:.1f} | {tot / r['raw_bytes']:.1f} "
            f"| {r['cpu_model']:.2f} |")
    t = totals(rows)
    lines += ["", f"Totals: upload {t['upload'] / MIB:.2f} MiB, download {t['download'] / MIB:.2f} MiB, "
              f"**linear {t['total'] / MIB:.2f} MiB**; raw share bits {t['raw_bytes'] / MIB:.2f} MiB "
              f"({t['total'] / t['raw_bytes']:.1f}×); modelled CPU {t['cpu_model']:.1f} s (both parties).",
              f"One-time HE keys (once per session: {t['key_sets']:.0f} key sets, public and Galois keys): "
              f"{t['keys'] / MIB:.2f} MiB; **linear + keys, one inference: {(t['total'] + t['keys']) / MIB:.2f} MiB**; "
              f"each further inference of the session: {t['total'] / MIB:.2f} MiB.",
              f"Floors: one value per upload coefficient and every output packed at these q: "
              f"{t['floor_at_q'] / MIB:.2f} MiB; of the encoding (log2 q = l + {ENCODING_FLOOR_BITS}, "
              f"c0 = c1 = l + 1 bits): {t['floor_encoding'] / MIB:.2f} MiB."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("network")
    p.add_argument("--mode", default="quantized", choices=("quantized", "cheetah", "cheetah-int"))
    p.add_argument("--json", help="write the rows and totals as JSON to this file")
    p.add_argument("--markdown", help="write the table to this file")
    args = p.parse_args(argv)
    rows = layer_rows(args.network, args.mode)
    text = markdown(args.network, args.mode, rows)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"network": args.network, "mode": args.mode, "rows": rows,
                                               "totals": totals(rows)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
