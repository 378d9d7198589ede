"""The operators and shape arithmetic exporters write, each against onnx's reference evaluator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from aiompc.errors import UnsupportedModel
from aiompc.nn import load_onnx, run_float
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.onnx_fold import BATCH_PLACEHOLDER, fold_constants

RNG = np.random.default_rng(11)


def w(*shape: int) -> np.ndarray:
    return RNG.normal(0, 0.5, shape)


def _same_as_onnx(model: onnx.ModelProto, x: np.ndarray) -> list[str]:
    """Import ``model``, check it against the reference evaluator on ``x``; return the float node kinds."""
    fg = load_onnx(model)
    want = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x.astype(np.float32)})[0]
    got = run_float(fg, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    return [n.op for n in fg.nodes]


def _x(*shape: int) -> np.ndarray:
    return RNG.normal(0, 1, (3, *shape))


def _i64(b: OnnxBuilder, v: list[int] | int) -> str:
    return b.const(np.asarray(v), "i", TensorProto.INT64)


@pytest.mark.parametrize("opset,keepdims", [(13, 1), (13, 0), (18, 1), (18, 0), (21, 0)])
def test_reduce_mean_over_space_is_global_average_pooling(opset: int, keepdims: int) -> None:
    b = OnnxBuilder((3, 4, 5), opset=opset)
    h = b.conv(b.input, w(4, 3, 3, 3), w(4), pads=1)
    y = (b.node("ReduceMean", [h], axes=[-2, -1], keepdims=keepdims) if opset < 18 else
         b.node("ReduceMean", [h, _i64(b, [2, 3])], keepdims=keepdims))
    if keepdims:
        y = b.flatten(y)
    ops = _same_as_onnx(b.build(b.gemm(y, w(2, 4))), _x(3, 4, 5))
    assert ops == ["conv", "global_avgpool", "flatten", "gemm"]


@pytest.mark.parametrize("opset", [13, 18, 21])
def test_pad_merges_into_the_next_conv_and_average_pool(opset: int) -> None:
    b = OnnxBuilder((2, 5, 5), opset=opset)
    pads = [0, 0, 1, 2, 0, 0, 2, 1]
    p = b.node("Pad", [b.input, _i64(b, pads)])
    h = b.conv(p, w(3, 2, 3, 3), w(3), pads=1)
    if opset >= 18:  # the axes input
        p2 = b.node("Pad", [h, _i64(b, [1, 1, 0, 0]), b.const(np.float32(0.0)), _i64(b, [2, -1])])
    else:
        p2 = b.node("Pad", [h, _i64(b, [0, 0, 1, 1, 0, 0, 0, 0])])
    y = b.node("AveragePool", [p2], kernel_shape=[2, 2], strides=[2, 2])
    assert _same_as_onnx(b.build(y), _x(2, 5, 5)) == ["conv", "avgpool"]


def test_pad_elsewhere_or_nonzero_is_refused() -> None:
    b = OnnxBuilder((2, 4, 4))
    p = b.node("Pad", [b.input, _i64(b, [0, 0, 1, 1, 0, 0, 1, 1])])
    with pytest.raises(UnsupportedModel, match=r"op MaxPool\).*Pad.*Conv or an AveragePool"):
        load_onnx(b.build(b.maxpool(p, 2, 2)))
    b = OnnxBuilder((2, 4, 4))
    p = b.node("Pad", [b.input, _i64(b, [0, 0, 1, 1, 0, 0, 1, 1]), b.const(np.float32(1.0))])
    with pytest.raises(UnsupportedModel, match=r"op Pad\).*value 1.0"):
        load_onnx(b.build(b.conv(p, w(2, 2, 3, 3))))


@pytest.mark.parametrize("where", ["input", "after_conv", "after_batchnorm", "after_relu", "flat"])
def test_arithmetic_with_constants_is_an_affine_map(where: str) -> None:
    shape = (6,) if where == "flat" else (3, 4, 4)
    b = OnnxBuilder(shape)
    if where == "flat":
        h = b.gemm(b.input, w(4, 6), w(4))
    elif where == "input":
        h = b.input
    else:
        h = b.conv(b.input, w(3, 3, 3, 3), w(3), pads=1)
        if where == "after_batchnorm":
            h = b.batchnorm(h, w(3) + 1, w(3), w(3), np.abs(w(3)) + 0.5)
        if where == "after_relu":
            h = b.relu(h)
    c = 4 if where == "flat" else 3
    per = (1, c) if where == "flat" else (c, 1, 1)
    h = b.node("Sub", [h, b.const(w(*per))])
    h = b.node("Div", [h, b.const(np.abs(w(*per)) + 0.5)])
    h = b.node("Mul", [b.const(np.float32(0.7)), h])
    h = b.node("Add", [h, b.const(w(*per) if where == "flat" else w(1, *per))])
    h = b.node("Sub", [b.const(np.float32(0.25)), h])
    ops = _same_as_onnx(b.build(b.relu(h)), _x(*shape))
    affine = {"input": ["batchnorm"], "after_conv": ["conv"], "after_batchnorm": ["conv", "batchnorm"],
              "after_relu": ["conv", "relu", "batchnorm"], "flat": ["gemm"]}[where]
    assert ops == affine + ["relu"]


def test_squeeze_and_cast() -> None:
    b = OnnxBuilder((3, 4, 4), opset=13)
    g = b.node("Cast", [b.global_avgpool(b.input)], to=TensorProto.FLOAT)
    y = b.node("Squeeze", [g, _i64(b, [2, 3])])
    assert _same_as_onnx(b.build(b.gemm(y, w(2, 3))), _x(3, 4, 4)) == ["global_avgpool", "flatten", "gemm"]
    b = OnnxBuilder((3,))
    with pytest.raises(UnsupportedModel, match=r"op Cast\).*INT64"):
        load_onnx(b.build(b.node("Cast", [b.node("Cast", [b.input], to=TensorProto.INT64)], to=TensorProto.FLOAT)))


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_dynamic_batch_shape_arithmetic_is_folded(opset: int) -> None:
    # what torch.onnx.export(dynamo=False, dynamic_axes=...) writes for x.view(x.size(0), -1)
    b = OnnxBuilder((2, 4, 4), opset=opset)
    h = b.relu(b.conv(b.input, w(3, 2, 3, 3), w(3), pads=1))
    shape = b.node("Shape", [h])
    n = b.node("Gather", [shape, b.node("Constant", [], value=helper.make_tensor("z", TensorProto.INT64, [], [0]))],
               axis=0)
    n1 = b.node("Unsqueeze", [n, _i64(b, [0])])
    target = b.node("Concat", [n1, _i64(b, [-1])], axis=0)
    y = b.node("Reshape", [h, b.node("Cast", [target], to=TensorProto.INT64)])
    model = b.build(b.gemm(y, w(5, 48), w(5)))
    assert _same_as_onnx(model, _x(2, 4, 4)) == ["conv", "relu", "flatten", "gemm"]
    folded = fold_constants(model)
    assert folded.batch_placeholder == BATCH_PLACEHOLDER
    assert {n.op_type for n in folded.model.graph.node} == {"Conv", "Relu", "Reshape", "Gemm"}


def test_a_batch_dependent_reshape_is_refused() -> None:
    b = OnnxBuilder((2, 4, 4))
    shape = b.node("Shape", [b.input])
    both = b.node("Slice", [shape, _i64(b, [0]), _i64(b, [2])])  # (N, C): reshape to (N*C, H*W)
    prod = b.node("ReduceProd", [both], keepdims=1)
    y = b.node("Reshape", [b.input, b.node("Concat", [prod, _i64(b, [-1])], axis=0)])
    with pytest.raises(UnsupportedModel, match=r"op Reshape\).*flattening"):
        load_onnx(b.build(y))


def test_external_data_is_read_from_beside_the_model(tmp_path: Path) -> None:
    b = OnnxBuilder((3, 6, 6))
    model = b.build(b.gemm(b.flatten(b.relu(b.conv(b.input, w(8, 3, 3, 3), w(8)))), w(4, 128)))
    saved = onnx.ModelProto()
    saved.CopyFrom(model)
    onnx.save(saved, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.data", size_threshold=0)
    assert (tmp_path / "m.data").stat().st_size > 4 * 8 * 3 * 9
    fg = load_onnx(tmp_path / "m.onnx")
    x = _x(3, 6, 6)
    want = ReferenceEvaluator(model).run(None, {"input": x.astype(np.float32)})[0]
    np.testing.assert_allclose(run_float(fg, x), want, rtol=1e-4, atol=1e-5)
