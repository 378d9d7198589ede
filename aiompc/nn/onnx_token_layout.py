"""ONNX layout operators on token tensors: Transpose, Reshape, Unsqueeze, Squeeze, Flatten, Gather (one constant
index), Slice (constant, step 1) and Split, as ``transpose`` / ``reshape`` / ``slice`` float nodes (falling back to the
CNN meaning on ``(C, H, W)`` / ``(F,)`` tensors); and :func:`simplify_layout`, which merges the reshapes the batch-1
layout tracking of :mod:`aiompc.nn.onnx_tokens` leaves behind."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from aiompc.nn import onnx_layout
from aiompc.nn.graph import FloatGraph, FloatNode
from aiompc.nn.onnx_tokens import BATCH1_HINT, emit, full_shape, is_token, lift, reshape_full, sample_axis, settle

if TYPE_CHECKING:
    from aiompc.nn.onnx_import import _Importer

__all__ = ["op_transpose", "op_reshape", "op_unsqueeze", "op_squeeze", "op_flatten", "op_gather", "op_slice",
           "op_split", "simplify_layout"]

def op_transpose(imp: _Importer, node: onnx.NodeProto) -> None:
    """A permutation of the axes (the batch axis kept first, or a batch of 1)."""
    a = imp.attrs(node, {"perm": None})
    x = imp.edge(node, node.input[0])
    full = full_shape(imp, x)
    perm = list(a["perm"]) if a["perm"] is not None else list(range(len(full)))[::-1]
    if sorted(perm) != list(range(len(full))):
        raise imp.fail(node, f"perm {perm} does not permute the {len(full)} axes of {full}")
    if imp.batched.get(x, True) and perm[0] == 0:
        ps_perm = tuple(p - 1 for p in perm[1:])
        if ps_perm == tuple(range(len(ps_perm))):
            imp.alias[node.output[0]] = x
        else:
            emit(imp, "transpose", [x], node.output[0], {"perm": ps_perm})
        imp.token.add(imp.alias[node.output[0]])
        return
    x = lift(imp, node, x)
    out = emit(imp, "transpose", [x], f"{node.output[0]}:t", {"perm": tuple(perm)}, batched=False)
    settle(imp, node, out, node.output[0])


def op_reshape(imp: _Importer, node: onnx.NodeProto) -> None:
    """A reshape to a constant (or folded) target: per sample, or any at a batch of 1."""
    a = imp.attrs(node, {"allowzero": 0})
    x = imp.edge(node, node.input[0])
    t = [int(v) for v in imp.const(node, node.input[1], "shape").reshape(-1)]
    full = full_shape(imp, x)
    size = int(np.prod(full))
    if imp.batch != 1 and imp.batched.get(x, True) and t and (t[0] in (1, -1, imp.batch) or
                                                              (t[0] == 0 and not a["allowzero"])):
        t[0] = imp.batch  # a batch axis kept (a literal 1 from tracing at batch 1, or the folded placeholder)
    out = [full[i] if d == 0 and not a["allowzero"] and i < len(full) else d for i, d in enumerate(t)]
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise imp.fail(node, f"target {t} is not a valid shape")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        if known <= 0 or size % known:
            raise imp.fail(node, f"reshape of {full} to {t} is not possible")
        out = [size // known if d == -1 else d for d in out]
    reshape_full(imp, node, x, tuple(out), node.output[0])


def op_unsqueeze(imp: _Importer, node: onnx.NodeProto) -> None:
    """Insert axes of 1 (a reshape)."""
    a = imp.attrs(node, {"axes": None})
    x = imp.edge(node, node.input[0])
    full = list(full_shape(imp, x))
    axes = a["axes"]
    if len(node.input) > 1 and node.input[1]:
        axes = [int(v) for v in imp.const(node, node.input[1], "axes").reshape(-1)]
    rank = len(full) + len(axes)
    for ax in sorted(v % rank for v in axes):
        full.insert(ax, 1)
    reshape_full(imp, node, x, tuple(full), node.output[0])


def op_squeeze(imp: _Importer, node: onnx.NodeProto) -> None:
    """Remove axes of 1 on a token tensor (a reshape), or the CNN ``(N, C, 1, 1)`` flatten."""
    x = imp.alias.get(node.input[0])
    if x is None or not is_token(imp, x):
        onnx_layout.op_squeeze(imp, node)
        return
    a = imp.attrs(node, {"axes": None})
    x = imp.edge(node, node.input[0])
    full = full_shape(imp, x)
    axes = a["axes"]
    if len(node.input) > 1 and node.input[1]:
        axes = [int(v) for v in imp.const(node, node.input[1], "axes").reshape(-1)]
    drop = {v % len(full) for v in axes} if axes is not None else {i for i, d in enumerate(full) if d == 1}
    if any(full[i] != 1 for i in drop):
        raise imp.fail(node, f"squeezing axes {sorted(drop)} of {full}: not all are 1")
    reshape_full(imp, node, x, tuple(d for i, d in enumerate(full) if i not in drop), node.output[0])


def op_flatten(imp: _Importer, node: onnx.NodeProto) -> None:
    """``Flatten(axis)`` of a token tensor (or from axis 2: the ViT patch embedding), else the CNN flatten."""
    from aiompc.nn.onnx_import import _Importer as Imp

    a = imp.attrs(node, {"axis": 1})
    x = imp.edge(node, node.input[0])
    if a["axis"] == 1 and not is_token(imp, x):
        Imp.op_Flatten(imp, node)
        return
    full = full_shape(imp, x)
    ax = a["axis"] % len(full) if a["axis"] else 0
    reshape_full(imp, node, x, (int(np.prod(full[:ax])), int(np.prod(full[ax:]))), node.output[0])


def _slice(imp: _Importer, node: onnx.NodeProto, x: str, axis: int, start: int, stop: int, out: str,
           suffix: str = "") -> str:
    """Float edge ``x`` sliced to ``[start, stop)`` on ONNX axis ``axis``; written to ``out``."""
    x, ax = sample_axis(imp, node, x, axis)
    if start == 0 and stop == imp.shapes[x][ax]:
        return x
    return emit(imp, "slice", [x], out, {"axis": ax, "start": start, "stop": stop},
                 batched=imp.batched.get(x, True), suffix=suffix)


def op_gather(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x[..., i, ...]`` with one constant index: a slice (and a reshape dropping the axis for a scalar)."""
    a = imp.attrs(node, {"axis": 0})
    x = imp.edge(node, node.input[0])
    idx = imp.const(node, node.input[1], "indices")
    if idx.size != 1:
        raise imp.fail(node, f"{idx.size} indices", "only one constant index (x[:, i]) is supported")
    full = full_shape(imp, x)
    axis = a["axis"] % len(full)
    i = int(idx.reshape(-1)[0]) % full[axis]
    if imp.batched.get(x, True) and axis == 0:
        if imp.batch != 1:
            raise imp.fail(node, "gathering along the batch axis", BATCH1_HINT)
    y = _slice(imp, node, x, axis, i, i + 1, f"{node.output[0]}:slice", ":slice")
    out_full = list(full)
    if idx.ndim == 0:
        del out_full[axis]
    else:
        out_full[axis] = 1
    reshape_full(imp, node, y, tuple(out_full), node.output[0])


