"""ONNX import: every supported operator against onnx's reference evaluator, QDQ models, clear errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from aiompc.errors import UnsupportedModel
from aiompc.nn import Conv, Linear, QuantConfig, Requantize, load_onnx, quantize, run_float, run_int
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.quantize import MissingCalibration

RNG = np.random.default_rng(7)


def w(*shape: int) -> np.ndarray:
    return RNG.normal(0, 0.5, shape)


def _same_as_onnx(model: onnx.ModelProto, x: np.ndarray, **kw: object) -> None:
    fg = load_onnx(model, **kw)  # type: ignore[arg-type]
    want = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x.astype(np.float32)})[0]
    got = run_float(fg, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _x(*shape: int) -> np.ndarray:
    return RNG.normal(0, 1, (2, *shape))


# ----------------------------------------------------------------------------------- operators


@pytest.mark.parametrize("stride,pads,groups", [(1, 1, 1), (2, (0, 1, 1, 0), 1), (2, 1, 2), (1, 1, 4), (1, 0, 1)])
def test_conv(stride: int, pads: object, groups: int) -> None:
    b = OnnxBuilder((4, 7, 7))
    _same_as_onnx(b.build(b.conv(b.input, w(8, 4 // groups, 3, 3), w(8), stride, pads, groups)), _x(4, 7, 7))


@pytest.mark.parametrize("auto_pad,stride", [("SAME_UPPER", 2), ("SAME_LOWER", 2), ("VALID", 1), ("SAME_UPPER", 1)])
def test_conv_auto_pad(auto_pad: str, stride: int) -> None:
    b = OnnxBuilder((2, 6, 6))
    y = b.node("Conv", [b.input, b.const(w(3, 2, 3, 3)), b.const(w(3))], auto_pad=auto_pad, strides=[stride, stride])
    _same_as_onnx(b.build(y), _x(2, 6, 6))


@pytest.mark.parametrize("trans_b,alpha,beta,bias_shape",
                         [(1, 1.0, 1.0, (5,)), (0, 0.5, 2.0, (1, 5)), (0, 1.0, 1.0, None)])
def test_gemm(trans_b: int, alpha: float, beta: float, bias_shape: tuple | None) -> None:
    b = OnnxBuilder((6,))
    wt = w(5, 6) if trans_b else w(6, 5)
    ins = [b.input, b.const(wt)] + ([b.const(w(*bias_shape))] if bias_shape else [])
    _same_as_onnx(b.build(b.node("Gemm", ins, transB=trans_b, alpha=alpha, beta=beta)), _x(6))


def test_matmul_with_bias_add() -> None:
    b = OnnxBuilder((3, 4, 4))
    y = b.add(b.matmul(b.flatten(b.input), w(48, 7)), b.const(w(7)))
    model = b.build(b.relu(y))
    _same_as_onnx(model, _x(3, 4, 4))
    fg = load_onnx(model)
    assert [n.op for n in fg.nodes] == ["flatten", "gemm", "relu"]


def test_conv_bias_add_is_folded() -> None:
    b = OnnxBuilder((2, 5, 5))
    model = b.build(b.add(b.const(w(1, 3, 1, 1)), b.conv(b.input, w(3, 2, 3, 3))))
    _same_as_onnx(model, _x(2, 5, 5))


@pytest.mark.parametrize("lo,hi", [(0.0, 6.0), (-0.5, None), (None, 0.3)])
def test_relu_and_clip(lo: float | None, hi: float | None) -> None:
    b = OnnxBuilder((3, 4, 4))
    _same_as_onnx(b.build(b.clip(b.relu(b.conv(b.input, w(3, 3, 1, 1))), lo, hi) if lo == 0.0 else
                          b.clip(b.input, lo, hi)), _x(3, 4, 4))


def test_clip_with_attributes_in_old_opsets() -> None:
    b = OnnxBuilder((4,), opset=6)
    _same_as_onnx(b.build(b.node("Clip", [b.input], min=-0.2, max=0.4)), _x(4))


@pytest.mark.parametrize("kernel,stride,pads,ceil", [(2, 2, 0, 0), (3, 2, 1, 0), (3, 1, 1, 0), (2, 2, 0, 1)])
def test_maxpool(kernel: int, stride: int, pads: int, ceil: int) -> None:
    b = OnnxBuilder((2, 6, 6))
    y = b.node("MaxPool", [b.input], kernel_shape=[kernel] * 2, strides=[stride] * 2, pads=[pads] * 4, ceil_mode=ceil)
    _same_as_onnx(b.build(y), _x(2, 6, 6))


@pytest.mark.parametrize("kernel,stride,pads", [(2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_average_pool(kernel: int, stride: int, pads: int) -> None:
    b = OnnxBuilder((2, 6, 6))
    _same_as_onnx(b.build(b.avgpool(b.input, kernel, stride, pads, count_include_pad=1)), _x(2, 6, 6))


def test_global_average_pool_add_concat_flatten() -> None:
    b = OnnxBuilder((2, 5, 5))
    c1 = b.conv(b.input, w(3, 2, 3, 3), pads=1)
    c2 = b.conv(b.input, w(3, 2, 1, 1))
    s = b.add(c1, c2)
    cat = b.concat([s, c1, b.input], axis=-3)
    _same_as_onnx(b.build(b.flatten(b.global_avgpool(cat))), _x(2, 5, 5))


@pytest.mark.parametrize("target", [(0, -1), (-1, 50), (0, 50), (0, 2, 5, 5)])
def test_reshape(target: tuple) -> None:
    b = OnnxBuilder((2, 5, 5))
    _same_as_onnx(b.build(b.relu(b.reshape(b.input, target))), _x(2, 5, 5))


def test_batchnorm_standalone_and_after_conv() -> None:
    b = OnnxBuilder((3, 4, 4))
    h = b.batchnorm(b.input, w(3) + 1, w(3), w(3), np.abs(w(3)) + 0.5)
    h = b.conv(b.maxpool(h, 2), w(4, 3, 3, 3), w(4), pads=1)
    _same_as_onnx(b.build(b.batchnorm(h, w(4) + 1, w(4), w(4), np.abs(w(4)) + 0.5, eps=1e-3)), _x(3, 4, 4))


def test_identity_dropout_constant() -> None:
    b = OnnxBuilder((2, 3, 3))
    shape = b.node("Constant", [], value=helper.make_tensor("v", TensorProto.INT64, [2], [0, -1]))
    h = b.node("Identity", [b.node("Dropout", [b.input])])
    model = b.build(b.node("Reshape", [h, shape]))
    _same_as_onnx(model, _x(2, 3, 3))
    assert [n.op for n in load_onnx(model).nodes] == ["flatten"]


def test_dynamic_input_needs_a_shape() -> None:
    b = OnnxBuilder((2, 4, 4))
    model = b.build(b.relu(b.conv(b.input, w(2, 2, 3, 3))))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(UnsupportedModel, match="input_shape"):
        load_onnx(model)
    _same_as_onnx(model, _x(2, 4, 4), input_shape=(2, 4, 4))


def test_load_from_path_and_bytes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    b = OnnxBuilder((3,))
    model = b.build(b.relu(b.gemm(b.input, w(2, 3), w(2))))
    onnx.save(model, tmp_path / "m.onnx")
    for src in (tmp_path / "m.onnx", str(tmp_path / "m.onnx"), model.SerializeToString()):
        assert [n.op for n in load_onnx(src).nodes] == ["gemm", "relu"]


# ----------------------------------------------------------------------------------- QDQ


def _qdq_model(act_bits: int = 8) -> tuple[onnx.ModelProto, dict]:
    """input -> QDQ(u8) -> Conv(int8 per-channel weights, int32 bias) -> Relu -> QDQ(u8/u4)
    -> Flatten -> Gemm(int4 per-tensor weights) -> output."""
    s_in, s_a = float(np.float32(1 / 100)), float(np.float32(0.05))  # ONNX stores float32 scales
    wq1 = RNG.integers(-127, 128, (4, 1, 3, 3))
    s_w1 = RNG.uniform(0.002, 0.01, 4)
    bq1 = RNG.integers(-2000, 2000, 4)
    wq2 = RNG.integers(-7, 8, (3, 64))
    s_w2 = 0.02
    b = OnnxBuilder((1, 4, 4), opset=21)
    x = b.qdq(b.input, s_in, 8, False)
    bias_q = b.const(bq1, "bq", TensorProto.INT32)
    bias = b.node("DequantizeLinear", [bias_q, b.const((s_in * s_w1).astype(np.float32))], axis=0)
    h = b.node("Conv", [x, b.qweight(wq1, s_w1, 8, axis=0), bias], pads=[1, 1, 1, 1])
    h = b.qdq(b.relu(h), s_a, act_bits, False)
    y = b.gemm(b.flatten(h), None, np.zeros(3), weight_name=b.qweight(wq2, s_w2, 4))
    return b.build(y), {"wq1": wq1, "bq1": bq1, "wq2": wq2, "s_in": s_in, "s_a": s_a, "h": h, "x": x}


@pytest.mark.parametrize("act_bits", [8, 4])
def test_qdq_model_keeps_its_integers_and_scales(act_bits: int) -> None:
    model, info = _qdq_model(act_bits)
    x = RNG.uniform(0, 1, (16, 1, 4, 4))
    ref = ReferenceEvaluator(model)
    want, want_h, want_x = ref.run(None, {"input": x.astype(np.float32)})[0], *ref.run(
        [info["h"], info["x"]], {"input": x.astype(np.float32)})
    fg = load_onnx(model)
    assert fg.is_qdq
    np.testing.assert_allclose(run_float(fg, x), want, rtol=1e-4, atol=1e-4)

    qg = quantize(fg)  # no calibration needed: every requantization point is annotated
    conv, = [n for n in qg.nodes if isinstance(n, Conv)]
    lin, = [n for n in qg.nodes if isinstance(n, Linear)]
    assert conv.weight.tolist() == info["wq1"].tolist() and conv.bias.tolist() == info["bq1"].tolist()
    assert conv.weight_bits == 8 and lin.weight_bits == 4
    assert lin.weight.tolist() == info["wq2"].tolist()
    assert qg.input_spec.scale == (info["s_in"],) and (qg.input_spec.bits, qg.input_spec.signed) == (8, False)
    rq, = [n for n in qg.nodes if isinstance(n, Requantize)]
    act = qg.tensors[rq.output]
    assert act.scale == (info["s_a"],) and (act.bits, act.signed) == (act_bits, False) and rq.lo == 0

    # the integer model reproduces the QDQ model's integers: input exactly, activations within one
    # step (fixed-point multiplier vs float rescale: only exact ties may round differently)
    xi = qg.quantize_input(x)
    assert np.array_equal(xi, np.rint(want_x / info["s_in"]))
    vals = run_int(qg, xi, collect=True)
    diff = np.abs(vals[rq.output] - np.rint(want_h / info["s_a"]))
    assert diff.max() <= 1 and diff.mean() < 0.01
    got = qg.dequantize_output(vals[qg.output])
    np.testing.assert_allclose(got, want, atol=0.02 * 7 * info["s_a"] * diff.sum() + 1e-4)


def test_qdq_widths_take_precedence_over_the_config() -> None:
    """An all-8-bit QDQ network (onnxruntime's usual output) keeps 8-bit activations in its body even
    though the default config would use 4, and needs no calibration."""
    b = OnnxBuilder((2, 6, 6), opset=21)
    h = b.qdq(b.input, 0.02, 8, True)
    for i, (o, c) in enumerate(((4, 2), (4, 4), (3, 4))):
        h = b.conv(h, None, None, stride=1, pads=1, weight_name=b.qweight(RNG.integers(-127, 128, (o, c, 3, 3)),
                                                                             RNG.uniform(0.001, 0.004, o), 8))
        h = b.qdq(b.relu(h), 0.05 + 0.01 * i, 8, False)
    model = b.build(b.gemm(b.flatten(h), None, None, weight_name=b.qweight(RNG.integers(-127, 128, (5, 108)), 0.01)))
    qg = quantize(load_onnx(model), None, QuantConfig())
    for n in qg.nodes:
        if isinstance(n, (Conv, Linear)):
            x = qg.tensors[n.inputs[0]]
            assert x.bits == 8 and n.weight_bits == 8
    assert sum(isinstance(n, Requantize) for n in qg.nodes) == 3
    x = RNG.normal(0, 1, (8, 2, 6, 6))
    want = ReferenceEvaluator(model).run(None, {"input": x.astype(np.float32)})[0]
    got = qg.dequantize_output(run_int(qg, qg.quantize_input(x)))
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.999


def test_qdq_weights_quantized_from_float_constants() -> None:
    """QuantizeLinear on a float initializer (weights stored float) is folded to integers."""
    b = OnnxBuilder((2,), opset=21)
    wf = np.array([[0.31, -0.62], [0.0, 0.9]])
    s = b.const(np.float32(0.1))
    zp = b.const(np.zeros((), dtype=np.int64), "zp", TensorProto.INT8)
    wq = b.node("QuantizeLinear", [b.const(wf), s, zp])
    y = b.gemm(b.qdq(b.input, 0.02, 8, True), None, None, weight_name=b.node("DequantizeLinear", [wq, s, zp]))
    model = b.build(y)
    fg = load_onnx(model)
    qg = quantize(fg)
    lin, = [n for n in qg.nodes if isinstance(n, Linear)]
    assert lin.weight.tolist() == [[3, -6], [0, 9]]
    x = RNG.uniform(-1, 1, (4, 2))
    np.testing.assert_allclose(qg.dequantize_output(run_int(qg, qg.quantize_input(x))),
                               ReferenceEvaluator(model).run(None, {"input": x.astype(np.float32)})[0], atol=1e-5)


def test_partly_quantized_model_needs_calibration() -> None:
    b = OnnxBuilder((1, 4, 4), opset=21)
    h = b.relu(b.conv(b.qdq(b.input, 0.01), w(2, 1, 3, 3)))  # relu output not annotated
    model = b.build(b.gemm(b.flatten(h), w(3, 8)))
    with pytest.raises(MissingCalibration, match="calibration"):
        quantize(load_onnx(model))
    qg = quantize(load_onnx(model), RNG.uniform(0, 1, (8, 1, 4, 4)))
    assert qg.input_spec.scale == (float(np.float32(0.01)),)


# ----------------------------------------------------------------------------------- errors


def _model_with(node: onnx.NodeProto, inits: list | None = None, shape: tuple = (2, 1, 4, 4)) -> onnx.ModelProto:
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits or [])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _w(name: str, shape: tuple) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)


@pytest.mark.parametrize("node,inits,match", [
    (helper.make_node("Sigmoid", ["x"], ["y"], name="sig1"), [], r"'sig1' \(op Sigmoid\): operator not supported"),
    (helper.make_node("Conv", ["x", "w"], ["y"], name="c1", dilations=[2, 2]), [_w("w", (1, 1, 2, 2))],
     r"'c1' \(op Conv\).*dilations"),
    (helper.make_node("Conv", ["x", "x"], ["y"], name="c2"), [], r"'c2' \(op Conv\).*constant"),
    (helper.make_node("AveragePool", ["x"], ["y"], name="ap", kernel_shape=[2, 2], pads=[1, 1, 1, 1]), [],
     r"'ap' \(op AveragePool\).*count_include_pad"),
    (helper.make_node("Concat", ["x", "x"], ["y"], name="cat", axis=2), [], r"'cat' \(op Concat\).*axis"),
    (helper.make_node("Gemm", ["x", "w"], ["y"], name="g", transA=1), [_w("w", (2, 2))], r"'g' \(op Gemm\).*transA"),
    (helper.make_node("MaxPool", ["x"], ["y"], name="mp", kernel_shape=[2, 2], storage_order=1), [],
     r"'mp' \(op MaxPool\).*storage_order"),
    (helper.make_node("Relu", ["x"], ["y"], name="r", foo=1), [], r"'r' \(op Relu\): attribute 'foo'"),
    (helper.make_node("FusedConv", ["x"], ["y"], name="f", domain="com.microsoft"), [],
     r"'f' \(op FusedConv\).*domain"),
    (helper.make_node("Add", ["x", "c"], ["y"], name="a"), [_w("c", (4, 4))],
     r"'a' \(op Add\).*varies along an axis other than the channels"),
    (helper.make_node("Mul", ["x", "x"], ["y"], name="m"), [], r"'m' \(op Mul\).*two computed tensors"),
    (helper.make_node("Div", ["c", "x"], ["y"], name="d"), [_w("c", (1,))], r"'d' \(op Div\).*division by a constant"),
    (helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=1), [], r"'sm' \(op Softmax\).*only the last axis"),
    (helper.make_node("QLinearConv", ["x"], ["y"], name="qc"), [], r"'qc' \(op QLinearConv\).*QDQ format"),
    (helper.make_node("ReduceMean", ["x"], ["y"], name="rm", axes=[1]), [], r"'rm' \(op ReduceMean\).*spatial"),
    (helper.make_node("Pad", ["x", "p"], ["y"], name="pd", mode="reflect"),
     [onnx.numpy_helper.from_array(np.zeros(8, np.int64), "p")], r"'pd' \(op Pad\).*mode 'reflect'"),
])
def test_unsupported_models_name_node_and_op(node: onnx.NodeProto, inits: list, match: str) -> None:
    with pytest.raises(UnsupportedModel, match=match):
        load_onnx(_model_with(node, inits))


def test_unsupported_quantization_and_reshape() -> None:
    b = OnnxBuilder((1, 4, 4), opset=21)
    s = b.const(np.float32(0.1))
    zp, zp2 = b.const(np.array(3), "zp", TensorProto.UINT8), b.const(np.array(4), "zp", TensorProto.UINT8)
    with pytest.raises(UnsupportedModel, match="differ from its QuantizeLinear's"):
        load_onnx(b.build(b.node("DequantizeLinear", [b.node("QuantizeLinear", [b.input, s, zp]), s, zp2])))
    b = OnnxBuilder((2, 4, 4), opset=21)
    s, zp = b.const(np.float32([0.1, 0.2])), b.const(np.array([3, 3]), "zp", TensorProto.UINT8)
    with pytest.raises(UnsupportedModel, match="one scale and one zero point"):
        load_onnx(b.build(b.node("DequantizeLinear", [b.node("QuantizeLinear", [b.input, s, zp]), s, zp])))
    b = OnnxBuilder((2, 4, 4))  # a reshape of the per-sample axes is a (token) reshape; moving the batch is not
    assert [n.op for n in load_onnx(b.build(b.reshape(b.input, (0, 8, 4)))).nodes] == ["reshape"]
    with pytest.raises(UnsupportedModel, match=r"op Transpose\).*batch axis of a model with a dynamic batch"):
        load_onnx(b.build(b.node("Transpose", [b.input], perm=[1, 0, 2, 3])))


def test_unreadable_and_multi_input_models() -> None:
    with pytest.raises(UnsupportedModel, match="not a readable ONNX model"):
        load_onnx(b"\x08\x01garbage\xff\xff")
    node = helper.make_node("Add", ["x", "z"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in "xz"],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    with pytest.raises(UnsupportedModel, match="exactly one input"):
        load_onnx(helper.make_model(g))


def test_quantize_requires_calibration_for_float_models() -> None:
    from aiompc.errors import InputError

    b = OnnxBuilder((3,))
    fg = load_onnx(b.build(b.gemm(b.input, w(2, 3))))
    with pytest.raises(InputError, match="calibration"):
        quantize(fg, None, QuantConfig())


def test_duplicate_or_empty_onnx_names_give_unique_node_names() -> None:
    b = OnnxBuilder((2, 4, 4))
    model = b.build(b.gemm(b.flatten(b.relu(b.conv(b.input, w(3, 2, 3, 3), pads=1))), w(2, 48)))
    for i, n in enumerate(model.graph.node):
        n.name = "" if i % 2 else "same"
    fg = load_onnx(model)
    names = [n.name for n in fg.nodes]
    assert len(set(names)) == len(names) == 4
    qg = quantize(fg, RNG.normal(0, 1, (16, 2, 4, 4)))
    assert len({n.name for n in qg.nodes}) == len(qg.nodes)
