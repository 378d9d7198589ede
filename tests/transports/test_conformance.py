"""One conformance suite, run against every transport (memory, tcp, websocket, shaped(memory), shaped(tcp)).

The contract is the one stated in :mod:`aiompc.transports.base`.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from typing import Awaitable, Callable

import numpy as np
import pytest

from aiompc.errors import MessageTooLarge, TransportClosed, TransportError
from aiompc.transports.base import Transport

MakePair = Callable[..., Awaitable[tuple[Transport, Transport]]]  # the ``make_pair`` fixture


def tagged(tag: int, seq: int, size: int) -> bytes:
    """A self-checking message: ``(tag, seq)`` then a body derived from them, ``size`` >= 8 bytes."""
    head = struct.pack("!II", tag, seq)
    body = hashlib.shake_128(head).digest(size - len(head)) if size > len(head) else b""
    return head + body


async def exchange(sender: Transport, receiver: Transport, messages: list[bytes]) -> list[bytes]:
    """Send ``messages`` from one task while another receives as many; return what arrived."""

    async def send_all() -> None:
        for message in messages:
            await sender.send(message)

    async def recv_all() -> list[bytes]:
        return [await receiver.recv() for _ in messages]

    _, received = await asyncio.gather(send_all(), recv_all())
    return received


@pytest.mark.parametrize("direction", ["a->b", "b->a"])
async def test_order_and_content_preserved(make_pair: MakePair, direction: str) -> None:
    a, b = await make_pair()
    sender, receiver = (a, b) if direction == "a->b" else (b, a)
    sizes = np.random.default_rng(7).integers(8, 200_000, size=120)
    messages = [tagged(1, i, int(n)) for i, n in enumerate(sizes)]
    assert await exchange(sender, receiver, messages) == messages


async def test_edge_sizes_both_ways(make_pair: MakePair) -> None:
    """Empty, 1 byte, and both sides of the WebSocket length-encoding boundaries."""
    a, b = await make_pair()
    messages = [b"", b"\x00", b"\xff"] + [tagged(2, n, n) for n in (125, 126, 127, 65535, 65536, 65537)] + [b""]
    assert await exchange(a, b, messages) == messages
    assert await exchange(b, a, messages) == messages


async def test_64_mib_message(make_pair: MakePair, big_payload: bytes) -> None:
    a, b = await make_pair()
    received = await exchange(a, b, [big_payload, b"after"])
    assert len(received[0]) == len(big_payload)
    assert received[0] == big_payload
    assert isinstance(received[0], bytes)
    assert received[1] == b"after"


async def test_thousands_of_small_messages(make_pair: MakePair) -> None:
    a, b = await make_pair()
    messages = [i.to_bytes(4, "big") * (i % 5) for i in range(5000)]
    assert await exchange(a, b, messages) == messages


async def test_buffers_of_every_kind_are_sent_and_may_be_reused(make_pair: MakePair) -> None:
    a, b = await make_pair()
    array = np.arange(40_000, dtype=np.uint64)  # a multi-byte memoryview format, 320 kB
    scratch = bytearray(b"first")
    await a.send(memoryview(array))  # type: ignore[arg-type]  # numpy arrays export buffers
    await a.send(scratch)
    scratch[:] = b"XXXXX"  # reusing the buffer once send returned must not change what was sent
    assert await b.recv() == array.tobytes()
    assert await b.recv() == b"first"


async def test_concurrent_senders_never_interleave(make_pair: MakePair) -> None:
    a, b = await make_pair()
    tasks, per_task = 8, 40
    sizes = np.random.default_rng(11).integers(8, 300_000, size=(tasks, per_task))

    async def sender(tag: int) -> None:
        for seq in range(per_task):
            await a.send(tagged(tag, seq, int(sizes[tag, seq])))

    async def receiver() -> list[bytes]:
        return [await b.recv() for _ in range(tasks * per_task)]

    receiving = asyncio.ensure_future(receiver())
    await asyncio.gather(*(sender(t) for t in range(tasks)))
    received = await receiving
    next_seq = [0] * tasks
    for message in received:
        tag, seq = struct.unpack_from("!II", message)
        assert message == tagged(tag, seq, int(sizes[tag, seq])), "a message was corrupted or interleaved"
        assert seq == next_seq[tag], "one sender's messages were reordered"
        next_seq[tag] += 1
    assert next_seq == [per_task] * tasks


async def test_concurrent_receivers_each_get_whole_messages(make_pair: MakePair) -> None:
    a, b = await make_pair()
    messages = [tagged(3, i, 1000 + 37 * i) for i in range(200)]

    async def take(n: int) -> list[bytes]:
        return [await b.recv() for _ in range(n)]

    sending = asyncio.gather(*(a.send(m) for m in messages))
    parts = await asyncio.gather(*(take(50) for _ in range(4)))
    await sending
    assert sorted(m for part in parts for m in part) == sorted(messages)


@pytest.mark.parametrize("closer_side", ["a", "b"])
async def test_clean_close_delivers_everything_then_eof(make_pair: MakePair, closer_side: str) -> None:
    a, b = await make_pair()
    closer, peer = (a, b) if closer_side == "a" else (b, a)
    messages = [b"one", b"", tagged(4, 0, 100_000)]
    for message in messages:
        await closer.send(message)
    await closer.close()
    assert closer.closed
    assert [await peer.recv() for _ in messages] == messages
    with pytest.raises(TransportClosed):
        await peer.recv()
    assert peer.closed
    with pytest.raises(TransportClosed):
        await peer.send(b"too late")
    with pytest.raises(TransportClosed):
        await peer.recv()  # EOF is sticky
    await peer.close()
    await closer.close()  # idempotent


async def test_recv_and_send_after_own_close_raise(make_pair: MakePair) -> None:
    a, b = await make_pair()
    await b.send(b"unread")
    await asyncio.sleep(0.01)
    await a.close()
    with pytest.raises(TransportClosed):
        await a.recv()
    with pytest.raises(TransportClosed):
        await a.send(b"x")


async def test_close_wakes_pending_receivers_on_both_sides(make_pair: MakePair) -> None:
    a, b = await make_pair()
    pending_a = asyncio.ensure_future(a.recv())
    pending_b = asyncio.ensure_future(b.recv())
    await asyncio.sleep(0.01)
    assert not pending_a.done() and not pending_b.done()
    await a.close()
    with pytest.raises(TransportClosed):
        await asyncio.wait_for(pending_a, 10)
    with pytest.raises(TransportClosed):
        await asyncio.wait_for(pending_b, 10)


async def test_send_limit_refuses_without_breaking_the_connection(make_pair: MakePair) -> None:
    a, b = await make_pair(max_a=1000)
    with pytest.raises(MessageTooLarge):
        await a.send(bytes(1001))
    await a.send(bytes(range(250)) * 4)  # exactly the limit is fine
    assert await b.recv() == bytes(range(250)) * 4
    assert not a.closed and not b.closed


async def test_recv_limit_refuses_and_closes(make_pair: MakePair) -> None:
    a, b = await make_pair(max_b=1000)
    await a.send(bytes(1000))
    assert await b.recv() == bytes(1000)
    await a.send(bytes(1001))
    with pytest.raises(MessageTooLarge):
        await b.recv()
    assert b.closed
    with pytest.raises(TransportClosed):
        await b.recv()
    with pytest.raises(TransportError):  # the sender learns that the connection is gone
        await asyncio.wait_for(a.recv(), 10)
