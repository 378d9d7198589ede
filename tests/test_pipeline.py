import asyncio

import numpy as np
import pytest

from aiompc.channel import Channel
from aiompc.party import Party
from aiompc.pipeline import pipelined
from aiompc.session import run_pair
from aiompc.transports.memory import memory_pair
from aiompc.transports.shaped import LinkProfile, shaped_pair

TILES = 6


def heavy_tile(i: int) -> np.ndarray:
    a = np.full((160, 160), float(i + 1))
    for _ in range(3):
        a = a @ a / 160.0
    return a[:4, :4].copy()


@pytest.mark.parametrize("link", ["wan", LinkProfile(20e6, 5e-3)])
async def test_pipelined_sends_tile_i_before_tile_i_plus_1_is_computed(link: str | LinkProfile) -> None:
    events: list[tuple[str, int]] = []

    async def sender(p: Party) -> None:
        async def send(i: int, tile: np.ndarray) -> None:
            events.append(("send", i))
            await p.sub(f"tile{i}").send(tile)

        await pipelined(p, TILES, heavy_tile, send, trace=lambda e, i: events.append((e, i)))

    async def receiver(p: Party) -> list[np.ndarray]:
        return [await p.sub(f"tile{i}").recv() for i in range(TILES)]

    ta, tb = shaped_pair(*memory_pair(), link)
    _, tiles = await run_pair(Party("server", Channel(ta)), Party("client", Channel(tb)), sender, receiver)
    assert all(np.array_equal(t, heavy_tile(i)) for i, t in enumerate(tiles))
    pos = {e: k for k, e in enumerate(events)}
    for i in range(TILES - 1):
        assert pos[("send", i)] < pos[("compute_end", i + 1)], events
        assert pos[("compute_start", i + 1)] < pos[("consume_end", i)], events


@pytest.mark.parametrize("failing", ["produce", "consume"])
async def test_an_error_on_either_side_propagates_at_once(failing: str) -> None:
    """A producer that raises must not leave the consumer waiting for its item (and vice versa): the error
    reaches the caller, the other side is cancelled."""
    consumed: list[int] = []

    def produce(i: int) -> int:
        if failing == "produce" and i == 2:
            raise ValueError("bad tile 2")
        return i

    async def consume(i: int, item: int) -> None:
        if failing == "consume" and i == 1:
            raise ValueError("bad tile 1")
        consumed.append(item)

    async def run(p: Party) -> None:
        with pytest.raises(ValueError, match="bad tile"):
            await asyncio.wait_for(pipelined(p, TILES, produce, consume), 10)

    await run_pair(Party("server", Channel(memory_pair()[0])), Party("client", Channel(memory_pair()[1])),
                   run, lambda p: asyncio.sleep(0))
    assert consumed == ([0, 1] if failing == "produce" else [0])


@pytest.mark.parametrize("workers", [1, 2, 3, 7])
@pytest.mark.parametrize("count", [0, 1, 2, 5])
async def test_workers_keep_order_and_results(workers: int, count: int) -> None:
    """With several producers at once the items are consumed in order and equal the one-worker run's; at most
    ``workers`` calls run at the same time."""
    import threading

    lock = threading.Lock()
    active = [0, 0]  # now, most

    def produce(i: int) -> np.ndarray:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        try:
            return heavy_tile(i)
        finally:
            with lock:
                active[0] -= 1

    got: list[tuple[int, np.ndarray]] = []

    async def consume(i: int, item: np.ndarray) -> int:
        got.append((i, item))
        return i

    party = Party("server", Channel(memory_pair()[0]))
    out = await pipelined(party, count, produce, consume, workers=workers)
    assert out == list(range(count)) and [i for i, _ in got] == list(range(count))
    assert all(np.array_equal(t, heavy_tile(i)) for i, t in got)
    assert active[1] <= min(workers, 2)  # the default executor has two threads


async def test_workers_error_propagates_and_bad_count_refused() -> None:
    def produce(i: int) -> int:
        if i == 3:
            raise ValueError("bad tile 3")
        return i

    async def consume(i: int, item: int) -> None:
        return None

    party = Party("server", Channel(memory_pair()[0]))
    with pytest.raises(ValueError, match="bad tile 3"):
        await asyncio.wait_for(pipelined(party, TILES, produce, consume, workers=2), 10)
    from aiompc.errors import InputError
    with pytest.raises(InputError):
        await pipelined(party, 1, produce, consume, workers=0)


def test_party_parts_default_and_validation() -> None:
    """``Party.parts``: the process's cores by default, an explicit count kept, below one refused."""
    from aiompc.errors import InputError
    from aiompc.kernels.threads import default_parts

    ch = Channel(memory_pair()[0])
    assert Party("server", ch).parts == default_parts() >= 1
    assert Party("client", ch, parts=3).parts == 3
    with pytest.raises(InputError):
        Party("server", ch, parts=0)
