"""Secure evaluation of the transformer layers through the engine equals the integer reference bit for bit
(quantized mode, exact), on Cheetah's 37-bit rings too; the HE parts' bytes are the byte model's; every layer reports
its category."""

from __future__ import annotations

import numpy as np
import pytest
from transformer_graphs import Builder, attention_block, gelu_table, local_chain, random_tokens, reference_block

import aiompc
from aiompc import qtables, ring
from aiompc.channel import Stats
from aiompc.nn.interpret import run_int
from aiompc.nn.ir import NODE_TYPES, LayerNormQ, Lookup, MatMul, QGraph, SoftmaxQ
from aiompc.nn.modes import EngineConfig, engine_config
from aiompc.nn.node_categories import CATEGORIES, NODE_CATEGORIES, category_of
from aiompc.nn.node_protocols import NODE_PROTOCOLS, protocol_of
from aiompc.nn.node_runners_transformer import lookup_width
from aiompc.nn.prepare import linear_calls, prepare_model
from aiompc.nn.report import layer_report
from aiompc.nn.rings import plan_rings
from aiompc.nn.secure import SecureResult, run_secure
from aiompc.nn.stat_budget import plan_inference
from aiompc.party import Party
from aiompc.protocols.linear.costs import plan_cost
from aiompc.protocols.linear.matmul import shared_matmul_bytes
from aiompc.protocols.linear.weight_cache import STATE_KEY as WEIGHT_CACHE
from aiompc.protocols.linear.weight_cache import WeightCache
from aiompc.protocols.products import cot_bits


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


@pytest.mark.parametrize("mode", ["quantized", "cheetah-int"])
async def test_attention_without_layernorm_matches_the_integer_reference(mode: str) -> None:
    # two heads: MatMulShared (OT cross terms at these sizes), SoftmaxQ, FeatureAffine, the FFN's GELU table
    graph = attention_block(4, norm=False)
    x = random_tokens(graph, 3, 4)
    _, client = await secure(graph, x, engine_config(mode))
    assert np.array_equal(client.output, run_int(graph, x))
    cats = {r.name: r.category for r in client.layers}
    assert [cats[n] for n in ("qk", "softmax", "pv", "ln_affine", "gelu")] == [
        "matmul", "softmax", "matmul", "layernorm", "gelu"]


@pytest.mark.parametrize("seq, heads", [(1, 1), (1, 2), (3, 1)])
async def test_sequence_length_one_and_one_head(seq: int, heads: int) -> None:
    graph = attention_block(7, seq=seq, heads=heads, norm=False)
    x = random_tokens(graph, 3, 7)
    assert np.array_equal(run_int(graph, x), reference_block(graph, x, heads=heads))
    _, client = await secure(graph, x)
    assert np.array_equal(client.output, run_int(graph, x))


async def test_he_cross_terms_run_the_plans_the_flooding_budget_counted() -> None:
    # at S = 32, d = 16 the cost model picks HE for the attention products; their result ciphertexts enter the
    # inference's 40-bit budget (stat_budget), and the engine runs exactly the plans that were counted
    graph = attention_block(5, norm=False, seq=32, hidden=32)
    x = random_tokens(graph, 1, 5)
    parties = {}

    async def server(p: Party) -> SecureResult:
        parties["server"] = p
        return await run_secure(p, graph, batch=1)

    async def client_fn(p: Party) -> tuple[SecureResult, Stats]:
        return await run_secure(p, graph.without_weights(), x), p.channel.stats()

    _, (client, stats) = await aiompc.run_local(server, client_fn)
    assert np.array_equal(client.output, run_int(graph, x))
    budget = plan_inference(graph, EngineConfig(), 1, cot_bits=cot_bits(parties["server"]))
    # the byte model equals the channel: the token MatMuls' fc plans and the shared matmuls' cross terms
    for call in budget.calls:
        if not call.shares:
            cost = plan_cost(call.plan, f"infer/{call.node}")
            st = stats.select(f"infer/{call.node}")
            assert (st.bytes_sent, st.bytes_recv) == (cost.upload, cost.download), call.node
    for m in ("qk", "pv"):
        st = stats.select(f"infer/{m}")
        want = shared_matmul_bytes(parties["server"].state["matmul_shared"][f"infer/{m}"], f"infer/{m}")
        assert (st.bytes_sent, st.bytes_recv) == want
    counted = {c.node: c for c in budget.calls if c.shares}
    assert set(counted) == {f"{m}/{t}" for m in ("qk", "pv") for t in ("ac_bs", "bc_as")}
    for m in ("qk", "pv"):
        ran = parties["server"].state["matmul_shared"][f"infer/{m}"]
        assert ran.methods == ("he", "he")
        for t in ("ac_bs", "bc_as"):
            assert counted[f"{m}/{t}"].plan == getattr(ran, t).fc and counted[f"{m}/{t}"].runs == 2  # 1 x 2 heads
    assert budget.security >= 40
    # the report says what the cost model chose, and splits the bytes by category
    report = layer_report(graph, client.layers, stats, 1.0)
    rows = {r["name"]: r for r in report["layers"]}
    assert rows["qk"]["detail"]["ac_bs"]["method"] == "he" and "detail" not in rows["q_mm"]
    assert {rows[n]["category"] for n in ("qk", "q_mm", "softmax", "gelu", "qk_rq")} == {
        "matmul", "softmax", "gelu", "rescale"}


