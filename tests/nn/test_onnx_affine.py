"""aiompc.nn.onnx_affine: Add/Sub/Mul/Div with one constant operand as a per-channel affine map, merged into the
producer only when nothing else reads it, against onnx's reference evaluator; the refusals with their messages.

(``tests/nn/test_nn_onnx_exporter_ops.py`` checks the chain ``(x - mean) / std ...`` after each kind of producer.)"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_reference import same_as_onnx

from aiompc.errors import UnsupportedModel
from aiompc.nn.onnx_affine import AFFINE_OPS
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.onnx_import import load_onnx


def _conv(b: OnnxBuilder, gen: np.random.Generator) -> str:
    return b.conv(b.input, gen.normal(0, 0.5, (3, 2, 3, 3)), gen.normal(0, 0.5, 3), pads=1)


def test_the_registry_names_the_four_operators() -> None:
    assert sorted(AFFINE_OPS) == ["Add", "Div", "Mul", "Sub"]


@pytest.mark.parametrize("shape", [(), (1,), (3, 1, 1), (1, 3, 1, 1), (1, 1, 1, 1)])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "RSub"])
def test_each_operator_and_constant_shape_merges_into_a_sole_conv(op: str, shape: tuple[int, ...],
                                                                  nprng: np.random.Generator) -> None:
    b = OnnxBuilder((2, 5, 5))
    h = _conv(b, nprng)
    c = b.const(nprng.uniform(0.5, 2.0, shape) * nprng.choice([-1, 1], shape))
    y = b.node("Sub", [c, h]) if op == "RSub" else b.node(op, [h, c])
    assert same_as_onnx(b.build(b.relu(y)), nprng) == ["conv", "relu"]


def test_features_take_a_per_feature_constant(nprng: np.random.Generator) -> None:
    b = OnnxBuilder((6,))
    h = b.gemm(b.input, nprng.normal(0, 0.5, (4, 6)), nprng.normal(0, 0.5, 4))
    y = b.node("Mul", [b.node("Add", [h, b.const(nprng.normal(0, 1, 4))]), b.const(nprng.normal(0, 1, (1, 4)))])
    assert same_as_onnx(b.build(b.relu(y)), nprng) == ["gemm", "relu"]


def test_a_conv_read_twice_keeps_its_weights(nprng: np.random.Generator) -> None:
    """The scaled copy is a separate layer: the residual reads the conv's own output."""
    b = OnnxBuilder((2, 5, 5))
    h = _conv(b, nprng)
    scaled = b.node("Mul", [h, b.const(nprng.uniform(0.5, 2.0, (3, 1, 1)))])
    ops = same_as_onnx(b.build(b.relu(b.add(scaled, h))), nprng)
    assert ops == ["conv", "batchnorm", "add", "relu"]


@pytest.mark.parametrize("cast_first", [True, False])
def test_a_conv_read_again_through_an_alias_keeps_its_weights(cast_first: bool, nprng: np.random.Generator) -> None:
    """A Cast (an alias of the conv's edge) read later, imported before or after the Mul: still two readers."""
    b = OnnxBuilder((2, 5, 5), opset=13)
    h = _conv(b, nprng)
    c = b.const(nprng.uniform(0.5, 2.0, (3, 1, 1)))
    if cast_first:
        hc = b.node("Cast", [h], to=TensorProto.FLOAT)
        scaled = b.node("Mul", [h, c])
    else:
        scaled = b.node("Mul", [h, c])
        hc = b.node("Cast", [h], to=TensorProto.FLOAT)
    ops = same_as_onnx(b.build(b.relu(b.add(scaled, hc))), nprng)
    assert ops == ["conv", "batchnorm", "add", "relu"]


