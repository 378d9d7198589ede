"""Reference interpreters: float64 for a :class:`FloatGraph`, exact int64 for a :class:`QGraph`.

:func:`run_int` is the ground truth of secure inference: in exact mode a secure evaluation must return
exactly its output.  Requantization is :func:`aiompc.quant.requantize` and nothing else.  Both
interpreters take a batch (leading axis ``N``) and are vectorised over it.
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np

from aiompc import fxmath
from aiompc.errors import InputError
from aiompc.nn import tensor_ops as ops
from aiompc.nn.graph import TOKEN_OPS, FloatGraph, FloatNode
from aiompc.nn.ir import (Add, AddConst, ChannelAffine, Clip, Concat, Conv, FeatureAffine, Flatten, GeluFx,
                          LayerNormFx, LayerNormQ, Linear, Lookup, MatMul, MatMulShared, MaxPool, Node, PartialRelu,
                          PartialReluRequantize, QGraph, ReduceSum, Relu, Requantize, Reshape, Slice, SoftmaxFx,
                          SoftmaxQ, SumPool, Transpose)
from aiompc.nn.ir_transformer import sample_axis
from aiompc.qmath import layernorm_int, lookup_int, softmax_int
from aiompc.quant import requantize

__all__ = ["run_float", "run_int", "eval_node", "predict"]


# --------------------------------------------------------------------------- float


def _channel_view(v: np.ndarray, ndim: int) -> np.ndarray:
    """Reshape a per-channel vector to broadcast against ``(N, C, ...)`` of rank ``ndim``."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _float_node(n: FloatNode, xs: list[np.ndarray]) -> np.ndarray:
    a, p, x = n.attrs, n.params, xs[0]
    if n.op == "conv":
        return ops.conv2d(x, p["weight"], p["bias"], a["stride"], a["pads"], a["groups"])
    if n.op == "gemm":
        return ops.linear(x, p["weight"], p["bias"])
    if n.op == "batchnorm":
        scale = p["scale"] / np.sqrt(p["var"] + a["eps"])
        return (x - _channel_view(p["mean"], x.ndim)) * _channel_view(scale, x.ndim) + _channel_view(p["bias"], x.ndim)
    if n.op == "relu":
        return np.maximum(x, 0.0)
    if n.op == "partial_relu":
        return np.where(p["mask"][None] != 0, np.maximum(x, 0.0), x)
    if n.op == "clip":
        lo = -np.inf if a["lo"] is None else a["lo"]
        hi = np.inf if a["hi"] is None else a["hi"]
        return np.clip(x, lo, hi)
    if n.op == "maxpool":
        return ops.max_pool2d(x, a["kernel"], a["stride"], a["pads"], -np.inf)
    if n.op == "avgpool":
        return ops.sum_pool2d(x, a["kernel"], a["stride"], a["pads"]) / (a["kernel"][0] * a["kernel"][1])
    if n.op == "global_avgpool":
        return x.mean(axis=(2, 3), keepdims=True)
    if n.op == "add":
        return np.sum(xs, axis=0)
    if n.op == "concat":
        return np.concatenate(xs, axis=1)
    if n.op == "flatten":
        return x.reshape(x.shape[0], -1)
    if n.op in TOKEN_OPS:
        return _token_node(n, xs)
    if n.op == "fakequant":  # ONNX QuantizeLinear then DequantizeLinear (round half to even, saturate)
        lo, hi = (-(1 << (a["bits"] - 1)), (1 << (a["bits"] - 1)) - 1) if a["signed"] else (0, (1 << a["bits"]) - 1)
        zp = int(a.get("zero_point", 0))
        return (np.clip(np.rint(x / a["scale"]) + zp, lo, hi) - zp) * a["scale"]
    raise InputError(f"node {n.name!r}: unknown float op {n.op!r}")


