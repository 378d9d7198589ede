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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import onnx

from aiompc.errors import UnsupportedModel
from aiompc.nn import onnx_affine, onnx_layout
from aiompc.nn.graph import TOKEN_OPS, FloatGraph, FloatNode

if TYPE_CHECKING:
    from aiompc.nn.onnx_import import _Importer

__all__ = ["TRANSFORMER_OPS", "is_token", "simplify_layout"]

_BATCH1_HINT = ("export with a static batch of 1 (torch.onnx.export(..., dynamo=True) without dynamic_shapes) "
                "so the importer can follow the batch axis")


# --------------------------------------------------------------------------- edges


def is_token(imp: _Importer, edge: str) -> bool:
    """True if float edge ``edge`` is a token tensor (module docstring)."""
    return edge in imp.token or not imp.batched.get(edge, True) or len(imp.shapes[edge]) in (2,) or \
        len(imp.shapes[edge]) > 3


def _full(imp: _Importer, edge: str) -> tuple[int, ...]:
    """The ONNX shape of float edge ``edge`` (the batch axis first when it is batched)."""
    ps = imp.shapes[edge]
    return (imp.batch, *ps) if imp.batched.get(edge, True) else ps


def _emit(imp: _Importer, op: str, inputs: Sequence[str], out: str, attrs: dict | None = None,
          params: dict | None = None, *, batched: bool = True, suffix: str = "") -> str:
    edge = imp.emit(op, inputs, out, attrs, params, suffix=suffix)
    imp.batched[edge] = batched
    imp.token.add(edge)
    return edge


def _lift(imp: _Importer, node: onnx.NodeProto, x: str) -> str:
    """``x`` as an unbatched edge whose per-sample shape is its ONNX shape (batch 1 only)."""
    if not imp.batched.get(x, True):
        return x
    if imp.batch != 1:
        raise imp.fail(node, "the operator moves or reads the batch axis of a model with a dynamic batch",
                       _BATCH1_HINT)
    return _emit(imp, "reshape", [x], f"{x}:lift", {"shape": (1, *imp.shapes[x])}, batched=False,
                 suffix=f":lift:{x}")


def _settle(imp: _Importer, node: onnx.NodeProto, edge: str, onnx_out: str) -> None:
    """Bind ONNX tensor ``onnx_out`` to ``edge``, dropping a leading axis of 1 of an unbatched edge."""
    ps = imp.shapes[edge]
    if not imp.batched.get(edge, True) and ps and ps[0] == 1 and imp.batch == 1:
        edge = _emit(imp, "reshape", [edge], f"{onnx_out}:settled", {"shape": ps[1:]}, suffix=":settle")
    imp.alias[onnx_out] = edge


def _reshape_full(imp: _Importer, node: onnx.NodeProto, x: str, out_full: tuple[int, ...], onnx_out: str) -> None:
    """``onnx_out`` = ``x`` reshaped to the ONNX shape ``out_full`` (per sample)."""
    size = int(np.prod(_full(imp, x)))
    if int(np.prod(out_full)) != size:
        raise imp.fail(node, f"reshape of {_full(imp, x)} to {out_full} changes the size")
    if imp.batch == 1:
        batched = bool(out_full) and out_full[0] == 1
        ps = tuple(out_full[1:]) if batched else tuple(out_full)
    else:
        if not imp.batched.get(x, True) or not out_full or out_full[0] != imp.batch:
            raise imp.fail(node, f"reshape of (N, {', '.join(map(str, imp.shapes[x]))}) to {out_full} moves the "
                                 "batch axis", "the batch axis must stay first; only flattening to (N, C*H*W) "
                                 "or reshapes of the per-sample axes are supported; " + _BATCH1_HINT)
        batched, ps = True, tuple(out_full[1:])
    if batched and ps == imp.shapes[x] and imp.batched.get(x, True):
        imp.alias[onnx_out] = x
        return
    if batched and ps == (int(np.prod(ps)),) and not is_token(imp, x) and len(imp.shapes[x]) != 1:
        imp.flatten(x, onnx_out)  # the CNN flatten, (N, C, H, W) -> (N, C*H*W)
        return
    _emit(imp, "reshape", [x], onnx_out, {"shape": ps}, batched=batched)


