"""aiompc.nn.onnx_partial_relu.fuse_partial_relus on its own: each exported form of a partial ReLU, in every
operand order, becomes one PartialRelu node (domain aiompc) with the 0/1 mask as a bool initializer; inner nodes
go only when nothing else reads them; near-patterns are left alone; the imported graph equals onnx's reference
evaluator on the original model.

(``tests/nn/test_nn_partial_relu.py`` runs the fused models through quantization and the secure engine.)"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_reference import same_as_onnx

from aiompc.errors import UnsupportedModel
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.onnx_partial_relu import DOMAIN, OP, fuse_partial_relus

SHAPE = (2, 3, 3)


def _fused(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[onnx.NodeProto]]:
    out = fuse_partial_relus(model)
    return out, [n for n in out.graph.node if n.op_type == OP]


def _mask(out: onnx.ModelProto, node: onnx.NodeProto) -> np.ndarray:
    (init,) = [t for t in out.graph.initializer if t.name == node.input[1]]
    return numpy_helper.to_array(init)


def _start(gen: np.random.Generator, opset: int = 17) -> tuple[OnnxBuilder, str]:
    b = OnnxBuilder(SHAPE, opset=opset)
    return b, b.conv(b.input, gen.normal(0, 0.5, (2, 2, 3, 3)), None, 1, 1)


def _order(p: str, q: str, swap: bool) -> list[str]:
    return [q, p] if swap else [p, q]


def _form(b: OnnxBuilder, x: str, m: np.ndarray, form: str, swap_add: bool, swap_mul: bool) -> str:
    """The exported forms with the operands of Add / Mul in either order (for Where, ``swap_add`` swaps the
    branches and negates the condition: the same partial ReLU)."""
    r = b.relu(x)
    if form == "where":
        cond = b.const(m if not swap_add else ~m, "c", dtype=TensorProto.BOOL)
        return b.node("Where", [cond, *_order(r, x, swap_add)])
    if form == "sub":
        mul = b.node("Mul", _order(b.const(m.astype(np.float32), "m"), b.node("Sub", [r, x]), swap_mul))
        return b.node("Add", _order(x, mul, swap_add))
    ma = b.node("Mul", _order(b.const(m.astype(np.float32), "m"), r, swap_mul))
    mb = b.node("Mul", _order(b.const(1 - m.astype(np.float32), "m"), x, not swap_mul))
    return b.node("Add", _order(ma, mb, swap_add))


@pytest.mark.parametrize("form,swap_add,swap_mul", [("where", False, False), ("where", True, False)] + [
    (f, a, m) for f in ("sub", "mul") for a in (False, True) for m in (False, True)])
@pytest.mark.parametrize("mask_shape", [SHAPE, (2, 1, 1), (1, 3, 3)])
def test_each_form_and_order_fuses_to_one_node(form: str, swap_add: bool, swap_mul: bool,
                                               mask_shape: tuple[int, ...], nprng: np.random.Generator) -> None:
    b, x = _start(nprng)
    m = nprng.random(mask_shape) < 0.5
    m.flat[0], m.flat[-1] = True, False  # both kinds present
    model = b.build(b.flatten(_form(b, x, m, form, swap_add, swap_mul)))
    out, fused = _fused(model)
    assert len(fused) == 1 and fused[0].domain == DOMAIN and fused[0].input[0] == x
    assert any(o.domain == DOMAIN for o in out.opset_import)
    assert np.array_equal(_mask(out, fused[0]), np.broadcast_to(m, mask_shape))  # a swapped Where: m again
    assert not {"Relu", "Sub", "Mul", "Where"} & {n.op_type for n in out.graph.node}  # inner nodes removed
    assert same_as_onnx(model, nprng, 4, tol=1e-6) == ["conv", "partial_relu", "flatten"]


def test_a_relu_read_elsewhere_is_kept(nprng: np.random.Generator) -> None:
    b, x = _start(nprng)
    r = b.relu(x)
    m = np.array([True, False]).reshape(2, 1, 1)
    pr = b.node("Where", [b.const(m, "c", dtype=TensorProto.BOOL), r, x])
    model = b.build(b.flatten(b.add(pr, r)))  # the Relu also feeds the residual
    out, fused = _fused(model)
    assert len(fused) == 1 and [n.op_type for n in out.graph.node].count("Relu") == 1
    assert same_as_onnx(model, nprng, 4, tol=1e-6) == ["conv", "relu", "partial_relu", "add", "flatten"]


def test_a_model_without_the_pattern_is_returned_as_it_is(nprng: np.random.Generator) -> None:
    b, x = _start(nprng)
    model = b.build(b.flatten(b.relu(x)))
    assert fuse_partial_relus(model) is model


def test_a_mask_and_a_non_complement_is_not_the_pattern(nprng: np.random.Generator) -> None:
    """m·Relu(x) + c·x with c != 1 − m: an affine map of a ReLU plus an affine map, imported as such."""
    b, x = _start(nprng)
    m = np.array([1.0, 0.0]).reshape(2, 1, 1)
    y = b.add(b.node("Mul", [b.const(m, "m"), b.relu(x)]), b.node("Mul", [x, b.const(np.full((2, 1, 1), 0.5), "c")]))
    model = b.build(b.flatten(y))
    assert fuse_partial_relus(model) is model
    assert "partial_relu" not in same_as_onnx(model, nprng, 4, tol=1e-6)


def test_a_constant_node_and_a_dequantized_mask_are_constants(nprng: np.random.Generator) -> None:
    b, x = _start(nprng, opset=21)
    m = np.array([1.0, 0.0]).reshape(2, 1, 1)
    b.nodes.append(helper.make_node("Constant", [], ["mconst"], value=numpy_helper.from_array(m.astype(np.float32))))
    y = b.add(x, b.node("Mul", ["mconst", b.node("Sub", [b.relu(x), x])]))
    q = b.const(np.array([127, 0]).reshape(2, 1, 1), "q", dtype=TensorProto.INT8)  # 127 · (1/127) = 1
    dq = b.node("DequantizeLinear", [q, b.const(np.float32(1 / 127), "s")])
    z = b.add(b.node("Mul", [dq, b.relu(y)]), b.node("Mul", [b.const(1 - m, "m"), y]))
    model = b.build(b.flatten(z))
    out, fused = _fused(model)
    assert len(fused) == 2
    for node in fused:
        assert np.array_equal(_mask(out, node).reshape(-1), [True, False])
    assert same_as_onnx(model, nprng, 4, tol=1e-6).count("partial_relu") == 2


@pytest.mark.parametrize("bad", [0.3, 2.0, -1.0, 0.999])
def test_a_mask_that_is_not_0_1_is_refused_with_its_values(bad: float, nprng: np.random.Generator) -> None:
    b, x = _start(nprng)
    m = np.array([1.0, bad]).reshape(2, 1, 1)
    model = b.build(b.flatten(b.partial_relu(x, m, "sub")))
    with pytest.raises(UnsupportedModel, match=rf"must hold only 0 and 1, got values like {bad:.4g}; binarize"):
        fuse_partial_relus(model)


def test_a_dequantized_mask_within_half_a_step_passes() -> None:
    """uint8 255 at scale 1/255 is 1 (up to float32 rounding); 254 at 1/255 is a whole step (1/255) from 1, more
    than the half-step tolerance: refused."""
    def model(q: int, scale: float) -> onnx.ModelProto:
        b = OnnxBuilder(SHAPE, opset=21)
        x = b.relu(b.input)  # any computed x
        dq = b.node("DequantizeLinear", [b.const(np.array([q, 0], dtype=np.int64).reshape(2, 1, 1), "q",
                                                 dtype=TensorProto.UINT8), b.const(np.float32(scale), "s")])
        return b.build(b.flatten(b.add(x, b.node("Mul", [dq, b.node("Sub", [b.relu(x), x])]))))

    assert len(_fused(model(255, 1 / 255))[1]) == 1
    with pytest.raises(UnsupportedModel, match="only 0 and 1"):
        fuse_partial_relus(model(254, 1 / 255))
