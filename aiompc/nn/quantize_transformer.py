"""The quantized program of the transformer float ops (:data:`~aiompc.nn.graph.TOKEN_OPS`): the handlers
:func:`aiompc.nn.quantize.quantize` calls for them.

Every token tensor has **one scale** (per tensor), MatMul weights one scale per matrix (a per-column scale would
not survive the head reshapes).  Float op → integer nodes:

============  =====================================================================================================
matmul        input requantized to ``act_bits``; weights symmetric per tensor at ``weight_bits``; bias at the
              accumulator scale; :class:`~aiompc.nn.ir.MatMul` writes the exact accumulator (HE)
matmul2       both inputs requantized to ``act_bits``; :class:`~aiompc.nn.ir.MatMulShared`, scale ``s_a·s_b``
transpose,    :class:`Transpose` / :class:`Reshape` / :class:`Slice` of whatever they receive (local, same scale)
reshape,
slice
mul_const     no node: the constant goes into the scale (a positive constant; the edge is relabelled by a
              same-shape :class:`Reshape` when another reader needs the unscaled value)
add_const     :class:`~aiompc.nn.ir.AddConst` with ``round(value / s)`` at the input's scale (local)
reduce_mean   :class:`~aiompc.nn.ir.ReduceSum`; the ``1/n`` goes into the scale
softmax       logits requantized to signed ``nonlinear_bits`` (calibrated), then :class:`SoftmaxQ` with
              :func:`aiompc.qtables.softmax_params` (output unsigned at ``2^-bits``: ``act_bits`` when only matmuls
              read it, as ``P·V`` does — one rounding instead of two — else ``nonlinear_bits``); an attention
              mask (an ``add_const`` of 0 and ``<= -1e3`` read only by softmaxes) is applied after the
              requantization, as ``-(2^k + range)`` integer units: a masked score's exp is the table's last entry,
              0 (scores of a range too small for an exact 8-bit exp table are requantized at the finest scale
              that has one), as ``exp(-1e4)`` is 0 in float, and the mask does not wreck the calibration
layernorm     input requantized to signed ``nonlinear_bits`` (calibrated), :class:`LayerNormQ` with
              :func:`aiompc.qtables.layernorm_params` (the model's eps; the largest row deviation and
              normalized value of the calibration data); gamma/beta: folded into the following matmuls when the
              LayerNorm feeds only matmuls (:func:`fold_layernorm_affine`), else a :class:`FeatureAffine` with
              per-tensor ``affine_bits`` weights
gelu          input requantized to signed ``k = min(nonlinear_bits, 8)`` bits (calibrated), then a :class:`Lookup`
              of :func:`aiompc.qtables.gelu_table` (``2^k`` entries) whose outputs are signed ``act_bits`` at the
              calibrated GELU output scale
============  =====================================================================================================

Residual ``add``, ``relu`` and ``gemm`` on the first token keep their CNN lowering (per-tensor scales make
their multipliers single).  Calibration is per tensor on the sample inputs, as for CNNs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np

from aiompc import qmath, qtables
from aiompc.errors import UnsupportedModel
from aiompc.nn.graph import FloatGraph, FloatNode
from aiompc.nn.ir import (AddConst, FeatureAffine, LayerNormQ, Lookup, MatMul, MatMulShared, ReduceSum,
                          Reshape, SoftmaxQ, TensorSpec)
from aiompc.nn.ir_transformer import layout_node

if TYPE_CHECKING:
    from aiompc.nn.quantize import _Quantizer

__all__ = ["TOKEN_HANDLERS", "fold_layernorm_affine"]


def _feature_readers(g: FloatGraph, edge: str) -> list[FloatNode] | None:
    """The nodes that read ``edge``'s last-axis features, through reshapes / transposes / slices that keep the
    last axis where it is; None if any reader is not such a layout node or a ``matmul``."""
    out: list[FloatNode] = []
    for r in g.consumers(edge):
        x, y = g.shapes[edge], g.shapes[r.output]
        keeps = (r.op == "reshape" and y[-1:] == x[-1:]) or (r.op == "slice" and r.attrs["axis"] != len(x) - 1) or \
            (r.op == "transpose" and r.attrs["perm"][-1] == len(x) - 1)
        if r.op == "matmul":
            out.append(r)
        elif keeps and r.output != g.output:
            more = _feature_readers(g, r.output)
            if more is None:
                return None
            out += more
        else:
            return None
    return out


def fold_layernorm_affine(graph: FloatGraph) -> FloatGraph:
    """Fold the gamma/beta of every ``layernorm`` whose readers are all ``matmul`` nodes (directly or through
    reshapes / transposes / slices keeping the feature axis last) into them:
    ``(n·γ + β) @ W + b = n @ (diag(γ) W) + (β @ W + b)``; the LayerNorm keeps ``γ = 1``, ``β = 0``.  Returns a
    new graph; ``graph`` is unchanged."""
    g = graph.copy()
    for n in g.nodes:
        if n.op != "layernorm" or n.output == g.output:
            continue
        readers = _feature_readers(g, n.output)
        if not readers:
            continue
        gamma, beta = n.params["scale"], n.params["bias"]
        for r in {id(r): r for r in readers}.values():
            w = r.params["weight"]
            r.params["bias"] = beta @ w + r.params["bias"]
            r.params["weight"] = gamma[:, None] * w
        n.params["scale"], n.params["bias"] = np.ones_like(gamma), np.zeros_like(beta)
    return g


def _scale(q: _Quantizer, edge: str) -> float:
    spec = q.tensors[edge]
    if not spec.per_tensor:
        raise UnsupportedModel(f"tensor {edge!r} reaches a transformer layer with per-channel scales")
    return spec.scale[0]  # type: ignore[index]


def _input(q: _Quantizer, fedge: str) -> str:
    """The integer edge of float edge ``fedge`` with one scale: as it is, or (a CNN tensor with per-channel
    scales entering the token ops, as a ViT's patch-embedding convolution) requantized to ``act_bits``."""
    x = q.env[fedge]
    return x if q.tensors[x].per_tensor else q._as_activation(fedge, q.cfg.act_bits)


def _matmul(q: _Quantizer, n: FloatNode) -> None:
    x = q._as_activation(n.inputs[0], q.cfg.act_bits)
    s_x = _scale(q, x)
    w = n.params["weight"]
    bits = int(n.attrs.get("weight_bits", q.cfg.weight_bits))
    wq, s_w = q_weights(w, bits, q.cfg.pow2_scales)
    acc = s_x * s_w
    bias = np.rint(n.params["bias"] / acc).astype(np.int64)
    node = MatMul(name=n.name, inputs=(x,), output=q._fresh(n.output), weight_shape=wq.shape, weight_bits=bits,
                  weight=wq, bias=bias)
    q.env[n.output] = q._emit(node, (acc,), act=False)


def q_weights(w: np.ndarray, bits: int, pow2: bool) -> tuple[np.ndarray, float]:
    """A ``(K, O)`` matrix quantized per tensor (symmetric narrow range): ``(int64 (K, O), scale)``."""
    from aiompc.nn.quantize import quantize_weights

    wq, s = quantize_weights(w, bits, per_channel=False, pow2=pow2)
    return wq, float(s[0])


def _matmul2(q: _Quantizer, n: FloatNode) -> None:
    a, b = (q._as_activation(i, q.cfg.act_bits) for i in n.inputs)
    node = MatMulShared(name=n.name, inputs=(a, b), output=q._fresh(n.output))
    q.env[n.output] = q._emit(node, (_scale(q, a) * _scale(q, b),), act=False)


def _layout(q: _Quantizer, n: FloatNode) -> None:
    x = _input(q, n.inputs[0])
    node = layout_node(n.op, n.attrs, name=n.name, edge=x, output=q._fresh(n.output))
    q.env[n.output] = q._emit(node, q.tensors[x].scale, act=q.is_act[x])  # type: ignore[arg-type]


def _mul_const(q: _Quantizer, n: FloatNode) -> None:
    c = float(n.attrs["value"])
    if not c > 0:
        raise UnsupportedModel(f"mul_const node {n.name!r}: the quantized program folds only positive constants "
                               f"into scales (got {c})")
    x = _input(q, n.inputs[0])
    spec = q.tensors[x]
    scale = (_scale(q, x) * c,)
    sole = len(q.consumers.get(n.inputs[0], [])) == 1 and sum(v == x for v in q.env.values()) == 1 \
        and x != q.q_input and x not in q.fixed
    if sole:  # relabel the edge: its values are the same integers, now read at scale s·c
        q.tensors[x] = TensorSpec(spec.name, spec.shape, spec.bits, spec.signed, spec.lo, spec.hi, scale)
        q.cache = {k: v for k, v in q.cache.items() if k[0] != n.inputs[0]}
        q.env[n.output] = x
        return
    node = Reshape(name=n.name, inputs=(x,), output=q._fresh(n.output), shape=spec.shape)
    q.env[n.output] = q._emit(node, scale, act=q.is_act[x])


MASK_BELOW = -1e3
"""An ``add_const`` entry at or below this (``-1e4``, ``-inf``: an attention mask) masks its position out."""


def _as_mask(q: _Quantizer, n: FloatNode) -> np.ndarray | None:
    """The boolean mask of an ``add_const`` that is an attention mask read only by softmaxes (entries 0 or
    ``<= MASK_BELOW``, at least one masked), else None."""
    v = n.params["value"]
    masked = v <= MASK_BELOW
    readers = q.consumers.get(n.output, [])
    if not masked.any() or np.any(v[~masked] != 0) or not readers or any(r.op != "softmax" for r in readers):
        return None
    return masked


def _add_const(q: _Quantizer, n: FloatNode) -> None:
    mask = _as_mask(q, n)
    if mask is not None:  # applied inside the softmax lowering, after the scores are requantized
        q.masks[n.output] = (n.inputs[0], mask)
        q.env[n.output] = q.env[n.inputs[0]]
        return
    x = _input(q, n.inputs[0])
    v = n.params["value"]
    bias = np.rint(v / _scale(q, x)).astype(np.int64)
    node = AddConst(name=n.name, inputs=(x,), output=q._fresh(n.output), shape=bias.shape, bias=bias)
    q.env[n.output] = q._emit(node, q.tensors[x].scale, act=False)  # type: ignore[arg-type]


def _reduce_mean(q: _Quantizer, n: FloatNode) -> None:
    x = _input(q, n.inputs[0])
    ax = n.attrs["axis"]
    length = q.tensors[x].shape[ax]
    node = ReduceSum(name=n.name, inputs=(x,), output=q._fresh(n.output), axis=ax,
                     keepdims=bool(n.attrs.get("keepdims", True)))
    q.env[n.output] = q._emit(node, (_scale(q, x) / length,), act=False)


def _softmax(q: _Quantizer, n: FloatNode) -> None:
    bits = q.cfg.nonlinear_bits
    fedge, mask = q.masks.get(n.inputs[0], (n.inputs[0], None))
    z = q._as_activation(fedge, bits)
    spec = q.tensors[z]
    # probabilities read only by matmuls come out at their input width (act_bits): no second rounding
    readers = q.consumers.get(n.output, [])
    out_bits = q.cfg.act_bits if readers and all(r.op in ("matmul", "matmul2") for r in readers) else bits
    params, s_out = qtables.softmax_params(_scale(q, z), spec.shape[-1], out_bits=min(out_bits, bits))
    if mask is not None and params.exp_table[-1] != 0:
        # scores of a small range: requantize them at the finest scale whose exp table ends in 0 (exact), so
        # a masked score's probability is exactly 0 as in float
        fine = math.log(2 * params.exp_table[0] + 1) / ((1 << qmath.MAX_TABLE_BITS) - 1) * (1 + 1e-6)
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        z = q._requant(q.env[fedge], fedge, fine, lo, hi)
        spec = q.tensors[z]
        params, s_out = qtables.softmax_params(_scale(q, z), spec.shape[-1], out_bits=min(out_bits, bits))
    if mask is not None:  # masked scores drop below every kept one by more than the exp table: exp is its last entry
        big = (1 << params.exp_bits) + spec.hi - spec.lo
        bias = np.where(mask, -big, 0).astype(np.int64)
        z = q._emit(AddConst(name=f"{n.name}:mask", inputs=(z,), output=q._fresh(f"{n.inputs[0]}:masked"),
                             shape=bias.shape, bias=bias), spec.scale, act=False)  # type: ignore[arg-type]
    node = SoftmaxQ(name=n.name, inputs=(z,), output=q._fresh(n.output), params=params)
    q.env[n.output] = q._emit(node, (s_out,), act=True)


def _signed_activation(q: _Quantizer, fedge: str, bits: int) -> tuple[str, int]:
    """``fedge`` as an activation that is a signed ``k``-bit integer, ``k <= bits``: ``(edge, k)`` (an unsigned
    ``b``-bit activation is a signed ``b + 1``-bit one; requantized narrower when that would exceed ``bits``)."""
    x = q._as_activation(fedge, bits)
    spec = q.tensors[x]
    k = spec.bits + (0 if spec.signed else 1)
    if k > bits:
        x = q._as_activation(fedge, bits - 1)
        spec = q.tensors[x]
        k = spec.bits + (0 if spec.signed else 1)
    if k > bits:  # a QDQ-fixed edge (zero point folded into its range): halve its resolution until it fits
        top = max(-spec.lo, spec.hi + 1)
        e = max(0, int(np.ceil(np.log2(top / 2 ** (bits - 1)))))
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        x = q._requant(x, fedge, _scale(q, x) * 2.0 ** e, lo, hi)
        k = bits
    return x, k


def _row_stats(q: _Quantizer, fedge: str, eps: float) -> dict[str, float]:
    """From the calibration data: the largest standard deviation of a row (last axis) of ``fedge``
    (``std_max``) and the largest normalized value (``out_range``); empty without calibration data."""
    if q.acts is None:
        return {}
    v = np.asarray(q.acts[fedge], dtype=np.float64)
    if not v.size:
        return {}
    c = v - v.mean(axis=-1, keepdims=True)
    std = np.sqrt((c * c).mean(axis=-1, keepdims=True))
    top, peak = float(std.max()), float(np.abs(c / np.sqrt(std * std + eps)).max())
    return {"std_max": top, "out_range": peak} if top > 0 and peak > 0 else {}


def _layernorm(q: _Quantizer, n: FloatNode) -> None:
    if not q.tensors[q.env[n.inputs[0]]].per_tensor:
        q._as_activation(n.inputs[0], q.cfg.nonlinear_bits)
    x, k = _signed_activation(q, n.inputs[0], q.cfg.nonlinear_bits)
    h = q.tensors[x].shape[-1]
    params, s_out = qtables.layernorm_params(_scale(q, x), h, out_bits=q.cfg.nonlinear_bits, in_bits=k,
                                           eps=float(n.attrs["eps"]), **_row_stats(q, n.inputs[0], n.attrs["eps"]))
    out = q._emit(LayerNormQ(name=n.name, inputs=(x,), output=q._fresh(f"{n.output}:normalized"), params=params),
                  (s_out,), act=True)
    gamma, beta = n.params["scale"], n.params["bias"]
    if np.all(gamma == 1.0) and np.all(beta == 0.0):
        q.env[n.output] = out
        return
    gq, s_g = q_weights(gamma[None, :], q.cfg.affine_bits, q.cfg.pow2_scales)
    acc = s_out * s_g
    node = FeatureAffine(name=f"{n.name}:affine", inputs=(out,), output=q._fresh(n.output), features=h,
                         weight_bits=q.cfg.affine_bits, weight=gq[0], bias=np.rint(beta / acc).astype(np.int64))
    q.env[n.output] = q._emit(node, (acc,), act=False)


def _gelu(q: _Quantizer, n: FloatNode) -> None:
    x, k = _signed_activation(q, n.inputs[0], min(q.cfg.nonlinear_bits, qmath.MAX_TABLE_BITS))
    out_bits = q.cfg.act_bits
    s_out, _, _ = q._target(n.output, out_bits, True)
    table = qtables.gelu_table(k, _scale(q, x), s_out, out_bits, approximate=n.attrs.get("approximate", "none"))
    node = Lookup(name=n.name, inputs=(x,), output=q._fresh(n.output), table=table)
    q.env[n.output] = q._emit(node, (s_out,), act=True)


TOKEN_HANDLERS: dict[str, Callable[[_Quantizer, FloatNode], None]] = {
    "matmul": _matmul, "matmul2": _matmul2, "transpose": _layout, "reshape": _layout, "slice": _layout,
    "mul_const": _mul_const, "add_const": _add_const, "reduce_mean": _reduce_mean, "softmax": _softmax,
    "layernorm": _layernorm, "gelu": _gelu,
}
"""The quantized lowering of each transformer float op."""
