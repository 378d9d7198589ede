"""ONNX ``Add``/``Sub``/``Mul``/``Div`` import: residual adds, and arithmetic with constants as affine maps.

``Add`` of two computed tensors is a residual ``add``.  Arithmetic with one constant operand is a
per-channel affine map ``y = a[c] * x + b[c]``: ``x + c``, ``x - c``, ``c - x``, ``x * c``, ``x / c``
with ``c`` a scalar or constant along every axis but the channel axis (an input normalization
``(x - mean) / std``, a LayerScale, a bias written as a separate ``Add``).  The map is merged, in float,
into what computes ``x`` when nothing else reads it:

* a Conv/Gemm/MatMul: ``w' = a * w``, ``b' = a * b + b0`` per output channel (a QDQ layer takes only the
  bias: its integer weights stay as they are, a scaling becomes a separate affine layer);
* an earlier affine map or batch-norm: the two compose;

and otherwise becomes a ``batchnorm`` float node with ``scale = a``, ``bias = b``, ``mean = 0``,
``var = 1``, ``eps = 0`` (so ``a / sqrt(var + eps) = a`` exactly), which the quantizer folds into a
preceding linear layer or evaluates as a per-channel affine layer.  Computed-by-computed products and
divisions by computed tensors are not supported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import onnx

if TYPE_CHECKING:
    from aiompc.nn.onnx_import import _Importer

__all__ = ["AFFINE_OPS"]


def _per_channel(imp: _Importer, node: onnx.NodeProto, c: np.ndarray, x: str) -> np.ndarray:
    """Constant ``c`` broadcast against ``x`` of per-sample shape ``(C, ...)``, as ``float64[C]``; it must
    be constant along every axis but the channel axis."""
    shape = imp.shapes[x]
    rank = len(shape) + 1
    if c.ndim > rank or c.size == 0:
        raise imp.fail(node, f"constant of shape {c.shape} does not broadcast against (N, {shape})")
    full = c.reshape((1,) * (rank - c.ndim) + c.shape)
    per_channel = full.shape[0] == 1 and all(d == 1 for d in full.shape[2:]) and full.shape[1] in (1, shape[0])
    if not per_channel:
        raise imp.fail(node, f"constant of shape {c.shape} varies along an axis other than the channels "
                             f"of the (N, {', '.join(map(str, shape))}) tensor",
                       "only scalars and per-channel constants (shape (C, 1, 1) or (1, C, 1, 1)) are supported")
    return np.broadcast_to(full.reshape(-1).astype(np.float64), (shape[0],)).copy()


def _sole_reader(imp: _Importer, onnx_x: str) -> bool:
    """True if the node being imported is the only reader of ``onnx_x``'s float edge: no imported float
    node reads it, no later ONNX node (or the graph output) reads any name of it, and it is not the input."""
    target = imp.alias.get(onnx_x)
    if target is None or target == imp.input or any(target in n.inputs for n in imp.nodes):
        return False
    return all(imp.remaining.get(name, 0) <= 0 for name, edge in imp.alias.items() if edge == target)


def _affine(imp: _Importer, node: onnx.NodeProto, onnx_x: str, a: np.ndarray, b: np.ndarray) -> None:
    """``node.output[0] = a * x + b`` per channel, merged into ``x``'s producer where possible."""
    x = imp.edge(node, onnx_x)
    prod = next((n for n in reversed(imp.nodes) if n.output == x), None)
    if prod is not None and _sole_reader(imp, onnx_x):
        if prod.op in ("conv", "gemm") and (np.all(a == 1.0) or "weight_q" not in prod.params):
            w = prod.params["weight"]
            prod.params["weight"] = w * a.reshape((-1,) + (1,) * (w.ndim - 1))
            prod.params["bias"] = a * prod.params["bias"] + b
            imp.alias[node.output[0]] = x
            return
        if prod.op == "batchnorm":
            prod.params["scale"] = prod.params["scale"] * a
            prod.params["bias"] = prod.params["bias"] * a + b
            imp.alias[node.output[0]] = x
            return
    c = a.size
    imp.emit("batchnorm", [x], node.output[0], {"eps": 0.0},
             {"scale": a, "bias": b, "mean": np.zeros(c), "var": np.ones(c)})


def _operands(imp: _Importer, node: onnx.NodeProto) -> tuple[str, np.ndarray, bool] | None:
    """``(computed input, constant, constant_first)`` for a node with one constant operand, else None."""
    if len(node.input) != 2:
        raise imp.fail(node, f"{len(node.input)} inputs", "give two inputs")
    first, second = (i in imp.consts for i in node.input)
    if first and second:
        raise imp.fail(node, "both operands are constants that could not be folded")
    if not first and not second:
        return None
    ci, xi = (0, 1) if first else (1, 0)
    return node.input[xi], imp.fconst(node, node.input[ci], "constant operand"), first


def op_add(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x + y`` (residual add) or ``x + c``."""
    imp.attrs(node, {})
    ops = _operands(imp, node)
    if ops is None:
        imp.emit("add", [imp.edge(node, i) for i in node.input], node.output[0])
        return
    x, c, _ = ops
    b = _per_channel(imp, node, c, imp.edge(node, x))
    _affine(imp, node, x, np.ones_like(b), b)


def _constant_operand(imp: _Importer, node: onnx.NodeProto, problem: str, hint: str, *,
                      constant_first: bool = True) -> tuple[str, np.ndarray, bool]:
    """``(computed input, per-channel constant, constant_first)`` of a node that needs one constant operand
    (first or second; only second unless ``constant_first``); raises ``imp.fail(node, problem, hint)`` otherwise."""
    imp.attrs(node, {})
    ops = _operands(imp, node)
    if ops is None or (ops[2] and not constant_first):
        raise imp.fail(node, problem, hint)
    x, c, first = ops
    return x, _per_channel(imp, node, c, imp.edge(node, x)), first


def op_sub(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x - c`` or ``c - x``."""
    x, b, const_first = _constant_operand(imp, node, "subtracting two computed tensors is not supported",
                                          "only constants may be subtracted (or subtracted from)")
    if const_first:
        _affine(imp, node, x, -np.ones_like(b), b)
    else:
        _affine(imp, node, x, np.ones_like(b), -b)


def op_mul(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x * c``."""
    x, a, _ = _constant_operand(imp, node, "multiplying two computed tensors is not supported",
                                "only multiplication by a scalar or per-channel constant is supported")
    _affine(imp, node, x, a, np.zeros_like(a))


def op_div(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x / c`` (``c`` non-zero)."""
    x, a, _ = _constant_operand(imp, node, "only division by a constant is supported",
                                "divide by a scalar or per-channel constant", constant_first=False)
    if np.any(a == 0):
        raise imp.fail(node, "division by zero")
    _affine(imp, node, x, 1.0 / a, np.zeros_like(a))


AFFINE_OPS: dict[str, Callable[[_Importer, onnx.NodeProto], None]] = {
    "Add": op_add, "Sub": op_sub, "Mul": op_mul, "Div": op_div,
}
"""The arithmetic operators, by ONNX op type."""
