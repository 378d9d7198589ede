"""ONNX import: float and QDQ-quantized CNNs to a :class:`~aiompc.nn.graph.FloatGraph`.

Supported operators (default domain): Conv (2-D, dilation 1, any groups), Gemm, MatMul (with a constant
right operand), Relu, Clip, MaxPool, AveragePool, GlobalAveragePool, Add (two tensors, or a constant
bias after Conv/Gemm/MatMul), Concat (channel axis), Flatten (axis 1), Reshape (flattening only),
BatchNormalization (inference), QuantizeLinear/DequantizeLinear, Identity, Dropout and Constant.

QDQ models: a ``DequantizeLinear`` of a constant integer tensor is a quantized weight (its integers and
scales are kept for the quantizer); a ``QuantizeLinear``/``DequantizeLinear`` pair on an activation
becomes a ``fakequant`` node that fixes that tensor's scale and width.  Quantization must be symmetric
(zero point 0) with int4/uint4/int8/uint8/int16/uint16 activations.

Anything else raises :class:`~aiompc.errors.UnsupportedModel` naming the node and the operator or
attribute, with a hint.  The batch axis is free; all other input dimensions must be static (or be
given as ``input_shape``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from aiompc.errors import UnsupportedModel
from aiompc.nn.graph import FloatGraph, FloatNode, infer_shape
from aiompc.nn.kernels import out_size

__all__ = ["load_onnx", "SUPPORTED_OPS"]

SUPPORTED_OPS = (
    "Conv", "Gemm", "MatMul", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "Add", "Concat",
    "Flatten", "Reshape", "BatchNormalization", "QuantizeLinear", "DequantizeLinear", "Identity", "Dropout",
    "Constant",
)

_INT_TYPES = {"int4": (4, True), "uint4": (4, False), "int8": (8, True), "uint8": (8, False),
              "int16": (16, True), "uint16": (16, False), "int32": (32, True)}


@dataclass
class _QConst:
    """A constant produced by DequantizeLinear: integers ``q`` (zero point removed), scale along ``axis``."""

    q: np.ndarray
    scale: np.ndarray
    axis: int
    bits: int
    signed: bool
    zero_point_nonzero: bool


@dataclass
class _Pending:
    """A QuantizeLinear on an activation, waiting for its DequantizeLinear."""

    edge: str
    scale: float
    bits: int
    signed: bool


def _int_type(dtype: np.dtype) -> tuple[int, bool] | None:
    return _INT_TYPES.get(str(dtype))


class _Importer:
    def __init__(self, model: onnx.ModelProto, input_shape: Sequence[int] | None) -> None:
        self.model = model
        self.label = ""  # name of the node being imported, for error messages
        self.labels: set[str] = set()
        self.g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in self.g.initializer}
        self.qconsts: dict[str, _QConst] = {}
        self.int_types: dict[str, tuple[int, bool]] = {}  # integer constants made by QuantizeLinear
        self.pending: dict[str, _Pending] = {}
        self.alias: dict[str, str] = {}
        self.nodes: list[FloatNode] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.uses: dict[str, int] = {}
        for n in self.g.node:
            for i in n.input:
                self.uses[i] = self.uses.get(i, 0) + 1
        for o in self.g.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1
        self.input = self._graph_input(input_shape)

    # ------------------------------------------------------------------ helpers

    def _label(self, node: onnx.NodeProto, index: int) -> str:
        """A unique node name: the ONNX name, or ``Op_index`` when it is empty or taken."""
        name = node.name or f"{node.op_type}_{index}"
        if name in self.labels:
            name = f"{name}#{index}"
        self.labels.add(name)
        return name

    def _fail(self, node: onnx.NodeProto, msg: str, hint: str = "") -> UnsupportedModel:
        return UnsupportedModel(f"ONNX node {self.label!r} (op {node.op_type}): {msg}" + (f". {hint}" if hint else ""))

    def _attrs(self, node: onnx.NodeProto, spec: dict[str, Any]) -> dict[str, Any]:
        got = {}
        for a in node.attribute:
            if a.name not in spec:
                raise self._fail(node, f"attribute {a.name!r} is not supported",
                                 f"supported attributes: {', '.join(sorted(spec)) or 'none'}")
            v = helper.get_attribute_value(a)
            got[a.name] = v.decode() if isinstance(v, bytes) else v
        return {**spec, **got}

    def _graph_input(self, input_shape: Sequence[int] | None) -> str:
        real = [i for i in self.g.input if i.name not in self.consts]
        if len(real) != 1:
            raise UnsupportedModel(f"the model has {len(real)} non-constant inputs ({[i.name for i in real]}); "
                                   "aiompc evaluates models with exactly one input tensor")
        inp = real[0]
        if input_shape is not None:
            shape = tuple(int(d) for d in input_shape)
        else:
            dims = inp.type.tensor_type.shape.dim
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims[1:])
            if not dims or any(d <= 0 for d in shape):
                raise UnsupportedModel(f"model input {inp.name!r} has dynamic or missing dimensions; "
                                       "pass input_shape=(C, H, W) (per sample, without the batch axis)")
        if len(shape) not in (1, 3) or min(shape) < 1:
            raise UnsupportedModel(f"model input {inp.name!r}: per-sample shape {shape} must be (C, H, W) or (F,)")
        self.shapes[inp.name] = shape
        self.alias[inp.name] = inp.name
        return inp.name

    def _edge(self, node: onnx.NodeProto, name: str) -> str:
        if name in self.alias:
            return self.alias[name]
        if name in self.consts:
            raise self._fail(node, f"input {name!r} is a constant where a computed tensor is expected",
                             "only weights, biases and parameters may be constants")
        if name in self.pending:
            raise self._fail(node, f"input {name!r} is a QuantizeLinear output read without DequantizeLinear",
                             "integer-only (QOperator) models are not supported; export in QDQ format")
        raise self._fail(node, f"input {name!r} is not computed before this node",
                         "the graph must be topologically sorted and use only supported operators")

    def _const(self, node: onnx.NodeProto, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise self._fail(node, f"{what} {name!r} must be a constant (initializer)",
                             "computed weights are not supported")
        return np.asarray(self.consts[name])

    def _fconst(self, node: onnx.NodeProto, name: str, what: str) -> np.ndarray:
        return self._const(node, name, what).astype(np.float64)

    def _add(self, op: str, inputs: Sequence[str], output: str, attrs: dict[str, Any] | None = None,
             params: dict[str, np.ndarray] | None = None) -> str:
        n = FloatNode(op, self.label, tuple(inputs), output, attrs or {}, params or {})
        self.shapes[output] = infer_shape(n, [self.shapes[i] for i in n.inputs])
        self.nodes.append(n)
        self.alias[output] = output
        return output

    def _window_attrs(self, node: onnx.NodeProto, a: dict[str, Any], x: str, kernel: tuple[int, int]
                      ) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
        if a.get("dilations") not in (None, [1, 1]):
            raise self._fail(node, f"dilations {a['dilations']} are not supported", "only dilation 1 is supported")
        if a.get("kernel_shape") is not None and tuple(a["kernel_shape"]) != kernel:
            raise self._fail(node, f"kernel_shape {a['kernel_shape']} does not match the weights {kernel}")
        stride = tuple(a["strides"]) if a.get("strides") is not None else (1, 1)
        if len(stride) != 2 or len(kernel) != 2:
            raise self._fail(node, "only 2-D windows are supported", "use (N, C, H, W) tensors")
        shape = self.shapes[x]
        if len(shape) != 3:
            raise self._fail(node, f"input has per-sample shape {shape}, expected (C, H, W)")
        auto = a.get("auto_pad", "NOTSET")
        if auto == "NOTSET":
            pads = tuple(a["pads"]) if a.get("pads") is not None else (0, 0, 0, 0)
        elif auto == "VALID":
            pads = (0, 0, 0, 0)
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            total = [max((-(-shape[1 + i] // stride[i]) - 1) * stride[i] + kernel[i] - shape[1 + i], 0) for i in (0, 1)]
            small = [t // 2 for t in total]
            big = [t - t // 2 for t in total]
            begin, end = (small, big) if auto == "SAME_UPPER" else (big, small)
            pads = (begin[0], begin[1], end[0], end[1])
        else:
            raise self._fail(node, f"auto_pad {auto!r} is not supported")
        if len(pads) != 4 or min(pads) < 0:
            raise self._fail(node, f"pads {pads} are not supported", "give 4 non-negative pads")
        if a.get("ceil_mode", 0):
            for i in (0, 1):
                n_floor = out_size(shape[1 + i], kernel[i], stride[i], pads[i], pads[i + 2])
                n_ceil = -(-(shape[1 + i] + pads[i] + pads[i + 2] - kernel[i]) // stride[i]) + 1
                if n_floor != n_ceil:
                    raise self._fail(node, "ceil_mode=1 changes the output size here",
                                     "export with ceil_mode=0 or pad the input explicitly")
        return stride, pads  # type: ignore[return-value]

    def _weight_qinfo(self, node: onnx.NodeProto, name: str, out_axis: int, scale_mul: float = 1.0
                      ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """QDQ integers of a weight (params, attrs) or nothing when the weight is plain float."""
        qc = self.qconsts.get(name)
        if qc is None:
            return {}, {}
        if qc.zero_point_nonzero or not qc.signed:
            raise self._fail(node, "asymmetric (non-zero zero point or unsigned) weights are not supported",
                             "quantize weights symmetrically (signed, zero point 0)")
        if qc.bits > 16:
            raise self._fail(node, f"{qc.bits}-bit weights are not supported", "use at most 16-bit weights")
        if qc.scale.size > 1 and qc.axis % qc.q.ndim != out_axis:
            raise self._fail(node, f"weights are quantized along axis {qc.axis}, not the output channels",
                             "quantize weights per output channel or per tensor")
        return {"weight_q": qc.q.astype(np.int64)}, {
            "weight_scale": tuple(float(s) * scale_mul for s in qc.scale.reshape(-1)), "weight_bits": qc.bits}

    # ------------------------------------------------------------------ operators

    def op_Conv(self, node: onnx.NodeProto) -> None:
        a = self._attrs(node, {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None,
                               "pads": None, "strides": None})
        x = self._edge(node, node.input[0])
        w = self._fconst(node, node.input[1], "weight")
        if w.ndim != 4:
            raise self._fail(node, f"weights of shape {w.shape}: only 2-D convolutions are supported")
        b = self._fconst(node, node.input[2], "bias") if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
        stride, pads = self._window_attrs(node, a, x, w.shape[2:])
        params, extra = self._weight_qinfo(node, node.input[1], 0)
        self._add("conv", [x], node.output[0], {"stride": stride, "pads": pads, "groups": int(a["group"]), **extra},
                  {"weight": w, "bias": b.reshape(-1), **params})

    def op_Gemm(self, node: onnx.NodeProto) -> None:
        a = self._attrs(node, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
        if a["transA"]:
            raise self._fail(node, "transA=1 is not supported", "the activation must be the left operand")
        x = self._edge(node, node.input[0])
        bmat = self._fconst(node, node.input[1], "weight")
        if bmat.ndim != 2:
            raise self._fail(node, f"weight of shape {bmat.shape} must be 2-D")
        w = (bmat if a["transB"] else bmat.T) * a["alpha"]
        bias = np.zeros(w.shape[0])
        if len(node.input) > 2 and node.input[2]:
            c = self._fconst(node, node.input[2], "bias") * a["beta"]
            if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
                raise self._fail(node, f"bias of shape {c.shape} is not per output", "use a bias of shape (N,)")
            bias = np.broadcast_to(c.reshape(-1), (w.shape[0],)).copy()
        params, extra = self._weight_qinfo(node, node.input[1], 0 if a["transB"] else 1, float(a["alpha"]))
        if params and not a["transB"]:
            params["weight_q"] = params["weight_q"].T.copy()
        self._add("gemm", [x], node.output[0], extra, {"weight": w, "bias": bias, **params})

    def op_MatMul(self, node: onnx.NodeProto) -> None:
        self._attrs(node, {})
        x = self._edge(node, node.input[0])
        bmat = self._fconst(node, node.input[1], "right operand")
        if bmat.ndim != 2:
            raise self._fail(node, f"right operand of shape {bmat.shape} must be a 2-D constant")
        params, extra = self._weight_qinfo(node, node.input[1], 1)
        if params:
            params["weight_q"] = params["weight_q"].T.copy()
        self._add("gemm", [x], node.output[0], extra, {"weight": bmat.T.copy(), "bias": np.zeros(bmat.shape[1]),
                                                       **params})

    def op_Add(self, node: onnx.NodeProto) -> None:
        self._attrs(node, {})
        consts = [i for i in node.input if i in self.consts]
        if not consts:
            self._add("add", [self._edge(node, i) for i in node.input], node.output[0])
            return
        if len(consts) != 1 or len(node.input) != 2:
            raise self._fail(node, "adding constants only is not supported")
        (c_name,) = consts
        x = self._edge(node, node.input[1] if node.input[0] == c_name else node.input[0])
        prod = next((n for n in self.nodes if n.output == x), None)
        onnx_name = node.input[1] if node.input[0] == c_name else node.input[0]
        if prod is None or prod.op not in ("conv", "gemm") or self.uses.get(onnx_name, 0) != 1:
            raise self._fail(node, "a constant can only be added as the bias of a Conv/Gemm/MatMul it directly follows",
                             "fold the constant into the preceding layer's bias")
        c = self._fconst(node, c_name, "bias")
        o = prod.params["bias"].shape[0]
        per_out = c.reshape(-1) if c.size == o else None
        shapes = ((o,), (1, o)) if prod.op == "gemm" else ((o, 1, 1), (1, o, 1, 1))
        ok_shape = c.size == 1 or (per_out is not None and c.shape in shapes)
        if not ok_shape:
            raise self._fail(node, f"constant of shape {c.shape} is not a per-channel bias")
        prod.params["bias"] = prod.params["bias"] + np.broadcast_to(c.reshape(-1), (o,))
        self.alias[node.output[0]] = x

    def op_Relu(self, node: onnx.NodeProto) -> None:
        self._attrs(node, {})
        self._add("relu", [self._edge(node, node.input[0])], node.output[0])

    def op_Clip(self, node: onnx.NodeProto) -> None:
        a = self._attrs(node, {"min": None, "max": None})
        lo, hi = a["min"], a["max"]
        if len(node.input) > 1 and node.input[1]:
            lo = float(self._fconst(node, node.input[1], "min"))
        if len(node.input) > 2 and node.input[2]:
            hi = float(self._fconst(node, node.input[2], "max"))
        self._add("clip", [self._edge(node, node.input[0])], node.output[0],
                  {"lo": None if lo is None else float(lo), "hi": None if hi is None else float(hi)})

    def op_MaxPool(self, node: onnx.NodeProto) -> None:
        a = self._attrs(node, {"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": None, "kernel_shape": None,
                               "pads": None, "storage_order": 0, "strides": None})
        if len(node.output) > 1 and node.output[1]:
            raise self._fail(node, "the Indices output is not supported")
        if a["storage_order"]:
            raise self._fail(node, "storage_order=1 is not supported")
        x = self._edge(node, node.input[0])
        kernel = tuple(a["kernel_shape"] or ())
        if len(kernel) != 2:
            raise self._fail(node, f"kernel_shape {a['kernel_shape']} is not 2-D")
        stride, pads = self._window_attrs(node, a, x, kernel)  # type: ignore[arg-type]
        if max(pads[0], pads[2]) >= kernel[0] or max(pads[1], pads[3]) >= kernel[1]:
            raise self._fail(node, f"pads {pads} must be smaller than the kernel {kernel}")
        self._add("maxpool", [x], node.output[0], {"kernel": kernel, "stride": stride, "pads": pads})

    def op_AveragePool(self, node: onnx.NodeProto) -> None:
        a = self._attrs(node, {"auto_pad": "NOTSET", "ceil_mode": 0, "count_include_pad": 0, "dilations": None,
                               "kernel_shape": None, "pads": None, "strides": None})
        x = self._edge(node, node.input[0])
        kernel = tuple(a["kernel_shape"] or ())
        if len(kernel) != 2:
            raise self._fail(node, f"kernel_shape {a['kernel_shape']} is not 2-D")
        stride, pads = self._window_attrs(node, a, x, kernel)  # type: ignore[arg-type]
        if any(pads) and not a["count_include_pad"]:
            raise self._fail(node, "padding with count_include_pad=0 divides border windows by different counts",
                             "export with count_include_pad=1 or without padding")
        self._add("avgpool", [x], node.output[0], {"kernel": kernel, "stride": stride, "pads": pads})

    def op_GlobalAveragePool(self, node: onnx.NodeProto) -> None:
        self._attrs(node, {})
        self._add("global_avgpool", [self._edge(node, node.input[0])], node.output[0])

    def op_Concat(self, node: onnx.NodeProto) -> None:
        a = self._attrs(node, {"axis": None})
        xs = [self._edge(node, i) for i in node.input]
        rank = len(self.shapes[xs[0]]) + 1
        axis = a["axis"] + rank if a["axis"] is not None and a["axis"] < 0 else a["axis"]
        if axis != 1:
            raise self._fail(node, f"concatenation along axis {a['axis']} is not supported",
                             "concatenate channels (axis 1)")
        self._add("concat", xs, node.output[0])

    def op_Flatten(self, node: onnx.NodeProto) -> None:
        a = self._attrs(node, {"axis": 1})
        x = self._edge(node, node.input[0])
        if a["axis"] != 1:
            raise self._fail(node, f"axis={a['axis']} is not supported", "flatten from axis 1 (keep the batch axis)")
        self._flatten(x, node.output[0])

    def _flatten(self, x: str, out: str) -> None:
        if len(self.shapes[x]) == 1:
            self.alias[out] = x
        else:
            self._add("flatten", [x], out)

    def op_Reshape(self, node: onnx.NodeProto) -> None:
        a = self._attrs(node, {"allowzero": 0})
        x = self._edge(node, node.input[0])
        t = [int(v) for v in self._const(node, node.input[1], "shape").reshape(-1)]
        shape = self.shapes[x]
        size = int(np.prod(shape))
        fail = self._fail(node, f"reshape of (N, {', '.join(map(str, shape))}) to {t} is not supported",
                          "only flattening to (N, C*H*W) is supported")
        # the batch axis must stay: -1 (inferred), 0 (copied) or 1 (exporters tracing with batch 1)
        if not t or not (t[0] in (1, -1) or (t[0] == 0 and not a["allowzero"])):
            raise fail
        rest = [shape[i] if d == 0 and not a["allowzero"] and i < len(shape) else d for i, d in enumerate(t[1:])]
        if t[0] == -1 and -1 in rest:
            raise fail
        if rest.count(-1) == 1:
            known = int(np.prod([d for d in rest if d != -1]))
            if known <= 0 or size % known:
                raise fail
            rest = [size // known if d == -1 else d for d in rest]
        if tuple(rest) == (size,):
            self._flatten(x, node.output[0])
        elif tuple(rest) == shape:
            self.alias[node.output[0]] = x
        else:
            raise fail

    def op_BatchNormalization(self, node: onnx.NodeProto) -> None:
        a = self._attrs(node, {"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0, "spatial": 1,
                               "is_test": 1, "consumed_inputs": None})
        if a["training_mode"] or not a["spatial"] or any(o for o in node.output[1:]):
            raise self._fail(node, "training-mode batch normalization is not supported",
                             "export the model in eval mode")
        x = self._edge(node, node.input[0])
        names = ("scale", "bias", "mean", "var")
        params = {k: self._fconst(node, node.input[i + 1], k).reshape(-1) for i, k in enumerate(names)}
        self._add("batchnorm", [x], node.output[0], {"eps": float(a["epsilon"])}, params)

    def op_Identity(self, node: onnx.NodeProto) -> None:
        self._attrs(node, {})
        src = node.input[0]
        if src in self.consts:
            self.consts[node.output[0]] = self.consts[src]
            if src in self.qconsts:
                self.qconsts[node.output[0]] = self.qconsts[src]
        else:
            self.alias[node.output[0]] = self._edge(node, src)

    def op_Dropout(self, node: onnx.NodeProto) -> None:
        self._attrs(node, {"seed": None, "ratio": None, "is_test": None})
        if len(node.output) > 1 and node.output[1] and self.uses.get(node.output[1], 0):
            raise self._fail(node, "the mask output is not supported")
        if len(node.input) > 2 and node.input[2] and bool(self._const(node, node.input[2], "training_mode")):
            raise self._fail(node, "training-mode dropout is not supported", "export the model in eval mode")
        self.alias[node.output[0]] = self._edge(node, node.input[0])

    def op_Constant(self, node: onnx.NodeProto) -> None:
        (attr,) = node.attribute
        if attr.name not in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            raise self._fail(node, f"attribute {attr.name!r} is not supported")
        v = helper.get_attribute_value(attr)
        self.consts[node.output[0]] = numpy_helper.to_array(v) if attr.name == "value" else np.asarray(v)

    def _qparams(self, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, tuple[int, bool]]:
        scale = self._fconst(node, node.input[1], "scale")
        if len(node.input) > 2 and node.input[2]:
            zp = self._const(node, node.input[2], "zero point")
            kind = _int_type(zp.dtype)
        else:
            zp = np.zeros(1, dtype=np.int64)
            out_dtype = a.get("output_dtype") or 0
            kind = _int_type(helper.tensor_dtype_to_np_dtype(out_dtype)) if out_dtype else (8, False)
        if kind is None:
            raise self._fail(node, f"quantized type {zp.dtype} is not supported",
                             "use int4, uint4, int8, uint8, int16 or uint16")
        if a.get("block_size"):
            raise self._fail(node, "blocked quantization is not supported", "quantize per tensor or per channel")
        return scale, zp.astype(np.int64), kind

    def op_QuantizeLinear(self, node: onnx.NodeProto) -> None:
        a = self._attrs(node, {"axis": 1, "saturate": 1, "block_size": 0, "output_dtype": 0, "precision": 0})
        scale, zp, (bits, signed) = self._qparams(node, a)
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        src = node.input[0]
        if src in self.consts:  # quantized weight stored as float: fold
            x = self.consts[src].astype(np.float64)
            shp = _axis_shape(x.ndim, a["axis"], scale.size)
            q = np.clip(np.rint(x / scale.reshape(shp)) + zp.reshape(shp if zp.size > 1 else ()), lo, hi)
            self.consts[node.output[0]] = q.astype(np.int64)
            self.int_types[node.output[0]] = (bits, signed)
            return
        if scale.size != 1 or np.any(zp):
            raise self._fail(node, "activations need one scale and zero point 0",
                             "quantize activations per tensor and symmetrically (zero point 0)")
        self.pending[node.output[0]] = _Pending(self._edge(node, src), float(scale.reshape(())), bits, signed)

    def op_DequantizeLinear(self, node: onnx.NodeProto) -> None:
        a = self._attrs(node, {"axis": 1, "block_size": 0, "output_dtype": 0})
        src = node.input[0]
        if src in self.pending:
            p = self.pending[src]
            scale, zp, (bits, signed) = self._qparams(node, a)
            same = scale.size == 1 and float(scale.reshape(())) == p.scale and (bits, signed) == (p.bits, p.signed)
            if not same or np.any(zp):
                raise self._fail(node, "DequantizeLinear parameters differ from its QuantizeLinear's")
            self._add("fakequant", [p.edge], node.output[0], {"scale": p.scale, "bits": bits, "signed": signed})
            return
        if src not in self.consts:
            raise self._fail(node, f"input {src!r} is neither a constant nor a QuantizeLinear output",
                             "integer model inputs are not supported; give the model a float input")
        q = np.asarray(self.consts[src])
        kind = self.int_types.get(src) or _int_type(q.dtype)
        if kind is None:
            raise self._fail(node, f"constant of type {q.dtype} is not a supported quantized type")
        scale = self._fconst(node, node.input[1], "scale")
        zp = (self._const(node, node.input[2], "zero point").astype(np.int64)
              if len(node.input) > 2 and node.input[2] else np.zeros(1, dtype=np.int64))
        shp = _axis_shape(q.ndim, a["axis"], scale.size)
        qi = q.astype(np.int64) - zp.reshape(shp if zp.size > 1 else ())
        self.consts[node.output[0]] = qi * scale.reshape(shp)
        self.qconsts[node.output[0]] = _QConst(qi, scale.reshape(-1), a["axis"], kind[0], kind[1], bool(np.any(zp)))

    # ------------------------------------------------------------------ driver

    def run(self) -> FloatGraph:
        for index, node in enumerate(self.g.node):
            self.label = self._label(node, index)
            if node.domain not in ("", "ai.onnx"):
                raise self._fail(node, f"operators of domain {node.domain!r} are not supported",
                                 "export a plain ONNX model without runtime-specific fused operators")
            handler: Callable[[onnx.NodeProto], None] | None = getattr(self, f"op_{node.op_type}", None)
            if handler is None:
                raise self._fail(node, "operator not supported", f"supported operators: {', '.join(SUPPORTED_OPS)}")
            try:
                handler(node)
            except UnsupportedModel as e:
                if "ONNX node" in str(e):
                    raise
                raise self._fail(node, str(e)) from e
        if len(self.g.output) != 1:
            raise UnsupportedModel(f"the model has {len(self.g.output)} outputs; aiompc evaluates single-output models")
        out_name = self.g.output[0].name
        if out_name not in self.alias:
            raise UnsupportedModel(f"model output {out_name!r} is not computed from the input")
        out = self.alias[out_name]
        if out == self.input:
            raise UnsupportedModel("the model output is its input; there is nothing to evaluate")
        return _prune(FloatGraph(self.input, out, self.shapes, self.nodes))


def _axis_shape(ndim: int, axis: int, size: int) -> tuple[int, ...]:
    """Broadcast shape putting ``size`` values along ``axis`` of an ``ndim`` array (scalar when size 1)."""
    if size == 1:
        return ()
    shape = [1] * ndim
    shape[axis % ndim] = size
    return tuple(shape)


def _prune(g: FloatGraph) -> FloatGraph:
    """Drop nodes whose outputs do not reach the graph output."""
    live = {g.output}
    keep: list[FloatNode] = []
    for n in reversed(g.nodes):
        if n.output in live:
            keep.append(n)
            live.update(n.inputs)
    g.nodes = keep[::-1]
    g.shapes = {k: v for k, v in g.shapes.items() if k in live or k == g.input}
    return g


def load_onnx(model: str | os.PathLike[str] | bytes | onnx.ModelProto,
              input_shape: Sequence[int] | None = None) -> FloatGraph:
    """Import an ONNX model (path, serialized bytes or ``ModelProto``) into a float graph.

    ``input_shape``: the per-sample input shape, needed only when the model leaves it dynamic.
    Raises :class:`UnsupportedModel` for an operator, attribute or structure aiompc cannot evaluate
    (the message names the node and operator), and for bytes that are not an ONNX model."""
    if isinstance(model, onnx.ModelProto):
        proto = model
    else:
        try:
            proto = onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load(os.fspath(model))
        except OSError:
            raise
        except Exception as e:  # protobuf's DecodeError and friends
            raise UnsupportedModel(f"not a readable ONNX model: {e}") from e
    return _Importer(proto, input_shape).run()
