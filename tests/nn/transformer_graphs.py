"""Hand-built small transformer QGraphs for the IR, interpreter and secure-engine tests (issue 25).

:func:`attention_block`: a one-layer encoder block with two heads — positional embedding, Q/K/V MatMuls, head
reshapes, ``Q·Kᵀ`` (MatMulShared), SoftmaxQ, ``P·V``, the heads merged back, the output MatMul, a residual Add,
LayerNormQ with its gamma/beta (FeatureAffine), an FFN with a GELU table (Lookup), and a classifier on the first
token plus the mean of the tokens (Slice, ReduceSum).  :func:`reference_block` computes the same function directly
in numpy (per head by column slices, no reshapes), from the graph's weights and public constants.

:func:`local_chain`: a graph of the transformer nodes whose protocols were on main first (AddConst, MatMul,
Reshape, Transpose, Slice, ReduceSum, Lookup), for the secure engine.

Test data only: weights from ``numpy.random`` (never used for protocol secrets).  Every edge has one scale (1.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiompc.nn.ir import (Add, AddConst, FeatureAffine, LayerNormQ, Lookup, MatMul, MatMulShared, Node, QGraph,
                          ReduceSum, Requantize, Reshape, Slice, SoftmaxQ, TensorSpec, Transpose)
from aiompc.qmath import LayerNormParams, SoftmaxParams, layernorm_int, lookup_int, softmax_int
from aiompc.quant import requantize

SHIFT = 16


@dataclass
class Builder:
    """Appends nodes, each output's spec the narrowest holding what the node infers (one scale, 1.0)."""

    input: str
    tensors: dict[str, TensorSpec] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)

    @classmethod
    def start(cls, shape: tuple[int, ...], bits: int, signed: bool = True) -> Builder:
        b = cls("x")
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        b.tensors["x"] = TensorSpec("x", shape, bits, signed, lo, hi, (1.0,))
        return b

    def add(self, kind: type[Node], inputs: tuple[str, ...] | str, name: str, **fields: Any) -> str:
        inputs = (inputs,) if isinstance(inputs, str) else inputs
        node = kind(name=name, inputs=inputs, output=name, **fields)
        got = node.infer([self.tensors[i] for i in inputs])
        assert got.lo is not None and got.hi is not None
        self.tensors[name] = TensorSpec.for_range(name, got.shape, got.lo, got.hi, (1.0,))
        self.nodes.append(node)
        return name

    def requant(self, x: str, name: str, bits: int, signed: bool = True) -> str:
        """Requantize ``x`` so that its range just fills ``bits`` bits."""
        spec = self.tensors[x]
        top = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        peak = max(abs(spec.lo), abs(spec.hi), 1)
        m = max(1, (top << SHIFT) // peak)
        lo = -(1 << (bits - 1)) if signed else 0
        return self.add(Requantize, x, name, multiplier=(m,), shift=SHIFT, lo=lo, hi=top)

    def graph(self, output: str) -> QGraph:
        return QGraph(self.input, output, dict(self.tensors), list(self.nodes)).validate()


def _w(rng: np.random.Generator, *shape: int, bits: int = 4) -> np.ndarray:
    top = (1 << (bits - 1)) - 1
    return rng.integers(-top, top + 1, shape).astype(np.int64)


def softmax_params(n: int, scale: float = 0.25) -> SoftmaxParams:
    """A hand-made quantized Softmax over ``n`` values of scale ``scale``: exp of 16 differences at 8 bits, a 6-bit
    reciprocal, 4-bit probabilities."""
    exp = tuple(round(256 * math.exp(-d * scale)) for d in range(16))
    top = n * 256
    sum_shift = max(0, top.bit_length() - 6)
    recip = tuple(round((1 << 15) / ((u + 0.5) * (1 << sum_shift))) for u in range(64))
    return SoftmaxParams(exp_table=exp, sum_shift=sum_shift, recip_table=recip, multiplier=15 << 5, shift=20,
                         out_bits=4)


def layernorm_params(h: int, x_peak: int) -> LayerNormParams:
    """A hand-made quantized LayerNorm over ``h`` values within ``±x_peak``: centred values to 7 bits, a 6-bit
    rsqrt, 6-bit outputs."""
    c_peak = 2 * h * x_peak
    center_shift = max(0, c_peak.bit_length() - 6)
    v_top = h * 64 * 64
    var_shift = max(0, v_top.bit_length() - 6)
    rsqrt = tuple(round(256 / math.sqrt((u + 0.5) * (1 << var_shift) / h)) for u in range(64))
    return LayerNormParams(center_multiplier=1, center_shift=center_shift, center_bits=7, var_shift=var_shift,
                           rsqrt_table=rsqrt, multiplier=8, shift=8, out_bits=6)


def gelu_table(k: int, scale: float) -> tuple[int, ...]:
    """GELU of every signed ``k``-bit value at ``scale``, as signed integers at the same scale (two's complement
    index order, as :func:`aiompc.qmath.lookup_int` reads it)."""
    vals = [(i if i < 1 << (k - 1) else i - (1 << k)) * scale for i in range(1 << k)]
    return tuple(round(v * 0.5 * (1 + math.erf(v / math.sqrt(2))) / scale) for v in vals)


def attention_block(seed: int, *, seq: int = 4, hidden: int = 8, heads: int = 2, ffn: int = 16,
                    classes: int = 3, norm: bool = True) -> QGraph:
    """The one-layer, two-head encoder block of the module docstring on ``(seq, hidden)`` signed 4-bit tokens
    (``norm=False``: without the LayerNormQ, gamma/beta on the residual directly)."""
    rng = np.random.default_rng(seed)
    d = hidden // heads
    b = Builder.start((seq, hidden), 4)
    x = b.add(AddConst, "x", "pos", shape=(seq, hidden), bias=rng.integers(-3, 4, (seq, hidden)))
    proj = {}
    for p in "qkv":
        acc = b.add(MatMul, x, f"{p}_mm", weight_shape=(hidden, hidden), weight=_w(rng, hidden, hidden),
                    bias=rng.integers(-20, 21, hidden), weight_bits=4)
        proj[p] = b.requant(acc, f"{p}_rq", 4)
    qh = b.add(Transpose, b.add(Reshape, proj["q"], "q_split", shape=(seq, heads, d)), "q_heads", perm=(1, 0, 2))
    kt = b.add(Transpose, b.add(Reshape, proj["k"], "k_split", shape=(seq, heads, -1)), "k_heads_t", perm=(1, 2, 0))
    vh = b.add(Transpose, b.add(Reshape, proj["v"], "v_split", shape=(seq, heads, d)), "v_heads", perm=(1, 0, 2))
    scores = b.requant(b.add(MatMulShared, (qh, kt), "qk"), "qk_rq", 6)
    probs = b.add(SoftmaxQ, scores, "softmax", params=softmax_params(seq, scale=1.5))
    ctx = b.requant(b.add(MatMulShared, (probs, vh), "pv"), "pv_rq", 4)
    merged = b.add(Reshape, b.add(Transpose, ctx, "ctx_t", perm=(1, 0, 2)), "ctx_merge", shape=(seq, hidden))
    out = b.add(MatMul, merged, "o_mm", weight_shape=(hidden, hidden), weight=_w(rng, hidden, hidden),
                bias=rng.integers(-20, 21, hidden), weight_bits=4)
    out = b.requant(out, "o_rq", 5)
    res = b.add(Add, (x, out), "residual", multipliers=((2,), (1,)))
    peak = max(-b.tensors[res].lo, b.tensors[res].hi)
    ln = b.add(LayerNormQ, res, "ln", params=layernorm_params(hidden, peak)) if norm else res
    ln = b.add(FeatureAffine, ln, "ln_affine", features=hidden, weight=rng.integers(1, 8, hidden),
               bias=rng.integers(-30, 31, hidden), weight_bits=4)
    ln = b.requant(ln, "ln_rq", 4)
    h1 = b.requant(b.add(MatMul, ln, "ff1", weight_shape=(hidden, ffn), weight=_w(rng, hidden, ffn),
                         bias=rng.integers(-20, 21, ffn), weight_bits=4), "ff1_rq", 6)
    g = b.add(Lookup, h1, "gelu", table=gelu_table(6, 0.125))
    h2 = b.requant(b.add(MatMul, g, "ff2", weight_shape=(ffn, hidden), weight=_w(rng, ffn, hidden),
                         bias=rng.integers(-20, 21, hidden), weight_bits=4), "ff2_rq", 4)
    first = b.add(Slice, h2, "cls_token", axis=0, start=0, stop=1)
    pooled = b.add(ReduceSum, h2, "token_sum", axis=-2, keepdims=True)
    both = b.add(Add, (first, pooled), "cls_plus_sum", multipliers=((seq,), (1,)))
    head = b.add(MatMul, both, "head", weight_shape=(hidden, classes), weight=_w(rng, hidden, classes),
                 bias=rng.integers(-50, 51, classes), weight_bits=4)
    return b.graph(head)


def _node(graph: QGraph, name: str) -> Any:
    return next(n for n in graph.nodes if n.name == name)


def _rq(graph: QGraph, name: str, v: np.ndarray) -> np.ndarray:
    n = _node(graph, name)
    return requantize(v, n.multiplier[0], n.shift, n.lo, n.hi, n.rounding)


def reference_block(graph: QGraph, x: np.ndarray, *, heads: int = 2) -> np.ndarray:
    """:func:`attention_block`'s function computed directly: attention per head by column slices of ``Q``, ``K``,
    ``V`` (no reshape or transpose), the token loop of the classifier written out."""
    n = lambda name: _node(graph, name)  # noqa: E731
    x = x + n("pos").bias
    q, k, v = (_rq(graph, f"{p}_rq", x @ n(f"{p}_mm").weight + n(f"{p}_mm").bias) for p in "qkv")
    batch, seq, hidden = x.shape
    d = hidden // heads
    ctx = np.zeros((batch, seq, hidden), dtype=np.int64)
    for i in range(batch):
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            scores = _rq(graph, "qk_rq", q[i][:, cols] @ k[i][:, cols].T)
            probs = softmax_int(scores, n("softmax").params)
            ctx[i][:, cols] = _rq(graph, "pv_rq", probs @ v[i][:, cols])
    out = _rq(graph, "o_rq", ctx @ n("o_mm").weight + n("o_mm").bias)
    res = 2 * x + out
    normed = layernorm_int(res, n("ln").params) if any(m.name == "ln" for m in graph.nodes) else res
    ln = normed * n("ln_affine").weight + n("ln_affine").bias
    ln = _rq(graph, "ln_rq", ln)
    h1 = _rq(graph, "ff1_rq", ln @ n("ff1").weight + n("ff1").bias)
    h2 = _rq(graph, "ff2_rq", lookup_int(h1, n("gelu").table) @ n("ff2").weight + n("ff2").bias)
    summary = np.stack([seq * h2[i][0] + sum(h2[i][t] for t in range(seq)) for i in range(batch)])
    return (summary @ n("head").weight + n("head").bias)[:, None, :]


def local_chain(seed: int, *, seq: int = 4, hidden: int = 8) -> QGraph:
    """AddConst → MatMul → Requantize → Reshape → Transpose → Slice → ReduceSum → Lookup → Reshape → MatMul."""
    rng = np.random.default_rng(seed)
    b = Builder.start((seq, hidden), 4)
    x = b.add(AddConst, "x", "pos", shape=(hidden,), bias=rng.integers(-3, 4, hidden))
    acc = b.add(MatMul, x, "proj", weight_shape=(hidden, 12), weight=_w(rng, hidden, 12),
                bias=rng.integers(-20, 21, 12), weight_bits=4)
    y = b.requant(acc, "proj_rq", 4)
    y = b.add(Transpose, b.add(Reshape, y, "split", shape=(seq, 3, 4)), "heads", perm=(1, 0, 2))
    y = b.add(Slice, y, "two_heads", axis=0, start=1, stop=3)
    y = b.add(ReduceSum, y, "sum", axis=-1, keepdims=False)  # (2, seq), signed 6 bits
    y = b.add(Lookup, y, "table", table=gelu_table(6, 0.25))
    y = b.add(Reshape, y, "flat", shape=(-1,))
    return b.graph(b.add(MatMul, y, "head", weight_shape=(2 * seq, 3), weight=_w(rng, 2 * seq, 3),
                         bias=rng.integers(-9, 10, 3), weight_bits=4))


def random_tokens(graph: QGraph, batch: int, seed: int) -> np.ndarray:
    """Random integer inputs over the graph input's whole range, the extremes included."""
    spec = graph.input_spec
    rng = np.random.default_rng(seed)
    x = rng.integers(spec.lo, spec.hi + 1, (batch, *spec.shape))
    if batch >= 3:
        x[1], x[2] = spec.lo, spec.hi
    return x.astype(np.int64)
