"""A tiny ONNX writer for CNNs (float and QDQ), built on ``onnx.helper``.

Used by the demo training script to export its model and by tests and
:mod:`aiompc.nn.testing` to make ONNX graphs without downloads.  Each method appends one node and
returns the name of its output tensor::

    b = OnnxBuilder((1, 8, 8))
    y = b.relu(b.conv(b.input, w1, b1, pads=1))
    model = b.build(b.gemm(b.flatten(y), w2, b2))
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from aiompc.errors import InputError

__all__ = ["OnnxBuilder", "QDQ_TYPES"]

QDQ_TYPES = {(4, True): TensorProto.INT4, (4, False): TensorProto.UINT4, (8, True): TensorProto.INT8,
             (8, False): TensorProto.UINT8, (16, True): TensorProto.INT16, (16, False): TensorProto.UINT16,
             (32, True): TensorProto.INT32}


def _pair(v: int | Sequence[int]) -> list[int]:
    return [int(v), int(v)] if isinstance(v, (int, np.integer)) else [int(x) for x in v]


def _pads(v: int | Sequence[int]) -> list[int]:
    if isinstance(v, (int, np.integer)):
        return [int(v)] * 4
    v = [int(x) for x in v]
    return v * 2 if len(v) == 2 else v


class OnnxBuilder:
    """Accumulates nodes and initializers; :meth:`build` returns a checked ``ModelProto``.

    ``input_shape`` is per sample (the batch axis is dynamic, named ``N``)."""

    def __init__(self, input_shape: Sequence[int], *, input_name: str = "input", opset: int = 17,
                 graph_name: str = "aiompc_model") -> None:
        self.input = input_name
        self.input_shape = tuple(int(d) for d in input_shape)
        self.opset = opset
        self.graph_name = graph_name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: np.ndarray | float, hint: str = "c", dtype: int | None = None) -> str:
        """Add an initializer (float32 by default; ``dtype`` a TensorProto type for integers)."""
        name = self._name(hint)
        arr = np.asarray(value)
        if dtype is None:
            self.inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        elif dtype == TensorProto.INT64:
            self.inits.append(numpy_helper.from_array(arr.astype(np.int64), name))
        else:
            self.inits.append(helper.make_tensor(name, dtype, arr.shape, arr.astype(np.int64).reshape(-1).tolist()))
        return name

    def node(self, op: str, inputs: Sequence[str], hint: str | None = None, **attrs: Any) -> str:
        """Append a node of any operator with one output; returns the output name."""
        out = self._name(hint or op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    # ---- layers

    def _weight(self, weight: np.ndarray | None, weight_name: str | None) -> str:
        if weight_name is not None:
            return weight_name
        if weight is None:
            raise InputError("give the weights or the name of a weight tensor")
        return self.const(weight, "w")

    def conv(self, x: str, weight: np.ndarray | None, bias: np.ndarray | None = None, stride: int | Sequence[int] = 1,
             pads: int | Sequence[int] = 0, groups: int = 1, *, weight_name: str | None = None) -> str:
        """``Conv``; ``weight`` float (O, C/groups, kh, kw) or the name of a (dequantized) weight tensor."""
        w = self._weight(weight, weight_name)
        ins = [x, w] + ([self.const(bias, "b")] if bias is not None else [])
        shape = np.shape(weight) if weight is not None else None
        attrs: dict[str, Any] = {"strides": _pair(stride), "pads": _pads(pads), "group": groups}
        if shape is not None:
            attrs["kernel_shape"] = list(shape[2:])
        return self.node("Conv", ins, "conv", **attrs)

    def gemm(self, x: str, weight: np.ndarray | None, bias: np.ndarray | None = None, *,
             weight_name: str | None = None) -> str:
        """``Gemm`` with ``transB=1``: ``weight`` is (O, I)."""
        w = self._weight(weight, weight_name)
        ins = [x, w] + ([self.const(bias, "b")] if bias is not None else [])
        return self.node("Gemm", ins, "gemm", transB=1)

    def matmul(self, x: str, weight: np.ndarray) -> str:
        """``MatMul`` with a constant (I, O) right operand."""
        return self.node("MatMul", [x, self.const(weight, "w")], "matmul")

    def batchnorm(self, x: str, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray,
                  eps: float = 1e-5) -> str:
        ins = [x] + [self.const(v, k) for v, k in ((scale, "gamma"), (bias, "beta"), (mean, "mean"), (var, "var"))]
        return self.node("BatchNormalization", ins, "bn", epsilon=float(eps))

    def relu(self, x: str) -> str:
        return self.node("Relu", [x])

    def partial_relu(self, x: str, mask: np.ndarray, form: str = "sub") -> str:
        """A partial ReLU (SNL / SENet) with a constant 0/1 ``mask`` (broadcast against ``(N, C, H, W)``) as
        PyTorch exports it: ``"sub"`` ``x + m * (Relu(x) - x)``, ``"mul"`` ``m * Relu(x) + (1 - m) * x``,
        ``"where"`` ``Where(m, Relu(x), x)``."""
        r = self.relu(x)
        m = np.asarray(mask, dtype=np.float64)
        if form == "where":
            return self.node("Where", [self.const(m, "mask", dtype=TensorProto.BOOL), r, x])
        if form == "sub":
            return self.add(x, self.node("Mul", [self.const(m, "mask"), self.node("Sub", [r, x])]))
        if form == "mul":
            return self.add(self.node("Mul", [self.const(m, "mask"), r]), self.node("Mul", [x, self.const(1 - m, "mask")]))
        raise ValueError(f"unknown partial ReLU form {form!r}; choose sub, mul or where")

    def clip(self, x: str, lo: float | None, hi: float | None) -> str:
        ins = [x, self.const(float(lo), "min") if lo is not None else "",
               self.const(float(hi), "max") if hi is not None else ""]
        while ins and ins[-1] == "":
            ins.pop()
        return self.node("Clip", ins)

    def maxpool(self, x: str, kernel: int | Sequence[int], stride: int | Sequence[int] | None = None,
                pads: int | Sequence[int] = 0) -> str:
        k = _pair(kernel)
        return self.node("MaxPool", [x], kernel_shape=k, strides=_pair(stride) if stride is not None else k,
                         pads=_pads(pads))

    def avgpool(self, x: str, kernel: int | Sequence[int], stride: int | Sequence[int] | None = None,
                pads: int | Sequence[int] = 0, count_include_pad: int = 1) -> str:
        k = _pair(kernel)
        return self.node("AveragePool", [x], kernel_shape=k, strides=_pair(stride) if stride is not None else k,
                         pads=_pads(pads), count_include_pad=count_include_pad)

    def global_avgpool(self, x: str) -> str:
        return self.node("GlobalAveragePool", [x], "gap")

    def add(self, a: str, b: str) -> str:
        return self.node("Add", [a, b])

    def concat(self, xs: Sequence[str], axis: int = 1) -> str:
        return self.node("Concat", list(xs), axis=axis)

    def flatten(self, x: str) -> str:
        return self.node("Flatten", [x], axis=1)

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        return self.node("Reshape", [x, self.const(np.asarray(shape), "shape", TensorProto.INT64)])

    # ---- QDQ

    def qdq(self, x: str, scale: float, bits: int = 8, signed: bool = False) -> str:
        """``QuantizeLinear`` then ``DequantizeLinear`` with zero point 0 of type ``(bits, signed)``."""
        s = self.const(float(scale), "scale")
        zp = self.const(np.zeros((), dtype=np.int64), "zp", QDQ_TYPES[(bits, signed)])
        q = self.node("QuantizeLinear", [x, s, zp], "q")
        return self.node("DequantizeLinear", [q, s, zp], "dq")

    def qweight(self, q: np.ndarray, scale: np.ndarray | float, bits: int = 8, axis: int = 0) -> str:
        """A ``DequantizeLinear`` of constant signed integers ``q`` (per-channel ``scale`` along ``axis``)."""
        qn = self.const(q, "wq", QDQ_TYPES[(bits, True)])
        s = self.const(np.asarray(scale, dtype=np.float32), "wscale")
        zp_shape = np.shape(scale)
        zp = self.const(np.zeros(zp_shape, dtype=np.int64), "wzp", QDQ_TYPES[(bits, True)])
        return self.node("DequantizeLinear", [qn, s, zp], "wdq", axis=axis)

    # ---- finish

    def build(self, output: str) -> onnx.ModelProto:
        """The model with one float input ``(N, *input_shape)`` and output ``output``; checked by onnx."""
        inp = helper.make_tensor_value_info(self.input, TensorProto.FLOAT, ["N", *self.input_shape])
        out = helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
        graph = helper.make_graph(self.nodes, self.graph_name, [inp], [out], initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="aiompc")
        model.ir_version = min(model.ir_version, 10)
        model = onnx.shape_inference.infer_shapes(model)  # fills in the output's type
        del model.graph.value_info[:]
        onnx.checker.check_model(model)
        return model
