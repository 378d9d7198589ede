"""Recognise the decomposed forms exporters write for LayerNorm and GELU and replace each by one node.

Run on the constant-folded model before the import (:func:`fuse_transformer`):

* **LayerNorm** (what ``torch.onnx.export`` writes below opset 17, and hand-written ``(x - mean) /
  sqrt(var + eps)``)::

      m = ReduceMean(x, axes=[-1]);  d = Sub(x, m);  v = ReduceMean(Pow(d, 2) | Mul(d, d), axes=[-1])
      y = Div(d, Sqrt(Add(v, eps)))   or   Mul(d, Reciprocal(Sqrt(Add(v, eps))))
      [y = Mul(y, gamma)]  [y = Add(y, beta)]

  becomes ``LayerNormalization(x, gamma, beta, axis=-1, epsilon=eps)`` (gamma 1 and beta 0 when absent).
* **GELU, erf form** ``x · 0.5 · (1 + erf(x / √2))`` (``Div`` by √2 or ``Mul`` by 1/√2; the three factors
  multiplied in any order) becomes ``Gelu(x)``; **tanh form** ``0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715·x³)))``
  (``x³`` as ``Pow(x, 3)`` or products of ``x``) becomes ``Gelu(x, approximate="tanh")``.

The fused nodes are default-domain ``LayerNormalization`` / ``Gelu`` nodes whatever the model's opset: only
the importer reads the result.  Constants are compared with a relative tolerance of 1e-4 (exporters write
float32).  A half-matched pattern is left as it is (the importer then names its unsupported node).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["fuse_transformer"]

_RTOL = 1e-4


class _View:
    """Producers, readers and constants of a graph."""

    def __init__(self, g: onnx.GraphProto, consts: dict[str, np.ndarray]) -> None:
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in dict.fromkeys(n.input):  # a node reading a tensor twice (Mul(d, d)) is one reader
                self.readers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}
        self.consts = consts

    def only(self, name: str, op: str | tuple[str, ...]) -> onnx.NodeProto | None:
        """The single reader of ``name`` if it has type ``op`` (and ``name`` is no graph output)."""
        rs = self.readers.get(name, [])
        ops = (op,) if isinstance(op, str) else op
        if len(rs) != 1 or name in self.outputs or rs[0].op_type not in ops:
            return None
        return rs[0]

    def scalar(self, name: str) -> float | None:
        v = self.consts.get(name)
        return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None

    def other(self, node: onnx.NodeProto, name: str) -> str | None:
        """The other input of a two-input node that reads ``name``."""
        if len(node.input) != 2 or name not in node.input:
            return None
        return node.input[1] if node.input[0] == name else node.input[0]


def _close(v: float | None, want: float) -> bool:
    return v is not None and math.isclose(v, want, rel_tol=_RTOL)


def _last_axis_mean(view: _View, node: onnx.NodeProto, rank: _Ranks) -> bool:
    if node.op_type != "ReduceMean":
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    axes = attrs.get("axes")
    if len(node.input) > 1 and node.input[1]:
        c = view.consts.get(node.input[1])
        axes = None if c is None else [int(v) for v in c.reshape(-1)]
    if axes is None or len(axes) != 1 or not attrs.get("keepdims", 1):
        return False
    return axes[0] == -1 or (rank.get(node.input[0]) or 0) - 1 == axes[0]


def _product(view: _View, start: str, factors: dict[str, str]) -> tuple[str, list[onnx.NodeProto]] | None:
    """Follow single-reader ``Mul`` nodes from ``start`` while their other operand is one of the wanted
    ``factors`` (name -> role, a constant 0.5 given as role ``"half"``) or a ``Mul`` of the rest; return the
    final output and the nodes used, or None unless every factor was used exactly once."""
    want = dict(factors)
    cur, used = start, []
    while want:
        node = view.only(cur, "Mul")
        if node is None:
            return None
        other = view.other(node, cur)
        if other is None:
            return None
        got = _factor(view, other, want)
        if got is None:
            return None
        for k in got[0]:
            want.pop(k)
        used += [node, *got[1]]
        cur = node.output[0]
    return cur, used


def _factor(view: _View, name: str, want: dict[str, str]) -> tuple[list[str], list[onnx.NodeProto]] | None:
    """Which wanted factors the tensor ``name`` is: one of them, or a single-reader Mul of two of them."""
    if name in want:
        return [name], []
    if "half" in want.values() and _close(view.scalar(name), 0.5):
        return [next(k for k, v in want.items() if v == "half")], []
    prod = view.producer.get(name)
    if prod is not None and prod.op_type == "Mul" and len(view.readers.get(name, [])) == 1:
        parts = [_factor(view, i, want) for i in prod.input]
        if all(p is not None for p in parts):
            keys = [k for p in parts for k in p[0]]  # type: ignore[union-attr]
            if len(set(keys)) == len(keys) == 2:
                return keys, [prod, *(n for p in parts for n in p[1])]  # type: ignore[union-attr]
    return None


def _gelu_tail(view: _View, fn: onnx.NodeProto, x: str) -> tuple[str, list[onnx.NodeProto]] | None:
    """``x · 0.5 · (1 + t)`` with ``t = fn``'s output (the ``Erf`` or the ``Tanh``), the three factors in any order:
    the final output and the nodes used (the ``Add`` of 1 and the ``Mul`` nodes), or None."""
    t = fn.output[0]
    one = view.only(t, "Add")
    if one is None or not _close(view.scalar(view.other(one, t) or ""), 1.0):
        return None
    tail = _product(view, one.output[0], {x: "x", "__half__": "half"})
    return None if tail is None else (tail[0], [one, *tail[1]])


def _erf_gelu(view: _View, erf: onnx.NodeProto) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
    arg = view.producer.get(erf.input[0])
    if arg is None or len(view.readers.get(erf.input[0], [])) != 1:
        return None
    if arg.op_type == "Div" and _close(view.scalar(arg.input[1]), math.sqrt(2.0)):
        x = arg.input[0]
    elif arg.op_type == "Mul" and any(_close(view.scalar(i), 1 / math.sqrt(2.0)) for i in arg.input):
        x = next(i for i in arg.input if not _close(view.scalar(i), 1 / math.sqrt(2.0)))
    else:
        return None
    tail = _gelu_tail(view, erf, x)
    if tail is None:
        return None
    out, used = tail
    return helper.make_node("Gelu", [x], [out], name=f"{erf.name or 'gelu'}:fused"), [arg, erf, *used]


def _cube_of(view: _View, name: str) -> tuple[str, list[onnx.NodeProto]] | None:
    """``(x, nodes)`` if ``name`` is ``x³`` (``Pow(x, 3)``, ``Mul(x, Mul(x, x))``, ``Mul(Mul(x, x), x)``)."""
    p = view.producer.get(name)
    if p is None:
        return None
    if p.op_type == "Pow" and _close(view.scalar(p.input[1]), 3.0):
        return p.input[0], [p]
    if p.op_type == "Mul":
        for a, b in (p.input, p.input[::-1]):
            q = view.producer.get(b)
            if q is not None and q.op_type == "Mul" and list(q.input) == [a, a]:
                return a, [p, q]
    return None


def _tanh_gelu(view: _View, tanh: onnx.NodeProto) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
    arg = view.producer.get(tanh.input[0])
    k = math.sqrt(2.0 / math.pi)
    if arg is None or arg.op_type != "Mul":
        return None
    inner = next((i for i in arg.input if not _close(view.scalar(i), k)), None)
    if inner is None or not any(_close(view.scalar(i), k) for i in arg.input):
        return None
    add = view.producer.get(inner)
    if add is None or add.op_type != "Add":
        return None
    for x, cubic in (add.input, add.input[::-1]):
        m = view.producer.get(cubic)
        if m is None or m.op_type != "Mul":
            continue
        c = next((i for i in m.input if _close(view.scalar(i), 0.044715)), None)
        if c is None:
            continue
        cube = _cube_of(view, m.input[1] if m.input[0] == c else m.input[0])
        if cube is None or cube[0] != x:
            continue
        tail = _gelu_tail(view, tanh, x)
        if tail is None:
            return None
        out, used = tail
        node = helper.make_node("Gelu", [x], [out], name=f"{tanh.name or 'gelu'}:fused", approximate="tanh")
        return node, [arg, add, m, *cube[1], tanh, *used]
    return None


def _layernorm(view: _View, mean: onnx.NodeProto, rank: _Ranks
               ) -> tuple[onnx.NodeProto, list[onnx.NodeProto], list[onnx.TensorProto]] | None:
    if not _last_axis_mean(view, mean, rank):
        return None
    x = mean.input[0]
    sub = view.only(mean.output[0], "Sub")
    if sub is None or list(sub.input) != [x, mean.output[0]]:
        return None
    d = sub.output[0]
    readers = view.readers.get(d, [])
    sq = next((n for n in readers if (n.op_type == "Pow" and _close(view.scalar(n.input[1]), 2.0)) or
               (n.op_type == "Mul" and list(n.input) == [d, d])), None)
    if sq is None or len(readers) != 2:
        return None
    var = view.only(sq.output[0], "ReduceMean")
    if var is None or not _last_axis_mean(view, var, rank):
        return None
    add = view.only(var.output[0], "Add")
    eps = view.scalar(view.other(add, var.output[0]) or "") if add is not None else None
    if add is None or eps is None:
        return None
    sqrt = view.only(add.output[0], "Sqrt")
    if sqrt is None:
        return None
    norm = next(n for n in readers if n is not sq)
    used = [mean, sub, sq, var, add, sqrt, norm]
    if norm.op_type == "Div" and list(norm.input) == [d, sqrt.output[0]] and view.only(sqrt.output[0], "Div"):
        y = norm.output[0]
    elif norm.op_type == "Mul":
        rec = view.only(sqrt.output[0], "Reciprocal")
        if rec is None or view.other(norm, d) != rec.output[0]:
            return None
        used.append(rec)
        y = norm.output[0]
    else:
        return None
    gamma = beta = None
    m = view.only(y, "Mul")
    if m is not None and view.other(m, y) in view.consts:
        gamma, y = view.other(m, y), m.output[0]
        used.append(m)
    a = view.only(y, "Add")
    if a is not None and view.other(a, y) in view.consts:
        beta, y = view.other(a, y), a.output[0]
        used.append(a)
    inits = []
    if gamma is None or beta is None:
        h = rank.get(f"{x}:last")
        if h is None:
            return None
        if gamma is None:
            gamma = f"{mean.name or x}:ln_gamma"
            inits.append(numpy_helper.from_array(np.ones(h, dtype=np.float32), gamma))
        if beta is None:
            beta = f"{mean.name or x}:ln_beta"
            inits.append(numpy_helper.from_array(np.zeros(h, dtype=np.float32), beta))
    node = helper.make_node("LayerNormalization", [x, gamma, beta], [y], name=f"{mean.name or 'layernorm'}:fused",
                            axis=-1, epsilon=float(eps))
    return node, used, inits


_SMALL = 1 << 16  # the constants a pattern reads are scalars and per-feature vectors: weights are never read


def _small_consts(g: onnx.GraphProto) -> dict[str, np.ndarray]:
    """The graph's initializers and ``Constant`` values of at most :data:`_SMALL` elements, as arrays."""
    out = {t.name: numpy_helper.to_array(t) for t in g.initializer if int(np.prod(t.dims)) <= _SMALL}
    for n in g.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


