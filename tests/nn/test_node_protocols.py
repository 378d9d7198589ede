"""The IR node → protocol table: complete, and each runner where its node type is defined (CNN or transformer)."""

from __future__ import annotations

import inspect

import pytest

import aiompc.nn.node_runners as cnn_runners
import aiompc.nn.node_runners_transformer as transformer_runners
from aiompc.errors import UnsupportedModel
from aiompc.nn.ir import NODE_TYPES, Relu
from aiompc.nn.ir_cnn import CNN_NODES
from aiompc.nn.ir_transformer import TRANSFORMER_NODES
from aiompc.nn.node_protocols import NODE_PROTOCOLS, protocol_of
from aiompc.nn.node_runners import pads_tblr


def test_every_ir_node_type_has_one_protocol() -> None:
    assert set(NODE_PROTOCOLS) == set(NODE_TYPES.values())
    for kind, protocol in NODE_PROTOCOLS.items():
        assert protocol.kind in ("he", "ot", "local"), kind
        assert inspect.iscoroutinefunction(protocol.run), kind


def test_each_runner_lives_beside_its_node_types_family() -> None:
    """The transformer layers' runners are in node_runners_transformer, the CNN layers' in node_runners."""
    for kind, protocol in NODE_PROTOCOLS.items():
        assert (kind in TRANSFORMER_NODES) != (kind in CNN_NODES), kind
        home = transformer_runners if kind in TRANSFORMER_NODES else cnn_runners
        assert protocol.run.__module__ == home.__name__, kind
        assert vars(home)[protocol.run.__name__] is protocol.run, kind  # public, named in its module


def test_protocol_of_an_unknown_node_type_is_a_typed_error() -> None:
    class Unknown(Relu):
        op = "unknown"

    assert protocol_of(Relu(name="r", inputs=("x",), output="y")) is NODE_PROTOCOLS[Relu]
    with pytest.raises(UnsupportedModel, match="no secure protocol for op 'unknown'"):
        protocol_of(Unknown(name="u", inputs=("x",), output="y"))


def test_pads_are_reordered_to_top_bottom_left_right() -> None:
    assert pads_tblr((1, 2, 3, 4)) == (1, 3, 2, 4)
