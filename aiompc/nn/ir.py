"""The integer model IR: a topologically ordered list of integer layers joined by named, typed edges.

This is what secure inference evaluates and what :func:`aiompc.nn.interpret.run_int` defines bit for
bit.  Every edge (:class:`TensorSpec`) states its per-sample shape (no batch axis), its width and
signedness (the ring ``Z_{2^l}``, ``l >= bits``, its shares need), proven value bounds ``[lo, hi]``
(the whole range of the width in metadata) and its real-valued scale (``real = scale[c] * value``, ``c`` indexing the first axis; one entry means
one scale for the whole tensor).  All values are integers; weights and biases are ``int64``.

The layers (which protocol evaluates each is the engine's business: :data:`aiompc.nn.node_protocols.NODE_PROTOCOLS`):
the CNN layers (Conv, Linear, ChannelAffine, Requantize, Relu, PartialRelu, PartialReluRequantize, Clip, MaxPool,
SumPool, Add, Concat, Flatten) live in :mod:`aiompc.nn.ir_cnn`, the transformer layers (token MatMul, MatMulShared,
Transpose, Reshape, Slice, ReduceSum, AddConst, FeatureAffine, Lookup, SoftmaxQ, LayerNormQ and Iron's SoftmaxFx /
GeluFx / LayerNormFx) in :mod:`aiompc.nn.ir_transformer` (each module's table states their integer semantics); both
are re-exported here.  Edges and the node base classes live in :mod:`aiompc.nn.ir_base`.  This module holds the
graph (:class:`QGraph`: access, validation, the client's input/output conversions, serialization) and
:data:`NODE_TYPES`, which lists every kind.

Weights and biases are the server's secret; everything else is model *metadata*.
:meth:`QGraph.to_dict` with ``include_weights=False`` gives that metadata as a msgpack-able dict
(weights replaced by their shapes; value bounds and intermediate scales left out) for a session
handshake.  Public requantization multipliers do reveal the ratio of the scales they encode (with
per-channel weight scales: each output channel's weight range, up to rounding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from aiompc.errors import InputError, ProtocolError, UnsupportedModel
from aiompc.nn.ir_base import Node, TensorSpec, WeightedNode, fresh_name
from aiompc.nn.ir_cnn import (CNN_NODES, Add, ChannelAffine, Clip, Concat, Conv, Flatten, Linear, MaxPool, PartialRelu,
                              PartialReluRequantize, Relu, ReluMasked, Requantize, SumPool)
from aiompc.nn.ir_transformer import (TRANSFORMER_NODES, AddConst, FeatureAffine, GeluFx, LayerNormFx, LayerNormQ,
                                      Lookup, MatMul, MatMulShared, ReduceSum, Reshape, Slice, SoftmaxFx, SoftmaxQ,
                                      Transpose)

if TYPE_CHECKING:
    from aiompc.nn.graph import FloatGraph

__all__ = [
    "fresh_name",
    "TensorSpec",
    "Node",
    "WeightedNode",
    "Conv",
    "Linear",
    "ChannelAffine",
    "Requantize",
    "Relu",
    "ReluMasked",
    "PartialRelu",
    "PartialReluRequantize",
    "Clip",
    "MaxPool",
    "SumPool",
    "Add",
    "Concat",
    "Flatten",
    "MatMul",
    "MatMulShared",
    "Transpose",
    "Reshape",
    "Slice",
    "ReduceSum",
    "AddConst",
    "FeatureAffine",
    "Lookup",
    "SoftmaxQ",
    "LayerNormQ",
    "SoftmaxFx",
    "GeluFx",
    "LayerNormFx",
    "NODE_TYPES",
    "node_from_dict",
    "QGraph",
]

FORMAT = "aiompc.qgraph/1"
"""The format tag of :meth:`QGraph.to_dict`."""

NODE_TYPES: dict[str, type[Node]] = {k.op: k for k in (*CNN_NODES, *TRANSFORMER_NODES)}
"""Every IR node kind by its ``op`` (what :func:`node_from_dict` builds)."""


def node_from_dict(d: dict[str, Any]) -> Node:
    """The node of class ``NODE_TYPES[d["op"]]`` from :meth:`~aiompc.nn.ir_base.Node.to_dict` output;
    :class:`ProtocolError` for an unknown kind or a malformed dict."""
    op = d.get("op")
    if op not in NODE_TYPES:
        raise ProtocolError(f"unknown IR node kind {op!r}")
    return NODE_TYPES[op].from_dict(d)


# --------------------------------------------------------------------------- graph


@dataclass(eq=False)
class QGraph:
    """A quantized model: input and output edge names, every edge's spec, and the nodes in
    topological order (each node's inputs are the graph input or earlier nodes' outputs).

    ``float_graph`` optionally keeps the float model it was quantized from (never serialized).
    """

    input: str
    output: str
    tensors: dict[str, TensorSpec]
    nodes: list[Node]
    float_graph: FloatGraph | None = field(default=None, repr=False)

    # ---- access

    @property
    def input_spec(self) -> TensorSpec:
        return self.tensors[self.input]

    @property
    def output_spec(self) -> TensorSpec:
        return self.tensors[self.output]

    @property
    def has_weights(self) -> bool:
        """False for metadata received in a handshake."""
        return all(n.loaded for n in self.nodes if isinstance(n, WeightedNode))

    def producer(self, edge: str) -> Node | None:
        """The node writing ``edge`` (None for the graph input)."""
        return next((n for n in self.nodes if n.output == edge), None)

    def consumers(self, edge: str) -> list[Node]:
        """Nodes reading ``edge``, in order."""
        return [n for n in self.nodes if edge in n.inputs]

    # ---- checks

    def validate(self, *, bounds: bool = True) -> QGraph:
        """Check the graph is well formed: single assignment, topological order, every node's output spec
        agrees with what its inputs imply (shape always; exact bounds when the weights are present and
        ``bounds``: a metadata view carries only its widths, even for a graph without weights), and declared
        widths hold the bounds.  Returns ``self``; raises :class:`UnsupportedModel` otherwise."""
        exact = bounds and self.has_weights
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise UnsupportedModel("node names must be unique (they label the layers' channels)")
        if self.input not in self.tensors:
            raise UnsupportedModel(f"graph input {self.input!r} has no spec")
        defined = {self.input}
        for n in self.nodes:
            for i in n.inputs:
                if i not in defined:
                    raise UnsupportedModel(f"node {n.name!r} reads {i!r} before it is computed")
            if n.output in defined:
                raise UnsupportedModel(f"edge {n.output!r} is written twice")
            if n.output not in self.tensors:
                raise UnsupportedModel(f"edge {n.output!r} has no spec")
            got = n.infer([self.tensors[i] for i in n.inputs])
            spec = self.tensors[n.output]
            if got.shape != spec.shape:
                raise UnsupportedModel(f"node {n.name!r}: output shape {spec.shape} but inputs imply {got.shape}")
            if exact and (got.lo, got.hi) != (spec.lo, spec.hi):
                raise UnsupportedModel(
                    f"node {n.name!r}: output bounds [{spec.lo}, {spec.hi}] but inputs imply [{got.lo}, {got.hi}]"
                )
            defined.add(n.output)
        if self.output not in defined:
            raise UnsupportedModel(f"graph output {self.output!r} is never computed")
        return self

    # ---- client-side conversions

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float input ``(N, *shape)`` or ``(*shape)`` to the integer input ``clip(round(x/s), lo, hi)``
        over the input's bounds (its declared width, or a QDQ input's range less its zero point; kept in
        the metadata) (round half to even, as ONNX ``QuantizeLinear``); int64."""
        spec = self.input_spec
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-len(spec.shape):] != spec.shape or x.ndim not in (len(spec.shape), len(spec.shape) + 1):
            raise InputError(f"input has shape {x.shape}; the model expects (N, {', '.join(map(str, spec.shape))})")
        if not np.all(np.isfinite(x)):
            raise InputError("input contains NaN or infinity")
        if not spec.per_tensor:
            raise InputError("the model input needs one scale")
        return np.clip(np.rint(x / spec.scale[0]), spec.lo, spec.hi).astype(np.int64)  # type: ignore[index]

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """Integer outputs ``(N, *shape)`` to floats: ``y * scale`` along the channel axis."""
        spec = self.output_spec
        y = np.asarray(y)
        s = spec.channel_scales().reshape((-1,) + (1,) * (len(spec.shape) - 1))
        return y.astype(np.float64) * s

    # ---- serialization

    def to_dict(self, include_weights: bool = False) -> dict[str, Any]:
        """A msgpack-able dict (encode with :func:`aiompc.wire.encode`).

        ``include_weights=False`` gives the metadata a server may send a client: layer kinds, shapes,
        widths and public requantization/rescaling constants, but no weights or biases (only their
        shapes), no value bounds but the input's (the others are functions of the weights; widths
        remain; the input's are public, as what a client clips its input to) and only the input and
        output scales.  Both parties must derive protocol parameters from this view."""
        keep_scale = lambda name: include_weights or name in (self.input, self.output)  # noqa: E731
        return {
            "format": FORMAT,
            "input": self.input,
            "output": self.output,
            "tensors": [t.to_dict(keep_scale(t.name), include_bounds=include_weights or t.name == self.input)
                        for t in self.tensors.values()],
            "nodes": [n.to_dict(include_weights) for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QGraph:
        """Inverse of :meth:`to_dict`; validates the result.  Raises :class:`ProtocolError` on a
        malformed dict and :class:`UnsupportedModel` on an inconsistent graph."""
        try:
            if d.get("format") != FORMAT:
                raise ProtocolError(f"not an aiompc model description (format {d.get('format')!r}, want {FORMAT!r})")
            tensors = {t.name: t for t in (TensorSpec.from_dict(t) for t in d["tensors"])}
            nodes = [node_from_dict(n) for n in d["nodes"]]
            g = cls(str(d["input"]), str(d["output"]), tensors, nodes)
            bounds = all("lo" in t and "hi" in t for t in d["tensors"])  # a metadata view has the input's only
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"malformed model description: {e}") from e
        return g.validate(bounds=bounds)

    def without_weights(self) -> QGraph:
        """The metadata-only graph (what a client reconstructs from :meth:`to_dict`)."""
        return QGraph.from_dict(self.to_dict(include_weights=False))

    # ---- humans

    def summary(self) -> str:
        """A text table: one row per node with kind, output shape, width and bounds."""
        def row(node: str, op: str, t: TensorSpec) -> tuple[str, ...]:
            return (node, op, t.name, "x".join(map(str, t.shape)), f"{'s' if t.signed else 'u'}{t.bits}",
                    f"[{t.lo}, {t.hi}]")

        rows = [("node", "op", "output", "shape", "bits", "range"), row("(input)", "", self.input_spec)]
        rows += [row(n.name, n.op, self.tensors[n.output]) for n in self.nodes]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
