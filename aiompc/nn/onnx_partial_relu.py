"""ONNX partial ReLU (SNL / SENet's selective linearization): recognise the graph patterns an exported
ReLU-reduced network writes and replace each by one ``PartialRelu`` node (domain ``aiompc``) that the
importer turns into a ``partial_relu`` float node.

A per-pixel (or per-channel) mask ``m`` keeps a ReLU where it is 1 and the identity where it is 0.
PyTorch's exporters (dynamo and TorchScript, after their own constant folding) write it as

* ``Where(c, Relu(x), x)`` (``torch.where(mask, relu(x), x)``; ``Where(c, x, Relu(x))`` is the negated mask);
* ``Add(x, Mul(m, Sub(Relu(x), x)))`` (``x + m * (relu(x) - x)``);
* ``Add(Mul(m, Relu(x)), Mul(1 - m, x))`` (``m * relu(x) + (1 - m) * x``, the ``1 - m`` a folded constant);

each operand order of ``Add``/``Mul`` accepted, ``m``/``c`` a constant (initializer, ``Constant`` or a
``DequantizeLinear`` of one) broadcastable against ``(N, C, H, W)`` — per channel or per element — holding
only 0 and 1.  In a QDQ model QuantizeLinear/DequantizeLinear pairs may sit on any edge of the pattern:
the pair on ``x`` stays (it annotates the partial ReLU's input), pairs on the pattern's intermediate
tensors are dropped (the identity or the ReLU of an already quantized value is exact; their extra rounding
is not modelled), a pair on the output is kept after it.  A pattern whose constant is not a 0/1 mask raises
:class:`~aiompc.errors.UnsupportedModel`; a half-matched pattern is left alone (the importer then names its
unsupported node, typically the ``Sub``/``Mul`` of two computed tensors).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from aiompc.errors import UnsupportedModel

__all__ = ["fuse_partial_relus", "DOMAIN", "OP"]

DOMAIN = "aiompc"
OP = "PartialRelu"


@dataclass
class _Match:
    final: onnx.NodeProto
    x: str  # the partial ReLU's input (the Relu's own input name)
    mask: np.ndarray
    internal: list[onnx.NodeProto] = field(default_factory=list)  # nodes the fused node may replace


class _Graph:
    def __init__(self, g: onnx.GraphProto) -> None:
        self.g = g
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                self.readers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)

    def const(self, name: str) -> tuple[np.ndarray, float] | None:
        """A constant's value and the tolerance of its 0/1 check (half a step of a dequantized constant)."""
        if name in self.consts:
            return np.asarray(self.consts[name]), 0.0
        n = self.producer.get(name)
        if n is not None and n.op_type == "DequantizeLinear" and n.input[0] in self.consts:
            q = np.asarray(self.consts[n.input[0]]).astype(np.float64)
            scale = np.asarray(self.consts.get(n.input[1], 1.0), dtype=np.float64)
            zp = np.asarray(self.consts[n.input[2]], dtype=np.float64) if len(n.input) > 2 and n.input[2] else 0.0
            if scale.size == 1 and np.size(zp) == 1:
                return (q - zp) * scale, float(np.max(scale)) / 2
        return None

    def strip(self, name: str) -> tuple[str, list[onnx.NodeProto]]:
        """``name`` with activation QDQ pairs looked through, and the Q/DQ nodes passed."""
        passed: list[onnx.NodeProto] = []
        while True:
            dq = self.producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                return name, passed
            q = self.producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or q.input[0] in self.consts:
                return name, passed
            passed += [dq, q]
            name = q.input[0]

    def node_of(self, name: str, op: str) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
        src, passed = self.strip(name)
        n = self.producer.get(src)
        return (n, passed) if n is not None and n.op_type == op else None


def _mask(graph: _Graph, final: onnx.NodeProto, value: np.ndarray, tol: float) -> np.ndarray:
    v = np.asarray(value)
    if v.dtype == bool:
        return v
    v = v.astype(np.float64)
    one, zero = np.abs(v - 1) <= tol, np.abs(v) <= tol
    if not np.all(one | zero):
        bad = v[~(one | zero)].reshape(-1)[:3]
        raise UnsupportedModel(
            f"ONNX node {final.name or final.op_type!r}: a ReLU mask (x + m·(Relu(x) − x), m·Relu(x) + (1 − m)·x or "
            f"Where) must hold only 0 and 1, got values like {', '.join(f'{b:.4g}' for b in bad)}; binarize the "
            "mask (SNL's thresholding) before exporting")
    return one