def _axis(imp: _Importer, node: onnx.NodeProto, x: str, axis: int) -> tuple[str, int]:
    """``(edge, per-sample axis)`` for ONNX axis ``axis`` of ``x`` (lifting ``x`` if the axis is its batch)."""
    rank = len(_full(imp, x))
    if not -rank <= axis < rank:
        raise imp.fail(node, f"axis {axis} outside a rank-{rank} tensor")
    axis %= rank
    if imp.batched.get(x, True):
        if axis > 0:
            return x, axis - 1
        x = _lift(imp, node, x)
    return x, axis


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
            imp_cnn_matmul(imp, node)
            return
        w = imp.fconst(node, b_name, "right operand")
        if w.ndim != 2:
            raise imp.fail(node, f"constant right operand of shape {w.shape} must be 2-D")
        _emit(imp, "matmul", [x], node.output[0], params={"weight": w.copy(), "bias": np.zeros(w.shape[1])},
              batched=imp.batched.get(x, True))
        return
    y = imp.edge(node, b_name)
    if imp.batched.get(x, True) != imp.batched.get(y, True):
        x, y = _lift(imp, node, x), _lift(imp, node, y)
    fa, fb = _full(imp, x), _full(imp, y)
    if len(fa) != len(fb) or len(fa) < 2 or fa[:-2] != fb[:-2]:
        raise imp.fail(node, f"operands {fa} and {fb} must have the same rank and leading axes",
                       "reshape both to (..., S, K) and (..., K, T) with equal leading axes")
    if imp.batched.get(x, True) and len(fa) < 3:
        x, y = _lift(imp, node, x), _lift(imp, node, y)
    out = _emit(imp, "matmul2", [x, y], f"{node.output[0]}:mm" if not imp.batched.get(x, True) else node.output[0],
                batched=imp.batched.get(x, True))
    if out != node.output[0]:
        _settle(imp, node, out, node.output[0])


