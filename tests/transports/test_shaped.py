"""The link emulator: modelled delivery times are lower bounds, pipelining works, presets are right.

Only lower bounds on wall-clock time are asserted (a loaded machine can always be slower); that
sends do not wait for the propagation delay is shown by the order of events instead.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import pytest

from aiompc.errors import InputError, TransportClosed
from aiompc.transports.base import Transport
from aiompc.transports.memory import memory_pair
from aiompc.transports.shaped import LAN, WAN, LinkProfile, ShapedTransport, shape, shaped_pair

BANDWIDTH = 20e6  # 20 MB/s: 100 kB take 5 ms to serialise
LATENCY = 0.03  # 30 ms one way

OpenPair = Callable[..., Awaitable[Any]]


async def inner_pair(kind: str, open_network_pair: OpenPair) -> tuple[Transport, Transport]:
    if kind == "memory":
        return memory_pair()
    client, accepted, _ = await open_network_pair("tcp")
    return client, accepted


@pytest.fixture(params=["memory", "tcp"])
async def link(request: pytest.FixtureRequest, open_network_pair: OpenPair) -> tuple[ShapedTransport, ShapedTransport]:
    a, b = await inner_pair(request.param, open_network_pair)
    return ShapedTransport(a, BANDWIDTH, LATENCY), ShapedTransport(b, BANDWIDTH, LATENCY)


async def test_delivery_is_no_earlier_than_serialisation_plus_latency(link: tuple[ShapedTransport, ShapedTransport]) -> None:
    a, b = link
    for size in (0, 1, 300_000):
        wire_bytes = size + a.overhead(size, "send")
        start = time.perf_counter()
        receiving = asyncio.ensure_future(b.recv())
        await a.send(bytes(size))
        assert len(await receiving) == size
        assert time.perf_counter() - start >= LATENCY + wire_bytes / BANDWIDTH


async def test_back_to_back_messages_queue_on_the_link(link: tuple[ShapedTransport, ShapedTransport]) -> None:
    a, b = link
    size, count = 100_000, 8
    per_message = (size + a.overhead(size, "send")) / BANDWIDTH
    arrivals: list[float] = []

    async def receive() -> None:
        for _ in range(count):
            await b.recv()
            arrivals.append(time.perf_counter())

    start = time.perf_counter()
    receiving = asyncio.ensure_future(receive())
    for _ in range(count):
        await a.send(bytes(size))
    await receiving
    for i, arrived in enumerate(arrivals):
        assert arrived - start >= (i + 1) * per_message + LATENCY


async def test_pipelined_messages_are_in_flight_together(open_network_pair: OpenPair) -> None:
    """Sends wait for serialisation only, never for propagation: all are in flight before one lands."""
    client, accepted, _ = await open_network_pair("tcp")
    a, b = ShapedTransport(client, 1e12, 0.3), ShapedTransport(accepted, 1e12, 0.3)
    count = 8
    events: list[str] = []

    async def receive_all() -> None:
        for i in range(count):
            assert await b.recv() == bytes([i]) * 100_000
            events.append(f"delivered {i}")

    receiving = asyncio.ensure_future(receive_all())
    start = time.perf_counter()
    for i in range(count):
        await a.send(bytes([i]) * 100_000)
        events.append(f"sent {i}")
    await receiving
    assert events == [f"sent {i}" for i in range(count)] + [f"delivered {i}" for i in range(count)]
    assert time.perf_counter() - start >= 0.3


async def test_send_returns_before_delivery() -> None:
    x, y = memory_pair()
    a, b = ShapedTransport(x, 1e12, 0.2), ShapedTransport(y, 1e12, 0.2)
    receiving = asyncio.ensure_future(b.recv())
    start = time.perf_counter()
    await a.send(b"ping")
    assert not receiving.done()  # the sender was not held for the 200 ms of propagation
    assert await receiving == b"ping"
    assert time.perf_counter() - start >= 0.2
    await a.close()
    await b.close()


async def test_close_delivers_messages_in_flight_then_eof() -> None:
    x, y = memory_pair()
    a, b = ShapedTransport(x, 1e9, 0.05), ShapedTransport(y, 1e9, 0.05)
    await a.send(b"last words")
    await a.close()
    assert await b.recv() == b"last words"
    with pytest.raises(TransportClosed):
        await b.recv()
    with pytest.raises(TransportClosed):
        await a.send(b"x")
    await b.close()


async def test_inner_failure_surfaces_on_the_next_send(open_network_pair: OpenPair) -> None:
    client, accepted, _ = await open_network_pair("tcp")
    a = ShapedTransport(client, 1e9, 0.001)
    await accepted.close()
    await asyncio.sleep(0.05)
    with pytest.raises(TransportClosed):
        for _ in range(50):
            await a.send(b"into the void")
            await asyncio.sleep(0.01)
    await a.close()


def test_presets_and_shape_helper() -> None:
    assert LAN == LinkProfile(3e9 / 8, 0.15e-3)
    assert WAN == LinkProfile(400e6 / 8, 20e-3)
    x, _ = memory_pair()
    assert shape(x, None) is x
    lan = shape(x, "lan")
    assert isinstance(lan, ShapedTransport) and lan.link == LAN and lan.inner is x
    wan = shape(x, "wan")
    assert isinstance(wan, ShapedTransport) and wan.link == WAN
    custom = LinkProfile(1e6, 0.5)
    assert shape(x, custom).link == custom  # type: ignore[attr-defined]
    with pytest.raises(InputError):
        shape(x, "dialup")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        LinkProfile(0, 0.1)
    with pytest.raises(InputError):
        LinkProfile(1e6, -1)
    sa, sb = shaped_pair(*memory_pair(), "wan")
    assert sa.link == sb.link == WAN  # type: ignore[attr-defined]
    assert LAN.transfer_time(375_000) == pytest.approx(1e-3 + 0.15e-3)


async def test_overhead_and_limit_delegate_to_the_inner_transport(open_network_pair: OpenPair) -> None:
    client, _, _ = await open_network_pair("tcp", 5000)
    a = ShapedTransport(client, 1e9, 0.0)
    assert a.overhead(123, "send") == client.overhead(123, "send") == 8
    assert a.max_message_size == 5000
