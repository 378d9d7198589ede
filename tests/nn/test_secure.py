"""Secure inference equals the plaintext integer reference bit for bit (exact mode)."""

import numpy as np
import pytest

import aiompc
from aiompc.errors import InputError
from aiompc.nn.interpret import run_int
from aiompc.nn.ir import QGraph
from aiompc.nn.modes import MODES, EngineConfig, engine_config
from aiompc.nn.node_protocols import protocol_of
from aiompc.nn.rings import ring_widths
from aiompc.nn.secure import run_secure
from aiompc.nn.testing import random_qgraph


async def secure(graph: QGraph, xq: np.ndarray, config: EngineConfig = EngineConfig()) -> np.ndarray:
    meta = graph.without_weights()
    _, client = await aiompc.run_local(
        lambda p: run_secure(p, graph, batch=len(xq), config=config),
        lambda p: run_secure(p, meta, xq, config=config),
    )
    return client.output


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
async def test_random_networks_match_the_integer_reference(seed: int) -> None:
    graph, net = random_qgraph(seed)
    assert {"residual", "stride2", "depthwise", "maxpool", "concat"} <= set(net.blocks)
    xq = graph.quantize_input(net.inputs[:2])
    assert np.array_equal(await secure(graph, xq), run_int(graph, xq))


async def test_unfolded_batchnorm_clip_and_avgpool() -> None:
    graph, net = random_qgraph(5, blocks=("affine", "avgpool"))
    assert {"affine", "clip"} <= {n.op for n in graph.nodes}
    xq = graph.quantize_input(net.inputs[:3])
    assert np.array_equal(await secure(graph, xq), run_int(graph, xq))


async def test_edge_inputs_zero_and_extremes() -> None:
    graph, net = random_qgraph(1)
    spec = graph.input_spec
    lo, hi = (-(1 << (spec.bits - 1)), (1 << (spec.bits - 1)) - 1) if spec.signed else (0, (1 << spec.bits) - 1)
    xq = np.stack([np.zeros(spec.shape, np.int64), np.full(spec.shape, lo), np.full(spec.shape, hi)])
    assert np.array_equal(await secure(graph, xq), run_int(graph, xq))


@pytest.mark.slow
async def test_cheetah_mode_is_the_same_function_on_37_bit_rings() -> None:
    graph, net = random_qgraph(2)
    assert set(ring_widths(graph, MODES["cheetah-int"]).values()) == {37}
    xq = graph.quantize_input(net.inputs[:1])
    assert np.array_equal(await secure(graph, xq, engine_config("cheetah-int")), run_int(graph, xq))


async def test_argmax_output_reveals_only_the_class() -> None:
    graph, net = random_qgraph(3)
    xq = graph.quantize_input(net.inputs[:3])
    got = await secure(graph, xq, engine_config("quantized", output="argmax"))
    want = np.argmax(run_int(graph, xq).reshape(3, -1), axis=1)
    assert got.tolist() == want.tolist()


async def test_approximate_mode_errs_by_at_most_one_lsb_per_requantized_value() -> None:
    # conv -> requantize -> flatten -> fc: in approximate mode every requantized activation a_j is within
    # one LSB of the exact one (e_j in {-1, 0, +1}; see tests/nn/test_secure_approx.py for the per-node
    # check), so the logits differ from the reference by W @ e: at most sum_j |W_oj| for output o
    graph, net = random_qgraph(0, blocks=(), head="flatten")
    assert [n.op for n in graph.nodes] == ["conv", "requantize", "flatten", "linear"]
    xq = graph.quantize_input(net.inputs[:4])
    got = await secure(graph, xq, engine_config("quantized", exact=False))
    diff = got - run_int(graph, xq)
    w = graph.nodes[-1].weight
    assert np.all(np.abs(diff) <= np.abs(w).sum(axis=1))


def test_rings_come_from_public_metadata_only() -> None:
    graph, _ = random_qgraph(0)
    assert ring_widths(graph, MODES["quantized"]) == ring_widths(graph.without_weights(), MODES["quantized"])
    for node in graph.nodes:
        if protocol_of(node).kind == "he":
            r = ring_widths(graph, MODES["quantized"])
            assert r[node.inputs[0]] >= r[node.output] >= graph.tensors[node.output].bits


async def test_wrong_input_shape_and_dtype_are_clear_errors() -> None:
    graph, net = random_qgraph(0)
    meta = graph.without_weights()
    with pytest.raises(InputError, match="expects"):
        await aiompc.run_local(lambda p: run_secure(p, graph, batch=1),
                               lambda p: run_secure(p, meta, np.zeros((1, 1, 2, 2), np.int64)))
    with pytest.raises(InputError, match="integer"):
        await aiompc.run_local(lambda p: run_secure(p, graph, batch=1),
                               lambda p: run_secure(p, meta, graph.quantize_input(net.inputs[:1]).astype(float)))
    with pytest.raises(InputError, match="full graph"):
        await aiompc.run_local(lambda p: run_secure(p, meta, batch=1), lambda p: run_secure(p, meta, batch=1))