def imp_cnn_matmul(imp: _Importer, node: onnx.NodeProto) -> None:
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
    a = imp.attrs(node, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
    if a["transA"]:
        raise imp.fail(node, "transA=1 is not supported", "the activation must be the left operand")
    bmat = imp.fconst(node, node.input[1], "weight")
    w = (bmat.T if a["transB"] else bmat) * a["alpha"]
    bias = np.zeros(w.shape[1])
    if len(node.input) > 2 and node.input[2]:
        c = imp.fconst(node, node.input[2], "bias") * a["beta"]
        if c.size not in (1, w.shape[1]) or (c.ndim == 2 and c.shape[0] != 1):
            raise imp.fail(node, f"bias of shape {c.shape} is not per output", "use a bias of shape (N,)")
        bias = np.broadcast_to(c.reshape(-1), (w.shape[1],)).copy()
    out = _emit(imp, "matmul", [x], f"{node.output[0]}:mm", params={"weight": w.copy(), "bias": bias}, batched=False)
    _settle(imp, node, out, node.output[0])


# --------------------------------------------------------------------------- arithmetic with constants


def _last_axis_only(imp: _Importer, c: np.ndarray, x: str) -> np.ndarray | None:
    """``c`` as a vector over the last axis of ``x`` if it is constant along every other axis, else None."""
    full = _full(imp, x)
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
    full = _full(imp, x)
    if c.ndim > len(full):
        raise imp.fail(node, f"constant of shape {c.shape} has more axes than the tensor {full}")
    v = c.astype(np.float64).reshape((1,) * (len(full) - c.ndim) + c.shape)
    if any(d not in (1, e) for d, e in zip(v.shape, full)):
        raise imp.fail(node, f"constant of shape {c.shape} does not broadcast to {full}")
    if imp.batched.get(x, True):
        if v.shape[0] != 1:
            raise imp.fail(node, "the constant varies along the batch axis")
        v = v[0]
    _emit(imp, "add_const", [x], node.output[0], params={"value": v.copy()}, batched=imp.batched.get(x, True))


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
    _emit(imp, "mul_const", [x], node.output[0], {"value": float(c.reshape(-1)[0])}, batched=imp.batched.get(x, True))


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


def op_add(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x + c`` on tokens (bias or ``add_const``), a residual ``x + y``, or the CNN meaning."""
    ops = _token_operands(imp, node)
    if ops is not None:
        imp.attrs(node, {})
        _add_const(imp, node, ops[0], ops[1])
        return
    xs = [imp.alias.get(i) for i in node.input]
    if len(xs) == 2 and all(x is not None for x in xs) and any(is_token(imp, x) for x in xs):  # type: ignore[arg-type]
        imp.attrs(node, {})
        a, b = (imp.edge(node, i) for i in node.input)
        if imp.batched.get(a, True) != imp.batched.get(b, True):
            a, b = _lift(imp, node, a), _lift(imp, node, b)
        if _full(imp, a) != _full(imp, b):
            raise imp.fail(node, f"adding {_full(imp, a)} and {_full(imp, b)} (broadcasting is not supported)")
        out = _emit(imp, "add", [a, b], f"{node.output[0]}:add" if not imp.batched.get(a, True) else node.output[0],
                    batched=imp.batched.get(a, True))
        if out != node.output[0]:
            _settle(imp, node, out, node.output[0])
        return
    onnx_affine.op_add(imp, node)


def op_sub(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x - c`` on tokens, or the CNN meaning."""
    ops = _token_operands(imp, node)
    if ops is None:
        onnx_affine.op_sub(imp, node)
        return
    imp.attrs(node, {})
    if ops[2]:
        raise imp.fail(node, "c - x of a token tensor is not supported", "write x - c or -(x) * ... as a MatMul")
    _add_const(imp, node, ops[0], -ops[1])


def op_mul(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x * c`` on tokens, or the CNN meaning."""
    ops = _token_operands(imp, node)
    if ops is None:
        onnx_affine.op_mul(imp, node)
        return
    imp.attrs(node, {})
    _scale(imp, node, ops[0], ops[1])


def op_div(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x / c`` on tokens, or the CNN meaning."""
    ops = _token_operands(imp, node)
    if ops is None or ops[2]:
        onnx_affine.op_div(imp, node)
        return
    imp.attrs(node, {})
    if np.any(ops[1] == 0):
        raise imp.fail(node, "division by zero")
    _scale(imp, node, ops[0], 1.0 / ops[1])


# --------------------------------------------------------------------------- layout


def op_transpose(imp: _Importer, node: onnx.NodeProto) -> None:
    """A permutation of the axes (the batch axis kept first, or a batch of 1)."""
    a = imp.attrs(node, {"perm": None})
    x = imp.edge(node, node.input[0])
    full = _full(imp, x)
    perm = list(a["perm"]) if a["perm"] is not None else list(range(len(full)))[::-1]
    if sorted(perm) != list(range(len(full))):
        raise imp.fail(node, f"perm {perm} does not permute the {len(full)} axes of {full}")
    if imp.batched.get(x, True) and perm[0] == 0:
        ps_perm = tuple(p - 1 for p in perm[1:])
        if ps_perm == tuple(range(len(ps_perm))):
            imp.alias[node.output[0]] = x
        else:
            _emit(imp, "transpose", [x], node.output[0], {"perm": ps_perm})
        imp.token.add(imp.alias[node.output[0]])
        return
    x = _lift(imp, node, x)
    out = _emit(imp, "transpose", [x], f"{node.output[0]}:t", {"perm": tuple(perm)}, batched=False)
    _settle(imp, node, out, node.output[0])


def op_reshape(imp: _Importer, node: onnx.NodeProto) -> None:
    """A reshape to a constant (or folded) target: per sample, or any at a batch of 1."""
    a = imp.attrs(node, {"allowzero": 0})
    x = imp.edge(node, node.input[0])
    t = [int(v) for v in imp.const(node, node.input[1], "shape").reshape(-1)]
    full = _full(imp, x)
    size = int(np.prod(full))
    if imp.batch != 1 and imp.batched.get(x, True) and t and (t[0] in (1, -1, imp.batch) or
                                                              (t[0] == 0 and not a["allowzero"])):
        t[0] = imp.batch  # a batch axis kept (a literal 1 from tracing at batch 1, or the folded placeholder)
    out = [full[i] if d == 0 and not a["allowzero"] and i < len(full) else d for i, d in enumerate(t)]
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise imp.fail(node, f"target {t} is not a valid shape")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        if known <= 0 or size % known:
            raise imp.fail(node, f"reshape of {full} to {t} is not possible")
        out = [size // known if d == -1 else d for d in out]
    _reshape_full(imp, node, x, tuple(out), node.output[0])


def op_unsqueeze(imp: _Importer, node: onnx.NodeProto) -> None:
    """Insert axes of 1 (a reshape)."""
    a = imp.attrs(node, {"axes": None})
    x = imp.edge(node, node.input[0])
    full = list(_full(imp, x))
    axes = a["axes"]
    if len(node.input) > 1 and node.input[1]:
        axes = [int(v) for v in imp.const(node, node.input[1], "axes").reshape(-1)]
    rank = len(full) + len(axes)
    for ax in sorted(v % rank for v in axes):
        full.insert(ax, 1)
    _reshape_full(imp, node, x, tuple(full), node.output[0])


def op_squeeze(imp: _Importer, node: onnx.NodeProto) -> None:
    """Remove axes of 1 on a token tensor (a reshape), or the CNN ``(N, C, 1, 1)`` flatten."""
    x = imp.alias.get(node.input[0])
    if x is None or not is_token(imp, x):
        onnx_layout.op_squeeze(imp, node)
        return
    a = imp.attrs(node, {"axes": None})
    x = imp.edge(node, node.input[0])
    full = _full(imp, x)
    axes = a["axes"]
    if len(node.input) > 1 and node.input[1]:
        axes = [int(v) for v in imp.const(node, node.input[1], "axes").reshape(-1)]
    drop = {v % len(full) for v in axes} if axes is not None else {i for i, d in enumerate(full) if d == 1}
    if any(full[i] != 1 for i in drop):
        raise imp.fail(node, f"squeezing axes {sorted(drop)} of {full}: not all are 1")
    _reshape_full(imp, node, x, tuple(d for i, d in enumerate(full) if i not in drop), node.output[0])


def op_flatten(imp: _Importer, node: onnx.NodeProto) -> None:
    """``Flatten(axis)`` of a token tensor (or from axis 2: the ViT patch embedding), else the CNN flatten."""
    from aiompc.nn.onnx_import import _Importer as Imp

    a = imp.attrs(node, {"axis": 1})
    x = imp.edge(node, node.input[0])
    if a["axis"] == 1 and not is_token(imp, x):
        Imp.op_Flatten(imp, node)
        return
    full = _full(imp, x)
    ax = a["axis"] % len(full) if a["axis"] else 0
    _reshape_full(imp, node, x, (int(np.prod(full[:ax])), int(np.prod(full[ax:]))), node.output[0])


def _slice(imp: _Importer, node: onnx.NodeProto, x: str, axis: int, start: int, stop: int, out: str,
           suffix: str = "") -> str:
    """Float edge ``x`` sliced to ``[start, stop)`` on ONNX axis ``axis``; written to ``out``."""
    x, ax = _axis(imp, node, x, axis)
    if start == 0 and stop == imp.shapes[x][ax]:
        return x
    return _emit(imp, "slice", [x], out, {"axis": ax, "start": start, "stop": stop},
                 batched=imp.batched.get(x, True), suffix=suffix)


def op_gather(imp: _Importer, node: onnx.NodeProto) -> None:
    """``x[..., i, ...]`` with one constant index: a slice (and a reshape dropping the axis for a scalar)."""
    a = imp.attrs(node, {"axis": 0})
    x = imp.edge(node, node.input[0])
    idx = imp.const(node, node.input[1], "indices")
    if idx.size != 1:
        raise imp.fail(node, f"{idx.size} indices", "only one constant index (x[:, i]) is supported")
    full = _full(imp, x)
    axis = a["axis"] % len(full)
    i = int(idx.reshape(-1)[0]) % full[axis]
    if imp.batched.get(x, True) and axis == 0:
        if imp.batch != 1:
            raise imp.fail(node, "gathering along the batch axis", _BATCH1_HINT)
    y = _slice(imp, node, x, axis, i, i + 1, f"{node.output[0]}:slice", ":slice")
    out_full = list(full)
    if idx.ndim == 0:
        del out_full[axis]
    else:
        out_full[axis] = 1
    _reshape_full(imp, node, y, tuple(out_full), node.output[0])


def op_slice(imp: _Importer, node: onnx.NodeProto) -> None:
    """Constant starts/ends (and axes), steps of 1: one ``slice`` per axis that is cut."""
    imp.attrs(node, {})
    x = imp.edge(node, node.input[0])
    full = _full(imp, x)
    vals = [imp.const(node, node.input[i], what).reshape(-1).astype(np.int64) if len(node.input) > i and
            node.input[i] else None for i, what in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps"))]
    starts, ends, axes, steps = vals
    assert starts is not None and ends is not None
    axes = np.arange(len(starts)) if axes is None else axes
    if steps is not None and np.any(steps != 1):
        raise imp.fail(node, f"steps {steps.tolist()}", "only steps of 1 are supported")
    edge = x
    for k, (s, e, ax) in enumerate(zip(starts.tolist(), ends.tolist(), axes.tolist())):
        ax %= len(full)
        n = full[ax]
        s = min(max(s + n if s < 0 else s, 0), n)
        e = min(max(e + n if e < 0 else e, 0), n)
        if e <= s:
            raise imp.fail(node, f"an empty slice [{s}:{e}] of axis {ax}")
        if (s, e) != (0, n):
            edge = _slice(imp, node, edge, ax, s, e, f"{node.output[0]}:{k}", f":{k}")
            full = _full(imp, edge)
    if edge == x:
        imp.alias[node.output[0]] = x
    else:
        _settle(imp, node, edge, node.output[0])


def op_split(imp: _Importer, node: onnx.NodeProto) -> None:
    """Split along one axis (the heads, or q/k/v): one ``slice`` per output."""
    a = imp.attrs(node, {"axis": 0, "split": None, "num_outputs": None})
    x = imp.edge(node, node.input[0])
    full = _full(imp, x)
    axis = a["axis"] % len(full)
    parts = a["split"]
    if len(node.input) > 1 and node.input[1]:
        parts = [int(v) for v in imp.const(node, node.input[1], "split").reshape(-1)]
    if parts is None:
        k = len(node.output)
        step = -(-full[axis] // k)
        parts = [min(step, full[axis] - i * step) for i in range(k)]
    if sum(parts) != full[axis] or len(parts) != len(node.output) or min(parts) < 1:
        raise imp.fail(node, f"split {parts} does not cut axis {axis} of {full} into {len(node.output)} parts")
    start = 0
    for j, (p, out) in enumerate(zip(parts, node.output)):
        edge = _slice(imp, node, x, axis, start, start + p, f"{out}:part" if out else f"{node.output[0]}:{j}",
                      f":{j}")
        start += p
        if out:
            _settle(imp, node, edge, out)


# --------------------------------------------------------------------------- non-linear


def _last_axis(imp: _Importer, node: onnx.NodeProto, x: str, axis: int) -> None:
    rank = len(_full(imp, x))
    if axis % rank != rank - 1:
        raise imp.fail(node, f"axis {axis} of a rank-{rank} tensor", "only the last axis is supported")


def op_softmax(imp: _Importer, node: onnx.NodeProto) -> None:
    """Softmax over the last axis."""
    a = imp.attrs(node, {"axis": -1 if imp.opset >= 13 else 1})
    x = imp.edge(node, node.input[0])
    _last_axis(imp, node, x, a["axis"])
    _emit(imp, "softmax", [x], node.output[0], {"axis": -1}, batched=imp.batched.get(x, True))


def op_layernorm(imp: _Importer, node: onnx.NodeProto) -> None:
    """LayerNormalization over the last axis (``axis = -1``), scale and optional bias constant."""
    a = imp.attrs(node, {"axis": -1, "epsilon": 1e-5, "stash_type": 1})
    if any(o and imp.uses.get(o, 0) for o in node.output[1:]):
        raise imp.fail(node, "the Mean / InvStdDev outputs are not supported")
    x = imp.edge(node, node.input[0])
    _last_axis(imp, node, x, a["axis"])
    h = _full(imp, x)[-1]
    scale = imp.fconst(node, node.input[1], "scale").reshape(-1)
    bias = imp.fconst(node, node.input[2], "bias").reshape(-1) if len(node.input) > 2 and node.input[2] else \
        np.zeros(h)
    if scale.size not in (1, h) or bias.size not in (1, h):
        raise imp.fail(node, f"scale/bias of {scale.size}/{bias.size} values for {h} features")
    _emit(imp, "layernorm", [x], node.output[0], {"eps": float(a["epsilon"])},
          {"scale": np.broadcast_to(scale, (h,)).copy(), "bias": np.broadcast_to(bias, (h,)).copy()},
          batched=imp.batched.get(x, True))


def op_gelu(imp: _Importer, node: onnx.NodeProto) -> None:
    """GELU (opset 20 ``Gelu``, or the fused Erf / tanh forms), exact or tanh-approximated."""
    a = imp.attrs(node, {"approximate": "none"})
    if a["approximate"] not in ("none", "tanh"):
        raise imp.fail(node, f"approximate={a['approximate']!r}")
    x = imp.edge(node, node.input[0])
    _emit(imp, "gelu", [x], node.output[0], {"approximate": a["approximate"]}, batched=imp.batched.get(x, True))


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
    x, ax = _axis(imp, node, x, axes[0])
    out = _emit(imp, "reduce_mean", [x], f"{node.output[0]}:mean", {"axis": ax, "keepdims": bool(a["keepdims"])},
                batched=imp.batched.get(x, True))
    _settle(imp, node, out, node.output[0])


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


# --------------------------------------------------------------------------- clean-up


def simplify_layout(g: FloatGraph) -> FloatGraph:
    """Turn transposes that move only axes of size 1 into reshapes, merge chains of ``reshape`` nodes (a
    reshape of a reshape read by nothing else is one reshape) and drop reshapes to the shape they read.  In place; returns ``g``."""
    readers: dict[str, int] = {}
    for n in g.nodes:
        for i in n.inputs:
            readers[i] = readers.get(i, 0) + 1
    by_out = {n.output: n for n in g.nodes}
    rename: dict[str, str] = {}
    keep: list[FloatNode] = []
    for n in g.nodes:
        n.inputs = tuple(rename.get(i, i) for i in n.inputs)
        if n.op == "transpose":  # a permutation moving only axes of size 1 keeps the data order: a reshape
            x = g.shapes[n.inputs[0]]
            moved = [p for p in n.attrs["perm"] if x[p] != 1]
            if moved == sorted(moved):
                n.op, n.attrs = "reshape", {"shape": tuple(x[p] for p in n.attrs["perm"])}
        if n.op == "reshape":
            src = by_out.get(n.inputs[0])
            if src is not None and src.op == "reshape" and readers.get(src.output, 0) == 1 and src in keep:
                keep.remove(src)
                n.inputs = src.inputs
            if tuple(n.attrs["shape"]) == g.shapes[n.inputs[0]] and n.output != g.output:
                rename[n.output] = n.inputs[0]
                continue
        keep.append(n)
    g.nodes = keep
    live = {g.input, *(n.output for n in keep)}
    g.shapes = {k: v for k, v in g.shapes.items() if k in live}
    return g
