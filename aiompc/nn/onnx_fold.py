"""Constant folding of the shape arithmetic ONNX exporters write, with onnx's own tools.

PyTorch's TorchScript exporter turns ``x.view(x.size(0), -1)`` into ``Shape → Gather → Unsqueeze →
Concat → Reshape`` and ``F.pad`` into ``ConstantOfShape``/``Concat``/``Slice``/``Transpose``/``Cast``
chains; the dynamo exporter leaves ``Constant`` nodes and casts of weights.  None of this is computation
on the client's data: it is a function of the model's constants and of tensor *shapes*.
:func:`fold_constants` evaluates it once at import time:

1. the per-sample input shape is made static (a dynamic batch axis gets the placeholder size
   :data:`BATCH_PLACEHOLDER`, dynamic per-sample axes the sizes the caller gives);
2. ``onnx.shape_inference.infer_shapes`` gives every tensor's shape it can;
3. every node whose inputs are all constants — and every ``Shape``/``Size`` of a tensor whose shape is
   known — is run by ``onnx.reference.ReferenceEvaluator`` (one node at a time, at the model's opset) and
   replaced by an initializer holding its output;
4. steps 2–3 repeat until nothing changes (a folded ``Reshape`` target lets shape inference see further).

Nodes that are never folded: ``QuantizeLinear``/``DequantizeLinear`` (the importer keeps their integer
meaning), random generators, and nodes with subgraphs.  A ``Reshape`` target that was computed from the
batch size holds :data:`BATCH_PLACEHOLDER` in its first entry; the importer reads that as "keep the batch
axis".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

from aiompc.errors import UnsupportedModel

__all__ = ["BATCH_PLACEHOLDER", "Folded", "fold_constants"]

BATCH_PLACEHOLDER = 97
"""The size a dynamic batch axis takes while shapes are computed (a prime no real layer is likely to
reshape to; only a Reshape target's first entry is ever read as "the batch")."""

_NEVER_FOLD = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "RandomNormal",
                         "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"})
_SHAPE_OF = frozenset({"Shape", "Size"})
_MAX_ROUNDS = 16


@dataclass(frozen=True)
class Folded:
    """The folded model and the batch size its shapes were computed with (``None``: the model's own
    static batch size was kept)."""

    model: onnx.ModelProto
    batch_placeholder: int | None


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {o.domain or "": o.version for o in model.opset_import}


def _static_input(model: onnx.ModelProto, input_shape: Sequence[int] | None) -> int | None:
    """Give the (single non-constant) graph input static dimensions in place; return the placeholder
    batch size if the batch axis was dynamic."""
    consts = {t.name for t in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in consts]
    if len(real) != 1:
        return None  # the importer reports this with the input names
    dims = real[0].type.tensor_type.shape.dim
    if not dims:
        return None
    placeholder = None
    if not dims[0].HasField("dim_value") or dims[0].dim_value <= 0:
        dims[0].dim_value = BATCH_PLACEHOLDER
        placeholder = BATCH_PLACEHOLDER
    if input_shape is not None and len(input_shape) == len(dims) - 1:
        for d, v in zip(dims[1:], input_shape, strict=True):
            d.dim_value = int(v)
    return placeholder


def _known_shapes(model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Static shapes (and element types) of every tensor shape inference can determine."""
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - an inconsistent model: fold what the constants allow
        inferred = model
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or not tt.elem_type:
            continue
        dims = tt.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            out[vi.name] = (tuple(int(d.dim_value) for d in dims), helper.tensor_dtype_to_np_dtype(tt.elem_type))
    return out


def _foldable(node: onnx.NodeProto, consts: dict[str, np.ndarray],
              shapes: dict[str, tuple[tuple[int, ...], np.dtype]]) -> bool:
    if node.op_type in _NEVER_FOLD or node.domain not in ("", "ai.onnx"):
        return False
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return False
    if node.op_type in _SHAPE_OF:
        return node.input[0] in consts or node.input[0] in shapes
    return all(not i or i in consts for i in node.input)


def _evaluate(node: onnx.NodeProto, consts: dict[str, np.ndarray],
              shapes: dict[str, tuple[tuple[int, ...], np.dtype]], opsets: dict[str, int]) -> list[np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for name in node.input:
        if not name:
            continue
        if name in consts:
            feeds[name] = consts[name]
        else:  # Shape/Size of a computed tensor: a zero-size-in-memory stand-in of the right shape
            shape, dtype = shapes[name]
            feeds[name] = np.broadcast_to(np.zeros((), dtype=dtype), shape)
    try:
        return list(ReferenceEvaluator(node, opsets=opsets).run(None, feeds))
    except Exception as e:  # noqa: BLE001 - the reference evaluator raises many kinds
        raise UnsupportedModel(f"ONNX node {node.name or node.op_type!r} (op {node.op_type}): its inputs are "
                               f"constants but evaluating it failed ({e})") from e


def fold_constants(model: onnx.ModelProto, input_shape: Sequence[int] | None = None) -> Folded:
    """Fold the model's constant subgraphs and shape arithmetic into initializers (see the module
    docstring).  Returns a new model; ``model`` is unchanged.  ``input_shape``: the per-sample input shape
    (without the batch axis) when the model leaves it dynamic.  Raises :class:`UnsupportedModel` if a node
    with constant inputs cannot be evaluated."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    placeholder = _static_input(m, input_shape)
    opsets = _opsets(m)
    g = m.graph
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    graph_outputs = {o.name for o in g.output}
    for _ in range(_MAX_ROUNDS):
        # shape inference (a copy of the whole model) only when a Shape/Size of a computed tensor is left
        needs_shapes = any(n.op_type in _SHAPE_OF and n.input[0] not in consts for n in g.node)
        shapes = _known_shapes(m) if needs_shapes else {}
        keep: list[onnx.NodeProto] = []
        changed = False
        for node in g.node:
            if not _foldable(node, consts, shapes) or any(o in graph_outputs for o in node.output):
                keep.append(node)
                continue
            for name, value in zip(node.output, _evaluate(node, consts, shapes, opsets), strict=False):
                if name:
                    consts[name] = np.asarray(value)
            changed = True
        if not changed:
            break
        del g.node[:]
        g.node.extend(keep)
        used = {i for n in g.node for i in n.input} | graph_outputs
        del g.initializer[:]
        g.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items() if k in used)
        inits = {t.name for t in g.initializer}
        stale = [i for i in g.input if i.name in consts and i.name not in inits]
        for i in stale:
            g.input.remove(i)
        del g.value_info[:]
    return Folded(m, placeholder)