async def test_small_attention_products_choose_ot_and_say_so() -> None:
    graph = attention_block(8, norm=False)  # S = 4, d = 4: Gilboa's OT product is cheaper than a ciphertext

    async def client_fn(p: Party) -> tuple[SecureResult, Stats]:
        return await run_secure(p, graph.without_weights(), x), p.channel.stats()

    x = random_tokens(graph, 2, 8)
    _, (client, stats) = await aiompc.run_local(lambda p: run_secure(p, graph, batch=2), client_fn)
    assert np.array_equal(client.output, run_int(graph, x))
    rows = {r["name"]: r for r in layer_report(graph, client.layers, stats, 1.0)["layers"]}
    assert {rows[m]["detail"][t]["method"] for m in ("qk", "pv") for t in ("ac_bs", "bc_as")} == {"ot"}
    # the local nodes send nothing: the server's positional embedding (AddConst) never leaves it
    local = [n.name for n in graph.nodes if protocol_of(n).kind == "local"]
    assert "pos" in local and all(rows[n]["bytes_c2s"] == rows[n]["bytes_s2c"] == 0 for n in local)
    assert not [c for c in plan_inference(graph, EngineConfig(), 2).calls if c.shares]  # no HE results to flood


@pytest.mark.parametrize("mode, seed", [("quantized", 0), ("quantized", 1), ("cheetah-int", 2)])
async def test_attention_block_matches_the_integer_reference(mode: str, seed: int) -> None:
    # the whole block: every transformer node of the quantized program, LayerNormQ included
    graph = attention_block(seed)
    assert all(type(n) in NODE_PROTOCOLS for n in graph.nodes)
    x = random_tokens(graph, 3, seed)
    _, client = await secure(graph, x, engine_config(mode))
    assert np.array_equal(client.output, run_int(graph, x))
    cats = {r.name: r.category for r in client.layers}
    assert [cats[n] for n in ("qk", "softmax", "ln", "ln_affine", "gelu")] == [
        "matmul", "softmax", "layernorm", "layernorm", "gelu"]
    assert all(category_of(n) == cats[n.name] for n in graph.nodes)


async def test_a_prepared_transformer_misses_no_weights() -> None:
    # the seven token MatMuls' weights (W^T as fc weights) are prepared once; the shared matmuls' cross terms have no
    # weights to prepare (the server's operand is a share) and stay out of the cache
    graph = attention_block(6, norm=False, seq=32, hidden=32)
    x = random_tokens(graph, 1, 6)
    config = EngineConfig()
    cache = WeightCache()
    prep = prepare_model(graph, config, cache, batch=1)
    calls = linear_calls(graph, config, batch=1)
    assert prep.layers == len(calls) and prep.kept == sum(not c.shares for c in calls) == 7 and prep.per_inference == 0

    async def server(p: Party) -> None:
        p.state[WEIGHT_CACHE] = cache
        await run_secure(p, graph, batch=1, config=config)

    _, client = await aiompc.run_local(server, lambda p: run_secure(p, graph.without_weights(), x, config=config))
    assert cache.misses == 0 and cache.hits >= prep.kept
    assert np.array_equal(client.output, run_int(graph, x))


@pytest.mark.parametrize("head", [False, True])
async def test_lookup_in_its_own_ring_then_extended(head: bool) -> None:
    # GELU of 6-bit values (negative entries: the shifted table) as the output (looked up in its own ring), or
    # into a MatMul's accumulator ring (looked up narrow, then extended with a known top bit): exact either way,
    # and the narrow path pays 2^k entries of the table's ring, not of the accumulator's
    b = Builder.start((4, 8), 6)
    y = b.add(Lookup, "x", "table", table=gelu_table(6, 0.25))
    if head:
        y = b.add(MatMul, y, "head", weight_shape=(8, 3), weight=np.arange(24).reshape(8, 3) % 7 - 3,
                  bias=np.array([5, -5, 0]), weight_bits=4)
    graph = b.graph(y)
    x = random_tokens(graph, 3, 9)

    async def client_fn(p: Party) -> tuple[SecureResult, Stats]:
        return await run_secure(p, graph.without_weights(), x), p.channel.stats()

    _, (client, stats) = await aiompc.run_local(lambda p: run_secure(p, graph, batch=3), client_fn)
    assert np.array_equal(client.output, run_int(graph, x))
    l = plan_rings(graph, EngineConfig().mode).edges["table"]
    offset, l_own = lookup_width(gelu_table(6, 0.25))
    assert offset > 0 and (l > l_own) == head
    st = stats.select("infer/table")
    table_bits = (1 << 6) * (l_own if head else l) * x.size
    assert table_bits <= 8 * st.bytes_recv < table_bits * 1.2


async def test_the_builders_params_through_the_engine() -> None:
    # qmath's own builders (octave-normalised LayerNorm and Softmax, the default forms a lowering emits), with a
    # zero-variance row and an all-equal softmax row
    ln, _ = qtables.layernorm_params(1 / 16, 16, out_bits=8, in_bits=8)
    sm, _ = qtables.softmax_params(1 / 8, 16, out_bits=8)
    assert ln.octaves > 0 and sm.octaves > 0
    b = Builder.start((4, 16), 8)
    y = b.requant(b.add(LayerNormQ, "x", "ln", params=ln), "ln_rq", 8)
    graph = b.graph(b.add(SoftmaxQ, y, "softmax", params=sm))
    x = random_tokens(graph, 3, 10)
    x[0, 0] = 17  # a zero-variance row: LayerNorm 0, then a uniform softmax row
    _, client = await secure(graph, x)
    assert np.array_equal(client.output, run_int(graph, x))
    assert len(set(client.output[0, 0].tolist())) == 1
