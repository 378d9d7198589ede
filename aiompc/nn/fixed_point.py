"""Cheetah's fixed-point arithmetic as an integer :class:`QGraph`: the faithful 37-bit baseline.

Cheetah (and CrypTFlow2 before it) does not quantize a network: it evaluates the float model in
fixed point, every value an integer ``round(v · 2^f)`` (``f = 12`` fractional bits) held in the ring
``Z_{2^37}``.  :func:`fixed_point` turns a :class:`FloatGraph` (what :func:`aiompc.nn.quantize.quantize`
consumes) into that integer program, in the existing IR, so the engine's ``cheetah`` mode (37-bit
rings, Cheetah's HE parameters and tiling) runs exactly what Cheetah runs:

=====================  =================================================================================
float layer            fixed-point layers (``k`` = fractional bits of the input: ``f`` or ``2f``)
=====================  =================================================================================
input                  ``round(x · 2^f)``
conv / gemm            input truncated to ``f`` bits if at ``2f``; weights ``round(w · 2^f)`` (batch-norm
                       folded first, :func:`~aiompc.nn.graph.fold_batchnorm`), bias ``round(b · 2^2f)``;
                       the output is the exact accumulator at ``2f`` (HE)
batchnorm (unfolded)   :class:`ChannelAffine` with ``round(a · 2^f)``, ``round(β · 2^2f)``: like a conv
relu                   :class:`Relu` at the input's scale (OT: DReLU on 37 bits + multiplexer)
partial_relu           :class:`PartialRelu` at the input's scale (OT: DReLU + multiplexer on the kept elements
                       only); its output is declared signed ``ring − 1`` bits, see below
clip (ReLU6, ...)      :class:`Clip` with the bounds at the input's scale
maxpool / flatten      as they are, at the input's scale
add                    :class:`Add`; an input at ``f`` next to one at ``2f`` is multiplied by ``2^f``
concat                 as it is if all inputs share a scale, else every input truncated to ``f``
avg / global avgpool   :class:`SumPool`, then :class:`Requantize` by ``M / 2^s ≈ 2^(f-k) / window``
                       (``M`` a ``f``-bit fixed-point constant, floor rounding) to scale ``f``
fakequant (QDQ)        the float model, not its quantization: ignored, except that a QDQ range starting
                       at real 0 (the zero point at the bottom of the type: how onnxruntime's
                       ``quantize_static`` fuses a ReLU away) is that ReLU; saturation is not modelled
transformer layers     Iron's program (:mod:`aiompc.nn.fixed_point_transformer`): MatMul / MatMulShared at
                       ``2f``, SoftmaxFx / GeluFx / LayerNormFx at ``f``, constants in requantizations
=====================  =================================================================================

**Truncation** (``2f → f``) is ``Requantize(multiplier=(1,), shift=f, rounding="floor")`` whose clip
bounds are the whole signed ring, so nothing is ever clipped and the protocol skips the clip
comparisons.  Truncations are *lazy*: a value stays at ``2f`` until a consumer needs ``f`` (an HE layer, a
mixed concat) and is truncated once, then shared by all such consumers.  So ``Conv → ReLU → Conv``
becomes ``Conv → Relu → truncate → Conv`` — the ReLU first, and the truncation's input is non-negative
and narrower than its ring: the engine then passes ``msb_known_zero=True`` and the wrap costs one OT
plus an ``f``-bit B2A; exact mode adds the carry (an ``f``-bit millionaire and a B2A).  A residual
``relu(conv(x) + shortcut)`` adds at ``2f`` and truncates once after the ReLU (a projection shortcut
reads the same truncated block input as the block's first conv); a ``MaxPool`` after a ReLU is crossed
before truncating (fewer values).  The graph output stays at the scale it has (usually ``2f``: the last
layer's accumulator).  Measured on ResNet-18 (silent OT, bits per value, both directions): ReLU 432,
truncation 13 (approximate) or 150 (exact), against Cheetah's published ≈ 480 and ≈ 20.  The engine runs
this graph with Cheetah's own protocols: millionaire digits of ``m = 4`` bits (Cheetah's choice) and the
wrap-based truncation (``requantize(..., narrow=False)``), never the quantized mode's narrow-ring
requantization or its per-width digit sizes.

**Edge widths.**  Fixed point has no proven range: ``x · 2^2f`` overflows 37 bits once ``|x| >= 2^(36-2f)``
(4096 for ``f = 12``) and Cheetah, like every 37-bit fixed-point system, assumes this never happens.
So edge specs *declare* their widths: bounds are propagated as the IR infers them (weights excluded) and
capped to the signed ``ring``-bit range — a layer's accumulator is always declared signed ``ring`` bits,
a ReLU output unsigned ``ring - 1`` bits (which is what makes the next truncation MSB-known), a
truncation of it ``ring - f`` bits plus one below zero (approximate truncation may be one LSB low).
Consequently :meth:`QGraph.validate` (exact bounds) does not hold for this graph; its metadata view
(:meth:`QGraph.without_weights`, what a client receives) validates.  :func:`~aiompc.nn.interpret.run_int`
computes in ``int64`` and equals the secure result bit for bit (``exact=True``) as long as no value
overflows the ring, i.e. as long as the assumption holds.

**Partial ReLU** (SNL / SENet).  ``where(mask, relu(x), x)`` keeps signed values, so its truncation cannot
use the ReLU's known MSB as it is.  Its output is declared signed ``ring − 1`` bits (``|x| < 2^(ring−2)``:
the no-overflow assumption above with one bit of headroom, ``|v| < 2^(ring−2−2f) = 2048`` at ``2f``), and
the engine truncates a signed edge narrower than its ring (fixed-point program only) by adding the public
``2^(b−1)`` first (server): ``x + 2^(b−1) ∈ [0, 2^b)`` has its MSB known, and since ``2^s`` divides
``2^(b−1)`` the offset comes off the result exactly.  So the identity elements pay only the MSB-known
truncation (as every ReLU output does), and a partial ReLU costs its kept ReLUs plus that truncation
(ResNet-18 at 50,000 of its 557,056 ReLUs: 432 bits per kept ReLU, 13.4 bits per truncated value).  An
all-ones mask is a :class:`Relu`, an all-zeros mask the identity.

**Approximate truncation** (``EngineConfig(exact=False)``, Cheetah's own): every truncation (and the
average pool's requantization) may be one LSB low, ``e ∈ {-1, 0}``; every other layer is exact on its
inputs, so the secure output differs from :func:`run_int` by the propagated LSB errors (checked node by
node in ``tests/nn/test_fixed_point.py``; on ResNet-18 the logits move by 0.07% of the largest).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from aiompc.crypto.he import CHEETAH_PLAIN_BITS
from aiompc.errors import UnsupportedModel
from aiompc.nn.graph import FloatGraph, FloatNode, fold_batchnorm
from aiompc.nn.ir import (Add, ChannelAffine, Clip, Concat, Conv, Flatten, Linear, MaxPool, Node, PartialRelu,
                          QGraph, Relu, Requantize, SumPool, TensorSpec, fresh_name)
from aiompc.nn.quantize import fakequant_range, fixed_point_multipliers
from aiompc.nn.quantize_transformer import fold_layernorm_affine
from aiompc.nn.fixed_point_transformer import FIXED_POINT_TOKEN_HANDLERS

__all__ = ["fixed_point", "CHEETAH_FRAC_BITS", "CHEETAH_RING_BITS"]

CHEETAH_FRAC_BITS = 12
"""Cheetah's fixed-point scale: 12 fractional bits."""
CHEETAH_RING_BITS = CHEETAH_PLAIN_BITS
"""Cheetah's ring: ``Z_{2^37}``."""

