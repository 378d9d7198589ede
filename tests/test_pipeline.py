import numpy as np

from aiompc.party import Party
from aiompc.pipeline import pipelined
from aiompc.session import run_local

TILES = 6


def heavy_tile(i: int) -> np.ndarray:
    a = np.full((160, 160), float(i + 1))
    for _ in range(3):
        a = a @ a / 160.0
    return a[:4, :4].copy()


async def test_pipelined_sends_tile_i_before_tile_i_plus_1_is_computed() -> None:
    events: list[tuple[str, int]] = []

    async def sender(p: Party) -> None:
        async def send(i: int, tile: np.ndarray) -> None:
            events.append(("send", i))
            await p.sub(f"tile{i}").send(tile)

        await pipelined(p, TILES, heavy_tile, send, trace=lambda e, i: events.append((e, i)))

    async def receiver(p: Party) -> list[np.ndarray]:
        return [await p.sub(f"tile{i}").recv() for i in range(TILES)]

    _, tiles = await run_local(sender, receiver)
    assert all(np.array_equal(t, heavy_tile(i)) for i, t in enumerate(tiles))
    pos = {e: k for k, e in enumerate(events)}
    for i in range(TILES - 1):
        assert pos[("send", i)] < pos[("compute_end", i + 1)], events
        assert pos[("compute_start", i + 1)] < pos[("consume_end", i)], events