def _token_node(n: FloatNode, xs: list[np.ndarray]) -> np.ndarray:
    """The transformer ops (batch axis first, per-sample axes after it)."""
    a, p, x = n.attrs, n.params, xs[0]
    if n.op == "matmul":
        return x @ p["weight"] + p["bias"]
    if n.op == "matmul2":
        return np.matmul(x, xs[1])
    if n.op == "transpose":
        return x.transpose(0, *(i + 1 for i in a["perm"]))
    if n.op == "reshape":
        return x.reshape(x.shape[0], *a["shape"])
    if n.op == "slice":
        idx = [slice(None)] * x.ndim
        idx[a["axis"] + 1] = slice(a["start"], a["stop"])
        return x[tuple(idx)]
    if n.op == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if n.op == "layernorm":
        c = x - x.mean(axis=-1, keepdims=True)
        return c / np.sqrt((c * c).mean(axis=-1, keepdims=True) + a["eps"]) * p["scale"] + p["bias"]
    if n.op == "gelu":
        if a.get("approximate", "none") == "tanh":
            return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
        return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))
    if n.op == "mul_const":
        return x * a["value"]
    if n.op == "add_const":
        return x + p["value"][None]
    if n.op == "reduce_mean":
        return x.mean(axis=a["axis"] + 1, keepdims=a.get("keepdims", True))
    raise InputError(f"node {n.name!r}: unknown float op {n.op!r}")


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function elementwise (``scipy.special.erf``; scipy comes with scikit-learn, a dependency)."""
    from scipy.special import erf

    return np.asarray(erf(x), dtype=np.float64)


@overload
def run_float(graph: FloatGraph, x: np.ndarray, collect: Literal[False] = False) -> np.ndarray: ...
@overload
def run_float(graph: FloatGraph, x: np.ndarray, collect: Literal[True]) -> dict[str, np.ndarray]: ...
def run_float(graph: FloatGraph, x: np.ndarray, collect: bool = False) -> np.ndarray | dict[str, np.ndarray]:
    """Evaluate the float graph on a batch ``x`` of shape ``(N, *input_shape)`` in float64.

    Returns the output ``(N, *output_shape)``, or with ``collect=True`` a dict of every edge's value
    (the calibration data of :func:`aiompc.nn.quantize.quantize`)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1:] != graph.input_shape:
        raise InputError(f"input has shape {x.shape}; the model expects (N, {', '.join(map(str, graph.input_shape))})")
    env = {graph.input: x}
    for n in graph.nodes:
        env[n.output] = _float_node(n, [env[i] for i in n.inputs])
    return env if collect else env[graph.output]


# --------------------------------------------------------------------------- integer


def _requantize(n: Requantize, x: np.ndarray) -> np.ndarray:
    if len(n.multiplier) == 1:
        return requantize(x, n.multiplier[0], n.shift, n.lo, n.hi, n.rounding)
    m = n.channel_multipliers(x.shape[1])
    out = np.empty_like(x)
    for mv in np.unique(m):  # one call per distinct multiplier (channels, not elements)
        idx = np.flatnonzero(m == mv)
        out[:, idx] = requantize(x[:, idx], int(mv), n.shift, n.lo, n.hi, n.rounding)
    return out


def _add(n: Add, xs: list[np.ndarray]) -> np.ndarray:
    m = n.channel_multipliers(xs[0].shape[1])
    out = xs[0] * _channel_view(m[0], xs[0].ndim)
    for i, x in enumerate(xs[1:], 1):
        out = out + x * _channel_view(m[i], x.ndim)
    return out


def eval_node(n: Node, xs: list[np.ndarray], g: QGraph) -> np.ndarray:
    """One node of :func:`run_int` on its integer inputs ``xs`` (``int64``, batch axis first): the plaintext
    reference of a single layer, for checking a secure evaluation node by node."""
    x = xs[0]
    if isinstance(n, (Conv, Linear, ChannelAffine)):
        assert n.weight is not None and n.bias is not None  # run_int checked has_weights
        if isinstance(n, Conv):
            return ops.conv2d(x, n.weight, n.bias, n.stride, n.pads, n.groups)
        if isinstance(n, Linear):
            return ops.linear(x, n.weight, n.bias)
        return x * _channel_view(n.weight, x.ndim) + _channel_view(n.bias, x.ndim)
    if isinstance(n, PartialReluRequantize):  # before Requantize: it is one
        y = _requantize(n, x)
        return np.where(n.full_mask(x.shape[1:])[None], np.maximum(y, 0), y)
    if isinstance(n, Requantize):
        return _requantize(n, x)
    if isinstance(n, PartialRelu):
        return np.where(n.full_mask(x.shape[1:])[None], np.maximum(x, 0), x)
    if isinstance(n, Relu):
        return np.maximum(x, 0)
    if isinstance(n, Clip):
        return np.clip(x, n.lo, n.hi)
    if isinstance(n, MaxPool):
        return ops.max_pool2d(x, n.kernel, n.stride, n.pads, g.tensors[n.inputs[0]].lo)
    if isinstance(n, SumPool):
        return ops.sum_pool2d(x, n.kernel, n.stride, n.pads)
    if isinstance(n, Add):
        return _add(n, xs)
    if isinstance(n, Concat):
        return np.concatenate(xs, axis=1)
    if isinstance(n, Flatten):
        return x.reshape(x.shape[0], -1)
    return _transformer_node(n, xs, g)


