"""ONNX import of transformer layers, as PyTorch's exporters write them, into the float graph's token ops.

A *token* tensor is one a transformer computes on: per-sample ``(S, H)`` tokens, ``(heads, S, d)`` heads or
any rank the layout operators make (every edge written by a :data:`~aiompc.nn.graph.TOKEN_OPS` node, every
edge of per-sample rank 2 or 4+, and what elementwise layers make of them).  CNN tensors ``(C, H, W)`` /
``(F,)`` keep the CNN meaning of the shared operators (:mod:`aiompc.nn.onnx_affine`, :mod:`aiompc.nn.onnx_layout`).

**The batch axis.**  PyTorch's ``nn.MultiheadAttention`` moves the batch axis: with ``batch_first=True`` it
transposes ``(B, S, H)`` to ``(S, B, H)``, folds the batch into the heads (``(S, B*heads, d)``) and gathers
q/k/v from a stacked tensor.  ``torch.onnx.export(dynamo=True)`` exports with a static batch of 1 by
default, so every such tensor is concrete.  With a batch of 1 the importer tracks, per edge, whether the
ONNX tensor is ``(1, *per_sample)`` ("batched") or is the per-sample tensor itself (the batch axis moved or
merged away: a size-1 axis carries no data); an operator touching axis 0 of a batched tensor first reshapes
it to ``(1, *per_sample)`` and an output whose first axis is 1 is reshaped back — all local reshapes, which
:func:`simplify_layout` merges afterwards.  The float graph then computes each sample exactly as the ONNX
graph computes a batch of 1.  With a dynamic batch the batch axis must stay first (every operator must act
per sample); otherwise the import names the node and asks for a batch-1 export.

Operators (handlers that fall back to the CNN meaning on CNN tensors):

* ``MatMul``: constant 2-D right operand → ``matmul`` (``x @ W``; a later ``Add`` of a constant varying
  only along the last axis becomes its bias, a later ``Mul``/``Div`` by such a constant scales its columns,
  when nothing else reads the product); two activations → ``matmul2`` (same leading axes);
  ``Gemm`` on a token tensor → ``matmul``;
* ``Add``/``Sub`` of a constant → the matmul bias or ``add_const`` (positional embeddings, masks); ``Mul``/``Div``
  by a scalar → ``mul_const`` (folded into a preceding matmul when nothing else reads it); ``Add`` of two
  activations → ``add`` (residual);
* ``Transpose``, ``Reshape`` (constant or folded target), ``Unsqueeze``, ``Squeeze``, ``Flatten``,
  ``Gather`` (one constant index), ``Slice`` (constant, step 1), ``Split`` → ``transpose``/``reshape``/``slice``;
* ``Softmax`` (last axis), ``LayerNormalization`` (last axis; the decomposed form is fused into it first by
  :mod:`aiompc.nn.onnx_fuse_transformer`), ``Gelu`` (opset 20, and the fused Erf / tanh forms),
  ``ReduceMean`` over one axis → ``softmax``/``layernorm``/``gelu``/``reduce_mean``;
* ``Where``, masks and everything else computed from constants were folded by
  :func:`aiompc.nn.onnx_fold.fold_constants`; a ``Where`` on an activation is not supported.

The edge bookkeeping (token edges, the batch axis, lifting and settling) is :mod:`aiompc.nn.onnx_tokens`; the
layout handlers and :func:`simplify_layout` are :mod:`aiompc.nn.onnx_token_layout`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import onnx

from aiompc.nn import onnx_affine, onnx_layout
from aiompc.nn.graph import FloatNode
from aiompc.nn.onnx_token_layout import (op_flatten, op_gather, op_reshape, op_slice, op_split, op_squeeze,
                                         op_transpose, op_unsqueeze, simplify_layout)
from aiompc.nn.onnx_tokens import emit, full_shape, is_token, lift, sample_axis, settle

if TYPE_CHECKING:
    from aiompc.nn.onnx_import import _Importer

__all__ = ["TRANSFORMER_OPS", "is_token", "simplify_layout"]
# --------------------------------------------------------------------------- linear algebra


def op_matmul(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x @ W`` (constant ``W``), or ``a @ b`` of two activations."""
    imp.attrs(node, {})
    a_name, b_name = node.input
    if a_name in imp.consts:
        raise imp.fail(node, "a constant left operand is not supported", "write x @ W with the activation first")
    x = imp.edge(node, a_name)
    if b_name in imp.consts:
        if not is_token(imp, x):
            _cnn_matmul(imp, node)
            return
        w = imp.fconst(node, b_name, "right operand")
        if w.ndim != 2:
            raise imp.fail(node, f"constant right operand of shape {w.shape} must be 2-D")
        emit(imp, "matmul", [x], node.output[0], params={"weight": w, "bias": np.zeros(w.shape[1])},
              batched=imp.batched.get(x, True))
        return
    y = imp.edge(node, b_name)
    if imp.batched.get(x, True) != imp.batched.get(y, True):
        x, y = lift(imp, node, x), lift(imp, node, y)
    fa, fb = full_shape(imp, x), full_shape(imp, y)
    if len(fa) != len(fb) or len(fa) < 2 or fa[:-2] != fb[:-2]:
        raise imp.fail(node, f"operands {fa} and {fb} must have the same rank and leading axes",
                       "reshape both to (..., S, K) and (..., K, T) with equal leading axes")
    if imp.batched.get(x, True) and len(fa) < 3:
        x, y = lift(imp, node, x), lift(imp, node, y)
    out = emit(imp, "matmul2", [x, y], f"{node.output[0]}:mm" if not imp.batched.get(x, True) else node.output[0],
                batched=imp.batched.get(x, True))
    if out != node.output[0]:
        settle(imp, node, out, node.output[0])


