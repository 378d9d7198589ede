"""WebSocket-specific behaviour: exact RFC 6455 overhead, path checks, text frames, TLS."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Awaitable, Callable

import pytest
from websockets.asyncio.client import connect as raw_ws_connect
from websockets.frames import Frame, Opcode

from aiompc.errors import InputError, MessageTooLarge, ProtocolError, TransportClosed, TransportError
from aiompc.transports import websocket
from aiompc.transports.base import Server, Transport

BOUNDARY_SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20]


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
@pytest.mark.parametrize("masked", [False, True])
def test_frame_overhead_matches_the_websockets_serializer(size: int, masked: bool) -> None:
    frame = Frame(Opcode.BINARY, bytes(size)).serialize(mask=masked)
    assert len(frame) == size + websocket.frame_overhead(size, masked=masked)


def test_message_overhead_counts_every_fragment() -> None:
    fragment = websocket.FRAGMENT_SIZE
    for masked in (False, True):
        h = lambda n: websocket.frame_overhead(n, masked=masked)  # noqa: E731
        assert websocket.message_overhead(fragment, masked=masked) == h(fragment)  # still one frame
        assert websocket.message_overhead(fragment + 1, masked=masked) == h(fragment) + h(1) + h(0)
        assert websocket.message_overhead(3 * fragment, masked=masked) == 3 * h(fragment) + h(0)


async def test_overhead_per_direction(open_network_pair: Callable[..., Awaitable[Any]]) -> None:
    client, accepted, _ = await open_network_pair("websocket")
    for size in BOUNDARY_SIZES:
        masked, plain = websocket.frame_overhead(size, masked=True), websocket.frame_overhead(size, masked=False)
        assert masked == plain + 4
        assert websocket.message_overhead(size, masked=True) == masked  # no fragmentation up to 1 MiB
        assert client.overhead(size, "send") == accepted.overhead(size, "recv") == masked
        assert client.overhead(size, "recv") == accepted.overhead(size, "send") == plain


async def test_overhead_sum_equals_bytes_on_the_wire(proxied_pair: Callable[[str], Awaitable[Any]]) -> None:
    client, peer, proxy = await proxied_pair("websocket")
    assert proxy.upstream > 0 and proxy.downstream > 0  # the HTTP upgrade, not frames
    fragment = websocket.FRAGMENT_SIZE
    await proxy.check_exchange(
        client, peer, [0, 1, 125, 126, 65535, 65536, 300_000, fragment, fragment + 1, 2 * fragment, 3_000_000],
        [5, 0, 200, fragment, fragment + 1, 2 * fragment, 5 * fragment + 12345])


async def test_wrong_path_is_refused() -> None:
    reached = asyncio.Event()

    async def handler(transport: Transport) -> None:
        reached.set()

    server = await websocket.serve(handler, "127.0.0.1", 0, path="/mpc")
    try:
        for path in ["/", "/mpc/extra", "/other"]:
            with pytest.raises(TransportError, match="404"):
                await websocket.connect(f"ws://127.0.0.1:{server.port}{path}")
        assert not reached.is_set()
        good = await websocket.connect(f"ws://127.0.0.1:{server.port}/mpc?session=1")  # a query is fine
        await asyncio.wait_for(reached.wait(), 10)
        await good.close()
    finally:
        await server.close()


async def test_bad_url_and_refused_connection() -> None:
    with pytest.raises(InputError):
        await websocket.connect("http://127.0.0.1:1/")
    server = await websocket.serve(lambda t: asyncio.sleep(0), "127.0.0.1", 0)
    port = server.port
    await server.close()
    with pytest.raises(TransportError, match="cannot connect"):
        await websocket.connect(f"ws://127.0.0.1:{port}/")


async def serve_first_recv() -> tuple[Server, asyncio.Future[BaseException | bytes]]:
    """A WebSocket server on 127.0.0.1 whose handler records what its first ``recv`` gave: the message or the error."""
    outcome: asyncio.Future[BaseException | bytes] = asyncio.get_running_loop().create_future()

    async def handler(transport: Transport) -> None:
        try:
            outcome.set_result(await transport.recv())
        except Exception as exc:
            outcome.set_result(exc)

    return await websocket.serve(handler, "127.0.0.1", 0), outcome


async def test_text_frame_is_a_protocol_error() -> None:
    server, outcome = await serve_first_recv()
    try:
        async with raw_ws_connect(f"ws://127.0.0.1:{server.port}/", compression=None, proxy=None) as raw:
            await raw.send("a text frame")
            error = await asyncio.wait_for(outcome, 10)
            assert isinstance(error, ProtocolError) and "text frame" in str(error)
    finally:
        await server.close()


async def test_compression_is_never_negotiated(open_network_pair: Callable[..., Awaitable[Any]]) -> None:
    client, accepted, _ = await open_network_pair("websocket")
    for transport in (client, accepted):
        assert transport._conn.protocol.extensions == []
        assert transport._conn.ping_interval is None  # no keepalive that could kill a long transfer


async def test_wss_round_trip_and_verification(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext], open_network_pair: Callable[..., Awaitable[Any]]
) -> None:
    server_ctx, client_ctx = tls_contexts
    a, b, server = await open_network_pair("websocket", server_ssl=server_ctx, client_ssl=client_ctx)
    message = bytes(range(256)) * 8192
    await asyncio.gather(a.send(message), b.send(b"pong"))
    assert await b.recv() == message
    assert await a.recv() == b"pong"
    with pytest.raises(TransportError):
        await websocket.connect(f"wss://127.0.0.1:{server.port}/mpc", ssl=ssl.create_default_context())


async def test_oversized_message_is_reported_on_both_ends(open_network_pair: Callable[..., Awaitable[Any]]) -> None:
    """The receiver refuses the frame from its header (close code 1009); the sender learns why."""
    client, accepted, _ = await open_network_pair("websocket", 1 << 20, 100)
    await client.send(bytes(101))
    with pytest.raises(MessageTooLarge, match="above this transport's limit of 100"):
        await accepted.recv()
    with pytest.raises(MessageTooLarge, match="peer refused"):
        await asyncio.wait_for(client.recv(), 10)
    with pytest.raises(TransportClosed):
        await client.send(b"x")


async def test_peer_vanishing_mid_frame_is_transport_closed() -> None:
    server, outcome = await serve_first_recv()
    try:
        raw = await raw_ws_connect(f"ws://127.0.0.1:{server.port}/", compression=None, proxy=None)
        frame = Frame(Opcode.BINARY, bytes(100_000)).serialize(mask=True)
        raw.transport.write(frame[: len(frame) // 2])
        await asyncio.sleep(0.05)
        raw.transport.abort()
        error = await asyncio.wait_for(outcome, 10)
        assert isinstance(error, TransportClosed), repr(error)
    finally:
        await server.close()


async def test_garbage_instead_of_an_upgrade_leaves_the_server_serving() -> None:
    async def echo(transport: Transport) -> None:
        await transport.send(await transport.recv())

    server = await websocket.serve(echo, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(bytes(range(256)) * 16 + b"\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)  # refused and closed by the server
        writer.close()
        client = await websocket.connect(f"ws://127.0.0.1:{server.port}/")
        await client.send(b"still serving")
        assert await client.recv() == b"still serving"
        await client.close()
    finally:
        await server.close()
