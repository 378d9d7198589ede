"""Pipelining: compute tile i+1 in the executor while tile i is on the wire.

:func:`pipelined` drives a producer (a heavy, synchronous function run through
:meth:`Party.compute`) and an async consumer (usually a send) connected by a bounded queue, so that the
event loop moves tile i's bytes while a worker thread computes tile i+1.  An optional ``trace`` callback
receives ``(event, index)`` pairs (``"compute_start"``, ``"compute_end"``, ``"consume_start"``,
``"consume_end"``) so tests can check the overlap from event order rather than wall-clock time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable, TypeVar

from aiompc.errors import InputError
from aiompc.party import Party

__all__ = ["pipelined"]

T = TypeVar("T")
Trace = Callable[[str, int], None]


async def pipelined(
    party: Party,
    count: int,
    produce: Callable[[int], T],
    consume: Callable[[int, T], Awaitable[Any]],
    *,
    depth: int = 2,
    workers: int = 1,
    trace: Trace | None = None,
) -> list[Any]:
    """Run ``consume(i, produce(i))`` for ``i < count`` with production running ahead by up to ``depth``.

    ``workers``: how many ``produce`` calls run at once (in the party's executor; items are still consumed in
    order, so with ``produce(i)`` a function of ``i`` alone the result does not depend on it).  Items held at
    once: at most ``workers`` being computed plus ``depth`` queued plus one being consumed.

    Returns the consumers' results in order.  An error on either side cancels the other and propagates.
    """
    if workers < 1:
        raise InputError(f"pipelined needs at least one worker, got {workers}")
    queue: asyncio.Queue[tuple[int, T]] = asyncio.Queue(maxsize=max(1, depth))
    note = trace or (lambda event, index: None)
    running: deque[tuple[int, asyncio.Future[T]]] = deque()

    async def producer() -> None:
        for i in range(count + workers - 1):
            if i < count:
                note("compute_start", i)
                running.append((i, asyncio.ensure_future(party.compute(produce, i))))
            if len(running) == workers or (i >= count and running):
                j, fut = running.popleft()
                item = await fut
                note("compute_end", j)
                await queue.put((j, item))

    async def consumer() -> list[Any]:
        out = []
        for _ in range(count):
            i, item = await queue.get()
            note("consume_start", i)
            out.append(await consume(i, item))
            note("consume_end", i)
        return out

    prod = asyncio.ensure_future(producer())
    cons = asyncio.ensure_future(consumer())
    try:
        # a failed producer must not leave the consumer waiting for an item that never comes
        await asyncio.wait((prod, cons), return_when=asyncio.FIRST_EXCEPTION)
        if prod.done() and not prod.cancelled() and prod.exception() is not None:
            raise prod.exception()  # type: ignore[misc]
        results = await cons
        await prod
    finally:
        for task in (prod, cons, *(f for _, f in running)):
            if not task.done():
                task.cancel()
    return results