def _cnn_matmul(imp: _Importer, node: onnx.NodeProto) -> None:
    """The CNN meaning: a ``gemm`` on ``(N, F)``."""
    from aiompc.nn.onnx_import import _Importer as Imp

    Imp.op_MatMul(imp, node)


def op_gemm(imp: _Importer, node: onnx.NodeProto) -> None:
    """``Gemm`` on a token tensor (``(S, K)`` rows, the batch axis moved away): a ``matmul``."""
    from aiompc.nn.onnx_import import _Importer as Imp

    x = imp.alias.get(node.input[0])
    if x is None or not is_token(imp, x) or imp.batched.get(x, True):
        Imp.op_Gemm(imp, node)
        return
    _, w, bias = imp.gemm_operands(node)  # w: (out, in); a matmul's weight is (in, out)
    out = emit(imp, "matmul", [x], f"{node.output[0]}:mm", params={"weight": np.ascontiguousarray(w.T), "bias": bias},
               batched=False)
    settle(imp, node, out, node.output[0])


# --------------------------------------------------------------------------- arithmetic with constants


def _last_axis_only(imp: _Importer, c: np.ndarray, x: str) -> np.ndarray | None:
    """``c`` as a vector over the last axis of ``x`` if it is constant along every other axis, else None."""
    full = full_shape(imp, x)
    if c.ndim > len(full) or c.size == 0 or any(d != 1 for d in c.shape[:-1]):
        return None
    if c.ndim and c.shape[-1] not in (1, full[-1]):
        return None
    return np.broadcast_to(c.reshape(-1).astype(np.float64), (full[-1],)).copy()


def _sole_matmul(imp: _Importer, onnx_x: str) -> FloatNode | None:
    """The ``matmul`` writing ``onnx_x`` if the node being imported is its only reader."""
    target = imp.alias.get(onnx_x)
    prod = next((n for n in reversed(imp.nodes) if n.output == target), None)
    if prod is None or prod.op != "matmul" or not onnx_affine._sole_reader(imp, onnx_x):
        return None
    return prod


def _add_const(imp: _Importer, node: onnx.NodeProto, onnx_x: str, c: np.ndarray) -> None:
    x = imp.edge(node, onnx_x)
    prod = _sole_matmul(imp, onnx_x)
    vec = _last_axis_only(imp, c, x)
    if prod is not None and vec is not None:
        prod.params["bias"] = prod.params["bias"] + vec
        imp.alias[node.output[0]] = x
        return
    full = full_shape(imp, x)
    if c.ndim > len(full):
        raise imp.fail(node, f"constant of shape {c.shape} has more axes than the tensor {full}")
    v = c.astype(np.float64).reshape((1,) * (len(full) - c.ndim) + c.shape)
    if any(d not in (1, e) for d, e in zip(v.shape, full)):
        raise imp.fail(node, f"constant of shape {c.shape} does not broadcast to {full}")
    if imp.batched.get(x, True):
        if v.shape[0] != 1:
            raise imp.fail(node, "the constant varies along the batch axis")
        v = v[0]
    emit(imp, "add_const", [x], node.output[0], params={"value": v.copy()}, batched=imp.batched.get(x, True))


