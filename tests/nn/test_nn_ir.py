"""The IR: metadata serialization without weights, full round trips, validation of malformed graphs."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from aiompc import wire
from aiompc.errors import ProtocolError, UnsupportedModel
from aiompc.nn import Conv, QGraph, Requantize, TensorSpec, run_int
from aiompc.nn.bounds import range_of_width
from aiompc.nn.ir import NODE_TYPES, Flatten, Linear, node_from_dict
from aiompc.nn.ir_cnn import CNN_NODES
from aiompc.nn.ir_transformer import TRANSFORMER_NODES
from aiompc.nn.testing import random_qgraph


def _arrays(obj: Any) -> int:
    if isinstance(obj, np.ndarray):
        return 1
    if isinstance(obj, dict):
        return sum(_arrays(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_arrays(v) for v in obj)
    return 0


@pytest.mark.parametrize("seed", range(3))
def test_metadata_round_trip_carries_no_weights(seed: int) -> None:
    qg, _ = random_qgraph(seed)
    meta = qg.to_dict(include_weights=False)
    assert _arrays(meta) == 0
    data = wire.encode(meta)
    # no weight or bias values in the bytes: nothing near the size of the weights, and no "weight" key
    weights = sum(n.weight.size for n in qg.nodes if hasattr(n, "weight"))
    assert b"'weight'" not in data and b"\xa6weight" not in data and len(data) < 8 * weights
    back = QGraph.from_dict(wire.decode(data))
    assert not back.has_weights and qg.has_weights
    assert [type(n) for n in back.nodes] == [type(n) for n in qg.nodes]
    for a, b in zip(qg.nodes, back.nodes, strict=True):
        for f in dataclasses.fields(a):
            if f.name in a.private_fields:
                assert getattr(b, f.name) is None
            else:
                assert getattr(a, f.name) == getattr(b, f.name), (a.name, f.name)
    for name, spec in qg.tensors.items():
        got = back.tensors[name]
        # widths and shapes kept; bounds (functions of the weights) widened to the whole width, but the
        # input's (what the client clips its input to: public)
        lo, hi = (spec.lo, spec.hi) if name == qg.input else range_of_width(spec.bits, spec.signed)
        assert got == dataclasses.replace(spec, lo=lo, hi=hi, scale=got.scale)
        assert got.scale == (spec.scale if name in (qg.input, qg.output) else None)
        assert all(("lo" in t) == (t["name"] == qg.input) and ("hi" in t) == ("lo" in t) for t in meta["tensors"])
    assert back.input == qg.input and back.output == qg.output
    assert back.to_dict() == meta


def test_full_round_trip_computes_the_same() -> None:
    qg, net = random_qgraph(2)
    back = QGraph.from_dict(wire.decode(wire.encode(qg.to_dict(include_weights=True))))
    assert back.has_weights and _arrays(qg.to_dict(include_weights=True)) == 2 * len(
        [n for n in qg.nodes if n.private_fields])
    x = qg.quantize_input(net.inputs)
    assert np.array_equal(run_int(back, x), run_int(qg, x))
    assert back.tensors == qg.tensors


def test_metadata_names_every_layer_kind() -> None:
    kinds = set()
    for seed in range(6):
        qg, _ = random_qgraph(seed)
        kinds |= {n["op"] for n in qg.to_dict()["nodes"]}
    transformer = {t.op for t in TRANSFORMER_NODES}  # tests/nn/test_nn_ir_transformer.py covers those
    assert kinds >= set(NODE_TYPES) - {"affine", "relu", "clip", "partial_relu", "requantize_partial_relu"} - transformer


def test_malformed_descriptions_are_rejected() -> None:
    qg, _ = random_qgraph(0)
    meta = qg.to_dict()
    with pytest.raises(ProtocolError, match="format"):
        QGraph.from_dict({**meta, "format": "other/1"})
    with pytest.raises(ProtocolError, match="unknown IR node"):
        QGraph.from_dict({**meta, "nodes": [{**meta["nodes"][0], "op": "softmax"}] + meta["nodes"][1:]})
    with pytest.raises(ProtocolError, match="malformed"):
        QGraph.from_dict({**meta, "tensors": [{"name": "x"}]})
    bad = [dict(t) for t in meta["tensors"]]
    bad[1]["shape"] = [99]
    with pytest.raises(UnsupportedModel, match="shape"):
        QGraph.from_dict({**meta, "tensors": bad})


def _tiny() -> QGraph:
    w = np.array([[3, -2, 1], [0, 5, -7]])
    x = TensorSpec("x", (3,), 4, False, 0, 15, (0.1,))
    lin = Linear(name="fc", inputs=("x",), output="y", weight_shape=(2, 3), weight_bits=4, weight=w,
                 bias=np.array([1, -1]))
    y = TensorSpec("y", (2,), 8, True, -106, 74, (0.01,))  # channel 0: [1-30, 1+60]; channel 1: [-1-105, -1+75]
    rq = Requantize(name="rq", inputs=("y",), output="z", multiplier=(3, 5), shift=4, lo=0, hi=15)
    z = TensorSpec("z", (2,), 4, False, 0, 15, (0.2,))
    return QGraph("x", "z", {"x": x, "y": y, "z": z}, [lin, rq])


def test_validate_accepts_consistent_and_rejects_inconsistent_graphs() -> None:
    g = _tiny().validate()
    # y = [61, -106] -> [(183+8)>>4, clip(-33)] and y = [-29, 74] -> [clip(-5), clip((370+8)>>4)]
    assert run_int(g, np.array([[15, 0, 15], [0, 15, 0]])).tolist() == [[11, 0], [0, 15]]
    # wrong bounds on an accumulator
    g = _tiny()
    g.tensors["y"] = dataclasses.replace(g.tensors["y"], lo=-100)
    with pytest.raises(UnsupportedModel, match="bounds"):
        g.validate()
    # reading an edge before it is computed
    g = _tiny()
    g.nodes.reverse()
    with pytest.raises(UnsupportedModel, match="before it is computed"):
        g.validate()
    # an edge written twice
    g = _tiny()
    g.nodes.append(Flatten(name="f", inputs=("x",), output="y"))
    with pytest.raises(UnsupportedModel, match="written twice"):
        g.validate()


def test_specs_and_nodes_check_their_invariants() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        TensorSpec("t", (2,), 4, False, -1, 3)
    with pytest.raises(ValueError, match="scales"):
        TensorSpec("t", (2,), 4, False, 0, 3, (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="exceed signed 4 bits"):
        Linear(name="l", inputs=("x",), output="y", weight_shape=(1, 2), weight_bits=4,
               weight=np.array([[8, 0]]), bias=np.array([0]))
    with pytest.raises(ValueError, match="multipliers"):
        Requantize(name="r", inputs=("x",), output="y", multiplier=(-1,), shift=3, lo=0, hi=7)
    with pytest.raises(ValueError, match="groups"):
        Conv(name="c", inputs=("x",), output="y", weight_shape=(3, 1, 3, 3), groups=2)
    assert TensorSpec.for_range("t", (1,), -129, 5, (1.0,)).bits == 9


def test_summary_lists_every_node() -> None:
    qg, _ = random_qgraph(3)
    text = qg.summary()
    assert all(n.name in text for n in qg.nodes) and "u4" in text


def test_node_types_list_every_cnn_and_transformer_kind_once() -> None:
    kinds = (*CNN_NODES, *TRANSFORMER_NODES)
    assert list(NODE_TYPES.values()) == list(kinds) and len(set(NODE_TYPES)) == len(kinds)  # one op name each
    assert all(NODE_TYPES[k.op] is k for k in kinds)


def test_node_from_dict_builds_any_kind_and_refuses_an_unknown_or_mismatched_one() -> None:
    graph, _ = random_qgraph(3)
    for node in graph.nodes:
        encoded = wire.encode(node.to_dict(include_weights=True))
        back = node_from_dict(wire.decode(encoded))
        assert type(back) is type(node) and wire.encode(back.to_dict(include_weights=True)) == encoded
    with pytest.raises(ProtocolError, match="unknown IR node kind"):
        node_from_dict({"op": "softmax_v2", "name": "s", "inputs": ["x"], "output": "y"})
    with pytest.raises(ProtocolError, match="is not 'linear'"):
        Linear.from_dict(graph.nodes[0].to_dict())