def op_slice(imp: _Importer, node: onnx.NodeProto) -> None:
    """Constant starts/ends (and axes), steps of 1: one ``slice`` per axis that is cut."""
    imp.attrs(node, {})
    x = imp.edge(node, node.input[0])
    full = full_shape(imp, x)
    vals = [imp.const(node, node.input[i], what).reshape(-1).astype(np.int64) if len(node.input) > i and
            node.input[i] else None for i, what in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps"))]
    starts, ends, axes, steps = vals
    assert starts is not None and ends is not None
    axes = np.arange(len(starts)) if axes is None else axes
    if steps is not None and np.any(steps != 1):
        raise imp.fail(node, f"steps {steps.tolist()}", "only steps of 1 are supported")
    edge = x
    for k, (s, e, ax) in enumerate(zip(starts.tolist(), ends.tolist(), axes.tolist())):
        ax %= len(full)
        n = full[ax]
        s = min(max(s + n if s < 0 else s, 0), n)
        e = min(max(e + n if e < 0 else e, 0), n)
        if e <= s:
            raise imp.fail(node, f"an empty slice [{s}:{e}] of axis {ax}")
        if (s, e) != (0, n):
            edge = _slice(imp, node, edge, ax, s, e, f"{node.output[0]}:{k}", f":{k}")
            full = full_shape(imp, edge)
    if edge == x:
        imp.alias[node.output[0]] = x
    else:
        settle(imp, node, edge, node.output[0])


def op_split(imp: _Importer, node: onnx.NodeProto) -> None:
    """Split along one axis (the heads, or q/k/v): one ``slice`` per output."""
    a = imp.attrs(node, {"axis": 0, "split": None, "num_outputs": None})
    x = imp.edge(node, node.input[0])
    full = full_shape(imp, x)
    axis = a["axis"] % len(full)
    parts = a["split"]
    if len(node.input) > 1 and node.input[1]:
        parts = [int(v) for v in imp.const(node, node.input[1], "split").reshape(-1)]
    if parts is None:
        k = len(node.output)
        step = -(-full[axis] // k)
        parts = [min(step, full[axis] - i * step) for i in range(k)]
    if sum(parts) != full[axis] or len(parts) != len(node.output) or min(parts) < 1:
        raise imp.fail(node, f"split {parts} does not cut axis {axis} of {full} into {len(node.output)} parts")
    start = 0
    for j, (p, out) in enumerate(zip(parts, node.output)):
        edge = _slice(imp, node, x, axis, start, start + p, f"{out}:part" if out else f"{node.output[0]}:{j}",
                      f":{j}")
        start += p
        if out:
            settle(imp, node, edge, out)



def simplify_layout(g: FloatGraph) -> FloatGraph:
    """Turn transposes that move only axes of size 1 into reshapes, merge chains of ``reshape`` nodes (a
    reshape of a reshape read by nothing else is one reshape) and drop reshapes to the shape they read.
    In place; returns ``g``."""
    readers: dict[str, int] = {}
    for n in g.nodes:
        for i in n.inputs:
            readers[i] = readers.get(i, 0) + 1
    by_out = {n.output: n for n in g.nodes}
    rename: dict[str, str] = {}
    keep: list[FloatNode] = []
    for n in g.nodes:
        n.inputs = tuple(rename.get(i, i) for i in n.inputs)
        if n.op == "transpose":  # a permutation moving only axes of size 1 keeps the data order: a reshape
            x = g.shapes[n.inputs[0]]
            moved = [p for p in n.attrs["perm"] if x[p] != 1]
            if moved == sorted(moved):
                n.op, n.attrs = "reshape", {"shape": tuple(x[p] for p in n.attrs["perm"])}
        if n.op == "reshape":
            src = by_out.get(n.inputs[0])
            if src is not None and src.op == "reshape" and readers.get(src.output, 0) == 1 and src in keep:
                keep.remove(src)
                n.inputs = src.inputs
            if tuple(n.attrs["shape"]) == g.shapes[n.inputs[0]] and n.output != g.output:
                rename[n.output] = n.inputs[0]
                continue
        keep.append(n)
    g.nodes = keep
    live = {g.input, *(n.output for n in keep)}
    g.shapes = {k: v for k, v in g.shapes.items() if k in live}
    return g
