"""ONNX import: float and QDQ-quantized CNNs, as PyTorch's exporters write them, to a
:class:`~aiompc.nn.graph.FloatGraph`.

First :func:`aiompc.nn.onnx_fold.fold_constants` evaluates, with onnx's shape inference and reference
evaluator, everything that is not computation on the input (``Shape``/``Gather``/``Unsqueeze``/``Concat``
arithmetic of ``view(x.size(0), -1)``, ``Constant``, casts of weights, the pads of ``F.pad``).  What
remains is imported node by node through one explicit table (:data:`SUPPORTED_OPS`):

* here: Conv (2-D, dilation 1, any groups), Gemm, MatMul (constant right operand), Relu, Clip (ReLU6),
  MaxPool, AveragePool, GlobalAveragePool, Concat (channel axis), Flatten (axis 1), Reshape (flattening,
  the batch axis kept), BatchNormalization (inference; folded into a preceding conv by the quantizer,
  else a per-channel affine layer), Identity, Dropout, Constant;
* :mod:`aiompc.nn.onnx_affine`: Add (residual, or of a constant), Sub/Mul/Div by constants;
* :mod:`aiompc.nn.onnx_layout`: ReduceMean over the spatial axes, Pad before Conv/AveragePool, Squeeze,
  Cast of activations;
* :mod:`aiompc.nn.onnx_qdq`: QuantizeLinear/DequantizeLinear (QDQ models);
* :mod:`aiompc.nn.onnx_transformer`: transformer layers (MatMul of a constant or of two activations, Gemm on
  tokens, Add/Sub/Mul/Div of constants on tokens, Transpose, Reshape, Unsqueeze, Squeeze, Flatten, Gather, Slice,
  Split, Softmax, LayerNormalization, Gelu, ReduceMean over one token axis), as PyTorch exports them at a batch
  of 1, with :mod:`aiompc.nn.onnx_fuse_transformer` fusing the decomposed LayerNorm and erf/tanh GELU first;
  these handlers fall back to the CNN meaning on ``(C, H, W)`` / ``(F,)`` tensors;
* :mod:`aiompc.nn.onnx_partial_relu`: the partial ReLU of ReLU-reduced networks (SNL / SENet), recognised as
  ``Where(mask, Relu(x), x)``, ``x + m * (Relu(x) - x)`` or ``m * Relu(x) + (1 - m) * x`` with a constant 0/1
  mask and rewritten into one node before the import.

Opsets 13 to 21 are covered (attributes that became inputs are read either way).  Anything else raises
:class:`~aiompc.errors.UnsupportedModel` naming the node and the operator or attribute, with what to use
instead.  The batch axis is free (static or dynamic); all other input dimensions must be static (or be
given as ``input_shape``).  External-data tensors are read from beside the model file.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from aiompc.errors import UnsupportedModel
from aiompc.nn.graph import TOKEN_OPS, FloatGraph, FloatNode, infer_shape
from aiompc.nn.tensor_ops import out_size
from aiompc.nn.onnx_affine import AFFINE_OPS
from aiompc.nn.onnx_fold import fold_constants
from aiompc.nn.onnx_layout import LAYOUT_OPS
from aiompc.nn.onnx_partial_relu import DOMAIN as PARTIAL_RELU_DOMAIN
from aiompc.nn.onnx_partial_relu import OP as PARTIAL_RELU_OP
from aiompc.nn.onnx_partial_relu import fuse_partial_relus
from aiompc.nn.onnx_qdq import QDQ_OPS, PendingQuant, QConst, weight_qinfo
from aiompc.nn.onnx_fuse_transformer import fuse_transformer
from aiompc.nn.onnx_transformer import TRANSFORMER_OPS, simplify_layout

__all__ = ["load_onnx", "SUPPORTED_OPS"]

_ALTERNATIVES = {
    "LogSoftmax": "drop the final LogSoftmax (aiompc returns the logits; their argmax is the same class)",
    "Sigmoid": "use ReLU or a Clip (ReLU6) activation",
    "Tanh": "use ReLU or a Clip (ReLU6) activation",
    "LeakyRelu": "use ReLU",
    "Erf": "an Erf outside GELU's x * 0.5 * (1 + erf(x / sqrt(2))) is not supported (nn.GELU exports that form)",
    "PRelu": "use ReLU",
    "HardSwish": "use ReLU or a Clip (ReLU6) activation",
    "HardSigmoid": "use a Clip (ReLU6) activation",
    "ConvTranspose": "use Conv layers (upsampling is not supported)",
    "Resize": "use strided Conv or pooling instead of resizing",
    "Upsample": "use strided Conv or pooling instead of resizing",
    "ReduceMax": "use MaxPool, or ReduceMean over the spatial axes",
    "ReduceSum": "use ReduceMean over the spatial axes (global average pooling)",
    "GlobalMaxPool": "use MaxPool with a kernel as large as the input, or global average pooling",
    **{op: "integer-operator (QOperator) models are not supported: quantize in QDQ format (quantize_static's "
           "default, quant_format=QuantFormat.QDQ)"
       for op in ("QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearAveragePool",
                  "QLinearGlobalAveragePool", "QLinearConcat", "ConvInteger", "MatMulInteger", "QGemm")},
    "DynamicQuantizeLinear": "dynamic quantization is not supported: quantize statically (quantize_static, QDQ)",
}

class _Importer:
    def __init__(self, model: onnx.ModelProto, input_shape: Sequence[int] | None) -> None:
        folded = fold_constants(model, input_shape)
        model = fuse_transformer(fuse_partial_relus(folded.model))
        self.batch_placeholder = folded.batch_placeholder  # a Reshape target's first entry meaning "the batch"
        self.model = model
        self.label = ""  # name of the node being imported, for error messages
        self.labels: set[str] = set()
        self.g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in self.g.initializer}
        self.qconsts: dict[str, QConst] = {}
        self.int_types: dict[str, tuple[int, bool]] = {}  # integer constants made by QuantizeLinear
        self.pending: dict[str, PendingQuant] = {}
        self.padded: dict[str, tuple[str, tuple[int, int, int, int]]] = {}  # Pad output -> (input, t/l/b/r)
        self.alias: dict[str, str] = {}
        self.batch = _batch_size(model)  # the batch the shapes were folded with (1: static, or the placeholder)
        self.batched: dict[str, bool] = {}  # float edge -> its ONNX tensor has the batch axis first (default)
        self.token: set[str] = set()  # float edges that are transformer token tensors (onnx_transformer)
        self.nodes: list[FloatNode] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.uses: dict[str, int] = {}
        for n in self.g.node:
            for i in n.input:
                self.uses[i] = self.uses.get(i, 0) + 1
        for o in self.g.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1
        self.remaining = dict(self.uses)  # readers not imported yet (the graph output never is)
        self.input = self._graph_input(input_shape)

    # ------------------------------------------------------------------ helpers

    def _label(self, node: onnx.NodeProto, index: int) -> str:
        """A unique node name: the ONNX name, or ``Op_index`` when it is empty or taken."""
        name = node.name or f"{node.op_type}_{index}"
        if name in self.labels:
            name = f"{name}#{index}"
        self.labels.add(name)
        return name

    def fail(self, node: onnx.NodeProto, msg: str, hint: str = "") -> UnsupportedModel:
        return UnsupportedModel(f"ONNX node {self.label!r} (op {node.op_type}): {msg}" + (f". {hint}" if hint else ""))

    def attrs(self, node: onnx.NodeProto, spec: dict[str, Any]) -> dict[str, Any]:
        got = {}
        for a in node.attribute:
            if a.name not in spec:
                raise self.fail(node, f"attribute {a.name!r} is not supported",
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
        if len(shape) not in (1, 2, 3) or min(shape) < 1:
            raise UnsupportedModel(f"model input {inp.name!r}: per-sample shape {shape} must be (C, H, W), "
                                   "(S, H) tokens or (F,)")
        self.shapes[inp.name] = shape
        self.alias[inp.name] = inp.name
        return inp.name

    def edge(self, node: onnx.NodeProto, name: str) -> str:
        if name in self.alias:
            return self.alias[name]
        if name in self.consts:
            raise self.fail(node, f"input {name!r} is a constant where a computed tensor is expected",
                             "only weights, biases and parameters may be constants")
        if name in self.pending:
            raise self.fail(node, f"input {name!r} is a QuantizeLinear output read without DequantizeLinear",
                             "integer-only (QOperator) models are not supported; export in QDQ format")
        if name in self.padded:
            raise self.fail(node, f"input {name!r} is the output of a Pad",
                            "zero padding is supported only directly before a Conv or an AveragePool")
        raise self.fail(node, f"input {name!r} is not computed before this node",
                         "the graph must be topologically sorted and use only supported operators")

    def padded_input(self, node: onnx.NodeProto, name: str, a: dict[str, Any]
                     ) -> tuple[str, tuple[int, int, int, int]]:
        """The float edge a Conv/AveragePool reads and the zero padding ``(t, l, b, r)`` a Pad right
        before it adds (merged into the layer's own padding)."""
        if name not in self.padded:
            return self.edge(node, name), (0, 0, 0, 0)
        if self.uses.get(name, 0) != 1:
            raise self.fail(node, f"the padded tensor {name!r} is read by several nodes",
                            "pad separately before each Conv/AveragePool")
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or a.get("ceil_mode", 0):
            raise self.fail(node, "a Pad before a layer with auto_pad SAME or ceil_mode=1 is not supported",
                            "give the layer explicit pads")
        return self.padded.pop(name)

    def const(self, node: onnx.NodeProto, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise self.fail(node, f"{what} {name!r} must be a constant (initializer)",
                             "computed weights are not supported")
        return np.asarray(self.consts[name])

    def fconst(self, node: onnx.NodeProto, name: str, what: str) -> np.ndarray:
        return self.const(node, name, what).astype(np.float64)

    def emit(self, op: str, inputs: Sequence[str], output: str, attrs: dict[str, Any] | None = None,
             params: dict[str, np.ndarray] | None = None, suffix: str = "") -> str:
        """Append a float node named after the ONNX node being imported (plus ``suffix`` when one ONNX
        node becomes several float nodes) and return its output edge."""
        n = FloatNode(op, self.label + suffix, tuple(inputs), output, attrs or {}, params or {})
        self.shapes[output] = infer_shape(n, [self.shapes[i] for i in n.inputs])
        self.nodes.append(n)
        self.alias[output] = output
        if inputs:  # elementwise layers keep their input's layout; onnx_transformer sets its own ops'
            self.batched[output] = self.batched.get(inputs[0], True)
        if op in TOKEN_OPS or any(i in self.token for i in inputs):
            self.token.add(output)
        return output

    def window_attrs(self, node: onnx.NodeProto, a: dict[str, Any], x: str, kernel: tuple[int, int]
                      ) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
        if a.get("dilations") not in (None, [1, 1]):
            raise self.fail(node, f"dilations {a['dilations']} are not supported", "only dilation 1 is supported")
        if a.get("kernel_shape") is not None and tuple(a["kernel_shape"]) != kernel:
            raise self.fail(node, f"kernel_shape {a['kernel_shape']} does not match the weights {kernel}")
        stride = tuple(a["strides"]) if a.get("strides") is not None else (1, 1)
        if len(stride) != 2 or len(kernel) != 2:
            raise self.fail(node, "only 2-D windows are supported", "use (N, C, H, W) tensors")
        shape = self.shapes[x]
        if len(shape) != 3:
            raise self.fail(node, f"input has per-sample shape {shape}, expected (C, H, W)")
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
            raise self.fail(node, f"auto_pad {auto!r} is not supported")
        if len(pads) != 4 or min(pads) < 0:
            raise self.fail(node, f"pads {pads} are not supported", "give 4 non-negative pads")
        if a.get("ceil_mode", 0):
            for i in (0, 1):
                n_floor = out_size(shape[1 + i], kernel[i], stride[i], pads[i], pads[i + 2])
                n_ceil = -(-(shape[1 + i] + pads[i] + pads[i + 2] - kernel[i]) // stride[i]) + 1
                if n_floor != n_ceil:
                    raise self.fail(node, "ceil_mode=1 changes the output size here",
                                     "export with ceil_mode=0 or pad the input explicitly")
        return stride, pads  # type: ignore[return-value]

    # ------------------------------------------------------------------ operators

    def op_Conv(self, node: onnx.NodeProto) -> None:
        a = self.attrs(node, {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None,
                               "pads": None, "strides": None})
        x, extra = self.padded_input(node, node.input[0], a)
        w = self.fconst(node, node.input[1], "weight")
        if w.ndim != 4:
            raise self.fail(node, f"weights of shape {w.shape}: only 2-D convolutions are supported")
        b = self.fconst(node, node.input[2], "bias") if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
        stride, own = self.window_attrs(node, a, x, w.shape[2:])
        pads = tuple(p + e for p, e in zip(own, extra, strict=True))
        params, extra = weight_qinfo(self, node, node.input[1], 0)
        self.emit("conv", [x], node.output[0], {"stride": stride, "pads": pads, "groups": int(a["group"]), **extra},
                  {"weight": w, "bias": b.reshape(-1), **params})

    def gemm_operands(self, node: onnx.NodeProto) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        """``(attributes, W, bias)`` of a ``Gemm`` ``alpha·x·B + beta·C``: ``W = alpha·B`` as ``(out, in)``
        (``B^T`` unless ``transB``), ``bias`` the ``out`` values of ``beta·C``; ``transA``, a ``B`` that is not
        2-D and a ``C`` that is not per output are unsupported.  Shared by the CNN and the token meaning."""
        a = self.attrs(node, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
        if a["transA"]:
            raise self.fail(node, "transA=1 is not supported", "the activation must be the left operand")
        bmat = self.fconst(node, node.input[1], "weight")
        if bmat.ndim != 2:
            raise self.fail(node, f"weight of shape {bmat.shape} must be 2-D")
        w = (bmat if a["transB"] else bmat.T) * a["alpha"]
        bias = np.zeros(w.shape[0])
        if len(node.input) > 2 and node.input[2]:
            c = self.fconst(node, node.input[2], "bias") * a["beta"]
            if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
                raise self.fail(node, f"bias of shape {c.shape} is not per output", "use a bias of shape (N,)")
            bias = np.broadcast_to(c.reshape(-1), (w.shape[0],)).copy()
        return a, w, bias

    def op_Gemm(self, node: onnx.NodeProto) -> None:
        a, w, bias = self.gemm_operands(node)
        x = self.edge(node, node.input[0])
        params, extra = weight_qinfo(self, node, node.input[1], 0 if a["transB"] else 1, float(a["alpha"]))
        if params and not a["transB"]:
            params["weight_q"] = params["weight_q"].T.copy()
        self.emit("gemm", [x], node.output[0], extra, {"weight": w, "bias": bias, **params})

    def op_MatMul(self, node: onnx.NodeProto) -> None:
        self.attrs(node, {})
        x = self.edge(node, node.input[0])
        bmat = self.fconst(node, node.input[1], "right operand")
        if bmat.ndim != 2:
            raise self.fail(node, f"right operand of shape {bmat.shape} must be a 2-D constant")
        params, extra = weight_qinfo(self, node, node.input[1], 1)
        if params:
            params["weight_q"] = params["weight_q"].T.copy()
        self.emit("gemm", [x], node.output[0], extra, {"weight": bmat.T.copy(), "bias": np.zeros(bmat.shape[1]),
                                                       **params})

    def op_Relu(self, node: onnx.NodeProto) -> None:
        self.attrs(node, {})
        self.emit("relu", [self.edge(node, node.input[0])], node.output[0])

    def op_PartialRelu(self, node: onnx.NodeProto) -> None:
        """``where(mask, relu(x), x)`` (from :func:`~aiompc.nn.onnx_partial_relu.fuse_partial_relus`); the mask
        broadcast against ``(N, *shape)``, stored at the per-sample rank (1 or the axis on each)."""
        x = self.edge(node, node.input[0])
        m = np.asarray(self.consts[node.input[1]]).astype(bool)
        shape = self.shapes[x]
        rank = len(shape) + 1
        if m.ndim > rank:
            raise self.fail(node, f"ReLU mask of shape {m.shape} has more axes than (N, {shape})")
        m = m.reshape((1,) * (rank - m.ndim) + m.shape)
        if m.shape[0] != 1 or any(a not in (1, b) for a, b in zip(m.shape[1:], shape)):
            raise self.fail(node, f"ReLU mask of shape {m.shape} does not broadcast against (N, "
                                  f"{', '.join(map(str, shape))})", "give one mask entry per channel or per element")
        self.emit("partial_relu", [x], node.output[0], params={"mask": m[0].astype(np.float64)})

    def op_Clip(self, node: onnx.NodeProto) -> None:
        a = self.attrs(node, {"min": None, "max": None})
        lo, hi = a["min"], a["max"]
        if len(node.input) > 1 and node.input[1]:
            lo = float(self.fconst(node, node.input[1], "min"))
        if len(node.input) > 2 and node.input[2]:
            hi = float(self.fconst(node, node.input[2], "max"))
        self.emit("clip", [self.edge(node, node.input[0])], node.output[0],
                  {"lo": None if lo is None else float(lo), "hi": None if hi is None else float(hi)})

    def op_MaxPool(self, node: onnx.NodeProto) -> None:
        a = self.attrs(node, {"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": None, "kernel_shape": None,
                               "pads": None, "storage_order": 0, "strides": None})
        if len(node.output) > 1 and node.output[1]:
            raise self.fail(node, "the Indices output is not supported")
        if a["storage_order"]:
            raise self.fail(node, "storage_order=1 is not supported")
        x = self.edge(node, node.input[0])
        kernel = tuple(a["kernel_shape"] or ())
        if len(kernel) != 2:
            raise self.fail(node, f"kernel_shape {a['kernel_shape']} is not 2-D")
        stride, pads = self.window_attrs(node, a, x, kernel)  # type: ignore[arg-type]
        if max(pads[0], pads[2]) >= kernel[0] or max(pads[1], pads[3]) >= kernel[1]:
            raise self.fail(node, f"pads {pads} must be smaller than the kernel {kernel}")
        self.emit("maxpool", [x], node.output[0], {"kernel": kernel, "stride": stride, "pads": pads})

    def op_AveragePool(self, node: onnx.NodeProto) -> None:
        a = self.attrs(node, {"auto_pad": "NOTSET", "ceil_mode": 0, "count_include_pad": 0, "dilations": None,
                               "kernel_shape": None, "pads": None, "strides": None})
        x, extra = self.padded_input(node, node.input[0], a)
        kernel = tuple(a["kernel_shape"] or ())
        if len(kernel) != 2:
            raise self.fail(node, f"kernel_shape {a['kernel_shape']} is not 2-D")
        stride, own = self.window_attrs(node, a, x, kernel)  # type: ignore[arg-type]
        if any(own) and not a["count_include_pad"]:
            raise self.fail(node, "padding with count_include_pad=0 divides border windows by different counts",
                             "export with count_include_pad=1 or without padding")
        pads = tuple(p + e for p, e in zip(own, extra, strict=True))  # a Pad's zeros always count
        self.emit("avgpool", [x], node.output[0], {"kernel": kernel, "stride": stride, "pads": pads})

    def op_GlobalAveragePool(self, node: onnx.NodeProto) -> None:
        self.attrs(node, {})
        self.emit("global_avgpool", [self.edge(node, node.input[0])], node.output[0])

    def op_Concat(self, node: onnx.NodeProto) -> None:
        a = self.attrs(node, {"axis": None})
        xs = [self.edge(node, i) for i in node.input]
        rank = len(self.shapes[xs[0]]) + 1
        axis = a["axis"] + rank if a["axis"] is not None and a["axis"] < 0 else a["axis"]
        if axis != 1:
            raise self.fail(node, f"concatenation along axis {a['axis']} is not supported",
                             "concatenate channels (axis 1)")
        self.emit("concat", xs, node.output[0])

    def op_Flatten(self, node: onnx.NodeProto) -> None:
        a = self.attrs(node, {"axis": 1})
        x = self.edge(node, node.input[0])
        if a["axis"] != 1:
            raise self.fail(node, f"axis={a['axis']} is not supported", "flatten from axis 1 (keep the batch axis)")
        self.flatten(x, node.output[0])

    def flatten(self, x: str, out: str, suffix: str = "") -> None:
        """``out`` is ``x`` flattened to ``(N, F)`` (no node if it already is)."""
        if len(self.shapes[x]) == 1:
            self.alias[out] = x
        else:
            self.emit("flatten", [x], out, suffix=suffix)

    def op_Reshape(self, node: onnx.NodeProto) -> None:
        a = self.attrs(node, {"allowzero": 0})
        x = self.edge(node, node.input[0])
        t = [int(v) for v in self.const(node, node.input[1], "shape").reshape(-1)]
        shape = self.shapes[x]
        size = int(np.prod(shape))
        fail = self.fail(node, f"reshape of (N, {', '.join(map(str, shape))}) to {t} is not supported",
                          "only flattening to (N, C*H*W) is supported")
        # the batch axis must stay: -1 (inferred), 0 (copied), 1 (exporters tracing with batch 1) or the
        # placeholder batch size a folded Shape of the input gave (a dynamic batch axis)
        batch = (1, -1) if self.batch_placeholder is None else (1, -1, self.batch_placeholder)
        if not t or not (t[0] in batch or (t[0] == 0 and not a["allowzero"])):
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
            self.flatten(x, node.output[0])
        elif tuple(rest) == shape:
            self.alias[node.output[0]] = x
        else:
            raise fail

    def op_BatchNormalization(self, node: onnx.NodeProto) -> None:
        a = self.attrs(node, {"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0, "spatial": 1,
                               "is_test": 1, "consumed_inputs": None})
        if a["training_mode"] or not a["spatial"] or any(o for o in node.output[1:]):
            raise self.fail(node, "training-mode batch normalization is not supported",
                             "export the model in eval mode")
        x = self.edge(node, node.input[0])
        names = ("scale", "bias", "mean", "var")
        params = {k: self.fconst(node, node.input[i + 1], k).reshape(-1) for i, k in enumerate(names)}
        self.emit("batchnorm", [x], node.output[0], {"eps": float(a["epsilon"])}, params)

    def op_Identity(self, node: onnx.NodeProto) -> None:
        self.attrs(node, {})
        src = node.input[0]
        if src in self.consts:
            self.consts[node.output[0]] = self.consts[src]
            if src in self.qconsts:
                self.qconsts[node.output[0]] = self.qconsts[src]
        else:
            self.alias[node.output[0]] = self.edge(node, src)

    def op_Dropout(self, node: onnx.NodeProto) -> None:
        self.attrs(node, {"seed": None, "ratio": None, "is_test": None})
        if len(node.output) > 1 and node.output[1] and self.uses.get(node.output[1], 0):
            raise self.fail(node, "the mask output is not supported")
        if len(node.input) > 2 and node.input[2] and bool(self.const(node, node.input[2], "training_mode")):
            raise self.fail(node, "training-mode dropout is not supported", "export the model in eval mode")
        self.alias[node.output[0]] = self.edge(node, node.input[0])

    def op_Constant(self, node: onnx.NodeProto) -> None:
        (attr,) = node.attribute
        if attr.name not in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            raise self.fail(node, f"attribute {attr.name!r} is not supported")
        v = helper.get_attribute_value(attr)
        self.consts[node.output[0]] = numpy_helper.to_array(v) if attr.name == "value" else np.asarray(v)

    # ------------------------------------------------------------------ driver

    def run(self) -> FloatGraph:
        for index, node in enumerate(self.g.node):
            self.label = self._label(node, index)
            if node.domain == PARTIAL_RELU_DOMAIN and node.op_type == PARTIAL_RELU_OP:
                handler: _Handler | None = _Importer.op_PartialRelu
            elif node.domain not in ("", "ai.onnx"):
                raise self.fail(node, f"operators of domain {node.domain!r} are not supported",
                                 "export a plain ONNX model without runtime-specific fused operators")
            else:
                handler = _HANDLERS.get(node.op_type)
            if handler is None:
                hint = _ALTERNATIVES.get(node.op_type, "")
                raise self.fail(node, "operator not supported",
                                (f"{hint}; " if hint else "") + f"supported operators: {', '.join(SUPPORTED_OPS)}")
            for i in node.input:
                self.remaining[i] = self.remaining.get(i, 0) - 1
            try:
                handler(self, node)
            except UnsupportedModel as e:
                if "ONNX node" in str(e):
                    raise
                raise self.fail(node, str(e)) from e
        if len(self.g.output) != 1:
            raise UnsupportedModel(f"the model has {len(self.g.output)} outputs; aiompc evaluates single-output models")
        out_name = self.g.output[0].name
        if out_name not in self.alias:
            raise UnsupportedModel(f"model output {out_name!r} is not computed from the input")
        out = self.alias[out_name]
        if self.padded:
            raise UnsupportedModel(f"Pad output(s) {sorted(self.padded)} are not read by a Conv or AveragePool; "
                                   "aiompc merges zero padding into the next Conv/AveragePool only")
        if out == self.input:
            raise UnsupportedModel("the model output is its input; there is nothing to evaluate")
        return _prune(simplify_layout(FloatGraph(self.input, out, self.shapes, self.nodes)))


_Handler = Callable[[_Importer, onnx.NodeProto], None]

_CORE_OPS: dict[str, _Handler] = {
    "Conv": _Importer.op_Conv, "Gemm": _Importer.op_Gemm, "MatMul": _Importer.op_MatMul, "Relu": _Importer.op_Relu,
    "Clip": _Importer.op_Clip, "MaxPool": _Importer.op_MaxPool, "AveragePool": _Importer.op_AveragePool,
    "GlobalAveragePool": _Importer.op_GlobalAveragePool, "Concat": _Importer.op_Concat,
    "Flatten": _Importer.op_Flatten, "Reshape": _Importer.op_Reshape,
    "BatchNormalization": _Importer.op_BatchNormalization, "Identity": _Importer.op_Identity,
    "Dropout": _Importer.op_Dropout, "Constant": _Importer.op_Constant,
}
_HANDLERS: dict[str, _Handler] = {**_CORE_OPS, **AFFINE_OPS, **LAYOUT_OPS, **QDQ_OPS, **TRANSFORMER_OPS}
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(_HANDLERS))
"""Every ONNX operator (default domain) the importer reads, after constant folding."""


def _batch_size(model: onnx.ModelProto) -> int:
    """The batch size of the (folded, static) model input: 1, a static batch, or the folding placeholder."""
    consts = {t.name for t in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in consts]
    dims = real[0].type.tensor_type.shape.dim if len(real) == 1 else []
    return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else 1


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