_MAX_WEIGHT_BITS = 32  # the IR's limit on weight widths


class _FixedPoint:
    """One conversion: walks the batch-norm-folded float graph and emits the integer graph.

    ``env`` maps a float edge to ``(integer edge, fractional bits)``; ``truncated`` caches the
    ``f``-bit version of a ``2f``-bit edge."""

    def __init__(self, graph: FloatGraph, frac_bits: int, ring: int) -> None:
        self.source = graph
        self.fg = fold_layernorm_affine(fold_batchnorm(graph))
        self.f, self.ring = frac_bits, ring
        self.top = (1 << (ring - 1)) - 1  # the signed ring holds [-top - 1, top]
        self.tensors: dict[str, TensorSpec] = {}
        self.nodes: list[Node] = []
        self.env: dict[str, tuple[str, int]] = {}
        self.truncated: dict[str, str] = {}

    # ---- bookkeeping

    def _fresh(self, name: str) -> str:
        return fresh_name(name, self.tensors)

    def _declare(self, name: str, shape: Sequence[int], lo: int, hi: int, frac: int) -> TensorSpec:
        """The spec of an edge with (inferred) bounds ``[lo, hi]`` capped to the signed ring."""
        lo, hi = max(lo, -self.top - 1), min(hi, self.top)
        return TensorSpec.for_range(name, shape, min(lo, hi), max(lo, hi), (2.0 ** -frac,))

    def _emit(self, node: Node, frac: int, *, low_slack: int = 0) -> str:
        """Append a non-HE ``node``; its output's bounds are inferred from the inputs' declared bounds,
        lowered by ``low_slack`` (approximate truncation), then capped (see the module docstring)."""
        got = node.infer([self.tensors[i] for i in node.inputs])
        assert got.lo is not None and got.hi is not None
        self.tensors[node.output] = self._declare(node.output, got.shape, got.lo - low_slack, got.hi, frac)
        self.nodes.append(node)
        return node.output

    def _emit_he(self, node: Node, fedge: str) -> None:
        """Append HE layer ``node`` writing float edge ``fedge``: the accumulator at ``2f``, signed ``ring`` bits."""
        spec = self._declare(node.output, self.fg.shapes[fedge], -self.top - 1, self.top, 2 * self.f)
        self.tensors[node.output] = spec
        self.nodes.append(node)
        self.env[fedge] = (node.output, 2 * self.f)

    def _alias(self, fedge: str, source: str) -> None:
        self.env[fedge] = self.env[source]

    # ---- scales

    def _at_f(self, fedge: str) -> str:
        """The integer edge holding float edge ``fedge`` at ``f`` fractional bits (truncating once if needed)."""
        edge, frac = self.env[fedge]
        if frac == self.f:
            return edge
        if edge not in self.truncated:
            self.truncated[edge] = self._requantize(edge, 1, frac - self.f, f"trunc:{edge}")
        return self.truncated[edge]

    def _requantize(self, edge: str, multiplier: int, shift: int, name: str) -> str:
        """``floor(x · multiplier / 2^shift)`` at ``f`` fractional bits, never clipped (bounds = the ring)."""
        out = self._fresh(f"{edge}>>{shift}" if multiplier == 1 else f"{edge}*{multiplier}>>{shift}")
        node = Requantize(name=self._fresh_node(name), inputs=(edge,), output=out, multiplier=(multiplier,),
                          shift=shift, lo=-self.top - 1, hi=self.top, rounding="floor")
        return self._emit(node, self.f, low_slack=1)

    def _fresh_node(self, name: str) -> str:
        names = {n.name for n in self.nodes}
        out, i = name, 1
        while out in names:
            i += 1
            out = f"{name}#{i}"
        return out

    # ---- layers

    def _weights(self, n: FloatNode, w: np.ndarray) -> tuple[np.ndarray, int]:
        """``round(w · 2^f)`` (int64) and its real signed width."""
        q = np.rint(np.asarray(w, dtype=np.float64) * 2.0 ** self.f).astype(np.int64)
        bits = max(2, int(np.abs(q).max(initial=0)).bit_length() + 1)
        if bits > _MAX_WEIGHT_BITS:
            raise UnsupportedModel(f"{n.op} node {n.name!r}: a weight of magnitude {np.abs(w).max():.3g} needs "
                                   f"{bits} bits at {self.f} fractional bits (at most {_MAX_WEIGHT_BITS})")
        return q, bits

    def _bias(self, b: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(b, dtype=np.float64) * 2.0 ** (2 * self.f)).astype(np.int64)

    def _linear(self, n: FloatNode) -> None:
        x = self._at_f(n.inputs[0])
        wq, bits = self._weights(n, n.params["weight"])
        bias = self._bias(n.params["bias"])
        out = self._fresh(n.output)
        node: Node
        if n.op == "conv":
            a = n.attrs
            node = Conv(name=n.name, inputs=(x,), output=out, weight_shape=wq.shape, stride=a["stride"],
                        pads=a["pads"], groups=a["groups"], weight_bits=bits, weight=wq, bias=bias)
        else:
            node = Linear(name=n.name, inputs=(x,), output=out, weight_shape=wq.shape, weight_bits=bits,
                          weight=wq, bias=bias)
        self._emit_he(node, n.output)

    def _batchnorm(self, n: FloatNode) -> None:
        x = self._at_f(n.inputs[0])
        p = n.params
        a = p["scale"] / np.sqrt(p["var"] + n.attrs["eps"])
        aq, bits = self._weights(n, a)
        node = ChannelAffine(name=n.name, inputs=(x,), output=self._fresh(n.output), channels=a.size,
                             weight_bits=bits, weight=aq, bias=self._bias(p["bias"] - p["mean"] * a))
        self._emit_he(node, n.output)

    def _relu_clip(self, n: FloatNode) -> None:
        edge, frac = self.env[n.inputs[0]]
        spec = self.tensors[edge]
        flo, fhi = (0.0, None) if n.op == "relu" else (n.attrs["lo"], n.attrs["hi"])
        lo = spec.lo if flo is None else max(spec.lo, int(np.rint(flo * 2.0 ** frac)))
        hi = spec.hi if fhi is None else min(spec.hi, int(np.rint(fhi * 2.0 ** frac)))
        if lo <= spec.lo and hi >= spec.hi:  # nothing to cut off
            self._alias(n.output, n.inputs[0])
            return
        out = self._fresh(n.output)
        node: Node = (Relu(name=n.name, inputs=(edge,), output=out) if lo == 0 and hi >= spec.hi else
                      Clip(name=n.name, inputs=(edge,), output=out, lo=lo, hi=max(lo, hi)))
        self.env[n.output] = (self._emit(node, frac), frac)

    def _partial_relu(self, n: FloatNode) -> None:
        mask = n.params["mask"] != 0
        edge, frac = self.env[n.inputs[0]]
        spec = self.tensors[edge]
        if mask.all():
            self._relu_clip(FloatNode("relu", n.name, n.inputs, n.output))
            return
        if not mask.any() or spec.lo >= 0:
            self._alias(n.output, n.inputs[0])
            return
        out = self._fresh(n.output)
        node = PartialRelu.masked(mask=mask, name=n.name, inputs=(edge,), output=out)
        got = node.infer([spec])
        assert got.lo is not None and got.hi is not None
        half = (self.top + 1) >> 1  # signed ring - 1 bits (see the module docstring)
        self.tensors[out] = TensorSpec.for_range(out, got.shape, max(got.lo, -half), min(max(got.hi, 0), half - 1),
                                                 (2.0 ** -frac,))
        self.nodes.append(node)
        self.env[n.output] = (out, frac)

    def _pool(self, n: FloatNode) -> None:
        edge, frac = self.env[n.inputs[0]]
        spec = self.tensors[edge]
        out = self._fresh(n.output)
        a = n.attrs
        if n.op == "maxpool":
            node: Node = MaxPool(name=n.name, inputs=(edge,), output=out, kernel=a["kernel"], stride=a["stride"],
                                 pads=a["pads"])
            self.env[n.output] = (self._emit(node, frac), frac)
            return
        if n.op == "avgpool":
            kernel, stride, pads = a["kernel"], a["stride"], a["pads"]
        else:
            kernel, stride, pads = spec.shape[1:], (1, 1), (0, 0, 0, 0)
        window = int(kernel[0]) * int(kernel[1])
        sums = self._emit(SumPool(name=n.name, inputs=(edge,), output=out, kernel=kernel, stride=stride, pads=pads),
                          frac)
        (m,), shift = fixed_point_multipliers(np.array([2.0 ** (self.f - frac) / window]), self.f)
        if m == 1 and shift == 0:  # a 1x1 window at scale f: the sum is the average
            self.env[n.output] = (sums, self.f)
            return
        self.env[n.output] = (self._requantize(sums, m, shift, f"{n.name}:scale"), self.f)

    def _add(self, n: FloatNode) -> None:
        ins = [self.env[i] for i in n.inputs]
        frac = max(k for _, k in ins)
        node = Add(name=n.name, inputs=tuple(e for e, _ in ins), output=self._fresh(n.output),
                   multipliers=tuple((1 << (frac - k),) for _, k in ins))
        self.env[n.output] = (self._emit(node, frac), frac)

    def _concat(self, n: FloatNode) -> None:
        fracs = {self.env[i][1] for i in n.inputs}
        if len(fracs) == 1:
            edges, frac = tuple(self.env[i][0] for i in n.inputs), fracs.pop()
        else:
            edges, frac = tuple(self._at_f(i) for i in n.inputs), self.f
        node = Concat(name=n.name, inputs=edges, output=self._fresh(n.output))
        self.env[n.output] = (self._emit(node, frac), frac)

    def _flatten(self, n: FloatNode) -> None:
        edge, frac = self.env[n.inputs[0]]
        node = Flatten(name=n.name, inputs=(edge,), output=self._fresh(n.output))
        self.env[n.output] = (self._emit(node, frac), frac)

    def _fakequant(self, n: FloatNode) -> None:
        lo, _ = fakequant_range(n.attrs)
        if lo == 0:  # a ReLU the quantizer fused into the QDQ clamp
            self._relu_clip(dataclasses.replace(n, op="relu", attrs={}))
        else:
            self._alias(n.output, n.inputs[0])

    # ---- driver

    def run(self) -> QGraph:
        g = self.fg
        self.tensors[g.input] = self._declare(g.input, g.input_shape, -self.top - 1, self.top, self.f)
        self.env[g.input] = (g.input, self.f)
        handlers = {"conv": self._linear, "gemm": self._linear, "batchnorm": self._batchnorm,
                    "relu": self._relu_clip, "partial_relu": self._partial_relu, "clip": self._relu_clip,
                    "maxpool": self._pool, "avgpool": self._pool, "global_avgpool": self._pool, "add": self._add,
                    "concat": self._concat, "flatten": self._flatten, "fakequant": self._fakequant,
                    **{op: (lambda n, h=h: h(self, n)) for op, h in FIXED_POINT_TOKEN_HANDLERS.items()}}
        for n in g.nodes:
            if n.op not in handlers:
                raise UnsupportedModel(f"node {n.name!r}: no fixed-point form for float op {n.op!r}")
            handlers[n.op](n)
        out, _ = self.env[g.output]
        graph = QGraph(g.input, out, self.tensors, self.nodes, float_graph=self.source)
        graph.without_weights()  # structure, shapes and widths (not the assumed-away bounds): raises if malformed
        return graph


def fixed_point(fgraph: FloatGraph, *, frac_bits: int = CHEETAH_FRAC_BITS, ring: int = CHEETAH_RING_BITS) -> QGraph:
    """Cheetah's fixed-point program of the float model ``fgraph`` as an integer :class:`QGraph`.

    Values are ``round(v · 2^frac_bits)`` in ``Z_{2^ring}``; see the module docstring for the layers,
    the lazy truncations and why edge widths are declared rather than proven.  The input is
    ``round(x · 2^frac_bits)`` (``QGraph.quantize_input``), the output the last tensor at its scale
    (``QGraph.dequantize_output``).  Weights take their real width (``weight_bits``, at most 32);
    ``frac_bits`` must leave room for a product: ``1 <= frac_bits`` and ``2·frac_bits < ring - 1``.
    Raises :class:`UnsupportedModel` for a layer with no fixed-point form or a weight too large."""
    if not 1 <= frac_bits or 2 * frac_bits >= ring - 1 or not 2 <= ring <= 62:
        raise UnsupportedModel(f"fixed point needs 1 <= frac_bits and 2·frac_bits < ring - 1 <= 61; "
                               f"got frac_bits={frac_bits}, ring={ring}")
    return _FixedPoint(fgraph, frac_bits, ring).run()

