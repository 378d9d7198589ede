"""A party that fails mid-session makes the loopback run fail promptly with its own error (no hang)."""

from __future__ import annotations

import asyncio

import pytest

import aiompc.nn.node_protocols as node_protocols
from aiompc.errors import InputError
from aiompc.nn.ir import Requantize
from aiompc.nn.loopback import run_two_parties
from aiompc.nn.modes import EngineConfig
from aiompc.nn.node_step import NodeProtocol
from aiompc.nn.networks import BENCH_CONFIG
from aiompc.nn.testing import random_qgraph


@pytest.mark.parametrize("failing", ["server", "client"])
async def test_a_failing_party_fails_the_loopback_run_with_its_own_error(failing: str, monkeypatch) -> None:
    graph, net = random_qgraph(1, BENCH_CONFIG)
    xq = graph.quantize_input(net.inputs[:1])
    real = node_protocols.NODE_PROTOCOLS[Requantize]

    async def sometimes(step, node, xs):  # the other party is by then waiting for this one's messages
        if step.party.role == failing:
            raise InputError(f"injected on the {failing}")
        return await real.run(step, node, xs)

    monkeypatch.setitem(node_protocols.NODE_PROTOCOLS, Requantize, NodeProtocol("ot", sometimes))
    with pytest.raises(InputError, match=f"injected on the {failing}"):
        await asyncio.wait_for(run_two_parties(graph, xq, EngineConfig()), 60)
