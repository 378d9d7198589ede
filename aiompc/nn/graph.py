"""The float model graph: what :mod:`aiompc.nn.onnx_import` produces and :mod:`aiompc.nn.quantize` consumes.

A :class:`FloatGraph` is a topologically ordered list of :class:`FloatNode` over named edges with
per-sample shapes (no batch axis).  Node kinds and their attributes (``attrs``) and float64 parameters
(``params``):

================ ============================================== ===================================
op               attrs                                          params
================ ============================================== ===================================
conv             stride (2), pads (t, l, b, r), groups          weight (O, C/g, kh, kw), bias (O,)
gemm             --                                             weight (O, I), bias (O,)
batchnorm        eps                                            scale, bias, mean, var (C,)
relu             --                                             --
partial_relu     -- (``where(mask, relu(x), x)``)                mask (per-sample shape, 1 or the axis; 0/1)
clip             lo, hi (float or None)                         --
maxpool          kernel, stride, pads                           --
avgpool          kernel, stride, pads (padding counts)          --
global_avgpool   --                                             --
add, concat      -- (concat joins the channel axis)             --
flatten          --                                             --
fakequant        scale, bits, signed, zero_point (QDQ)           --
matmul           -- (``x @ W + b`` on the last axis)              weight (K, O), bias (O,)
matmul2          -- (``a @ b``, two activations, same leading axes) --
transpose        perm (per-sample axes)                         --
reshape          shape (per-sample, fully resolved)             --
slice            axis (per-sample), start, stop (step 1)        --
softmax          axis (always -1: the last axis)                --
layernorm        eps (over the last axis)                       scale, bias (H,)
gelu             approximate ("none": erf, "tanh")              --
mul_const        value (a float scalar)                         --
add_const        --                                             value (per-sample rank, each axis 1 or full)
reduce_mean      axis (per-sample), keepdims                    --
================ ============================================== ===================================

The transformer ops (``matmul`` .. ``reduce_mean``, :data:`TOKEN_OPS`) work on token tensors ``(S, H)`` and
head tensors ``(heads, S, d)`` (per sample; any rank for the layout ops).

A conv/gemm imported from a QDQ model also carries ``params["weight_q"]`` (the integer weights),
``attrs["weight_scale"]`` (per output channel, or one) and ``attrs["weight_bits"]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiompc.errors import UnsupportedModel
from aiompc.nn.tensor_ops import out_size

__all__ = ["FloatNode", "FloatGraph", "FLOAT_OPS", "TOKEN_OPS", "infer_shape", "fold_batchnorm", "LINEAR_OPS"]

TOKEN_OPS = frozenset({"matmul", "matmul2", "transpose", "reshape", "slice", "softmax", "layernorm", "gelu",
                       "mul_const", "add_const", "reduce_mean"})
"""The transformer ops (token and head tensors)."""
FLOAT_OPS = frozenset(
    {"conv", "gemm", "batchnorm", "relu", "partial_relu", "clip", "maxpool", "avgpool", "global_avgpool", "add", "concat",
     "flatten", "fakequant"}
) | TOKEN_OPS
LINEAR_OPS = frozenset({"conv", "gemm"})


@dataclass
class FloatNode:
    """One float layer: ``op`` (see the module table), reading ``inputs``, writing ``output``."""

    op: str
    name: str
    inputs: tuple[str, ...]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class FloatGraph:
    """A float model: input/output edge names, per-sample ``shapes`` of every edge, nodes in order."""

    input: str
    output: str
    shapes: dict[str, tuple[int, ...]]
    nodes: list[FloatNode]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.shapes[self.input]

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shapes[self.output]

    def consumers(self, edge: str) -> list[FloatNode]:
        """Nodes reading ``edge``, in order."""
        return [n for n in self.nodes if edge in n.inputs]

    def producer(self, edge: str) -> FloatNode | None:
        """The node writing ``edge`` (None for the graph input)."""
        return next((n for n in self.nodes if n.output == edge), None)

    def copy(self) -> FloatGraph:
        """A copy whose nodes, attrs and params can be changed without touching ``self``."""
        nodes = [dataclasses.replace(n, attrs=dict(n.attrs), params={k: v.copy() for k, v in n.params.items()})
                 for n in self.nodes]
        return FloatGraph(self.input, self.output, dict(self.shapes), nodes)

    @property
    def is_qdq(self) -> bool:
        """True if the model carries quantization annotations (it came from a QDQ ONNX model)."""
        return any(n.op == "fakequant" or "weight_q" in n.params for n in self.nodes)


def _window(node: FloatNode, shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
            pads: tuple[int, int, int, int], channels: int) -> tuple[int, ...]:
    if len(shape) != 3:
        raise UnsupportedModel(f"node {node.name!r} ({node.op}) needs an (N, C, H, W) input, got per-sample {shape}")
    ho = out_size(shape[1], kernel[0], stride[0], pads[0], pads[2])
    wo = out_size(shape[2], kernel[1], stride[1], pads[1], pads[3])
    if ho < 1 or wo < 1:
        raise UnsupportedModel(f"node {node.name!r} ({node.op}): window {kernel} exceeds the padded input {shape}")
    return channels, ho, wo


def infer_shape(node: FloatNode, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """Per-sample output shape of ``node`` given its inputs' shapes; raises :class:`UnsupportedModel`
    on a mismatch (wrong channel count, rank, ...)."""
    op, a = node.op, node.attrs
    x = shapes[0]
    if op == "conv":
        o, cg, kh, kw = node.params["weight"].shape
        if len(x) != 3 or x[0] != cg * a["groups"]:
            raise UnsupportedModel(f"Conv node {node.name!r}: input {x} does not match weights {(o, cg, kh, kw)}")
        return _window(node, x, (kh, kw), a["stride"], a["pads"], o)
    if op == "gemm":
        o, i = node.params["weight"].shape
        if x != (i,):
            raise UnsupportedModel(f"Gemm node {node.name!r}: input {x} does not match {i} features")
        return (o,)
    if op in ("maxpool", "avgpool"):
        return _window(node, x, a["kernel"], a["stride"], a["pads"], x[0])
    if op == "global_avgpool":
        if len(x) != 3:
            raise UnsupportedModel(f"GlobalAveragePool node {node.name!r} needs an (N, C, H, W) input")
        return (x[0], 1, 1)
    if op == "add":
        if any(s != x for s in shapes):
            raise UnsupportedModel(f"Add node {node.name!r}: shapes {shapes} differ (broadcasting is not supported)")
        return x
    if op == "concat":
        if any(len(s) != len(x) or s[1:] != x[1:] for s in shapes):
            raise UnsupportedModel(f"Concat node {node.name!r}: shapes {shapes} differ beyond the channel axis")
        return (sum(s[0] for s in shapes), *x[1:])
    if op == "flatten":
        return (int(np.prod(x)),)
    if op == "batchnorm":
        if node.params["scale"].shape != (x[0],):
            raise UnsupportedModel(f"BatchNormalization node {node.name!r}: {x[0]} channels, parameters for "
                                   f"{node.params['scale'].shape}")
        return x
    if op == "partial_relu":
        m = node.params["mask"].shape
        if len(m) != len(x) or any(a not in (1, b) for a, b in zip(m, x)):
            raise UnsupportedModel(f"node {node.name!r}: ReLU mask of shape {m} does not broadcast to the "
                                   f"per-sample shape {x}")
        return x
    if op in ("relu", "clip", "fakequant"):
        return x
    if op in TOKEN_OPS:
        return _token_shape(node, shapes)
    raise UnsupportedModel(f"node {node.name!r}: unknown float op {op!r}")


def _token_shape(node: FloatNode, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """:func:`infer_shape` of the transformer ops."""
    op, a, x = node.op, node.attrs, shapes[0]
    bad = lambda msg: UnsupportedModel(f"{op} node {node.name!r}: {msg}")  # noqa: E731
    if op == "matmul":
        k, o = node.params["weight"].shape
        if not x or x[-1] != k or node.params["bias"].shape != (o,):
            raise bad(f"input {x} does not match the weight ({k}, {o}) / bias {node.params['bias'].shape}")
        return (*x[:-1], o)
    if op == "matmul2":
        b = shapes[1]
        if len(x) < 2 or len(b) != len(x) or x[:-2] != b[:-2] or x[-1] != b[-2]:
            raise bad(f"operands {x} and {b} do not multiply (same leading axes, (S, K) @ (K, T))")
        return (*x[:-1], b[-1])
    if op == "transpose":
        perm = tuple(a["perm"])
        if sorted(perm) != list(range(len(x))):
            raise bad(f"perm {perm} is not a permutation of the {len(x)} per-sample axes of {x}")
        return tuple(x[p] for p in perm)
    if op == "reshape":
        shape = tuple(int(d) for d in a["shape"])
        if min(shape, default=1) < 1 or int(np.prod(shape)) != int(np.prod(x)):
            raise bad(f"cannot reshape {x} to {shape}")
        return shape
    if op == "slice":
        ax, start, stop = a["axis"], a["start"], a["stop"]
        if not 0 <= ax < len(x) or not 0 <= start < stop <= x[ax]:
            raise bad(f"slice [{start}:{stop}] of axis {ax} does not fit {x}")
        return (*x[:ax], stop - start, *x[ax + 1:])
    if op in ("softmax", "gelu", "mul_const"):
        if op == "softmax" and a.get("axis", -1) not in (-1, len(x) - 1):
            raise bad("only the last axis is supported")
        if op == "gelu" and a.get("approximate", "none") not in ("none", "tanh"):
            raise bad(f"approximate={a['approximate']!r} (use 'none' or 'tanh')")
        return x
    if op == "layernorm":
        if not x or any(node.params[k].shape != (x[-1],) for k in ("scale", "bias")):
            raise bad(f"scale/bias do not match the last axis of {x}")
        return x
    if op == "add_const":
        v = node.params["value"].shape
        if len(v) != len(x) or any(d not in (1, e) for d, e in zip(v, x)):
            raise bad(f"constant of shape {v} does not broadcast to the per-sample shape {x}")
        return x
    if op == "reduce_mean":
        ax = a["axis"]
        if not 0 <= ax < len(x):
            raise bad(f"axis {ax} outside the per-sample shape {x}")
        return (*x[:ax], 1, *x[ax + 1:]) if a.get("keepdims", True) else (*x[:ax], *x[ax + 1:])
    raise bad("unknown float op")


def fold_batchnorm(graph: FloatGraph) -> FloatGraph:
    """Fold every batch-norm that directly follows a conv/gemm (whose output nothing else reads) into
    that layer: ``w' = a*w``, ``b' = a*(b - mean) + beta`` with ``a = gamma / sqrt(var + eps)`` per
    output channel.  Integer QDQ weights of a folded layer are dropped (they no longer apply); its
    ``weight_bits`` is kept.  Returns a new graph; ``graph`` is unchanged."""
    g = graph.copy()
    by_output = {n.output: n for n in g.nodes}
    removed: set[int] = set()
    for n in g.nodes:
        if n.op != "batchnorm":
            continue
        prev = by_output.get(n.inputs[0])
        if prev is None or prev.op not in LINEAR_OPS or len(g.consumers(prev.output)) != 1 or prev.output == g.output:
            continue
        p = n.params
        a = p["scale"] / np.sqrt(p["var"] + n.attrs["eps"])
        w = prev.params["weight"]
        prev.params["weight"] = w * a.reshape((-1,) + (1,) * (w.ndim - 1))
        prev.params["bias"] = a * (prev.params["bias"] - p["mean"]) + p["bias"]
        prev.params.pop("weight_q", None)
        prev.attrs.pop("weight_scale", None)
        del g.shapes[prev.output]
        prev.output = n.output
        by_output[n.output] = prev
        removed.add(id(n))
    g.nodes = [n for n in g.nodes if id(n) not in removed]
    return g
