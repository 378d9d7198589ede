"""The LayerNorm / GELU pattern fusion: every form exporters write becomes one node with the same function; a
half-matched pattern is left alone."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx.reference import ReferenceEvaluator

from aiompc.errors import UnsupportedModel
from aiompc.nn.interpret import run_float
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.onnx_fuse_transformer import fuse_transformer
from aiompc.nn.onnx_import import load_onnx


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _same(model: onnx.ModelProto) -> None:
    fg = load_onnx(model)
    x = np.random.default_rng(0).standard_normal((3, 4, 8))
    want = ReferenceEvaluator(model).run(None, {"input": x.astype(np.float32)})[0]
    np.testing.assert_allclose(run_float(fg, x), want, atol=1e-5, rtol=1e-5)


def _axes(b: OnnxBuilder) -> str:
    return b.const(np.array([-1]), "axes", TensorProto.INT64)


@pytest.mark.parametrize("square", ["pow", "mul"])
@pytest.mark.parametrize("divide", ["div", "reciprocal"])
@pytest.mark.parametrize("affine", [True, False])
def test_decomposed_layernorm_forms(square: str, divide: str, affine: bool) -> None:
    b = OnnxBuilder((4, 8), opset=18)
    x = b.input
    d = b.node("Sub", [x, b.node("ReduceMean", [x, _axes(b)])])
    sq = b.node("Pow", [d, b.const(np.float32(2.0))]) if square == "pow" else b.node("Mul", [d, d])
    s = b.node("Sqrt", [b.node("Add", [b.node("ReduceMean", [sq, _axes(b)]), b.const(np.float32(1e-5))])])
    y = b.node("Div", [d, s]) if divide == "div" else b.node("Mul", [d, b.node("Reciprocal", [s])])
    if affine:
        rng = np.random.default_rng(1)
        y = b.node("Add", [b.node("Mul", [y, b.const(rng.standard_normal(8))]), b.const(rng.standard_normal(8))])
    model = b.build(y)
    assert _ops(fuse_transformer(model)) == ["LayerNormalization"]
    _same(model)


@pytest.mark.parametrize("order", ["x_t_half", "half_t_x", "xhalf_t", "mul_invsqrt2"])
def test_erf_gelu_forms(order: str) -> None:
    b = OnnxBuilder((4, 8), opset=18)
    x = b.input
    arg = b.node("Mul", [x, b.const(np.float32(1 / math.sqrt(2)))]) if order == "mul_invsqrt2" else \
        b.node("Div", [x, b.const(np.float32(math.sqrt(2)))])
    t = b.node("Add", [b.node("Erf", [arg]), b.const(np.float32(1.0))])
    half = b.const(np.float32(0.5))
    if order in ("x_t_half", "mul_invsqrt2"):
        y = b.node("Mul", [b.node("Mul", [x, t]), half])
    elif order == "half_t_x":
        y = b.node("Mul", [x, b.node("Mul", [half, t])])
    else:
        y = b.node("Mul", [b.node("Mul", [x, half]), t])
    model = b.build(y)
    fused = fuse_transformer(model)
    assert _ops(fused) == ["Gelu"] and fused.graph.node[0].attribute == []
    _same(model)


@pytest.mark.parametrize("cube", ["pow", "muls"])
def test_tanh_gelu_forms(cube: str) -> None:
    b = OnnxBuilder((4, 8), opset=18)
    x = b.input
    x3 = b.node("Pow", [x, b.const(np.float32(3.0))]) if cube == "pow" else b.node("Mul", [x, b.node("Mul", [x, x])])
    inner = b.node("Add", [x, b.node("Mul", [x3, b.const(np.float32(0.044715))])])
    t = b.node("Tanh", [b.node("Mul", [b.const(np.float32(math.sqrt(2 / math.pi))), inner])])
    y = b.node("Mul", [b.node("Mul", [b.const(np.float32(0.5)), x]), b.node("Add", [t, b.const(np.float32(1.0))])])
    model = b.build(y)
    fused = fuse_transformer(model)
    assert _ops(fused) == ["Gelu"]
    assert onnx.helper.get_attribute_value(fused.graph.node[0].attribute[0]) == b"tanh"
    _same(model)


def test_half_matched_patterns_are_left_alone() -> None:
    b = OnnxBuilder((4, 8), opset=18)
    x = b.input
    t = b.node("Add", [b.node("Erf", [b.node("Div", [x, b.const(np.float32(1.5))])]), b.const(np.float32(1.0))])
    model = b.build(b.node("Mul", [b.node("Mul", [x, t]), b.const(np.float32(0.5))]))
    assert _ops(fuse_transformer(model)) == _ops(model)  # 1.5 is not sqrt(2): not a GELU
    with pytest.raises(UnsupportedModel, match=r"op Erf\): operator not supported.*GELU"):
        load_onnx(model)
    b = OnnxBuilder((4, 8), opset=18)
    m = b.node("ReduceMean", [b.input, _axes(b)])
    model = b.build(b.node("Sub", [b.input, m]))  # a centring alone
    assert fuse_transformer(model) is model or _ops(fuse_transformer(model)) == _ops(model)


@pytest.mark.parametrize("form", ["erf", "tanh"])
@pytest.mark.parametrize("one,half", [(1.0, 0.5), (2.0, 0.5), (1.0, 0.25)])
def test_gelu_tail_needs_one_plus_and_a_half(form: str, one: float, half: float) -> None:
    """Both GELU forms share the tail ``x · 0.5 · (1 + t)``: any other constant there leaves the graph as it is."""
    b = OnnxBuilder((4, 8), opset=18)
    x = b.input
    if form == "erf":
        t = b.node("Erf", [b.node("Div", [x, b.const(np.float32(math.sqrt(2)))])])
    else:
        inner = b.node("Add", [x, b.node("Mul", [b.node("Pow", [x, b.const(np.float32(3.0))]),
                                                 b.const(np.float32(0.044715))])])
        t = b.node("Tanh", [b.node("Mul", [b.const(np.float32(math.sqrt(2 / math.pi))), inner])])
    model = b.build(b.node("Mul", [b.node("Mul", [x, b.node("Add", [t, b.const(np.float32(one))])]),
                                   b.const(np.float32(half))]))
    fused = fuse_transformer(model)
    if (one, half) == (1.0, 0.5):
        assert _ops(fused) == ["Gelu"]
        _same(model)
    else:
        assert _ops(fused) == _ops(model)
