"""Two-party harnesses for the linear-layer tests: in-memory and TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest

from aiompc.party import Party
from aiompc.session import connect, listen, run_local

PartyFn = Callable[[Party], Awaitable[Any]]


async def run_tcp(server_fn: PartyFn, client_fn: PartyFn) -> tuple[Any, Any]:
    """Run both parties over a real TCP connection (port chosen by the OS); returns both results."""
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def handler(party: Party) -> None:
        try:
            res = await server_fn(party)
        except BaseException as exc:  # noqa: BLE001 - surfaced to the test below
            if not done.done():
                done.set_exception(exc)
            raise
        if not done.done():
            done.set_result(res)

    server = await listen(handler, "tcp://127.0.0.1:0")
    try:
        async with connect(f"tcp://127.0.0.1:{server.port}") as party:
            client_res = await client_fn(party)
            server_res = await asyncio.wait_for(done, 60)
    finally:
        await server.close()
    return server_res, client_res


@pytest.fixture
def tcp() -> Callable[[PartyFn, PartyFn], Awaitable[tuple[Any, Any]]]:
    """Runs ``(server_fn, client_fn)`` over TCP on 127.0.0.1."""
    return run_tcp


@pytest.fixture
def memory() -> Callable[[PartyFn, PartyFn], Awaitable[tuple[Any, Any]]]:
    """Runs ``(server_fn, client_fn)`` over the in-memory transport."""
    return run_local
