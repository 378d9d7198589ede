"""aiompc.nn.onnx_layout: ReduceMean over space, Pad merged into the next Conv/AveragePool, Squeeze of
(N, C, 1, 1), Cast to a float type; each against onnx's reference evaluator, and the refusals with their
messages.

(``tests/nn/test_nn_onnx_exporter_ops.py`` covers the opset forms of ReduceMean and Pad as exporters write them.)"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from onnx_reference import build_unchecked, same_as_onnx

from aiompc.errors import UnsupportedModel
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.onnx_layout import LAYOUT_OPS


def _i64(b: OnnxBuilder, v: list[int]) -> str:
    return b.const(np.asarray(v), "i", TensorProto.INT64)


def test_the_registry() -> None:
    assert sorted(LAYOUT_OPS) == ["Cast", "Pad", "ReduceMean", "Squeeze"]


@pytest.mark.parametrize("axes", [[2, 3], [3, 2], [-1, -2], [2, -1]])
def test_reduce_mean_axes_in_any_order_or_sign(axes: list[int], nprng: np.random.Generator) -> None:
    b = OnnxBuilder((3, 4, 5), opset=18)
    y = b.node("ReduceMean", [b.input, _i64(b, axes)], keepdims=0, noop_with_empty_axes=0)
    assert same_as_onnx(b.build(y), nprng) == ["global_avgpool", "flatten"]


@pytest.mark.parametrize("shape,axes", [((3, 4, 5), [1, 2, 3]), ((3, 4, 5), [1]), ((3, 4, 5), [3])])
def test_reduce_mean_elsewhere_is_refused(shape: tuple[int, ...], axes: list[int]) -> None:
    b = OnnxBuilder(shape, opset=18)
    model = b.build(b.node("ReduceMean", [b.input, _i64(b, axes)], keepdims=1))
    dims = ", ".join(map(str, shape))
    want = sorted(a % (len(shape) + 1) for a in axes)
    with pytest.raises(UnsupportedModel, match=rf"mean over axes \{want}\ of an \(N, {dims}\) tensor is not "
                                               r"supported\. only the mean over the spatial axes \(2, 3\)"):
        load_onnx(model)


@pytest.mark.parametrize("pads", [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 2, 0, 0, 0, 0, 3], [0, 0, 1, 1, 0, 0, 1, 1]])
def test_pad_merges_into_a_conv_with_its_own_padding(pads: list[int], nprng: np.random.Generator) -> None:
    b = OnnxBuilder((2, 5, 6), opset=13)
    p = b.node("Pad", [b.input, _i64(b, pads)], mode="constant")
    y = b.conv(p, nprng.normal(0, 0.5, (3, 2, 3, 3)), nprng.normal(0, 0.5, 3), pads=(1, 0, 0, 1))
    assert same_as_onnx(b.build(y), nprng) == ["conv"]


@pytest.mark.parametrize("pads,axes,match", [
    ([0, 1, 0, 0, 0, 0, 0, 0], None, r"padding \[\[0, 1, 0, 0\], \[0, 0, 0, 0\]\] with value 0.0 is not supported"),
    ([0, 0, -1, 0, 0, 0, 0, 0], None, "only non-negative zero padding of the two spatial axes"),
    ([1, 1, 1], [2, 3], r"pads \[1, 1, 1\] do not match the axes \[2, 3\]"),
    ([1, 0, 0, 0], [0, 3], "not supported"),
])
def test_pad_refusals(pads: list[int], axes: list[int] | None, match: str, nprng: np.random.Generator) -> None:
    b = OnnxBuilder((2, 5, 5), opset=18)
    ins = [b.input, _i64(b, pads)] + ([b.const(np.float32(0.0)), _i64(b, axes)] if axes else [])
    p = b.node("Pad", ins)
    model = build_unchecked(b, b.conv(p, nprng.normal(0, 0.5, (3, 2, 3, 3))))  # the checker refuses odd pads
    with pytest.raises(UnsupportedModel, match=match):
        load_onnx(model)


def test_a_pad_read_by_two_layers_is_refused(nprng: np.random.Generator) -> None:
    b = OnnxBuilder((2, 5, 5), opset=13)
    p = b.node("Pad", [b.input, _i64(b, [0, 0, 1, 1, 0, 0, 1, 1])])
    wt = nprng.normal(0, 0.5, (2, 2, 3, 3))
    y = b.add(b.conv(p, wt), b.conv(p, wt))
    with pytest.raises(UnsupportedModel, match="the padded tensor .* is read by several nodes"):
        load_onnx(b.build(y))


@pytest.mark.parametrize("opset,with_axes", [(11, True), (13, True), (13, False)])
def test_squeeze_of_unit_spatial_axes_is_a_flatten(opset: int, with_axes: bool, nprng: np.random.Generator) -> None:
    b = OnnxBuilder((3, 4, 4), opset=opset)
    g = b.global_avgpool(b.input)
    if not with_axes:
        y = b.node("Squeeze", [g])
    elif opset < 13:
        y = b.node("Squeeze", [g], axes=[2, 3])
    else:
        y = b.node("Squeeze", [g, _i64(b, [3, 2])])
    assert same_as_onnx(b.build(b.gemm(y, nprng.normal(0, 1, (2, 3)))), nprng) == ["global_avgpool", "flatten",
                                                                                       "gemm"]


@pytest.mark.parametrize("shape,axes", [((1, 1, 1), None), ((3, 1, 1), [2]), ((3, 2, 1), [3]), ((3, 2, 2), [2, 3])])
def test_squeeze_refusals(shape: tuple[int, ...], axes: list[int] | None) -> None:
    b = OnnxBuilder(shape, opset=13)
    y = b.node("Squeeze", [b.input] + ([_i64(b, axes)] if axes else []))
    model = build_unchecked(b, y)
    with pytest.raises(UnsupportedModel, match=r"squeezing axes .* tensor is not supported\. only \(N, C, 1, 1\)"):
        load_onnx(model)


@pytest.mark.parametrize("to", [TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16])
def test_cast_to_a_float_type_is_nothing(to: int, nprng: np.random.Generator) -> None:
    b = OnnxBuilder((5,), opset=13)
    y = b.node("Cast", [b.relu(b.input)], to=to)
    fg = load_onnx(b.build(b.gemm(b.node("Cast", [y], to=TensorProto.FLOAT), nprng.normal(0, 1, (2, 5)))))
    assert [n.op for n in fg.nodes] == ["relu", "gemm"]


@pytest.mark.parametrize("to", [TensorProto.INT32, TensorProto.BOOL, TensorProto.UINT8])
def test_cast_to_another_type_is_refused(to: int) -> None:
    b = OnnxBuilder((5,), opset=13)
    model = b.build(b.node("Cast", [b.node("Cast", [b.input], to=to)], to=TensorProto.FLOAT))
    name = TensorProto.DataType.Name(to)
    with pytest.raises(UnsupportedModel, match=rf"cast of an activation to {name} is not supported\. activations "
                                               "must stay floating point"):
        load_onnx(model)
