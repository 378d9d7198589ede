"""Bytes, rounds and seconds of a secure inference split by what the layers compute (the transformer tables).

A run's layer rows (:func:`aiompc.nn.report.layer_report`: one per IR node, bytes from the channel
statistics) are summed by category through one explicit table, :data:`OP_CATEGORIES` (IR op name ->
category):

============  =====================================================================================
category      IR ops
============  =====================================================================================
matmul        ``matmul`` (constant weight, HE), ``matmul_shared`` (two activations), ``linear``,
              ``conv`` (a ViT's patch embedding), ``affine`` (HE per-channel affine)
softmax       ``softmax_q`` (quantized), ``softmax_fx`` (Iron's fixed point)
gelu          ``lookup`` (the quantized program's only table look-up is GELU), ``gelu_fx``
layernorm     ``layernorm_q``, ``layernorm_fx``, ``feature_affine`` (LayerNorm's scale and offset)
rescale       ``requantize``: the quantized program's requantizations and the fixed-point truncations
other         every other row that communicates: ReLU, max-pool, clip, ..., and the output (``reveal`` /
              ``argmax``); local ops send nothing
============  =====================================================================================

Two more entries complete the total: ``offline_ot`` (the OT engine's offline bytes, which belong to no layer)
and ``setup`` (handshake, HE keys, plan digests and the request: the total minus everything else).  The categories' bytes therefore add up to the run's total exactly; ``rounds`` and
``seconds`` of a category are the sums over its layers (the engine runs layers one after another).
The issue's "other" is ``rescale`` + ``other`` here: rescaling is reported on its own because it is a large,
mode-dependent share (Cheetah's truncation by 12 bits against the quantized mode's requantization).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["CATEGORIES", "LAYER_CATEGORIES", "OP_CATEGORIES", "TRANSFORMER_OPS", "category_of", "category_rows", "category_split",
           "is_transformer_run"]

OP_CATEGORIES: Mapping[str, str] = {
    "matmul": "matmul", "matmul_shared": "matmul", "linear": "matmul", "conv": "matmul", "affine": "matmul",
    "softmax_q": "softmax", "softmax_fx": "softmax",
    "lookup": "gelu", "gelu_fx": "gelu",
    "layernorm_q": "layernorm", "layernorm_fx": "layernorm", "feature_affine": "layernorm",
    "requantize": "rescale",
}
"""IR op name -> category (ops not listed are ``other``)."""

LAYER_CATEGORIES = ("matmul", "softmax", "gelu", "layernorm", "rescale", "other")
"""The categories of layer rows, in table order."""
CATEGORIES = (*LAYER_CATEGORIES, "offline_ot", "setup")
"""Every category of :func:`category_split`, in table order (their bytes sum to the total)."""
TRANSFORMER_OPS = frozenset({"matmul", "matmul_shared", "softmax_q", "softmax_fx", "lookup", "gelu_fx",
                             "layernorm_q", "layernorm_fx"})
"""Ops only a transformer's program has: a run with one of them gets the category table."""


def category_of(op: str) -> str:
    """The category of IR op ``op`` (:data:`OP_CATEGORIES`, ``other`` if unlisted)."""
    return OP_CATEGORIES.get(op, "other")


def category_split(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``category -> {"bytes", "rounds", "seconds", "layers"}`` of a run (the ``layers``/``total`` layout of
    :func:`~aiompc.nn.report.layer_report`); ``offline_ot`` and ``setup`` carry bytes only.  Layers that
    send nothing are not counted in ``layers``."""
    out: dict[str, dict[str, Any]] = {c: {"bytes": 0, "rounds": 0, "seconds": 0.0, "layers": 0}
                                      for c in LAYER_CATEGORIES}
    for row in report["layers"]:
        nbytes = int(row["bytes_c2s"]) + int(row["bytes_s2c"])
        cat = out[category_of(row["op"])]
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
