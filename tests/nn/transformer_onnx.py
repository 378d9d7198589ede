"""A BERT-style encoder block written with ``onnx.helper`` (no torch): what the importer and the lowering
tests read.  Input ``(N, S, H)`` token embeddings (dynamic batch), output ``(N, S, H)`` or, with ``head``,
the logits of a classifier on the first token ``(N, classes)``."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _B:
    def __init__(self, opset: int) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.opset = opset
        self.k = 0

    def name(self, hint: str) -> str:
        self.k += 1
        return f"{hint}_{self.k}"

    def const(self, v: np.ndarray | float, hint: str = "c", dtype: type = np.float32) -> str:
        n = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(v, dtype=dtype), n))
        return n

    def op(self, op: str, inputs: list[str], n_out: int = 1, **attrs: object) -> str | list[str]:
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(op), **attrs))
        return outs[0] if n_out == 1 else outs


def _layernorm(b: _B, x: str, h: int, rng: np.random.Generator, form: str) -> str:
    gamma, beta = 1 + 0.1 * rng.standard_normal(h), 0.1 * rng.standard_normal(h)
    if form == "none":
        return x
    if form == "op":
        return b.op("LayerNormalization", [x, b.const(gamma), b.const(beta)], axis=-1, epsilon=1e-5)
    axes = {"axes": [-1]} if b.opset < 18 else {}
    ins = [] if b.opset < 18 else [b.const(np.array([-1]), "axes", np.int64)]
    m = b.op("ReduceMean", [x, *ins], **axes)
    d = b.op("Sub", [x, m])
    sq = b.op("Pow", [d, b.const(2.0)])
    v = b.op("ReduceMean", [sq, *([b.const(np.array([-1]), "axes", np.int64)] if ins else [])], **axes)
    s = b.op("Sqrt", [b.op("Add", [v, b.const(1e-5)])])
    y = b.op("Div", [d, s])
    return b.op("Add", [b.op("Mul", [y, b.const(gamma)]), b.const(beta)])


def _gelu(b: _B, x: str, form: str) -> str:
    if form == "op":
        return b.op("Gelu", [x])
    if form == "erf":
        e = b.op("Erf", [b.op("Div", [x, b.const(math.sqrt(2.0))])])
        return b.op("Mul", [x, b.op("Mul", [b.const(0.5), b.op("Add", [e, b.const(1.0)])])])
    if form == "tanh":
        cube = b.op("Pow", [x, b.const(3.0)])
        inner = b.op("Add", [x, b.op("Mul", [b.const(0.044715), cube])])
        t = b.op("Tanh", [b.op("Mul", [inner, b.const(math.sqrt(2 / math.pi))])])
        return b.op("Mul", [b.op("Mul", [x, b.const(0.5)]), b.op("Add", [t, b.const(1.0)])])
    return b.op("Relu", [x])


def bert_block(seq: int = 6, hidden: int = 16, heads: int = 2, ffn: int = 32, *, seed: int = 0,
               layernorm: str = "op", gelu: str = "erf", qkv: str = "separate", mask: bool = False,
               position: bool = False, head: int | None = None, opset: int = 17, layers: int = 1) -> onnx.ModelProto:
    """A post-norm BERT encoder block (``layers`` of them): multi-head self-attention (``qkv="separate"``: three
    MatMuls; ``"split"``: one MatMul and a Split of its last axis), residual, LayerNorm (``"op"``,
    ``"decomposed"`` or ``"none"``), FFN with GELU (``"op"`` opset 20, ``"erf"``, ``"tanh"`` forms or ``"relu"``), residual,
    LayerNorm.  ``mask``: a constant additive attention mask made by a ``Where`` of constants (folded at import);
    ``position``: a learned positional embedding added first; ``head``: a classifier on the first token."""
    rng = np.random.default_rng(seed)
    b = _B(opset)
    d = hidden // heads
    w = lambda *s: (rng.standard_normal(s) / math.sqrt(s[0])).astype(np.float32)  # noqa: E731
    x = "tokens"
    if position:
        x = b.op("Add", [x, b.const(0.5 * rng.standard_normal((seq, hidden)))])
    for _ in range(layers):
        if qkv == "split":
            qkv_t = b.op("Add", [b.op("MatMul", [x, b.const(w(hidden, 3 * hidden))]),
                                 b.const(0.1 * rng.standard_normal(3 * hidden))])
            q, k, v = b.op("Split", [qkv_t, b.const(np.array([hidden] * 3), "split", np.int64)], n_out=3, axis=-1)
        else:
            q, k, v = (b.op("Add", [b.op("MatMul", [x, b.const(w(hidden, hidden))]),
                                    b.const(0.1 * rng.standard_normal(hidden))]) for _ in range(3))
        shape = b.const(np.array([0, seq, heads, d]), "shape", np.int64)
        qh = b.op("Transpose", [b.op("Reshape", [q, shape])], perm=[0, 2, 1, 3])
        kh = b.op("Transpose", [b.op("Reshape", [k, shape])], perm=[0, 2, 3, 1])
        vh = b.op("Transpose", [b.op("Reshape", [v, shape])], perm=[0, 2, 1, 3])
        scores = b.op("Div", [b.op("MatMul", [qh, kh]), b.const(math.sqrt(d))])
        if mask:
            causal = np.tril(np.ones((seq, seq), dtype=bool))
            m = b.op("Where", [b.const(causal, "causal", np.bool_), b.const(0.0), b.const(-1e4)])
            scores = b.op("Add", [scores, m])
        ctx = b.op("MatMul", [b.op("Softmax", [scores], axis=-1), vh])
        ctx = b.op("Reshape", [b.op("Transpose", [ctx], perm=[0, 2, 1, 3]),
                               b.const(np.array([0, seq, hidden]), "shape", np.int64)])
        att = b.op("Add", [b.op("MatMul", [ctx, b.const(w(hidden, hidden))]), b.const(0.1 * rng.standard_normal(hidden))])
        x = _layernorm(b, b.op("Add", [x, att]), hidden, rng, layernorm)
        f = b.op("Add", [b.op("MatMul", [x, b.const(w(hidden, ffn))]), b.const(0.1 * rng.standard_normal(ffn))])
        f = b.op("Add", [b.op("MatMul", [_gelu(b, f, gelu), b.const(w(ffn, hidden))]),
                         b.const(0.1 * rng.standard_normal(hidden))])
        x = _layernorm(b, b.op("Add", [x, f]), hidden, rng, layernorm)
    out_shape: list[object] = ["N", seq, hidden]
    if head is not None:
        first = b.op("Gather", [x, b.const(np.array(0), "idx", np.int64)], axis=1)
        x = b.op("Gemm", [first, b.const(w(hidden, head).T.copy()), b.const(0.1 * rng.standard_normal(head))], transB=1)
        out_shape = ["N", head]
    g = helper.make_graph(b.nodes, "bert_block", [helper.make_tensor_value_info("tokens", TensorProto.FLOAT,
                                                                                ["N", seq, hidden])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, out_shape)], initializer=b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", max(opset, 20 if gelu == "op" else 0))])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def qdq_bert_block(directory: str, x: np.ndarray, **kw: object) -> str:
    """:func:`bert_block` quantized by onnxruntime's ``quantize_static`` (QDQ, int8 activations and weights,
    calibrated on ``x``), saved in ``directory``; returns the path.  Needs onnxruntime."""
    from onnxruntime import quantization

    src, dst = f"{directory}/float.onnx", f"{directory}/qdq.onnx"
    onnx.save(bert_block(**kw), src)  # type: ignore[arg-type]

    class Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter([{"tokens": x[i:i + 1].astype(np.float32)} for i in range(len(x))])

        def get_next(self) -> dict | None:
            return next(self.rows, None)

    quantization.quantize_static(src, dst, Reader(), quant_format=quantization.QuantFormat.QDQ,
                                 activation_type=quantization.QuantType.QInt8,
                                 weight_type=quantization.QuantType.QInt8)
    return dst