def _scale(imp: _Importer, node: onnx.NodeProto, onnx_x: str, c: np.ndarray) -> None:
    """``x * c``: folded into a sole-reader matmul (``c`` along the last axis), else ``mul_const`` (scalar)."""
    x = imp.edge(node, onnx_x)
    prod = _sole_matmul(imp, onnx_x)
    vec = _last_axis_only(imp, c, x)
    if prod is not None and vec is not None:
        prod.params["weight"] = prod.params["weight"] * vec[None, :]
        prod.params["bias"] = prod.params["bias"] * vec
        imp.alias[node.output[0]] = x
        return
    if c.size != 1:
        raise imp.fail(node, f"multiplying a token tensor by a constant of shape {c.shape} is not supported",
                       "only scalars (or per-feature constants right after a MatMul) are supported")
    emit(imp, "mul_const", [x], node.output[0], {"value": float(c.reshape(-1)[0])}, batched=imp.batched.get(x, True))


def _token_operands(imp: _Importer, node: onnx.NodeProto) -> tuple[str, np.ndarray, bool] | None:
    """``(computed input, constant, constant_first)`` when the node is arithmetic on a token tensor with one
    constant operand; None when it is not a token node (the CNN handler takes it)."""
    if len(node.input) != 2:
        return None
    first, second = (i in imp.consts for i in node.input)
    if first == second:
        return None
    xi, ci = (1, 0) if first else (0, 1)
    x = imp.alias.get(node.input[xi])
    if x is None or not is_token(imp, x):
        return None
    return node.input[xi], imp.fconst(node, node.input[ci], "constant operand"), first


def _token_const(imp: _Importer, node: onnx.NodeProto, cnn: Callable[[_Importer, onnx.NodeProto], None], *,
                 constant_first: bool = True) -> tuple[str, np.ndarray, bool] | None:
    """:func:`_token_operands` of a token node (its attributes checked: none), or None after handing the node to
    ``cnn``, its CNN meaning (also when the constant is the first operand and ``constant_first`` is False)."""
    ops = _token_operands(imp, node)
    if ops is None or (ops[2] and not constant_first):
        cnn(imp, node)
        return None
    imp.attrs(node, {})
    return ops