class _Ranks:
    """Rank of every tensor shape inference knows, and ``name:last``: its last dimension when static — computed
    on the first question (shape inference copies the whole model; most models never need it)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.known: dict[str, int] | None = None

    def get(self, name: str) -> int | None:
        if self.known is None:
            try:
                m = onnx.shape_inference.infer_shapes(self.model, strict_mode=False)
            except Exception:  # noqa: BLE001 - fuse what the ranks allow
                m = self.model
            self.known = {}
            for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
                tt = vi.type.tensor_type
                if tt.HasField("shape"):
                    dims = tt.shape.dim
                    self.known[vi.name] = len(dims)
                    if dims and dims[-1].HasField("dim_value"):
                        self.known[f"{vi.name}:last"] = int(dims[-1].dim_value)
        return self.known.get(name)


def fuse_transformer(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace the decomposed LayerNorm and GELU patterns (module docstring) by single nodes.  Returns a new
    model (``model`` itself when nothing matched)."""
    triggers = {"ReduceMean", "Erf", "Tanh"}
    if not any(n.op_type in triggers for n in model.graph.node):
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    rank = _Ranks(m)
    consts = _small_consts(g)
    while True:
        view = _View(g, consts)
        found = None
        for n in g.node:
            if n.op_type == "Erf":
                r = _erf_gelu(view, n)
                found = None if r is None else (*r, [])
            elif n.op_type == "Tanh":
                r = _tanh_gelu(view, n)
                found = None if r is None else (*r, [])
            elif n.op_type == "ReduceMean":
                found = _layernorm(view, n, rank)
            if found is not None:
                break
        if found is None:
            return m
        new, used, inits = found
        drop = {id(u) for u in used}
        last = max(i for i, n in enumerate(g.node) if id(n) in drop)  # the pattern's final node: all inputs exist
        keep = [n for n in g.node if id(n) not in drop]
        keep.insert(sum(1 for n in list(g.node)[:last] if id(n) not in drop), new)
        del g.node[:]
        g.node.extend(keep)
        g.initializer.extend(inits)
        consts.update({t.name: numpy_helper.to_array(t) for t in inits})