def test_the_input_itself_becomes_a_batchnorm(nprng: np.random.Generator) -> None:
    b = OnnxBuilder((3, 4, 4))
    y = b.node("Div", [b.node("Sub", [b.input, b.const(nprng.normal(0, 1, (3, 1, 1)))]),
                       b.const(nprng.uniform(0.5, 2, (3, 1, 1)))])
    fg = load_onnx(b.build(b.relu(y)))
    (bn,) = [n for n in fg.nodes if n.op == "batchnorm"]  # two maps composed into one
    assert bn.attrs["eps"] == 0.0 and np.all(bn.params["var"] == 1) and np.all(bn.params["mean"] == 0)
    same_as_onnx(b.build(b.relu(y)), nprng)


def test_residual_add_of_two_computed_tensors(nprng: np.random.Generator) -> None:
    b = OnnxBuilder((2, 5, 5))
    h = _conv(b, nprng)
    assert same_as_onnx(b.build(b.node("Add", [h, b.relu(h)])), nprng) == ["conv", "relu", "add"]


def _model(node: onnx.NodeProto, inits: list[onnx.TensorProto], shape: tuple[int, ...] = (2, 3, 4, 4)) -> onnx.ModelProto:
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _c(name: str, v: np.ndarray) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.asarray(v, dtype=np.float32), name)


@pytest.mark.parametrize("node,inits,match", [
    (helper.make_node("Div", ["x", "c"], ["y"], name="d"), [_c("c", np.array([1.0, 0.0, 2.0]).reshape(3, 1, 1))],
     r"'d' \(op Div\): division by zero"),
    (helper.make_node("Sub", ["x", "x"], ["y"], name="s"), [], r"'s' \(op Sub\): subtracting two computed tensors"),
    (helper.make_node("Mul", ["x", "c"], ["y"], name="m"), [_c("c", np.ones((1, 1, 1, 3, 1)))],
     r"'m' \(op Mul\): constant of shape \(1, 1, 1, 3, 1\) does not broadcast"),
    (helper.make_node("Add", ["x", "c"], ["y"], name="a"), [_c("c", np.zeros((0,)))], "does not broadcast"),
    (helper.make_node("Add", ["x", "c"], ["y"], name="a"), [_c("c", np.ones(3))],
     r"constant of shape \(3,\) varies along an axis other than the channels of the \(N, 3, 4, 4\) tensor"),
    (helper.make_node("Mul", ["x", "c"], ["y"], name="m"), [_c("c", np.ones((2, 3, 1, 1)))], "varies along an axis"),
    (helper.make_node("Add", ["x", "c", "c"], ["y"], name="a"), [_c("c", np.ones(1))], r"'a' \(op Add\): 3 inputs"),
])
def test_refusals_name_the_node(node: onnx.NodeProto, inits: list, match: str) -> None:
    with pytest.raises(UnsupportedModel, match=match):
        load_onnx(_model(node, inits))


@pytest.mark.parametrize("op,ops", [("Add", ["fakequant", "conv", "relu"]), ("Sub", ["fakequant", "conv", "relu"]),
                                    ("Mul", ["fakequant", "conv", "batchnorm", "relu"]),
                                    ("Div", ["fakequant", "conv", "batchnorm", "relu"])])
def test_a_qdq_conv_takes_a_bias_but_keeps_its_integer_weights(op: str, ops: list[str],
                                                              nprng: np.random.Generator) -> None:
    """A shift merges into the bias; a scaling becomes its own affine layer (the integers stay as exported)."""
    b = OnnxBuilder((2, 5, 5), opset=21)
    wq = nprng.integers(-7, 8, (3, 2, 3, 3))
    h = b.conv(b.qdq(b.input, 0.05, 8, True), None, None, pads=1,
               weight_name=b.qweight(wq, np.full(3, 0.1, np.float32)))
    model = b.build(b.relu(b.node(op, [h, b.const(nprng.uniform(0.5, 2.0, (3, 1, 1)))])))
    assert same_as_onnx(model, nprng, tol=1e-4) == ops
    (conv,) = [n for n in load_onnx(model).nodes if n.op == "conv"]
    assert np.array_equal(conv.params["weight_q"], wq)
