"""One-time model preparation: the calls it derives are the engine's own (a session then misses nothing), the
memory budget is kept (what does not fit is prepared per inference, pinned layers are never evicted), results
stay exact."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.nn.interpret import run_int
from aiompc.nn.modes import EngineConfig, mode_named
from aiompc.nn.prepare import linear_calls, prepare_model, prepare_plans
from aiompc.nn.secure import run_secure
from aiompc.nn.testing import random_qgraph
from aiompc.protocols.linear.weight_cache import STATE_KEY, WeightCache
from aiompc.session import run_local


@pytest.fixture(scope="module")
def model():
    return random_qgraph(7, blocks=("residual", "maxpool"), input_shape=(2, 6, 6), head="gap", classes=3)


async def _session(graph, x, config: EngineConfig, cache: WeightCache) -> np.ndarray:
    async def server(p):
        p.state[STATE_KEY] = cache
        await run_secure(p, graph, batch=len(x), config=config)

    async def client(p):
        return (await run_secure(p, graph.without_weights(), x, config=config)).output

    _, y = await run_local(server, client)
    return y


@pytest.mark.parametrize("mode", ["quantized", "cheetah-int"])
async def test_a_prepared_model_misses_nothing_and_stays_exact(model, mode: str) -> None:
    graph, net = model
    config = EngineConfig(mode_named(mode, exact=True))
    x = graph.quantize_input(net.inputs[:2])
    cache = WeightCache()
    prep = prepare_model(graph, config, cache, batch=len(x))
    calls = linear_calls(graph, config, batch=len(x))
    assert prep.layers == len(calls) == prep.kept > 0 and prep.per_inference == 0 and prep.nbytes == cache.nbytes > 0
    again = prepare_model(graph, config, cache, batch=len(x))  # already there: nothing recomputed
    assert again.kept == prep.kept and cache.nbytes == prep.nbytes
    y = await _session(graph, x, config, cache)
    assert cache.misses == 0 and cache.hits >= prep.kept  # every HE call found its prepared weights
    assert np.array_equal(y, run_int(graph, x))
    client = prepare_plans(graph.without_weights(), config, batch=len(x))
    assert client.layers == prep.layers and client.nbytes == 0


async def test_a_budget_keeps_what_fits_and_the_rest_is_prepared_per_inference(model) -> None:
    graph, net = model
    config = EngineConfig(mode_named("quantized", exact=True))
    x = graph.quantize_input(net.inputs[:1])
    whole = WeightCache()
    full = prepare_model(graph, config, whole)
    sizes = sorted(v[1] for v in whole._pinned.values())
    budget = sizes[0] + sizes[1]  # room for a couple of layers, not all
    cache = WeightCache(budget)
    prep = prepare_model(graph, config, cache)
    assert 0 < prep.kept < full.kept and prep.kept + prep.per_inference == full.layers
    assert cache.pinned_bytes == prep.nbytes <= budget
    pinned = set(cache._pinned)
    for i in range(2):  # per-inference entries never push a pinned one out
        assert np.array_equal(await _session(graph, x, config, cache), run_int(graph, x))
        assert set(cache._pinned) == pinned and cache.nbytes <= budget
        if i == 0:
            assert cache.misses == prep.per_inference  # exactly the layers that did not fit


def test_the_server_needs_its_weights(model) -> None:
    graph, _ = model
    with pytest.raises(InputError, match="weights"):
        prepare_model(graph.without_weights(), EngineConfig(mode_named("quantized")), WeightCache())
