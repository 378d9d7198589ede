"""Server behaviour shared by the TCP and WebSocket servers: isolation of handlers, shutdown, port 0."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aiompc.errors import TransportClosed
from aiompc.transports import tcp, websocket
from aiompc.transports.base import Handler, Server, Transport


async def serve_kind(kind: str, handler: Handler) -> Server:
    if kind == "tcp":
        return await tcp.serve(handler, "127.0.0.1", 0)
    return await websocket.serve(handler, "127.0.0.1", 0, path="/s")


async def connect_kind(kind: str, server: Server) -> Transport:
    if kind == "tcp":
        return await tcp.connect("127.0.0.1", server.port)
    return await websocket.connect(f"ws://127.0.0.1:{server.port}/s")


async def echo_or_fail(transport: Transport) -> None:
    """Echo every message; a message ``b"boom"`` makes the handler fail."""
    while True:
        message = await transport.recv()
        if message == b"boom":
            raise RuntimeError("handler failure requested by the test")
        await transport.send(message)


@pytest.mark.parametrize("kind", ["tcp", "websocket"])
async def test_failing_handler_does_not_disturb_other_connections(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    server = await serve_kind(kind, echo_or_fail)
    assert server.port > 0
    try:
        calm, doomed = await connect_kind(kind, server), await connect_kind(kind, server)
        await calm.send(b"hello")
        assert await calm.recv() == b"hello"
        with caplog.at_level(logging.ERROR):
            await doomed.send(b"boom")
            with pytest.raises(TransportClosed):  # the failed handler's transport was closed
                await asyncio.wait_for(doomed.recv(), 10)
        assert "handler failed" in caplog.text and "handler failure requested" in caplog.text
        for i in range(3):
            await calm.send(b"still here %d" % i)
            assert await calm.recv() == b"still here %d" % i
        later = await connect_kind(kind, server)
        await later.send(b"new")
        assert await later.recv() == b"new"
        for transport in (calm, doomed, later):
            await transport.close()
    finally:
        await server.close()


@pytest.mark.parametrize("kind", ["tcp", "websocket"])
async def test_transport_is_closed_when_the_handler_returns(kind: str) -> None:
    async def one_reply(transport: Transport) -> None:
        await transport.send(await transport.recv())

    server = await serve_kind(kind, one_reply)
    try:
        client = await connect_kind(kind, server)
        await client.send(b"once")
        assert await client.recv() == b"once"
        with pytest.raises(TransportClosed):
            await asyncio.wait_for(client.recv(), 10)
        await client.close()
    finally:
        await server.close()


@pytest.mark.parametrize("kind", ["tcp", "websocket"])
async def test_server_close_ends_connections_and_handlers(kind: str) -> None:
    finished = asyncio.Event()

    async def stubborn(transport: Transport) -> None:
        try:
            await asyncio.get_running_loop().create_future()  # never returns by itself
        finally:
            finished.set()

    server = await serve_kind(kind, stubborn)
    client = await connect_kind(kind, server)
    pending = asyncio.ensure_future(client.recv())
    await asyncio.sleep(0.05)
    await asyncio.wait_for(server.close(), 10)
    assert finished.is_set()
    with pytest.raises(TransportClosed):
        await asyncio.wait_for(pending, 10)
    await client.close()
    await server.close()  # idempotent
