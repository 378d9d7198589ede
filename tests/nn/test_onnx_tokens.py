"""aiompc.nn.onnx_tokens: which float edges are token tensors, where their batch axis is, and the reshapes that
move a batch-1 tensor between its ONNX layout and its per-sample one.

Unit tests drive the helpers with a small stand-in importer (the attributes they read: ``token``, ``batched``,
``shapes``, ``batch``, ``alias``, ``emit``, ``fail``, ``flatten``) and run the float nodes they emit against numpy;
the end-to-end tests import static-batch-1 ONNX graphs whose operators move the batch axis (the paths that lift
and settle) and compare with onnx's reference evaluator."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnx_reference import same_as_onnx, static_batch_1

from aiompc.errors import UnsupportedModel
from aiompc.nn.graph import TOKEN_OPS, FloatGraph, FloatNode, infer_shape
from aiompc.nn.interpret import run_float
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.onnx_tokens import (BATCH1_HINT, emit, full_shape, is_token, lift, reshape_full, sample_axis,
                                   settle)

NODE = helper.make_node("Identity", ["a"], ["b"], name="n")  # the ONNX node named in error messages


class _Imp:
    """The importer state the helpers read and write (as :class:`aiompc.nn.onnx_import` keeps it)."""

    def __init__(self, batch: int, shapes: dict[str, tuple[int, ...]]) -> None:
        self.batch = batch
        self.shapes = dict(shapes)
        self.batched: dict[str, bool] = {}
        self.token: set[str] = set()
        self.alias: dict[str, str] = {k: k for k in shapes}
        self.nodes: list[FloatNode] = []
        self.flattened: list[tuple[str, str]] = []
        self.input = next(iter(shapes))

    def emit(self, op: str, inputs: Sequence[str], output: str, attrs: dict[str, Any] | None = None,
             params: dict[str, np.ndarray] | None = None, suffix: str = "") -> str:
        n = FloatNode(op, "n" + suffix, tuple(inputs), output, attrs or {}, params or {})
        self.shapes[output] = infer_shape(n, [self.shapes[i] for i in n.inputs])
        self.nodes.append(n)
        self.alias[output] = output
        if op in TOKEN_OPS or any(i in self.token for i in inputs):
            self.token.add(output)
        return output

    def fail(self, node: onnx.NodeProto, msg: str, hint: str = "") -> UnsupportedModel:
        return UnsupportedModel(f"node {node.name!r}: {msg}" + (f". {hint}" if hint else ""))

    def flatten(self, x: str, out: str) -> None:
        self.flattened.append((x, out))
        self.emit("flatten", [x], out)

    def run(self, out: str, x: np.ndarray) -> np.ndarray:
        """The float nodes emitted so far, evaluated up to the edge ``out`` (``x`` with its batch axis)."""
        g = FloatGraph(self.input, self.alias[out], dict(self.shapes), list(self.nodes))
        return run_float(g, x)


# --------------------------------------------------------------------------- is_token / full_shape / emit


@pytest.mark.parametrize("shape,batched,token,want", [
    ((4, 6), True, False, True),         # (S, H) per sample: tokens
    ((2, 4, 6, 3), True, False, True),   # rank > 3: heads
    ((3, 8, 8), True, False, False),     # (C, H, W): an image
    ((10,), True, False, False),         # (F,): features
    ((3, 8, 8), False, False, True),     # unbatched (lifted): a token tensor whatever its rank
    ((10,), True, True, True),           # marked by a transformer op
])
def test_is_token_by_rank_batch_and_mark(shape: tuple[int, ...], batched: bool, token: bool, want: bool) -> None:
    imp = _Imp(1, {"x": shape})
    imp.batched["x"] = batched
    if token:
        imp.token.add("x")
    assert is_token(imp, "x") is want  # type: ignore[arg-type]


def test_full_shape_puts_the_batch_first_only_on_batched_edges() -> None:
    imp = _Imp(5, {"x": (4, 6), "y": (1, 4, 6)})
    imp.batched["y"] = False
    assert full_shape(imp, "x") == (5, 4, 6)  # type: ignore[arg-type]
    assert full_shape(imp, "y") == (1, 4, 6)  # type: ignore[arg-type]


@pytest.mark.parametrize("batched", [True, False])
def test_emit_marks_the_edge_a_token_with_its_batch_flag(batched: bool) -> None:
    imp = _Imp(1, {"x": (3, 8, 8)})
    out = emit(imp, "relu", ["x"], "y", batched=batched)  # type: ignore[arg-type]
    assert out == "y" and "y" in imp.token and imp.batched["y"] is batched and imp.shapes["y"] == (3, 8, 8)


# --------------------------------------------------------------------------- lift / settle


def test_lift_at_batch_1_is_a_reshape_to_the_onnx_shape(nprng: np.random.Generator) -> None:
    imp = _Imp(1, {"x": (4, 6)})
    y = lift(imp, NODE, "x")  # type: ignore[arg-type]
    assert imp.batched[y] is False and imp.shapes[y] == (1, 4, 6) and y in imp.token
    assert full_shape(imp, y) == (1, 4, 6)  # type: ignore[arg-type]
    x = nprng.standard_normal((1, 4, 6))
    np.testing.assert_array_equal(imp.run(y, x), x.reshape(1, 1, 4, 6))
    assert lift(imp, NODE, y) == y and len(imp.nodes) == 1  # type: ignore[arg-type]  # lifting twice: a no-op


def test_lift_refuses_a_dynamic_batch_with_the_hint() -> None:
    imp = _Imp(3, {"x": (4, 6)})
    with pytest.raises(UnsupportedModel, match="moves or reads the batch axis") as e:
        lift(imp, NODE, "x")  # type: ignore[arg-type]
    assert BATCH1_HINT in str(e.value) and "'n'" in str(e.value)
    assert not imp.nodes


def test_settle_drops_the_leading_1_of_an_unbatched_edge(nprng: np.random.Generator) -> None:
    imp = _Imp(1, {"x": (4, 6)})
    up = lift(imp, NODE, "x")  # type: ignore[arg-type]
    settle(imp, NODE, up, "onnx_y")  # type: ignore[arg-type]
    y = imp.alias["onnx_y"]
    assert y != up and imp.shapes[y] == (4, 6) and imp.batched[y] is True
    x = nprng.standard_normal((1, 4, 6))
    np.testing.assert_array_equal(imp.run("onnx_y", x), x)  # lift then settle: the identity


def test_settle_only_aliases_batched_edges_and_unbatched_ones_without_a_leading_1() -> None:
    imp = _Imp(1, {"x": (4, 6), "u": (2, 4, 6)})
    imp.batched["u"] = False
    settle(imp, NODE, "x", "a")  # type: ignore[arg-type]
    settle(imp, NODE, "u", "b")  # type: ignore[arg-type]
    assert imp.alias["a"] == "x" and imp.alias["b"] == "u" and not imp.nodes
    dyn = _Imp(4, {"v": (1, 6)})
    dyn.batched["v"] = False
    settle(dyn, NODE, "v", "c")  # type: ignore[arg-type]  # not at batch 1: kept as it is
    assert dyn.alias["c"] == "v" and not dyn.nodes


# --------------------------------------------------------------------------- reshape_full


def test_reshape_full_checks_the_size() -> None:
    imp = _Imp(1, {"x": (4, 6)})
    with pytest.raises(UnsupportedModel, match=r"reshape of \(1, 4, 6\) to \(1, 5, 5\) changes the size"):
        reshape_full(imp, NODE, "x", (1, 5, 5), "y")  # type: ignore[arg-type]


def test_reshape_full_to_the_same_shape_is_an_alias() -> None:
    imp = _Imp(1, {"x": (4, 6)})
    reshape_full(imp, NODE, "x", (1, 4, 6), "y")  # type: ignore[arg-type]
    assert imp.alias["y"] == "x" and not imp.nodes


@pytest.mark.parametrize("out_full,batched,per_sample", [
    ((1, 2, 12), True, (2, 12)),       # a leading 1 at batch 1: the batch axis
    ((4, 6), False, (4, 6)),           # the batch merged away: an unbatched tensor
    ((24,), False, (24,)),
    ((1, 2, 2, 6), True, (2, 2, 6)),
])
def test_reshape_full_at_batch_1_follows_the_leading_axis(out_full: tuple[int, ...], batched: bool,
                                                          per_sample: tuple[int, ...],
                                                          nprng: np.random.Generator) -> None:
    imp = _Imp(1, {"x": (4, 6)})
    reshape_full(imp, NODE, "x", out_full, "y")  # type: ignore[arg-type]
    y = imp.alias["y"]
    assert imp.batched[y] is batched and imp.shapes[y] == per_sample and full_shape(imp, y) == out_full  # type: ignore[arg-type]
    x = nprng.standard_normal((1, 4, 6))
    got = imp.run("y", x)
    np.testing.assert_array_equal(got.reshape(out_full), x.reshape(out_full))  # row-major, as ONNX
    assert got.shape == (1, *per_sample)


def test_reshape_full_at_a_dynamic_batch_keeps_the_batch_first(nprng: np.random.Generator) -> None:
    imp = _Imp(3, {"x": (4, 6)})
    reshape_full(imp, NODE, "x", (3, 2, 2, 6), "y")  # type: ignore[arg-type]
    assert imp.shapes["y"] == (2, 2, 6) and imp.batched["y"] is True
    x = nprng.standard_normal((3, 4, 6))
    np.testing.assert_array_equal(imp.run("y", x), x.reshape(3, 2, 2, 6))
    for bad in ((4, 3, 6), (12, 6)):
        with pytest.raises(UnsupportedModel, match="moves the batch axis") as e:
            reshape_full(imp, NODE, "x", bad, "z")  # type: ignore[arg-type]
        assert BATCH1_HINT in str(e.value)


def test_reshape_full_of_an_image_to_features_is_the_cnn_flatten() -> None:
    imp = _Imp(2, {"x": (3, 4, 4)})
    reshape_full(imp, NODE, "x", (2, 48), "y")  # type: ignore[arg-type]
    assert imp.flattened == [("x", "y")] and imp.nodes[0].op == "flatten"
    tok = _Imp(2, {"t": (4, 6)})  # a token tensor flattened per sample stays a reshape
    reshape_full(tok, NODE, "t", (2, 24), "y")  # type: ignore[arg-type]
    assert not tok.flattened and tok.nodes[0].op == "reshape" and tok.nodes[0].attrs["shape"] == (24,)


# --------------------------------------------------------------------------- sample_axis


@pytest.mark.parametrize("axis,want", [(1, 0), (2, 1), (-1, 1), (-2, 0)])
def test_sample_axis_of_a_batched_edge_skips_the_batch(axis: int, want: int) -> None:
    imp = _Imp(3, {"x": (4, 6)})
    assert sample_axis(imp, NODE, "x", axis) == ("x", want)  # type: ignore[arg-type]
    assert not imp.nodes


def test_sample_axis_of_the_batch_axis_lifts_at_batch_1_and_fails_otherwise() -> None:
    imp = _Imp(1, {"x": (4, 6)})
    edge, ax = sample_axis(imp, NODE, "x", -3)  # type: ignore[arg-type]
    assert ax == 0 and imp.batched[edge] is False and imp.shapes[edge] == (1, 4, 6)
    assert sample_axis(imp, NODE, edge, 2) == (edge, 2)  # type: ignore[arg-type]  # unbatched: the ONNX axis
    with pytest.raises(UnsupportedModel, match="batch axis"):
        sample_axis(_Imp(2, {"x": (4, 6)}), NODE, "x", 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("axis", [3, -4, 100])
def test_sample_axis_out_of_range(axis: int) -> None:
    with pytest.raises(UnsupportedModel, match=f"axis {axis} outside a rank-3 tensor"):
        sample_axis(_Imp(1, {"x": (4, 6)}), NODE, "x", axis)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- end to end: static batch 1


def _transpose_batch(b: OnnxBuilder) -> str:
    return b.node("Relu", [b.node("Transpose", [b.node("Relu", [b.input])], perm=[1, 0, 2])])  # (4, 1, 6)


def _gather_batch(b: OnnxBuilder) -> str:
    return b.node("Gather", [b.input, b.const(np.array(0), "i", TensorProto.INT64)], axis=0)  # (4, 6)


def _merge_batch(b: OnnxBuilder) -> str:
    r = b.node("Reshape", [b.input, b.const(np.array([4, -1]), "s", TensorProto.INT64)])  # (4, 6): batch merged
    return b.node("Softmax", [b.node("Transpose", [r], perm=[1, 0])], axis=-1)  # (6, 4)


def _unsqueeze_front(b: OnnxBuilder) -> str:
    u = b.node("Unsqueeze", [b.input, b.const(np.array([0]), "a", TensorProto.INT64)])  # (1, 1, 4, 6)
    return b.node("Transpose", [u], perm=[1, 0, 3, 2])  # (1, 1, 6, 4)


@pytest.mark.parametrize("build", [_transpose_batch, _gather_batch, _merge_batch, _unsqueeze_front])
def test_operators_moving_the_batch_axis_at_batch_1(build, nprng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]
    b = OnnxBuilder((4, 6), opset=18)
    same_as_onnx(static_batch_1(b.build(build(b))), nprng, 1, same_shape=False)


@pytest.mark.parametrize("build", [_gather_batch, _merge_batch])
def test_the_same_graphs_at_a_dynamic_batch_name_the_static_batch_hint(build) -> None:  # type: ignore[no-untyped-def]
    b = OnnxBuilder((4, 6), opset=18)
    with pytest.raises(UnsupportedModel, match="batch") as e:
        load_onnx(b.build(build(b)))
    assert "static batch of 1" in str(e.value)