def _relu_of(graph: _Graph, name: str) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
    return graph.node_of(name, "Relu")


def _match_where(graph: _Graph, n: onnx.NodeProto) -> _Match | None:
    c = graph.const(n.input[0])
    if c is None:
        return None
    for relu_in, x_in, negate in ((n.input[1], n.input[2], False), (n.input[2], n.input[1], True)):
        r = _relu_of(graph, relu_in)
        if r is not None and graph.strip(r[0].input[0])[0] == graph.strip(x_in)[0]:
            m = _mask(graph, n, c[0], c[1])
            return _Match(n, r[0].input[0], ~m if negate else m, [r[0], *r[1]])
    return None


def _const_and_other(graph: _Graph, mul: onnx.NodeProto) -> tuple[tuple[np.ndarray, float], str] | None:
    for ci, oi in ((0, 1), (1, 0)):
        c = graph.const(mul.input[ci])
        if c is not None and graph.const(mul.input[oi]) is None:
            return c, mul.input[oi]
    return None


def _match_add(graph: _Graph, n: onnx.NodeProto) -> _Match | None:
    if len(n.input) != 2 or any(graph.const(i) is not None for i in n.input):
        return None
    for a, b in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
        # x + m * (Relu(x) - x)
        mul = graph.node_of(b, "Mul")
        if mul is not None:
            co = _const_and_other(graph, mul[0])
            sub = graph.node_of(co[1], "Sub") if co is not None else None
            if co is not None and sub is not None:
                r = _relu_of(graph, sub[0].input[0])
                x = graph.strip(a)[0]
                if r is not None and graph.strip(r[0].input[0])[0] == x == graph.strip(sub[0].input[1])[0]:
                    return _Match(n, r[0].input[0], _mask(graph, n, *co[0]),
                                  [mul[0], *mul[1], sub[0], *sub[1], r[0], *r[1]])
        # m * Relu(x) + (1 - m) * x
        ma, mb = graph.node_of(a, "Mul"), graph.node_of(b, "Mul")
        if ma is not None and mb is not None:
            ca, cb = _const_and_other(graph, ma[0]), _const_and_other(graph, mb[0])
            if ca is None or cb is None:
                continue
            r = _relu_of(graph, ca[1])
            if r is None or graph.strip(r[0].input[0])[0] != graph.strip(cb[1])[0]:
                continue
            try:
                total = np.broadcast_arrays(np.asarray(ca[0][0], np.float64), np.asarray(cb[0][0], np.float64))
            except ValueError:
                continue
            if not np.allclose(total[0] + total[1], 1.0, rtol=0, atol=2 * (ca[0][1] + cb[0][1]) + 1e-12):
                continue  # not a mask and its complement: not this pattern
            return _Match(n, r[0].input[0], _mask(graph, n, *ca[0]), [ma[0], *ma[1], mb[0], *mb[1], r[0], *r[1]])
    return None


def fuse_partial_relus(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every partial-ReLU pattern (module docstring) replaced by one ``PartialRelu`` node of
    domain :data:`DOMAIN` reading ``(x, mask)`` (the mask a new bool initializer); the pattern's inner nodes
    are removed where nothing else reads them.  Returns ``model`` itself when nothing matches."""
    graph = _Graph(model.graph)
    matches: list[_Match] = []
    for n in model.graph.node:
        if n.op_type == "Where" and len(n.input) == 3:
            m = _match_where(graph, n)
        elif n.op_type == "Add":
            m = _match_add(graph, n)
        else:
            m = None
        if m is not None:
            matches.append(m)
    if not matches:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    replaced: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    for k, m in enumerate(matches):
        mask_name = f"{m.final.output[0]}::relu_mask"
        out.graph.initializer.append(numpy_helper.from_array(np.asarray(m.mask, dtype=bool), mask_name))
        replaced[id(m.final)] = helper.make_node(OP, [m.x, mask_name], list(m.final.output),
                                                 name=m.final.name or f"PartialRelu_{k}", domain=DOMAIN)
        group = {id(v) for v in m.internal} | {id(m.final)}
        changed = True
        while changed:  # drop inner nodes whose outputs only the pattern reads
            changed = False
            for v in m.internal:
                if id(v) in removed or v.output[0] == m.x:
                    continue
                if all(o not in graph.outputs and all(id(r) in group and (id(r) in removed or r is m.final)
                                                      for r in graph.readers.get(o, []))
                       for o in v.output if o):
                    removed.add(id(v))
                    changed = True
    nodes = [replaced.get(id(n), n) for n in model.graph.node if id(n) not in removed]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return out
