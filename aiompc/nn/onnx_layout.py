"""ONNX import of the reductions and layout operators exporters emit around the layers.

* ``ReduceMean`` over the two spatial axes of an ``(N, C, H, W)`` tensor (``AdaptiveAvgPool2d(1)``,
  ``x.mean((2, 3))``; axes as attribute before opset 18, as input from 18): a global average pool, then a
  flatten when ``keepdims=0``;
* ``Pad`` (constant mode, value 0, spatial axes only) directly before a ``Conv`` or an ``AveragePool``:
  merged into that layer's padding (zero padding is what both do), anywhere else unsupported;
* ``Squeeze`` of the unit spatial axes of an ``(N, C, 1, 1)`` tensor: a flatten;
* ``Cast`` of an activation to a float type: nothing (aiompc computes in float64, then in integers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import onnx
from onnx import TensorProto

if TYPE_CHECKING:
    from aiompc.nn.onnx_import import _Importer

__all__ = ["LAYOUT_OPS"]

_FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16})


def _axes(imp: _Importer, node: onnx.NodeProto, attr: list[int] | None, rank: int) -> list[int] | None:
    """Axes from the attribute (older opsets) or the optional second input (newer), normalized."""
    if len(node.input) > 1 and node.input[1]:
        attr = [int(v) for v in imp.const(node, node.input[1], "axes").reshape(-1)]
    return None if attr is None else sorted(a % rank for a in attr)


def op_reduce_mean(imp: _Importer, node: onnx.NodeProto) -> None:
    """Mean over the spatial axes: a global average pool (and a flatten without ``keepdims``)."""
    a = imp.attrs(node, {"axes": None, "keepdims": 1, "noop_with_empty_axes": 0})
    x = imp.edge(node, node.input[0])
    shape = imp.shapes[x]
    axes = _axes(imp, node, a["axes"], len(shape) + 1)
    if len(shape) != 3 or axes != [2, 3]:
        raise imp.fail(node, f"mean over axes {axes} of an (N, {', '.join(map(str, shape))}) tensor is not supported",
                       "only the mean over the spatial axes (2, 3) of an (N, C, H, W) tensor (global average "
                       "pooling) is supported")
    if a["keepdims"]:
        imp.emit("global_avgpool", [x], node.output[0])
    else:
        imp.flatten(imp.emit("global_avgpool", [x], f"{node.output[0]}:pooled"), node.output[0], suffix=":flatten")


def op_pad(imp: _Importer, node: onnx.NodeProto) -> None:
    """Zero padding of the spatial axes, kept aside until the Conv/AveragePool that reads it."""
    a = imp.attrs(node, {"mode": "constant", "pads": None, "value": 0.0})
    x = imp.edge(node, node.input[0])
    rank = len(imp.shapes[x]) + 1
    if a["mode"] != "constant":
        raise imp.fail(node, f"mode {a['mode']!r} is not supported", "only zero (constant) padding is supported")
    pads = a["pads"]
    if len(node.input) > 1 and node.input[1]:
        pads = [int(v) for v in imp.const(node, node.input[1], "pads").reshape(-1)]
    value = float(a["value"])
    if len(node.input) > 2 and node.input[2]:
        value = float(imp.fconst(node, node.input[2], "constant value").reshape(-1)[0])
    axes = list(range(rank))
    if len(node.input) > 3 and node.input[3]:
        axes = [int(v) % rank for v in imp.const(node, node.input[3], "axes").reshape(-1)]
    if pads is None or axes is None or len(pads) != 2 * len(axes):
        raise imp.fail(node, f"pads {pads} do not match the axes {axes}")
    full = np.zeros((2, rank), dtype=np.int64)
    full[:, axes] = np.asarray(pads, dtype=np.int64).reshape(2, len(axes))
    if value != 0.0 or rank != 4 or np.any(full[:, :2]) or np.any(full < 0):
        raise imp.fail(node, f"padding {full.tolist()} with value {value} is not supported",
                       "only non-negative zero padding of the two spatial axes of an (N, C, H, W) tensor")
    imp.padded[node.output[0]] = (x, (int(full[0, 2]), int(full[0, 3]), int(full[1, 2]), int(full[1, 3])))


def op_squeeze(imp: _Importer, node: onnx.NodeProto) -> None:
    """Removing the unit spatial axes of ``(N, C, 1, 1)``: a flatten."""
    a = imp.attrs(node, {"axes": None})
    x = imp.edge(node, node.input[0])
    shape = imp.shapes[x]
    axes = _axes(imp, node, a["axes"], len(shape) + 1)
    if axes is None:
        axes = [i + 1 for i, d in enumerate(shape) if d == 1]
    if len(shape) != 3 or shape[1:] != (1, 1) or axes != [2, 3]:
        raise imp.fail(node, f"squeezing axes {axes} of an (N, {', '.join(map(str, shape))}) tensor is not supported",
                       "only (N, C, 1, 1) -> (N, C) is supported")
    imp.flatten(x, node.output[0])


def op_cast(imp: _Importer, node: onnx.NodeProto) -> None:
    """A cast of an activation to a float type is the identity here."""
    a = imp.attrs(node, {"to": None, "saturate": 1, "round_mode": "up"})
    if a["to"] not in _FLOAT_TYPES:
        raise imp.fail(node, f"cast of an activation to {TensorProto.DataType.Name(a['to'])} is not supported",
                       "activations must stay floating point")
    imp.alias[node.output[0]] = imp.edge(node, node.input[0])


LAYOUT_OPS: dict[str, Callable[[_Importer, onnx.NodeProto], None]] = {
    "ReduceMean": op_reduce_mean, "Pad": op_pad, "Squeeze": op_squeeze, "Cast": op_cast,
}
"""The reduction and layout operators, by ONNX op type."""
