"""Secure evaluation of the transformer layers through the engine equals the integer reference bit for bit
(quantized mode, exact), on Cheetah's 37-bit rings too, and reports every layer's category."""

from __future__ import annotations

import numpy as np
import pytest
from transformer_graphs import attention_block, local_chain, random_tokens

import aiompc
from aiompc import ring
from aiompc.nn.interpret import run_int
from aiompc.nn.ir import NODE_TYPES, QGraph
from aiompc.nn.modes import EngineConfig, engine_config
from aiompc.nn.node_protocols import CATEGORIES, NODE_CATEGORIES, NODE_PROTOCOLS, category_of
from aiompc.nn.prepare import linear_calls
from aiompc.nn.rings import plan_rings
from aiompc.nn.secure import SecureResult, run_secure


async def secure(graph: QGraph, x: np.ndarray, config: EngineConfig = EngineConfig(),
                 keep_shares: bool = False) -> tuple[SecureResult, SecureResult]:
    meta = graph.without_weights()
    return await aiompc.run_local(
        lambda p: run_secure(p, graph, batch=len(x), config=config, keep_shares=keep_shares),
        lambda p: run_secure(p, meta, x, config=config, keep_shares=keep_shares),
    )


@pytest.mark.parametrize("seed", [0, 1])
async def test_local_chain_matches_the_integer_reference(seed: int) -> None:
    graph = local_chain(seed)
    x = random_tokens(graph, 3, seed)  # random rows and the input's two extremes
    server, client = await secure(graph, x, keep_shares=True)
    assert np.array_equal(client.output, run_int(graph, x))
    # every edge, not only the output: the shares reconstruct to the reference's values
    want = run_int(graph, x, collect=True)
    rings = plan_rings(graph, EngineConfig().mode).edges
    assert server.shares is not None and client.shares is not None
    for edge, value in want.items():
        l = rings[edge]
        got = ring.to_signed(ring.reconstruct(server.shares[edge], client.shares[edge], l), l)
        assert np.array_equal(got, value), edge
    cats = {r.name: r.category for r in client.layers}
    assert cats["proj"] == "matmul" and cats["table"] == "gelu" and cats["proj_rq"] == "rescale"
    assert cats["split"] == cats["sum"] == cats["pos"] == "other"


async def test_local_chain_on_cheetah_rings() -> None:
    graph = local_chain(2)
    x = random_tokens(graph, 2, 2)
    _, client = await secure(graph, x, engine_config("cheetah-int"))
    assert np.array_equal(client.output, run_int(graph, x))


async def test_approximate_mode_folds_the_matmul_within_one_lsb() -> None:
    graph = local_chain(3)
    x = random_tokens(graph, 4, 3)
    server, client = await secure(graph, x, engine_config("quantized", exact=False), keep_shares=True)
    l = plan_rings(graph, engine_config("quantized", exact=False).mode).edges["proj_rq"]
    got = ring.to_signed(ring.reconstruct(server.shares["proj_rq"], client.shares["proj_rq"], l), l)
    assert np.abs(got - run_int(graph, x, collect=True)["proj_rq"]).max() <= 1


def test_matmul_plans_cover_the_batch_token_rows() -> None:
    graph = local_chain(0)
    calls = {c.node: c for c in linear_calls(graph, EngineConfig(), batch=3, budget=False)}
    assert set(calls) == {"proj", "head"}
    assert tuple(calls["proj"].plan.layout.in_shape) == (3 * 4, 8)
    assert tuple(calls["head"].plan.layout.in_shape) == (3, 8)
    w = next(n for n in graph.nodes if n.name == "proj").weight
    assert np.array_equal(calls["proj"].weight, w.T)


def test_every_node_type_has_a_category() -> None:
    assert set(NODE_CATEGORIES) == set(NODE_TYPES.values())
    assert set(NODE_CATEGORIES.values()) == set(CATEGORIES)
    for kind, protocol in NODE_PROTOCOLS.items():  # the HE layers are the matmuls
        assert (protocol.kind == "he") == (NODE_CATEGORIES[kind] == "matmul"), kind


@pytest.mark.slow
async def test_attention_block_matches_the_integer_reference() -> None:
    graph = attention_block(0)
    missing = sorted({n.op for n in graph.nodes if type(n) not in NODE_PROTOCOLS})
    if missing:
        pytest.skip(f"protocols not on main yet: {', '.join(missing)}")
    x = random_tokens(graph, 3, 0)
    _, client = await secure(graph, x)
    assert np.array_equal(client.output, run_int(graph, x))
    cats = {r.name: r.category for r in client.layers}
    assert [cats[n] for n in ("qk", "softmax", "ln", "ln_affine", "gelu")] == [
        "matmul", "softmax", "layernorm", "layernorm", "gelu"]
    assert all(category_of(n) == cats[n.name] for n in graph.nodes)
