"""Bytes, rounds and seconds of a secure inference split by what the layers compute (the transformer tables).

A run's layer rows (:func:`aiompc.nn.report.layer_report`: one per IR node, bytes from the channel
statistics) are summed by the category each row carries: the engine records it from the one table of what
every IR node type computes, :data:`aiompc.nn.node_categories.NODE_CATEGORIES` (``matmul``: every HE linear
layer and the two-activation products; ``softmax``; ``gelu``; ``layernorm`` (with LayerNorm's scale and
offset); ``rescale``: requantizations and fixed-point truncations; ``other``: everything else).  The output
row (``reveal`` / ``argmax``, category ``output``) counts as ``other``.  A row without a category (results
written before rows carried one) gets its node type's through :data:`aiompc.nn.ir.NODE_TYPES`.

Two more entries complete the total: ``offline_ot`` (the OT engine's offline bytes, which belong to no layer)
and ``setup`` (handshake, HE keys, plan digests and the request: the total minus everything else).  The
categories' bytes therefore add up to the run's total exactly; ``rounds`` and ``seconds`` of a category are
the sums over its layers (the engine runs layers one after another).  The issue's "other" is ``rescale`` +
``other`` here: rescaling is reported on its own because it is a large, mode-dependent share (Cheetah's
truncation by 12 bits against the quantized mode's requantization).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from aiompc.nn.ir import NODE_TYPES
from aiompc.nn.node_categories import CATEGORIES as NODE_CATEGORY_NAMES
from aiompc.nn.node_categories import NODE_CATEGORIES

__all__ = ["CATEGORIES", "LAYER_CATEGORIES", "TRANSFORMER_OPS", "category_of", "category_rows", "category_split",
           "is_transformer_run"]

LAYER_CATEGORIES: tuple[str, ...] = NODE_CATEGORY_NAMES
"""The categories of layer rows, in table order (:data:`aiompc.nn.node_categories.CATEGORIES`)."""
CATEGORIES = (*LAYER_CATEGORIES, "offline_ot", "setup")
"""Every category of :func:`category_split`, in table order (their bytes sum to the total)."""
TRANSFORMER_OPS = frozenset({"matmul", "matmul_shared", "softmax_q", "softmax_fx", "lookup", "gelu_fx",
                             "layernorm_q", "layernorm_fx"})
"""Ops only a transformer's program has: a run with one of them gets the category table."""


def category_of(row: Mapping[str, Any]) -> str:
    """The category of a layer row: the one it carries, else its op's node type's
    (:data:`~aiompc.nn.node_categories.NODE_CATEGORIES`); anything outside :data:`LAYER_CATEGORIES` (the
    output row, an unknown op) is ``other``."""
    cat = row.get("category")
    if cat is None:
        node_type = NODE_TYPES.get(row["op"])
        cat = NODE_CATEGORIES.get(node_type, "other") if node_type is not None else "other"
    return cat if cat in LAYER_CATEGORIES else "other"


def category_split(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``category -> {"bytes", "rounds", "seconds", "layers"}`` of a run (the ``layers``/``total`` layout of
    :func:`~aiompc.nn.report.layer_report`); ``offline_ot`` and ``setup`` carry bytes only.  Layers that
    send nothing are not counted in ``layers``."""
    out: dict[str, dict[str, Any]] = {c: {"bytes": 0, "rounds": 0, "seconds": 0.0, "layers": 0}
                                      for c in LAYER_CATEGORIES}
    for row in report["layers"]:
        nbytes = int(row["bytes_c2s"]) + int(row["bytes_s2c"])
        cat = out[category_of(row)]
        cat["bytes"] += nbytes
        cat["rounds"] += int(row["rounds"])
        cat["seconds"] += float(row["seconds"])
        cat["layers"] += 1 if nbytes else 0
    for cat in out.values():
        cat["seconds"] = round(cat["seconds"], 6)
    total = report["total"]
    offline = int(total.get("offline_bytes", 0))
    layers = sum(c["bytes"] for c in out.values())
    out["offline_ot"] = {"bytes": offline}
    out["setup"] = {"bytes": int(total["bytes_c2s"]) + int(total["bytes_s2c"]) - layers - offline}
    return out


def is_transformer_run(run: Mapping[str, Any]) -> bool:
    """Whether a run's graph has a transformer operator (:data:`TRANSFORMER_OPS`)."""
    return any(row["op"] in TRANSFORMER_OPS for row in run["layers"])


def category_rows(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """A Markdown table of the runs' bytes (MiB), rounds and seconds by category (recomputed from the layer rows,
    so it also serves older JSON files)."""
    mib = float(1 << 20)
    head = " | ".join(f"{c} MiB" for c in CATEGORIES)
    lines = [f"| model | mode | network | OT | {head} | total MiB | rounds (matmul / softmax / gelu / layernorm / "
             "rescale / other) | seconds (same) | wall s |",
             "|---|---|---|---|" + "---:|" * (len(CATEGORIES) + 1) + "---|---|---:|"]
    for run in runs:
        split = category_split(run)
        t = run["total"]
        cells = " | ".join(f"{split[c]['bytes'] / mib:.2f}" for c in CATEGORIES)
        rounds = " / ".join(str(split[c]["rounds"]) for c in LAYER_CATEGORIES)
        secs = " / ".join(f"{split[c]['seconds']:.2f}" for c in LAYER_CATEGORIES)
        lines.append(f"| {run['model']} | {run['mode']} | {run['network']} | {run['ot']} | {cells} "
                     f"| {(t['bytes_c2s'] + t['bytes_s2c']) / mib:.2f} | {rounds} | {secs} | {t['seconds']:.2f} |")
    return lines
