import asyncio

import numpy as np
import pytest

from aiompc.channel import Channel
from aiompc.errors import ProtocolError, TransportClosed
from aiompc.transports.memory import memory_pair


def channel_pair() -> tuple[Channel, Channel]:
    a, b = memory_pair()
    return Channel(a), Channel(b)


async def test_messages_are_matched_by_label_not_arrival_order() -> None:
    ca, cb = channel_pair()
    for i in range(5):
        await ca.sub(f"t{i}").send(i)
    got = await asyncio.gather(*(cb.sub(f"t{i}").recv() for i in reversed(range(5))))
    assert got == [4, 3, 2, 1, 0]
    await ca.close()


async def test_order_within_a_label_and_concurrent_tiles() -> None:
    ca, cb = channel_pair()

    async def tile(i: int) -> list[int]:
        s = ca.sub(f"tile{i}")
        for j in range(50):
            await s.send([i, j])
        return [await s.recv() for _ in range(3)]

    async def peer(i: int) -> None:
        s = cb.sub(f"tile{i}")
        got = [await s.recv() for _ in range(50)]
        assert got == [[i, j] for j in range(50)]
        for k in range(3):
            await s.send(k)

    res = await asyncio.gather(*(tile(i) for i in range(8)), *(peer(i) for i in range(8)))
    assert res[:8] == [[0, 1, 2]] * 8


async def test_stats_count_frames_rounds_and_phases() -> None:
    ca, cb = channel_pair()
    x = np.arange(100, dtype=np.uint64)
    a, b = ca.sub("lin"), cb.sub("lin")
    before = ca.stats()
    await a.send(x)
    await a.send(x)
    await b.recv()
    await b.recv()
    await b.send(1)
    await a.recv()
    off_a, off_b = ca.sub("ot", phase="offline"), cb.sub("ot", phase="offline")
    await off_b.send(b"xyz")
    await off_a.recv()
    sa, sb = ca.stats() - before, cb.stats()
    lin = sa.labels["lin"]
    assert lin.msgs_sent == 2 and lin.msgs_recv == 1 and lin.rounds == 2
    assert sb.labels["lin"].rounds == 2
    # both sides agree on every byte, each direction
    assert sa.bytes_sent == sb.bytes_recv and sa.bytes_recv == sb.bytes_sent
    frame = 2 + len("lin") + len(__import__("aiompc.wire", fromlist=["encode"]).encode(x))
    assert lin.bytes_sent == 2 * frame
    assert sa.labels["ot"].phase == "offline" and sa.total()["offline_bytes"] == 2 + 2 + 5
    assert "lin" in sa.table() and "**total**" in sa.table(depth=1)
    assert set(sa.select("lin").labels) == {"lin"}


async def test_close_wakes_receivers_with_transport_closed() -> None:
    ca, cb = channel_pair()
    waiter = asyncio.ensure_future(cb.sub("x").recv())
    await asyncio.sleep(0)
    await ca.close()
    with pytest.raises(TransportClosed):
        await waiter
    with pytest.raises(TransportClosed):
        await cb.sub("y").recv()


async def test_malformed_frame_is_protocol_error() -> None:
    ta, tb = memory_pair()
    cb = Channel(tb)
    await ta.send(b"\xff\xff")  # label length beyond the frame
    with pytest.raises(ProtocolError):
        await cb.sub("x").recv()