def op_add(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x + c`` on tokens (bias or ``add_const``), a residual ``x + y``, or the CNN meaning."""
    ops = _token_const(imp, node, _add_activations)
    if ops is not None:
        _add_const(imp, node, ops[0], ops[1])


def _add_activations(imp: _Importer, node: onnx.NodeProto) -> None:
    """A residual ``x + y`` of token tensors, or the CNN meaning."""
    xs = [imp.alias.get(i) for i in node.input]
    if len(xs) == 2 and all(x is not None for x in xs) and any(is_token(imp, x) for x in xs):  # type: ignore[arg-type]
        imp.attrs(node, {})
        a, b = (imp.edge(node, i) for i in node.input)
        if imp.batched.get(a, True) != imp.batched.get(b, True):
            a, b = lift(imp, node, a), lift(imp, node, b)
        if full_shape(imp, a) != full_shape(imp, b):
            raise imp.fail(node, f"adding {full_shape(imp, a)} and {full_shape(imp, b)} (broadcasting is not supported)")
        out = emit(imp, "add", [a, b], f"{node.output[0]}:add" if not imp.batched.get(a, True) else node.output[0],
                    batched=imp.batched.get(a, True))
        if out != node.output[0]:
            settle(imp, node, out, node.output[0])
        return
    onnx_affine.op_add(imp, node)


def op_sub(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x - c`` on tokens, or the CNN meaning."""
    ops = _token_const(imp, node, onnx_affine.op_sub)
    if ops is None:
        return
    if ops[2]:
        raise imp.fail(node, "c - x of a token tensor is not supported", "write x - c or -(x) * ... as a MatMul")
    _add_const(imp, node, ops[0], -ops[1])


def op_mul(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x * c`` on tokens, or the CNN meaning."""
    ops = _token_const(imp, node, onnx_affine.op_mul)
    if ops is not None:
        _scale(imp, node, ops[0], ops[1])


def op_div(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x / c`` on tokens, or the CNN meaning."""
    ops = _token_const(imp, node, onnx_affine.op_div, constant_first=False)
    if ops is None:
        return
    if np.any(ops[1] == 0):
        raise imp.fail(node, "division by zero")
    _scale(imp, node, ops[0], 1.0 / ops[1])


# --------------------------------------------------------------------------- non-linear


def _last_axis(imp: _Importer, node: onnx.NodeProto, x: str, axis: int) -> None:
    rank = len(full_shape(imp, x))
    if axis % rank != rank - 1:
        raise imp.fail(node, f"axis {axis} of a rank-{rank} tensor", "only the last axis is supported")


def op_softmax(imp: _Importer, node: onnx.NodeProto) -> None:
    """Softmax over the last axis."""
    a = imp.attrs(node, {"axis": -1 if imp.opset >= 13 else 1})
    x = imp.edge(node, node.input[0])
    _last_axis(imp, node, x, a["axis"])
    emit(imp, "softmax", [x], node.output[0], {"axis": -1}, batched=imp.batched.get(x, True))


def op_layernorm(imp: _Importer, node: onnx.NodeProto) -> None:
    """LayerNormalization over the last axis (``axis = -1``), scale and optional bias constant."""
    a = imp.attrs(node, {"axis": -1, "epsilon": 1e-5, "stash_type": 1})
    if any(o and imp.uses.get(o, 0) for o in node.output[1:]):
        raise imp.fail(node, "the Mean / InvStdDev outputs are not supported")
    x = imp.edge(node, node.input[0])
    _last_axis(imp, node, x, a["axis"])
    h = full_shape(imp, x)[-1]
    scale = imp.fconst(node, node.input[1], "scale").reshape(-1)
    bias = imp.fconst(node, node.input[2], "bias").reshape(-1) if len(node.input) > 2 and node.input[2] else \
        np.zeros(h)
    if scale.size not in (1, h) or bias.size not in (1, h):
        raise imp.fail(node, f"scale/bias of {scale.size}/{bias.size} values for {h} features")
    emit(imp, "layernorm", [x], node.output[0], {"eps": float(a["epsilon"])},
          {"scale": np.broadcast_to(scale, (h,)).copy(), "bias": np.broadcast_to(bias, (h,)).copy()},
          batched=imp.batched.get(x, True))


def op_gelu(imp: _Importer, node: onnx.NodeProto) -> None:
    """GELU (opset 20 ``Gelu``, or the fused Erf / tanh forms), exact or tanh-approximated."""
    a = imp.attrs(node, {"approximate": "none"})
    if a["approximate"] not in ("none", "tanh"):
        raise imp.fail(node, f"approximate={a['approximate']!r}")
    x = imp.edge(node, node.input[0])
    emit(imp, "gelu", [x], node.output[0], {"approximate": a["approximate"]}, batched=imp.batched.get(x, True))


def op_reduce_mean(imp: _Importer, node: onnx.NodeProto) -> None:
    """Mean over one axis of a token tensor (mean pooling of tokens), else the CNN global average pool."""
    x = imp.alias.get(node.input[0])
    if x is None or not is_token(imp, x):
        onnx_layout.op_reduce_mean(imp, node)
        return
    a = imp.attrs(node, {"axes": None, "keepdims": 1, "noop_with_empty_axes": 0})
    x = imp.edge(node, node.input[0])
    axes = a["axes"]
    if len(node.input) > 1 and node.input[1]:
        axes = [int(v) for v in imp.const(node, node.input[1], "axes").reshape(-1)]
    if axes is None or len(axes) != 1:
        raise imp.fail(node, f"axes {axes}", "reduce one axis at a time")
    x, ax = sample_axis(imp, node, x, axes[0])
    out = emit(imp, "reduce_mean", [x], f"{node.output[0]}:mean", {"axis": ax, "keepdims": bool(a["keepdims"])},
                batched=imp.batched.get(x, True))
    settle(imp, node, out, node.output[0])


def op_where(imp: _Importer, node: onnx.NodeProto) -> None:
    """A ``Where`` left after constant folding reads an activation: not supported."""
    raise imp.fail(node, "a Where on a computed tensor is not supported",
                   "masks must be constants (folded at import); add a constant mask (-inf/-1e4) to the scores instead")


TRANSFORMER_OPS: dict[str, Callable[[_Importer, onnx.NodeProto], None]] = {
    "MatMul": op_matmul, "Gemm": op_gemm, "Add": op_add, "Sub": op_sub, "Mul": op_mul, "Div": op_div,
    "Transpose": op_transpose, "Reshape": op_reshape, "Unsqueeze": op_unsqueeze, "Squeeze": op_squeeze,
    "Flatten": op_flatten, "Gather": op_gather, "Slice": op_slice, "Split": op_split, "Softmax": op_softmax,
    "LayerNormalization": op_layernorm, "Gelu": op_gelu, "ReduceMean": op_reduce_mean, "Where": op_where,
}
"""The transformer operators by ONNX op type (overriding the CNN handlers, to which they fall back)."""
