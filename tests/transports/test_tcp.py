"""TCP-specific behaviour: broken and hostile peers on raw sockets, TLS, and exact byte accounting."""

from __future__ import annotations

import asyncio
import ssl
import struct
import tracemalloc
from typing import Any, Awaitable, Callable

import pytest

from aiompc.errors import AiompcError, MessageTooLarge, TransportClosed, TransportError
from aiompc.transports import tcp
from aiompc.transports.base import Transport


async def serve_recording(**kwargs: Any) -> tuple[tcp.TcpServer, asyncio.Queue[bytes | BaseException]]:
    """A server whose handler echoes messages and reports every recv outcome (message or error)."""
    outcomes: asyncio.Queue[bytes | BaseException] = asyncio.Queue()

    async def handler(transport: Transport) -> None:
        while True:
            try:
                message = await transport.recv()
            except Exception as exc:
                outcomes.put_nowait(exc)
                raise
            outcomes.put_nowait(message)
            await transport.send(message)

    return await tcp.serve(handler, "127.0.0.1", 0, **kwargs), outcomes


async def raw_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def next_outcome(outcomes: asyncio.Queue[bytes | BaseException]) -> bytes | BaseException:
    return await asyncio.wait_for(outcomes.get(), 10)


@pytest.mark.parametrize(
    "partial, arrived",
    [
        (struct.pack("!Q", 1000) + bytes(500), "500 bytes arrived"),  # half a payload
        (struct.pack("!Q", 1000), "0 bytes arrived"),  # a header, then nothing
        (b"\x00\x00\x00", "3 of 8 bytes"),  # part of a header
    ],
)
async def test_peer_vanishing_mid_message_is_transport_closed(partial: bytes, arrived: str) -> None:
    server, outcomes = await serve_recording()
    try:
        _, writer = await raw_connection(server.port)
        writer.write(struct.pack("!Q", 2) + b"ok" + partial)
        await writer.drain()
        writer.close()
        assert await next_outcome(outcomes) == b"ok"  # what arrived whole is still delivered
        error = await next_outcome(outcomes)
        assert isinstance(error, TransportClosed)
        assert "middle" in str(error) and arrived in str(error)
    finally:
        await server.close()


async def test_client_sees_server_vanishing_mid_message() -> None:
    async def half_frame(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(struct.pack("!Q", 1 << 20) + bytes(1000))
        await writer.drain()
        writer.close()

    raw_server = await asyncio.start_server(half_frame, "127.0.0.1", 0)
    try:
        client = await tcp.connect("127.0.0.1", raw_server.sockets[0].getsockname()[1])
        with pytest.raises(TransportClosed, match="1000 bytes arrived"):
            await asyncio.wait_for(client.recv(), 10)
        assert client.closed
        with pytest.raises(TransportClosed):
            await client.send(b"x")
        await client.close()
    finally:
        raw_server.close()


@pytest.mark.parametrize("announced", [2**60, 2**64 - 1])
async def test_absurd_announced_length_is_refused(announced: int) -> None:
    server, outcomes = await serve_recording()
    try:
        reader, writer = await raw_connection(server.port)
        writer.write(struct.pack("!Q", announced) + b"whatever follows")
        await writer.drain()
        error = await next_outcome(outcomes)
        assert isinstance(error, MessageTooLarge) and str(announced) in str(error)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # the server hung up
        writer.close()
    finally:
        await server.close()


async def test_oversized_frame_is_refused_before_allocating() -> None:
    """Announce 256 MiB to a 1 MiB-limited endpoint: memory use must stay far below the announcement."""
    server, outcomes = await serve_recording(max_message_size=1 << 20)
    try:
        tracemalloc.start()
        reader, writer = await raw_connection(server.port)
        writer.write(struct.pack("!Q", 256 << 20) + bytes(100_000))
        await writer.drain()
        error = await next_outcome(outcomes)
        _, peak = tracemalloc.get_traced_memory()
        assert isinstance(error, MessageTooLarge)
        assert peak < 16 << 20, f"{peak} bytes were allocated for a refused frame"
        writer.close()
    finally:
        tracemalloc.stop()
        await server.close()


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", bytes(range(256)) * 4, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"],
    ids=["http", "binary", "tls-hello"],
)
async def test_garbage_is_a_typed_error_and_the_server_keeps_serving(garbage: bytes) -> None:
    server, outcomes = await serve_recording(max_message_size=1 << 20)
    try:
        good = await tcp.connect("127.0.0.1", server.port)
        await good.send(b"before")
        assert await good.recv() == b"before"
        assert await next_outcome(outcomes) == b"before"

        _, writer = await raw_connection(server.port)
        writer.write(garbage)
        await writer.drain()
        writer.close()
        error = await next_outcome(outcomes)
        assert isinstance(error, AiompcError), f"garbage produced {error!r}"

        await good.send(b"after")  # the established connection is unaffected ...
        assert await good.recv() == b"after"
        fresh = await tcp.connect("127.0.0.1", server.port)  # ... and new ones are still accepted
        await fresh.send(b"new")
        assert await fresh.recv() == b"new"
        await good.close()
        await fresh.close()
    finally:
        await server.close()


async def test_connect_to_a_closed_port_is_a_transport_error() -> None:
    server = await tcp.serve(lambda t: asyncio.sleep(0), "127.0.0.1", 0)
    port = server.port
    await server.close()
    with pytest.raises(TransportError, match="cannot connect"):
        await tcp.connect("127.0.0.1", port)


async def test_tls_round_trip_and_verification(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext], open_network_pair: Callable[..., Awaitable[Any]]) -> None:
    server_ctx, client_ctx = tls_contexts
    a, b, server = await open_network_pair("tcp", server_ssl=server_ctx, client_ssl=client_ctx)
    message = bytes(range(256)) * 8192  # 2 MiB through TLS records
    await asyncio.gather(a.send(message), b.send(b"pong"))
    assert await b.recv() == message
    assert await a.recv() == b"pong"
    assert a.overhead(len(message), "send") == tcp.FRAME_OVERHEAD  # TLS records are below this layer
    untrusting = ssl.create_default_context()  # does not know the self-signed certificate
    with pytest.raises(TransportError):
        await tcp.connect("127.0.0.1", server.port, ssl=untrusting)


async def test_overhead_sum_equals_bytes_on_the_wire(proxied_pair: Callable[[str], Awaitable[Any]]) -> None:
    client, peer, proxy = await proxied_pair("tcp")
    assert proxy.upstream == proxy.downstream == 0  # no handshake: every byte counted below is a frame
    await proxy.check_exchange(client, peer, [0, 1, 7, 8, 65535, 65536, 300_000, 3_000_000], [5, 0, 1 << 20])


async def test_max_message_size_is_validated() -> None:
    with pytest.raises(ValueError):
        await tcp.serve(lambda t: asyncio.sleep(0), "127.0.0.1", 0, max_message_size=-1)