def _transformer_node(n: Node, xs: list[np.ndarray], g: QGraph) -> np.ndarray:
    """The layers of :mod:`aiompc.nn.ir_transformer` (batch axis first; every axis of a node is per sample)."""
    x = xs[0]
    rank = x.ndim - 1
    if isinstance(n, MatMul):
        assert n.weight is not None and n.bias is not None
        return x @ n.weight + n.bias
    if isinstance(n, MatMulShared):
        return xs[0] @ xs[1]
    if isinstance(n, Transpose):
        return x.transpose(0, *(p + 1 for p in n.perm))
    if isinstance(n, Reshape):
        return x.reshape(len(x), *g.tensors[n.output].shape)
    if isinstance(n, Slice):
        a = sample_axis(n, n.axis, rank) + 1
        return x[(slice(None),) * a + (slice(n.start, n.stop),)]
    if isinstance(n, ReduceSum):
        return x.sum(axis=sample_axis(n, n.axis, rank) + 1, keepdims=n.keepdims)
    if isinstance(n, AddConst):
        assert n.bias is not None
        return x + n.bias
    if isinstance(n, FeatureAffine):
        assert n.weight is not None and n.bias is not None
        return x * n.weight + n.bias
    if isinstance(n, Lookup):
        return lookup_int(x, n.table)
    if isinstance(n, SoftmaxQ):
        return softmax_int(x, n.params)
    if isinstance(n, LayerNormQ):
        return layernorm_int(x, n.params)
    if isinstance(n, (SoftmaxFx, GeluFx, LayerNormFx)):
        return _fixed_point_node(n, x)
    raise InputError(f"node {n.name!r}: no integer semantics for {n.op!r}")


def _fixed_point_node(n: SoftmaxFx | GeluFx | LayerNormFx, x: np.ndarray) -> np.ndarray:
    """Iron's fixed-point programs (:mod:`aiompc.fxmath`) of the ``cheetah`` mode."""
    if isinstance(n, LayerNormFx):
        return np.asarray(fxmath.layernorm_fixed(x, f=n.f, l=n.l, eps=n.eps), dtype=np.int64)
    fn = fxmath.softmax_fixed if isinstance(n, SoftmaxFx) else fxmath.gelu_fixed
    return np.asarray(fn(x, f=n.f, l=n.l), dtype=np.int64)


@overload
def run_int(graph: QGraph, x: np.ndarray, collect: Literal[False] = False) -> np.ndarray: ...
@overload
def run_int(graph: QGraph, x: np.ndarray, collect: Literal[True]) -> dict[str, np.ndarray]: ...
def run_int(graph: QGraph, x: np.ndarray, collect: bool = False) -> np.ndarray | dict[str, np.ndarray]:
    """Evaluate the integer graph exactly on a batch ``x`` (integers, ``(N, *input_shape)``, inside the
    input's bounds).  Returns the int64 output (the accumulator/logits at ``output_spec.scale``), or
    every edge's value with ``collect=True``.  Raises :class:`InputError` on a wrong shape, dtype or
    range and if the graph has no weights."""
    spec = graph.input_spec
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise InputError(f"integer inference takes integer input, got dtype {x.dtype}; use QGraph.quantize_input")
    if x.shape[1:] != spec.shape:
        raise InputError(f"input has shape {x.shape}; the model expects (N, {', '.join(map(str, spec.shape))})")
    x = x.astype(np.int64)
    if x.size and (x.min() < spec.lo or x.max() > spec.hi):
        raise InputError(f"input values must lie in [{spec.lo}, {spec.hi}] (the model input's range)")
    if not graph.has_weights:
        raise InputError("this graph is metadata only (no weights); the server's full graph is needed")
    env = {graph.input: x}
    for n in graph.nodes:
        env[n.output] = eval_node(n, [env[i] for i in n.inputs], graph)
    return env if collect else env[graph.output]


def predict(graph: QGraph, x: np.ndarray) -> np.ndarray:
    """Class predictions of the integer model on float inputs ``(N, *input_shape)``: quantize the input,
    run :func:`run_int`, argmax of the dequantized outputs (per-channel output scales respected)."""
    y = run_int(graph, graph.quantize_input(x))
    return np.argmax(graph.dequantize_output(y).reshape(len(y), -1), axis=1)
