"""Iron's fixed-point program of the transformer float ops: the handlers :func:`aiompc.nn.fixed_point.fixed_point`
calls for :data:`~aiompc.nn.graph.TOKEN_OPS` (the ``cheetah`` baseline = Iron: ``Z_{2^37}``, ``f = 12``).

Values are ``round(v · 2^f)`` (``k`` fractional bits: ``f``, or ``2f`` after a product), truncated lazily
(``2f → f``: ``Requantize(1, f, floor)`` once, where a consumer needs ``f``), as the CNN program does:

============  =====================================================================================================
matmul        input at ``f``; weights ``round(W·2^f)``, bias ``round(b·2^2f)``; :class:`MatMul` → ``2f`` (HE)
matmul2       both inputs at ``f``; :class:`MatMulShared` → ``2f`` (Iron's secret × secret product)
transpose,    as they are, at the input's scale (local)
reshape,
slice
mul_const     ``Requantize`` by ``M / 2^s ≈ c · 2^(f-k)`` to ``f`` (fused with the truncation a ``2f`` input needs;
              positive constants)
add_const     :class:`AddConst` of ``round(value · 2^k)`` at the input's scale (truncated to ``f`` first when the
              constant, an attention mask's ``-1e4``, would not fit the ring at ``2f``)
reduce_mean   :class:`ReduceSum`, then ``Requantize`` by ``≈ 2^(f-k) / n`` to ``f``
softmax       input at ``f``; :class:`SoftmaxFx` → ``f``
gelu          input at ``f``; :class:`GeluFx` (Iron's tanh form, also for an erf GELU) → ``f``
layernorm     input at ``f``; :class:`LayerNormFx` (the model's ``eps``) → ``f``; gamma/beta folded into the following
              matmuls when it feeds only matmuls (:func:`~aiompc.nn.quantize_transformer.fold_layernorm_affine`),
              else a :class:`FeatureAffine` with ``round(γ·2^f)``, ``round(β·2^2f)`` → ``2f`` (OT products)
============  =====================================================================================================

Edge widths are declared as in :mod:`aiompc.nn.fixed_point` (no proven range in fixed point).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from aiompc.errors import UnsupportedModel
from aiompc.nn.graph import FloatNode
from aiompc.nn.ir import AddConst, FeatureAffine, GeluFx, LayerNormFx, MatMul, MatMulShared, Node, ReduceSum, SoftmaxFx
from aiompc.nn.ir_transformer import layout_node

if TYPE_CHECKING:
    from aiompc.nn.fixed_point import _FixedPoint

__all__ = ["FIXED_POINT_TOKEN_HANDLERS"]


def _matmul(fp: _FixedPoint, n: FloatNode) -> None:
    x = fp._at_f(n.inputs[0])
    wq, bits = fp._weights(n, n.params["weight"])
    node = MatMul(name=n.name, inputs=(x,), output=fp._fresh(n.output), weight_shape=wq.shape, weight_bits=bits,
                  weight=wq, bias=fp._bias(n.params["bias"]))
    fp._emit_he(node, n.output)


def _matmul2(fp: _FixedPoint, n: FloatNode) -> None:
    a, b = (fp._at_f(i) for i in n.inputs)
    fp._emit_he(MatMulShared(name=n.name, inputs=(a, b), output=fp._fresh(n.output)), n.output)


def _layout(fp: _FixedPoint, n: FloatNode) -> None:
    edge, frac = fp.env[n.inputs[0]]
    node = layout_node(n.op, n.attrs, name=n.name, edge=edge, output=fp._fresh(n.output))
    fp.env[n.output] = (fp._emit(node, frac), frac)


def _rescale(fp: _FixedPoint, n: FloatNode, edge: str, frac: int, factor: float) -> None:
    """``n.output`` = ``edge`` (at ``frac`` bits) times ``factor``, at ``f`` bits: one requantization."""
    from aiompc.nn.quantize import fixed_point_multipliers

    if not factor > 0:
        raise UnsupportedModel(f"{n.op} node {n.name!r}: the fixed-point program scales by positive constants only "
                               f"(got {factor})")
    (m,), shift = fixed_point_multipliers(np.array([factor * 2.0 ** (fp.f - frac)]), fp.f)
    if m == 1 and shift == 0:
        fp.env[n.output] = (edge, fp.f)
        return
    fp.env[n.output] = (fp._requantize(edge, m, shift, f"{n.name}:scale"), fp.f)


def _mul_const(fp: _FixedPoint, n: FloatNode) -> None:
    edge, frac = fp.env[n.inputs[0]]
    _rescale(fp, n, edge, frac, float(n.attrs["value"]))


def _add_const(fp: _FixedPoint, n: FloatNode) -> None:
    edge, frac = fp.env[n.inputs[0]]
    room = 1 << (fp.ring - 3)  # a constant (an attention mask's -1e4) must leave the values inside the ring
    value = np.maximum(n.params["value"], -(2.0 ** 62))  # -inf: a mask
    if frac > fp.f and np.abs(value).max(initial=0) * 2.0 ** frac >= room:
        edge, frac = fp._at_f(n.inputs[0]), fp.f
    if np.abs(value).max(initial=0) * 2.0 ** frac >= room:
        raise UnsupportedModel(f"add_const node {n.name!r}: a constant of magnitude {np.abs(value).max():.3g} does "
                               f"not fit the {fp.ring}-bit ring at {frac} fractional bits")
    bias = np.rint(value * 2.0 ** frac).astype(np.int64)
    node = AddConst(name=n.name, inputs=(edge,), output=fp._fresh(n.output), shape=bias.shape, bias=bias)
    fp.env[n.output] = (fp._emit(node, frac), frac)


def _reduce_mean(fp: _FixedPoint, n: FloatNode) -> None:
    edge, frac = fp.env[n.inputs[0]]
    ax = n.attrs["axis"]
    length = fp.tensors[edge].shape[ax]
    node = ReduceSum(name=n.name, inputs=(edge,), output=fp._fresh(f"{n.output}:sum"), axis=ax,
                     keepdims=bool(n.attrs.get("keepdims", True)))
    _rescale(fp, n, fp._emit(node, frac), frac, 1.0 / length)


def _nonlinear(fp: _FixedPoint, n: FloatNode) -> None:
    x = fp._at_f(n.inputs[0])
    out = fp._fresh(n.output if n.op != "layernorm" else f"{n.output}:normalized")
    node: Node
    if n.op == "layernorm":
        node = LayerNormFx(name=n.name, inputs=(x,), output=out, f=fp.f, l=fp.ring, eps=float(n.attrs["eps"]))
    else:
        node = (SoftmaxFx if n.op == "softmax" else GeluFx)(name=n.name, inputs=(x,), output=out, f=fp.f, l=fp.ring)
    y = fp._emit(node, fp.f)
    if n.op != "layernorm":
        fp.env[n.output] = (y, fp.f)
        return
    gamma, beta = n.params["scale"], n.params["bias"]
    if np.all(gamma == 1.0) and np.all(beta == 0.0):
        fp.env[n.output] = (y, fp.f)
        return
    gq, bits = fp._weights(n, gamma)
    node = FeatureAffine(name=f"{n.name}:affine", inputs=(y,), output=fp._fresh(n.output), features=gamma.size,
                         weight_bits=bits, weight=gq, bias=fp._bias(beta))
    fp._emit_he(node, n.output)


FIXED_POINT_TOKEN_HANDLERS: dict[str, Callable[[_FixedPoint, FloatNode], None]] = {
    "matmul": _matmul, "matmul2": _matmul2, "transpose": _layout, "reshape": _layout, "slice": _layout,
    "mul_const": _mul_const, "add_const": _add_const, "reduce_mean": _reduce_mean, "softmax": _nonlinear,
    "gelu": _nonlinear, "layernorm": _nonlinear,
}
"""Iron's fixed-point lowering of each transformer float op."""
