"""The HE engine's per-session keys: made once, shared by concurrent layers, and never a half-made cache entry
after a failure (a failing first use must not leave later callers waiting forever)."""

from __future__ import annotations

import asyncio

import pytest

from aiompc.channel import Channel
from aiompc.crypto.he import cheetah_params
from aiompc.errors import TransportClosed
from aiompc.party import Party
from aiompc.protocols.linear.engine import client_key, server_key
from aiompc.session import run_local
from aiompc.transports.memory import memory_pair


async def test_keys_are_made_once_and_shared() -> None:
    params = cheetah_params(16)

    async def server(p: Party):
        return await asyncio.gather(server_key(p, params), server_key(p, params))

    async def client(p: Party):
        return await asyncio.gather(client_key(p, params), client_key(p, params))

    (pk1, pk2), (sk1, sk2) = await run_local(server, client)
    assert pk1 is pk2 and sk1 is sk2
    assert pk1.params == sk1.params == params


@pytest.mark.parametrize("side", ["client", "server"])
async def test_a_failed_first_use_fails_every_waiter_and_is_retried(side: str) -> None:
    params = cheetah_params(16)
    ts, tc = memory_pair()
    party = Party(side, Channel(tc if side == "client" else ts))  # type: ignore[arg-type]
    await (ts if side == "client" else tc).close()  # the peer is gone: sending/receiving the key fails
    get = client_key if side == "client" else server_key
    results = await asyncio.wait_for(asyncio.gather(get(party, params), get(party, params), return_exceptions=True), 5)
    assert all(isinstance(r, TransportClosed) for r in results), results
    assert party.state["he_keys"] == {}  # nothing half-made stays cached
    with pytest.raises(TransportClosed):
        await asyncio.wait_for(get(party, params), 5)  # tried again, not a stale future
    await party.close()
