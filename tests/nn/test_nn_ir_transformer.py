"""The transformer layers of the IR: shape and bounds inference, validation errors, serialization without weights,
the integer interpreter against a direct numpy computation, and the ring rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from transformer_graphs import (Builder, attention_block, gelu_table, local_chain, random_tokens, reference_block,
                                softmax_params)

from aiompc import wire
from aiompc.errors import InputError, UnsupportedModel
from aiompc.nn.interpret import run_int
from aiompc.nn.ir import (NODE_TYPES, AddConst, FeatureAffine, GeluFx, LayerNormFx, LayerNormQ, Lookup, MatMul,
                          MatMulShared, QGraph, ReduceSum, Reshape, Slice, SoftmaxFx, SoftmaxQ, TensorSpec, Transpose)
from aiompc.nn.ir_transformer import TRANSFORMER_NODES, layout_node
from aiompc.nn.modes import MODES
from aiompc.nn.rings import plan_rings, ring_widths


def spec(shape: tuple[int, ...], lo: int, hi: int, name: str = "x") -> TensorSpec:
    return TensorSpec.for_range(name, shape, lo, hi, (1.0,))


# --------------------------------------------------------------------------- inference


def test_matmul_bounds_are_attained_by_some_input() -> None:
    rng = np.random.default_rng(0)
    w, b = rng.integers(-7, 8, (5, 3)), rng.integers(-9, 10, 3)
    node = MatMul(name="m", inputs=("x",), output="y", weight_shape=(5, 3), weight=w, bias=b, weight_bits=4)
    got = node.infer([spec((2, 5), -8, 7)])
    assert got.shape == (2, 3)
    # the extremes: hi under positive weights, lo under negative ones (and the other way round)
    hi = max(np.where(w[:, o] > 0, 7, -8) @ w[:, o] + b[o] for o in range(3))
    lo = min(np.where(w[:, o] > 0, -8, 7) @ w[:, o] + b[o] for o in range(3))
    assert (got.lo, got.hi) == (lo, hi)
    x = rng.integers(-8, 8, (1000, 5))
    y = x @ w + b
    assert lo <= y.min() and y.max() <= hi


def test_matmul_shared_bounds_are_k_times_the_extreme_products() -> None:
    node = MatMulShared(name="m", inputs=("a", "b"), output="y")
    got = node.infer([spec((2, 3, 4), -8, 7, "a"), spec((2, 4, 5), 0, 15, "b")])
    assert got.shape == (2, 3, 5) and (got.lo, got.hi) == (4 * -8 * 15, 4 * 7 * 15)
    with pytest.raises(UnsupportedModel, match="cannot multiply"):
        node.infer([spec((2, 3, 4), -8, 7, "a"), spec((3, 4, 5), 0, 15, "b")])
    with pytest.raises(UnsupportedModel, match="cannot multiply"):
        node.infer([spec((3, 4), -8, 7, "a"), spec((5, 5), 0, 15, "b")])


def test_reshaping_nodes_keep_bounds_and_check_shapes() -> None:
    x = spec((4, 6), -3, 5)
    assert Transpose(name="t", inputs=("x",), output="y", perm=(1, 0)).infer([x]).shape == (6, 4)
    r = Reshape(name="r", inputs=("x",), output="y", shape=(4, 2, -1)).infer([x])
    assert (r.shape, r.lo, r.hi) == ((4, 2, 3), -3, 5)
    s = Slice(name="s", inputs=("x",), output="y", axis=-1, start=2, stop=5).infer([x])
    assert s.shape == (4, 3) and (s.lo, s.hi) == (-3, 5)
    rs = ReduceSum(name="r", inputs=("x",), output="y", axis=0, keepdims=False).infer([x])
    assert rs.shape == (6,) and (rs.lo, rs.hi) == (-12, 20)
    assert ReduceSum(name="r", inputs=("x",), output="y", axis=1).infer([x]).shape == (4, 1)
    with pytest.raises(InputError, match="permutation"):
        Transpose(name="t", inputs=("x",), output="y", perm=(0, 0))
    with pytest.raises(UnsupportedModel, match="rank"):
        Transpose(name="t", inputs=("x",), output="y", perm=(0, 2, 1)).infer([x])
    with pytest.raises(UnsupportedModel, match="does not reshape"):
        Reshape(name="r", inputs=("x",), output="y", shape=(5, -1)).infer([x])
    with pytest.raises(InputError, match="-1"):
        Reshape(name="r", inputs=("x",), output="y", shape=(-1, -1))
    with pytest.raises(UnsupportedModel, match="beyond"):
        Slice(name="s", inputs=("x",), output="y", axis=0, start=2, stop=5).infer([x])
    with pytest.raises(UnsupportedModel, match="out of range"):
        Slice(name="s", inputs=("x",), output="y", axis=2, start=0, stop=1).infer([x])
    with pytest.raises(InputError, match="start < stop"):
        Slice(name="s", inputs=("x",), output="y", axis=0, start=2, stop=2)


def test_add_const_and_feature_affine_bounds_come_from_the_weights() -> None:
    x = spec((3, 4), -8, 7)
    bias = np.array([[1, -2, 3, 0]] * 3)
    a = AddConst(name="a", inputs=("x",), output="y", shape=(3, 4), bias=bias).infer([x])
    assert (a.lo, a.hi) == (-10, 10)
    assert AddConst(name="a", inputs=("x",), output="y", shape=(4,)).infer([x]).lo is None  # metadata
    with pytest.raises(UnsupportedModel, match="broadcast"):
        AddConst(name="a", inputs=("x",), output="y", shape=(3,)).infer([x])
    with pytest.raises(InputError, match="bias only"):
        AddConst(name="a", inputs=("x",), output="y", shape=(4,), weight=np.ones(4), bias=np.ones(4))
    f = FeatureAffine(name="f", inputs=("x",), output="y", features=4, weight=np.array([2, -3, 1, 0]),
                      bias=np.array([0, 1, -1, 5])).infer([x])
    assert (f.lo, f.hi) == (min(-16, -20, -9, 5), max(14, 25, 6, 5))
    with pytest.raises(UnsupportedModel, match="4 features"):
        FeatureAffine(name="f", inputs=("x",), output="y", features=4).infer([spec((4, 3), 0, 1)])


def test_nonlinear_bounds_come_from_public_constants() -> None:
    x = spec((2, 4), -32, 31)
    assert Lookup(name="l", inputs=("x",), output="y", table=gelu_table(6, 0.25)).infer([x]).lo == min(
        gelu_table(6, 0.25))
    with pytest.raises(UnsupportedModel, match="does not index"):
        Lookup(name="l", inputs=("x",), output="y", table=gelu_table(5, 0.25)).infer([x])
    with pytest.raises(InputError, match="2\\^k entries"):
        Lookup(name="l", inputs=("x",), output="y", table=(1, 2, 3))
    sm = SoftmaxQ(name="s", inputs=("x",), output="y", params=softmax_params(4)).infer([x])
    assert (sm.lo, sm.hi) == (0, 15)
    p = attention_block(0).nodes[[n.op for n in attention_block(0).nodes].index("layernorm_q")].params
    ln = LayerNormQ(name="n", inputs=("x",), output="y", params=p).infer([x])
    assert (ln.lo, ln.hi) == (-32, 31)
    assert SoftmaxFx(name="s", inputs=("x",), output="y", f=12).infer([x]).hi == 8191
    g = GeluFx(name="g", inputs=("x",), output="y", f=12).infer([spec((4,), -(1 << 20), 1 << 20)])
    assert g.lo == -1024 and g.hi == (1 << 20) + 256 + 1024
    top = LayerNormFx(name="n", inputs=("x",), output="y", f=12).infer([spec((3, 768), -(1 << 20), 1 << 20)]).hi
    assert top >= np.sqrt(767) * 4096
    with pytest.raises(InputError, match="f = 40"):
        GeluFx(name="g", inputs=("x",), output="y", f=40)


# --------------------------------------------------------------------------- graphs


@pytest.mark.parametrize("seed", range(3))
def test_attention_block_equals_a_direct_numpy_computation(seed: int) -> None:
    graph = attention_block(seed)
    x = random_tokens(graph, 5, seed)
    got = run_int(graph, x)
    assert got.shape == (5, 1, 3)
    assert np.array_equal(got, reference_block(graph, x))
    # the probabilities are non-trivial: not all in one place (the test would not see a wrong head order)
    probs = run_int(graph, x, collect=True)["softmax"]
    assert probs.shape == (5, 2, 4, 4) and len(np.unique(probs)) > 3


def test_the_graphs_use_every_transformer_node_kind() -> None:
    ops = {n.op for g in (attention_block(0), local_chain(0)) for n in g.nodes}
    quantized = {t.op for t in TRANSFORMER_NODES} - {"softmax_fx", "gelu_fx", "layernorm_fx"}
    assert quantized <= ops


def test_metadata_round_trip_carries_no_weights_and_keeps_public_constants() -> None:
    graph = attention_block(1)
    meta = graph.to_dict(include_weights=False)
    data = wire.encode(meta)
    assert b"\xa6weight" not in data and b"\xa4bias" not in data
    back = QGraph.from_dict(wire.decode(data))
    assert not back.has_weights and graph.has_weights
    for a, b in zip(graph.nodes, back.nodes, strict=True):
        assert type(a) is type(b)
        for f in dataclasses.fields(a):
            if f.name in a.private_fields:
                assert getattr(b, f.name) is None
            else:
                assert getattr(a, f.name) == getattr(b, f.name), (a.name, f.name)
    assert back.to_dict() == meta
    full = QGraph.from_dict(wire.decode(wire.encode(graph.to_dict(include_weights=True))))
    x = random_tokens(graph, 3, 7)
    assert np.array_equal(run_int(full, x), run_int(graph, x))
    with pytest.raises(InputError, match="metadata only"):
        run_int(back, x)


def test_fx_nodes_round_trip_with_their_ring() -> None:
    for kind in (SoftmaxFx, GeluFx, LayerNormFx):
        node = kind(name="n", inputs=("x",), output="y", f=12)
        back = NODE_TYPES[node.op].from_dict(wire.decode(wire.encode(node.to_dict())))
        assert type(back) is kind and (back.f, back.l) == (12, 37)
    ln = LayerNormFx(name="n", inputs=("x",), output="y", f=12, eps=1e-12)
    assert NODE_TYPES["layernorm_fx"].from_dict(wire.decode(wire.encode(ln.to_dict()))).eps == 1e-12


def test_validation_catches_wrong_declared_shapes_and_bounds() -> None:
    graph = attention_block(0)
    bad = dict(graph.tensors)
    bad["softmax"] = dataclasses.replace(bad["softmax"], shape=(2, 4, 3))
    with pytest.raises(UnsupportedModel, match="shape"):
        QGraph(graph.input, graph.output, bad, graph.nodes).validate()
    bad = dict(graph.tensors)
    bad["pos"] = TensorSpec("pos", (4, 8), 8, True, -100, 100, (1.0,))
    with pytest.raises(UnsupportedModel, match="bounds"):
        QGraph(graph.input, graph.output, bad, graph.nodes).validate()


# --------------------------------------------------------------------------- rings


def test_ring_rules_of_the_transformer_nodes() -> None:
    graph = attention_block(0)
    rings = ring_widths(graph, MODES["quantized"])
    t = graph.tensors
    own = lambda e: t[e].bits + (0 if t[e].signed else 1)  # noqa: E731
    # an HE layer's inputs are raised to its accumulator's ring; MatMulShared's two operands too
    assert rings["pos"] >= rings["q_mm"] >= own("q_mm")
    assert rings["q_heads"] >= rings["qk"] and rings["k_heads_t"] >= rings["qk"]
    assert rings["softmax"] >= rings["pv"] and rings["v_heads"] >= rings["pv"]
    # layernorm reads its input in its own ring; softmax one bit above (no extension of the logits); a look-up
    # at least in its table's index width
    assert rings["qk_rq"] == own("qk_rq") + 1 and rings["residual"] == own("residual")
    assert rings["ff1_rq"] >= 6
    assert ring_widths(graph.without_weights(), MODES["quantized"]) == rings
    assert set(ring_widths(graph, MODES["cheetah"]).values()) == {37}


def test_lookup_of_a_narrow_signed_input_raises_its_ring_to_the_table_width() -> None:
    graph = local_chain(0)
    assert graph.tensors["sum"].bits == 6
    wide = dataclasses.replace(next(n for n in graph.nodes if n.name == "table"), table=gelu_table(8, 0.25))
    nodes = [wide if n.name == "table" else n for n in graph.nodes]
    tensors = dict(graph.tensors)
    g = QGraph(graph.input, graph.output, tensors, nodes)
    assert ring_widths(g, MODES["quantized"])["sum"] == 8


def test_approximate_mode_folds_a_matmul_into_its_requantization() -> None:
    graph = local_chain(0)
    plan = plan_rings(graph, MODES["quantized"].with_exact(False))
    assert "proj" in plan.folds and "proj_rq" in plan.folded
    assert not plan_rings(graph, MODES["quantized"]).folds


def test_a_graph_without_weights_has_a_metadata_view_too() -> None:
    # a chain of public-constant nodes only: the metadata view (widths, no bounds) still validates
    b = Builder.start((2, 16), 6)
    b.add(ReduceSum, b.add(Slice, "x", "half", axis=-1, start=0, stop=8), "s", axis=-1)
    graph = b.graph("s")
    assert graph.has_weights and graph.tensors["s"].hi == 248  # nothing to hold; a bound inside the width
    back = QGraph.from_dict(wire.decode(wire.encode(graph.to_dict())))
    assert back.tensors["s"].hi == 255
    x = np.arange(-32, 32).reshape(2, 2, 16)
    assert np.array_equal(run_int(back, x), run_int(graph, x))


def test_layout_node_builds_each_layout_op_and_refuses_others() -> None:
    t = layout_node("transpose", {"perm": [1, 0]}, name="t", edge="x", output="y")
    r = layout_node("reshape", {"shape": [2, -1]}, name="r", edge="x", output="y")
    s = layout_node("slice", {"axis": 0, "start": 1, "stop": 3}, name="s", edge="x", output="y")
    assert (type(t).op, t.perm, t.inputs, t.output) == ("transpose", (1, 0), ("x",), "y")
    assert (type(r).op, r.shape) == ("reshape", (2, -1))
    assert (type(s).op, s.axis, s.start, s.stop) == ("slice", 0, 1, 3)
    with pytest.raises(UnsupportedModel, match="not a layout op"):
        layout_node("softmax", {}, name="z", edge="x", output="y")
