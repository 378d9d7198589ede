"""Per-layer cost reports of a secure inference, from the channel statistics (never from a formula).

The layout is shared by ``aiompc run --json`` and ``aiompc bench``::

    {"layers": [{"name", "op", "category", "bytes_c2s", "bytes_s2c", "rounds", "seconds"[, "relus_kept", "relus"]
                 [, "detail"]}, ...],
     "total": {"bytes_c2s", "bytes_s2c", "linear_bytes", "nonlinear_bytes", "offline_bytes", "key_bytes",
               "rounds", "seconds"}}

Bytes are counted on the client's channel (``c2s`` = what it sent, ``s2c`` = what it received), framing
included.  ``linear_bytes`` sums the HE layers, ``nonlinear_bytes`` the OT layers (by each node's protocol kind in
:data:`aiompc.nn.node_protocols.NODE_PROTOCOLS`, plus the argmax) plus the OT engine's offline bytes (``offline_bytes``, which exist only for the
non-linear layers); each row's ``category`` is what its node computes
(:data:`aiompc.nn.node_categories.NODE_CATEGORIES`: ``matmul``, ``softmax``, ``gelu``, ``layernorm``, ``rescale``,
``other``; ``output`` for the argmax), by which a transformer's bytes split into matmul / Softmax / GELU /
LayerNorm; the remaining bytes of the total are the handshake, the HE keys, the plan digests
(:func:`aiompc.nn.stat_budget.agree_on_plans`) and the output reveal.  ``key_bytes`` is the HE key part of them
(labels ``he-keys`` and ``he-galois``: public and Galois keys, sent once per session and key set, so a session
serving many inferences pays them once: ``total − key_bytes`` is the per-inference cost after that setup).  A layer that
evaluates ReLUs also gives ``relus_kept`` / ``relus``: the ReLUs it keeps and its ReLU positions per inference
(:func:`aiompc.nn.relu_budget.relu_counts`; a partial ReLU of a ReLU-reduced network keeps only some).  A layer
whose protocol chooses how to run gives ``detail`` (:func:`aiompc.nn.node_categories.layer_detail`: a shared
matmul's method per cross term, HE or OT, with its digits and blocks).
"""

from __future__ import annotations

from typing import Any

from aiompc.channel import Stats
from aiompc.nn.ir import QGraph
from aiompc.nn.relu_budget import relu_counts
from aiompc.nn.secure import LayerRecord
from aiompc.protocols.linear.engine import GALOIS_LABEL, KEY_LABEL

__all__ = ["layer_report", "format_table"]



def layer_report(graph: QGraph, records: list[LayerRecord], stats: Stats, seconds: float) -> dict[str, Any]:
    """The JSON-able report of one or more inferences (see the module docstring).

    Records of the same layer from several samples are summed into one row, in graph order.
    """
    rows: dict[str, dict[str, Any]] = {}
    linear = nonlinear = 0
    relus = relu_counts(graph) if graph.nodes else {}
    for rec in records:
        st = stats.select(rec.label)
        if rec.name not in rows:
            rows[rec.name] = {"name": rec.name, "op": rec.op, "category": rec.category, "ring": rec.ring,
                              "bytes_c2s": 0, "bytes_s2c": 0, "rounds": 0, "seconds": 0.0, "samples": 0}
            if rec.name in relus:
                rows[rec.name]["relus_kept"], rows[rec.name]["relus"] = relus[rec.name]
            if rec.detail is not None:
                rows[rec.name]["detail"] = rec.detail
        row = rows[rec.name]
        row["bytes_c2s"] += st.bytes_sent
        row["bytes_s2c"] += st.bytes_recv
        row["rounds"] += _rounds(stats, rec.label)
        row["seconds"] += rec.seconds
        row["samples"] += 1
        if rec.kind == "he":
            linear += st.bytes_sent + st.bytes_recv
        elif rec.kind == "ot":
            nonlinear += st.bytes_sent + st.bytes_recv
    layers = list(rows.values())
    for row in layers:
        row["seconds"] = round(row["seconds"], 6)
    offline = stats.select(phase="offline")
    offline_bytes = offline.bytes_sent + offline.bytes_recv
    total = {
        "bytes_c2s": stats.bytes_sent,
        "bytes_s2c": stats.bytes_recv,
        "linear_bytes": linear,
        "nonlinear_bytes": nonlinear + offline_bytes,
        "offline_bytes": offline_bytes,
        "key_bytes": sum(st.bytes_sent + st.bytes_recv for st in (stats.select(KEY_LABEL), stats.select(GALOIS_LABEL))),
        "rounds": stats.rounds,
        "seconds": round(seconds, 6),
    }
    return {"layers": layers, "total": total}


def _rounds(stats: Stats, label: str) -> int:
    """Rounds of one layer: the engine runs an HE layer's samples concurrently on ``label/b{i}``, so they
    count once (the most any sample needed), and so do the two halves of a partial ReLU's requantization
    (``label/relu`` and ``label/id``, :func:`~aiompc.protocols.nonlinear.partial_relu_requantize`); everything
    else is sequential on its labels (the sum)."""
    per_sample = [int(part[1:]) for name in stats.labels
                  if name.startswith(label + "/b") and (part := name[len(label) + 1 :].split("/")[0])[1:].isdigit()]
    if not per_sample:
        whole = stats.select(label)
        halves = [stats.select(f"{label}/{half}") for half in ("relu", "id")]
        if any(h.labels for h in halves) and sum(len(h.labels) for h in halves) == len(whole.labels):
            return max(h.rounds for h in halves)
        return whole.rounds
    return max(stats.select(f"{label}/b{i}").rounds for i in set(per_sample))


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.3f}"


def format_table(report: dict[str, Any]) -> str:
    """A Markdown table of a :func:`layer_report`."""
    rows = [
        "| layer | op | ring | ReLUs kept / total | MiB c→s | MiB s→c | rounds | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    kept = total = 0
    for r in report["layers"]:
        relus = f"{r['relus_kept']} / {r['relus']}" if "relus" in r else ""
        kept, total = kept + r.get("relus_kept", 0), total + r.get("relus", 0)
        rows.append(
            f"| {r['name']} | {r['op']} | {r.get('ring', '')} | {relus} | {_mib(r['bytes_c2s'])} | "
            f"{_mib(r['bytes_s2c'])} | {r['rounds']} | {r['seconds']:.3f} |"
        )
    t = report["total"]
    rows.append(
        f"| **total** | | | {f'{kept} / {total}' if total else ''} | {_mib(t['bytes_c2s'])} | {_mib(t['bytes_s2c'])} "
        f"| {t['rounds']} | {t['seconds']:.3f} |"
    )
    rows.append(
        f"\nlinear (HE) {_mib(t['linear_bytes'])} MiB · non-linear (OT) {_mib(t['nonlinear_bytes'])} MiB "
        f"(of which offline OT {_mib(t['offline_bytes'])} MiB)"
    )
    return "\n".join(rows)
