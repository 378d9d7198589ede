"""aiompc.nn.key_plan: shared key sets for a network — never more (bytes + key_share × keys) than the plans as
they are, deterministic, primes chosen without regard to t and shared by layers of different l; the re-planned
layers still decrypt with their planned flooding; a two-party run over them is exact, and its layer bytes and
key bytes equal the byte model (one public key per key set, one Galois key per (key set, element))."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from aiompc.crypto.he import estimate
from aiompc.nn.interpret import run_int
from aiompc.nn.key_plan import choose_key_sets, network_totals, share_keys
from aiompc.nn.modes import EngineConfig, engine_config
from aiompc.nn.prepare import LinearCall, linear_calls
from aiompc.nn.secure import run_secure
from aiompc.nn.stat_budget import plan_inference
from aiompc.nn.testing import random_qgraph
from aiompc.protocols.linear.costs import plan_cost
from aiompc.protocols.linear.key_sets import KeySet, key_groups, session_key_bytes, shared_primes
from aiompc.protocols.linear.packed import layout_elements
from aiompc.protocols.linear.quantized import QuantizedPlanner
from aiompc.protocols.linear.tiling import ConvShape
from aiompc.session import run_local


def _config(**planner: float) -> EngineConfig:
    """The quantized mode with keys weighed as over ~100 inferences (key_share) and no compute charge, so that
    small layers pack and there is something to share."""
    cfg = engine_config("quantized")
    mode = dataclasses.replace(cfg.mode, planner=dataclasses.replace(cfg.mode.planner, **planner))
    return dataclasses.replace(cfg, mode=mode)


AMORTISED = dict(key_share=0.01, compute_rate=0.0)
# hand-built layers: (shape, l, weight bits), several l, all packing at N = 4096 when keys are cheap
LAYERS = [
    (ConvShape.make(8, 16, 16, 8, 3, padding=1), 20, 4),
    (ConvShape.make(8, 16, 16, 8, 3, padding=1), 12, 3),
    (ConvShape.make(8, 16, 16, 8, 3, padding=1), 14, 3),
    (ConvShape.make(8, 16, 16, 8, 3, padding=1), 16, 4),
]


def _calls(config: EngineConfig) -> list[LinearCall]:
    planner = config.mode.planner
    return [LinearCall(f"conv{i}", planner(shape, l, wb), None) for i, (shape, l, wb) in enumerate(LAYERS)]


def test_the_chooser_never_costs_more_is_deterministic_and_shares_across_l() -> None:
    config = _config(**AMORTISED)
    planner = config.mode.planner
    calls = _calls(config)
    counts = [1] * len(calls)
    base = [c.plan for c in calls]
    assert sum(p.output_packing for p in base) >= 3 and len(key_groups(base)) >= 3  # one key set per q
    got = share_keys(config, calls, counts, _calls)
    again = share_keys(config, calls, counts, _calls)
    assert got.key_sets and got.key_sets == again.key_sets and [c.plan for c in got.calls] == [c.plan for c in again.calls]
    share = planner.key_share
    assert got.layer_bytes + share * got.key_bytes <= got.base_layer_bytes + share * got.base_key_bytes
    plans = [c.plan for c in got.calls]
    assert len(key_groups(plans)) < len(key_groups(base))
    assert got.key_bytes == session_key_bytes(plans) < session_key_bytes(base)
    totals = network_totals(got.config.mode.planner, plans, counts)
    assert (got.layer_bytes, got.key_bytes) == (totals.layer_bytes, totals.key_bytes)
    assert totals.seconds <= 1.25 * network_totals(planner, base, counts).seconds  # MAX_COMPUTE_GROWTH
    for ks in got.key_sets:
        # primes chosen without regard to t: the shared primes of some candidate q, whatever l
        assert any(ks.primes == shared_primes(ks.n, p.he.log2_q) for p in base)
        users = [p for p in plans if ks.holds(p.he)]
        assert len({p.l for p in users}) >= 2 or len(got.key_sets) > 1
    shared_users = [p for p in plans if any(ks.holds(p.he) for ks in got.key_sets)]
    assert len({p.l for p in shared_users}) >= 2  # layers of different l on one key set
    for plan in plans:  # every re-planned layer decrypts and keeps its planned flooding
        assert plan.stat_security >= planner.stat_bits
        est = estimate(plan.he.with_plain_bits(plan.out_bits), plan.pipeline, plan.output)
        assert est.decryptable


def test_nothing_to_share_leaves_the_plans_alone() -> None:
    one_inference = engine_config("quantized")  # key_share = 1: these small layers do not pack
    calls = _calls(one_inference)
    assert not any(c.plan.output_packing for c in calls)
    assert choose_key_sets(one_inference.mode.planner, [c.plan for c in calls], [1] * len(calls)) == []
    got = share_keys(one_inference, calls, [1] * len(calls), _calls)
    assert got.config is one_inference and got.key_sets == () and list(got.calls) == calls
    config = _config(**AMORTISED)
    shared = share_keys(config, _calls(config), [1] * len(calls), _calls)
    assert shared.key_sets  # and a configuration that has its key sets keeps them (decided once)
    again = share_keys(shared.config, list(shared.calls), [1] * len(calls), _calls)
    assert again.config is shared.config and list(again.calls) == list(shared.calls)
    cheetah = engine_config("cheetah-int")  # planners without key sets are not touched
    got = share_keys(cheetah, calls, [1] * len(calls), _calls)
    assert got.config is cheetah and got.key_sets == ()


def test_a_key_set_makes_its_keys_free_only_for_its_primes_and_elements() -> None:
    shape, l, wb = LAYERS[1]
    plain = QuantizedPlanner(**AMORTISED)
    plan = plain(shape, l, wb)
    assert plan.output_packing and plain.cost(plan).setup > 0
    elements = layout_elements(plan.layout)
    same = dataclasses.replace(plain, key_sets=(KeySet(plan.he.n, plan.he.primes, elements),))
    assert same.cost(plan).setup == 0
    part = dataclasses.replace(plain, key_sets=(KeySet(plan.he.n, plan.he.primes, elements[:1]),))
    assert 0 < part.cost(plan).setup < plain.cost(plan).setup
    other = dataclasses.replace(plain, key_sets=(KeySet(plan.he.n, shared_primes(plan.he.n, 100.0), elements),))
    assert other.cost(plan).setup == plain.cost(plan).setup
    with pytest.raises(Exception):
        KeySet(plan.he.n, plan.he.primes, (5, 3))


@pytest.fixture(scope="module")
def model():
    return random_qgraph(7, blocks=("residual", "residual"), input_shape=(8, 16, 16), head="gap", classes=3)


async def test_a_network_on_shared_key_sets_is_exact_and_its_bytes_are_the_model(model) -> None:
    graph, net = model
    config = _config(**AMORTISED)
    inference = plan_inference(graph, config, 1)
    planner = inference.config.mode.planner
    assert planner.key_sets  # the network shares key sets
    plans = [c.plan for c in inference.calls]
    base = [c.plan for c in linear_calls(graph, dataclasses.replace(
        config, mode=dataclasses.replace(config.mode, planner=dataclasses.replace(planner, key_sets=()))), budget=False)]
    assert len(key_groups(plans)) < len(key_groups(base))
    x = graph.quantize_input(net.inputs[:1])

    async def server(p):
        await run_secure(p, graph, batch=1, config=config)

    async def client(p):
        res = await run_secure(p, graph.without_weights(), x, config=config)
        return res.output, p.channel.stats()

    _, (y, stats) = await asyncio.wait_for(run_local(server, client), 300)
    assert np.array_equal(y, run_int(graph, x))
    for call in inference.calls:
        label = f"infer/{call.node}" + ("" if call.node.startswith("gemm") else "/b0")
        cost = plan_cost(call.plan, label)
        assert (stats.select(label).bytes_sent, stats.select(label).bytes_recv) == (cost.upload, cost.download)
    groups = key_groups(plans)
    assert len(stats.select("he-keys").labels) == len(groups)
    assert len(stats.select("he-galois").labels) == sum(len(els) for els in groups.values())
    keys = stats.select("he-keys").bytes_sent + stats.select("he-galois").bytes_sent
    assert keys == session_key_bytes(plans)
