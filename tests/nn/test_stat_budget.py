"""aiompc.nn.stat_budget: the quantized mode's flooding reaches 40 bits for all result ciphertexts of one
inference together (any batch) with the Hellinger composition (two-uniform results in quadrature: levels below
the linear sum's, fewer bytes), the levels' worst split stays within 2^-40, the check refuses plans that do
not, the Cheetah modes and the per-ciphertext scope stay at 40 bits per ciphertext with today's plans, both
parties derive the same plans (a mismatch is an error on both sides, not a hang), and a session at the
per-inference level stays exact with bytes equal to the byte model."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from aiompc.errors import InputError, InsecureParameters, ProtocolError
from aiompc.nn.interpret import run_int
from aiompc.nn.modes import engine_config
from aiompc.nn.networks import network
from aiompc.nn.prepare import linear_calls
from aiompc.nn.secure import run_secure
from aiompc.nn.stat_budget import counted_calls, inference_levels, plan_inference, with_levels, with_stat_bits
from aiompc.nn.testing import random_qgraph
from aiompc.protocols.linear.costs import plan_cost
from aiompc.protocols.linear.plan import CheetahBaselinePlanner, FloodLevels
from aiompc.protocols.linear.quantized import QuantizedPlanner
from aiompc.protocols.linear.stat_sum import distance, require_distance, result_ciphertexts, security_bits
from aiompc.session import run_local

PER_CT = engine_config("quantized", stat_scope="ciphertext")


@pytest.fixture(scope="module")
def model():
    return random_qgraph(7, blocks=("residual", "maxpool"), input_shape=(2, 6, 6), head="gap", classes=3)


@pytest.mark.parametrize("batch", [1, 3])
def test_the_quantized_mode_floods_for_the_whole_inference(model, batch: int) -> None:
    graph, _ = model
    inference = plan_inference(graph, engine_config("quantized"), batch)
    per_ct = plan_inference(graph, PER_CT, batch)
    assert inference.scope == "inference" and per_ct.scope == "ciphertext" and per_ct.stat_bits == 40
    assert per_ct.levels == FloodLevels(40, 40, 40)
    assert per_ct.results > 1 and per_ct.security < 40 <= per_ct.weakest  # 40 per ciphertext is not 40 in all
    # the levels come from the count of the 40-bit plans' results, and are checked on the plans they give
    assert inference.levels.at_least(inference_levels(per_ct.results)) == inference.levels
    assert inference.security >= 40 and inference.weakest >= inference.levels.lowest
    assert inference.levels.fail >= 40 + math.log2(inference.results)  # the tails add linearly
    counted = counted_calls(graph, list(inference.calls), batch)
    assert inference.results == sum(n * result_ciphertexts(p) for p, n in counted)
    assert inference.security == pytest.approx(security_bits(counted)) == pytest.approx(require_distance(counted))
    # a convolution runs once per sample, the fully connected head once per batch
    assert sorted(set(inference.counts)) == sorted({1, batch})
    assert [c.plan for c in linear_calls(graph, engine_config("quantized"), batch=batch)] == [c.plan for c in inference.calls]


def test_more_samples_need_more_bits_per_ciphertext(model) -> None:
    graph, _ = model
    one, eight = (plan_inference(graph, engine_config("quantized"), b) for b in (1, 8))
    assert eight.results > 4 * one.results
    # two-uniform results compose in quadrature (half a bit per doubling), the tails linearly (one bit)
    assert eight.levels.tent >= one.levels.tent + 1 and eight.levels.fail >= one.levels.fail + 2
    assert eight.security >= 40


@pytest.mark.parametrize("results", [1, 2, 3, 7, 100, 466, 550, 1024, 3816, 27546, 10**6])
def test_the_levels_cover_every_split_of_the_results(results: int) -> None:
    lv = inference_levels(results)
    tail = results * 2.0 ** -(lv.fail + 2)
    for tents in sorted({0, 1, results // 2, results - 1, results}):
        worst = (results - tents) * 2.0**-lv.uniform + math.sqrt(tents) * 2.0**-lv.tent + tail
        assert worst <= 2.0**-40
    old = 40 + math.ceil(math.log2(results))  # every result under the linear sum
    assert lv.tent <= 40 + math.log2(results) / 2 + 1.2 and lv.fail >= old
    if results >= 8:
        assert lv.tent < old
    with pytest.raises(InputError):
        inference_levels(0)


def test_the_quadrature_composition_lowers_the_levels_and_the_bytes(model) -> None:
    graph, _ = model
    config = engine_config("quantized")
    inference = plan_inference(graph, config, 2)
    counted = counted_calls(graph, list(inference.calls), 2)
    r = inference.results
    assert inference.levels.tent < 40 + math.ceil(math.log2(r)) < inference.levels.uniform
    # the planner floods with two uniforms wherever cheaper: here every result
    assert all(p.output.flood_terms == 2 for p, _ in counted)
    # the composed distance is within 2^-40, the old linear sum of these plans is not: it was the linear sum
    # that needed 40 + log2 R bits per result
    linear_sum = sum(n * result_ciphertexts(p) * 2.0**-p.stat_security for p, n in counted)
    assert distance(counted) <= 2.0**-40 < linear_sum
    # fewer bytes than the linear sum's plans (every result at 40 + ceil(log2 R) bits)
    old = with_stat_bits(config, 40 + math.ceil(math.log2(r)))
    old_calls = linear_calls(graph, old, batch=2, budget=False)

    def total(calls, counts):
        return sum(n * plan_cost(c.plan).total for c, n in zip(calls, counts))

    assert total(inference.calls, inference.counts) < total(old_calls, inference.counts)


def test_with_levels_hands_the_levels_to_the_planner() -> None:
    config = engine_config("quantized")
    levels = FloodLevels(54, 45, 54)
    planner = with_levels(config, levels).mode.planner
    assert isinstance(planner, QuantizedPlanner) and planner.flood_levels == levels and planner.levels == levels
    assert planner.flood_levels.first_terms == 2
    # per-ciphertext levels give the very planner of a per-ciphertext run (the same cached searches)
    assert with_levels(config, FloodLevels.per_ciphertext(40)) is config
    assert with_stat_bits(config, 45).mode.planner == QuantizedPlanner(stat_bits=45)
    # a planner with a single level floods every result at the highest (never less secure)
    base = engine_config("cheetah")
    assert isinstance(base.mode.planner, CheetahBaselinePlanner)
    assert with_levels(base, levels).mode.planner.stat_bits == 54


def test_the_per_ciphertext_plans_are_unchanged(model) -> None:
    graph, _ = model
    for config in (PER_CT, engine_config("cheetah-int")):
        plan = plan_inference(graph, config, 1)
        assert plan.levels == FloodLevels(40, 40, 40)
        assert all(c.plan.pipeline.fail_bits == 40 and c.plan.pipeline.stat_bits == 40 for c in plan.calls)
        assert [c.plan for c in plan.calls] == [c.plan for c in linear_calls(graph, config, batch=1, budget=False)]


def test_the_check_refuses_plans_below_the_budget(model) -> None:
    graph, _ = model
    per_ct = plan_inference(graph, PER_CT, 2)
    with pytest.raises(InsecureParameters, match="result ciphertexts together"):
        require_distance(counted_calls(graph, list(per_ct.calls), 2))
    with pytest.raises(InsecureParameters, match="below the 40 required"):  # per ciphertext, below 40
        plan_inference(graph, with_stat_bits(PER_CT, 30), 1)


def test_the_cheetah_modes_flood_per_ciphertext(model) -> None:
    graph, _ = model
    plan = plan_inference(graph, engine_config("cheetah-int"), 1)
    assert plan.scope == "ciphertext" and plan.stat_bits == 40 and plan.weakest >= 40


@pytest.mark.parametrize("name", ["minionn", pytest.param("resnet18", marks=pytest.mark.slow)])  # a few CPU s
def test_built_in_networks_reach_40_bits_per_inference(name: str) -> None:
    graph = network(name)
    inference = plan_inference(graph, engine_config("quantized"), 1)
    assert inference.security >= 40 and inference.results > 100


@pytest.mark.slow
def test_cheetah_parameters_cannot_reach_40_bits_per_inference() -> None:
    """Cheetah's q ~ 2^109 at N = 4096 with l = 37: ResNet-18's ~4800 results would need ~47 bits each with two uniforms (~53 under a linear sum)."""
    from aiompc.nn.bench import load_bench_model

    graph = load_bench_model("resnet18").graph("cheetah")
    per_ct = plan_inference(graph, engine_config("cheetah"), 1)
    assert per_ct.weakest >= 40 > per_ct.security
    with pytest.raises(InsecureParameters, match="cannot reach 40 bits"):
        plan_inference(graph, engine_config("cheetah", stat_scope="inference"), 1)


async def _session(graph, x, server_config, client_config):
    async def server(p):
        await run_secure(p, graph, batch=len(x), config=server_config)
        return p.channel.stats()

    async def client(p):
        res = await run_secure(p, graph.without_weights(), x, config=client_config)
        return res.output, p.channel.stats()

    return await asyncio.wait_for(run_local(server, client), 120)


async def test_a_session_at_the_inference_level_is_exact_and_its_bytes_are_the_model(model) -> None:
    graph, net = model
    x = graph.quantize_input(net.inputs[:2])
    config = engine_config("quantized")
    _, (y, stats) = await _session(graph, x, config, config)
    assert np.array_equal(y, run_int(graph, x))
    inference = plan_inference(graph, config, len(x))
    fc = {n.name for n in graph.nodes if n.op == "Gemm" or type(n).__name__ == "Linear"}
    for call in inference.calls:
        labels = [f"infer/{call.node}"] if call.node in fc else [f"infer/{call.node}/b{b}" for b in range(len(x))]
        cost = plan_cost(call.plan, labels[0])
        for label in labels:
            assert (stats.select(label).bytes_sent, stats.select(label).bytes_recv) == (cost.upload, cost.download)
    plans = stats.select("infer/plans")
    assert plans.bytes_sent < 64 and plans.bytes_recv < 64  # the agreement costs one small message each way


async def test_parties_with_different_plans_fail_clearly_on_both_sides(model) -> None:
    graph, net = model
    x = graph.quantize_input(net.inputs[:1])
    with pytest.raises(ProtocolError, match="HE plans differ"):
        await _session(graph, x, engine_config("quantized"), PER_CT)
    with pytest.raises(ProtocolError, match="HE plans differ"):
        await _session(graph, x, PER_CT, engine_config("quantized"))
