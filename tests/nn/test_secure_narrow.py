"""The quantized mode's requantizations run on the narrow ring (truncate-and-reduce) wherever the proven
input bounds allow, bit for bit; the Cheetah baseline keeps its own protocol."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.nn.bounds import range_of_width
from aiompc.nn.interpret import run_int
from aiompc.nn.ir import QGraph, Requantize
from aiompc.nn.networks import BENCH_CONFIG, network
from aiompc.nn.modes import MODES, EngineConfig
from aiompc.nn.rings import plan_rings
from aiompc.nn.secure import run_secure
from aiompc.nn.testing import random_qgraph
from aiompc.protocols.nonlinear.narrow import narrow_plan
from aiompc.protocols.nonlinear.requantize import _distinct
from aiompc.session import run_local


def narrow_share(graph: QGraph) -> float:
    """The fraction of requantized values whose requantization the engine runs on the narrow ring (the
    plan the engine builds from the input's public width, exact mode, unfolded)."""
    rings = plan_rings(graph, MODES["quantized"])
    done = total = 0
    for node in graph.nodes:
        if not isinstance(node, Requantize):
            continue
        src = graph.tensors[node.inputs[0]]
        ms, _, _ = _distinct(np.asarray(node.multiplier))
        plan = narrow_plan(l=rings.edges[node.inputs[0]], multipliers=ms, index=None, shape=(), shift=node.shift,
                           rounding=node.rounding, lo=node.lo, hi=node.hi, l_out=rings.edges[node.output],
                           x_lo=range_of_width(src.bits, src.signed)[0], x_hi=range_of_width(src.bits, src.signed)[1],
                           exact=True)
        size = int(np.prod(graph.tensors[node.output].shape))
        total += size
        done += size * (plan is not None)
    return done / total


@pytest.mark.parametrize("name", ["resnet18", "minionn"])
def test_benchmark_networks_requantize_on_the_narrow_ring(name: str) -> None:
    graph = network(name)
    graph = graph[0] if isinstance(graph, tuple) else graph
    assert narrow_share(graph) >= 0.99


async def test_random_network_exact_on_the_narrow_ring() -> None:
    graph, net = random_qgraph(1, BENCH_CONFIG)  # power-of-two scales (fixed-point multipliers do not fit)
    assert narrow_share(graph) > 0.5
    xq = graph.quantize_input(net.inputs[:2])

    for config in (EngineConfig(), EngineConfig(output="argmax")):  # max-pool and argmax on narrow rings too
        _, client = await run_local(lambda p: run_secure(p, graph, batch=len(xq), config=config),
                                    lambda p: run_secure(p, graph.without_weights(), xq, config=config))
        want = run_int(graph, xq)
        if config.output == "argmax":
            want = np.argmax(want.reshape(len(xq), -1), axis=1)
        assert np.array_equal(client.output, want)
