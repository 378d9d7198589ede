"""ONNX ``QuantizeLinear``/``DequantizeLinear`` import: QDQ weights and activation annotations.

A ``DequantizeLinear`` of a constant integer tensor is a quantized weight: its integers and scales are
kept (:class:`QConst`) for the quantizer.  A ``QuantizeLinear``/``DequantizeLinear`` pair on an
activation becomes a ``fakequant`` float node that fixes that tensor's scale, type and zero point.

Zero points are folded exactly (as onnxruntime's ``quantize_static`` writes them: asymmetric uint8 or
int8 activations, symmetric or asymmetric weights, per tensor or per output channel):

* an activation ``real = s * (q - zp)`` is held in the integer program as ``v = q - zp``, so a
  requantization to it clips to ``[qmin - zp, qmax - zp]`` (a ReLU that the quantizer removed because the
  zero point sits at the bottom of the range is that clip) and every linear layer, pool and add works on
  ``v`` exactly as on a symmetric tensor (zero padding is ``v = 0``, the real zero);
* a weight ``real = s[o] * (q - zp[o])`` becomes the integer weight ``q - zp[o]`` (one bit wider when the
  zero point is not 0 or the type unsigned); an int32 bias at scale ``s_x * s_w`` is kept as it is.

What cannot agree bit for bit with onnxruntime's float evaluation of the same QDQ graph: onnxruntime
rounds ``x / s`` half to even in float32 after float32 accumulation, aiompc rounds the exact integer
accumulator times a fixed-point multiplier ``M / 2^shift`` half up; a value within ``|x| * 2^-multiplier_bits``
(or float32's error) of a rounding boundary can land one step apart, and so can every exact tie.
Operators onnxruntime leaves in float between QDQ pairs (an unfused BatchNormalization, an average pool's
division) are quantized by aiompc's own rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import onnx
from onnx import helper

if TYPE_CHECKING:
    from aiompc.nn.onnx_import import _Importer

__all__ = ["QConst", "PendingQuant", "QDQ_OPS", "weight_qinfo", "axis_shape"]

_INT_TYPES = {"int4": (4, True), "uint4": (4, False), "int8": (8, True), "uint8": (8, False),
              "int16": (16, True), "uint16": (16, False), "int32": (32, True)}


@dataclass
class QConst:
    """A constant produced by DequantizeLinear: integers ``q`` (zero point removed), scale along ``axis``."""

    q: np.ndarray
    scale: np.ndarray
    axis: int
    bits: int
    signed: bool
    zero_point_nonzero: bool


@dataclass
class PendingQuant:
    """A QuantizeLinear on an activation, waiting for its DequantizeLinear."""

    edge: str
    scale: float
    bits: int
    signed: bool
    zero_point: int
    pads: tuple[int, int, int, int] | None = None  # the quantized tensor is a Pad's output (zero padding)


def _int_type(dtype: np.dtype) -> tuple[int, bool] | None:
    return _INT_TYPES.get(str(dtype))


def axis_shape(ndim: int, axis: int, size: int) -> tuple[int, ...]:
    """Broadcast shape putting ``size`` values along ``axis`` of an ``ndim`` array (scalar when size 1)."""
    if size == 1:
        return ()
    shape = [1] * ndim
    shape[axis % ndim] = size
    return tuple(shape)


def weight_qinfo(imp: _Importer, node: onnx.NodeProto, name: str, out_axis: int, scale_mul: float = 1.0
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """QDQ integers of a weight as ``(params, attrs)`` for a conv/gemm float node, or nothing when the
    weight is plain float."""
    qc = imp.qconsts.get(name)
    if qc is None:
        return {}, {}
    bits = qc.bits + 1 if qc.zero_point_nonzero or not qc.signed else qc.bits  # q - zp needs one more bit
    if bits > 17:
        raise imp.fail(node, f"{qc.bits}-bit weights are not supported", "use at most 16-bit weights")
    if qc.scale.size > 1 and qc.axis % qc.q.ndim != out_axis:
        raise imp.fail(node, f"weights are quantized along axis {qc.axis}, not the output channels",
                       "quantize weights per output channel or per tensor")
    return {"weight_q": qc.q.astype(np.int64)}, {
        "weight_scale": tuple(float(s) * scale_mul for s in qc.scale.reshape(-1)), "weight_bits": bits}


def _qparams(imp: _Importer, node: onnx.NodeProto, a: dict[str, Any]
             ) -> tuple[np.ndarray, np.ndarray, tuple[int, bool]]:
    scale = imp.fconst(node, node.input[1], "scale")
    if len(node.input) > 2 and node.input[2]:
        zp = imp.const(node, node.input[2], "zero point")
        kind = _int_type(zp.dtype)
    else:
        zp = np.zeros(1, dtype=np.int64)
        out_dtype = a.get("output_dtype") or 0
        kind = _int_type(helper.tensor_dtype_to_np_dtype(out_dtype)) if out_dtype else (8, False)
    if kind is None:
        raise imp.fail(node, f"quantized type {zp.dtype} is not supported",
                       "use int4, uint4, int8, uint8, int16 or uint16")
    if a.get("block_size"):
        raise imp.fail(node, "blocked quantization is not supported", "quantize per tensor or per channel")
    return scale, zp.astype(np.int64), kind


def op_quantize_linear(imp: _Importer, node: onnx.NodeProto) -> None:
    """A float constant: quantized (folded); an activation: waits for its DequantizeLinear."""
    a = imp.attrs(node, {"axis": 1, "saturate": 1, "block_size": 0, "output_dtype": 0, "precision": 0})
    scale, zp, (bits, signed) = _qparams(imp, node, a)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    src = node.input[0]
    if src in imp.consts:  # quantized weight stored as float: fold
        x = imp.consts[src].astype(np.float64)
        shp = axis_shape(x.ndim, a["axis"], scale.size)
        q = np.clip(np.rint(x / scale.reshape(shp)) + zp.reshape(shp if zp.size > 1 else ()), lo, hi)
        imp.consts[node.output[0]] = q.astype(np.int64)
        imp.int_types[node.output[0]] = (bits, signed)
        return
    if scale.size != 1 or zp.size != 1:
        raise imp.fail(node, "activations need one scale and one zero point",
                       "quantize activations per tensor (per-channel quantization is for weights)")
    pads = None
    if src in imp.padded:  # quantizing zero padding gives the zero point, i.e. v = 0: pad after the QDQ pair
        if imp.uses.get(src, 0) != 1:
            raise imp.fail(node, f"the padded tensor {src!r} is read by several nodes")
        edge, pads = imp.padded.pop(src)
    else:
        edge = imp.edge(node, src)
    imp.pending[node.output[0]] = PendingQuant(edge, float(scale.reshape(())), bits, signed, int(zp.reshape(())),
                                               pads)


def op_dequantize_linear(imp: _Importer, node: onnx.NodeProto) -> None:
    """After a QuantizeLinear: a ``fakequant`` node; of an integer constant: a quantized weight."""
    a = imp.attrs(node, {"axis": 1, "block_size": 0, "output_dtype": 0})
    src = node.input[0]
    if src in imp.pending:
        p = imp.pending[src]
        scale, zp, (bits, signed) = _qparams(imp, node, a)
        same = (scale.size == 1 and float(scale.reshape(())) == p.scale and (bits, signed) == (p.bits, p.signed)
                and zp.size == 1 and int(zp.reshape(())) == p.zero_point)
        if not same:
            raise imp.fail(node, "DequantizeLinear parameters differ from its QuantizeLinear's",
                           "use the same scale and zero point on both sides of a QDQ pair")
        attrs = {"scale": p.scale, "bits": bits, "signed": signed, "zero_point": p.zero_point}
        if p.pads is None:
            imp.emit("fakequant", [p.edge], node.output[0], attrs)
        else:
            fq = imp.emit("fakequant", [p.edge], f"{node.output[0]}:unpadded", attrs)
            imp.padded[node.output[0]] = (fq, p.pads)
        return
    if src not in imp.consts:
        raise imp.fail(node, f"input {src!r} is neither a constant nor a QuantizeLinear output",
                       "integer model inputs are not supported; give the model a float input")
    q = np.asarray(imp.consts[src])
    kind = imp.int_types.get(src) or _int_type(q.dtype)
    if kind is None:
        raise imp.fail(node, f"constant of type {q.dtype} is not a supported quantized type")
    scale = imp.fconst(node, node.input[1], "scale")
    zp = (imp.const(node, node.input[2], "zero point").astype(np.int64)
          if len(node.input) > 2 and node.input[2] else np.zeros(1, dtype=np.int64))
    shp = axis_shape(q.ndim, a["axis"], scale.size)
    qi = q.astype(np.int64) - zp.reshape(shp if zp.size > 1 else ())
    imp.consts[node.output[0]] = qi * scale.reshape(shp)
    imp.qconsts[node.output[0]] = QConst(qi, scale.reshape(-1), a["axis"], kind[0], kind[1], bool(np.any(zp)))


QDQ_OPS: dict[str, Callable[[_Importer, onnx.NodeProto], None]] = {
    "QuantizeLinear": op_quantize_linear,
    "DequantizeLinear": op_dequantize_linear,
}
"""The QDQ operators, by ONNX op type."""
