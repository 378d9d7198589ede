"""WeightCache: one computation per key, LRU eviction by bytes, failures not cached; the digest keys contents."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from aiompc.protocols.linear.weight_cache import WeightCache, weight_digest


class Blob:
    def __init__(self, nbytes: int) -> None:
        self.data = np.zeros(nbytes, dtype=np.uint8)


class Computation:
    """A compute function for the cache that counts its calls: it sleeps ``delay`` seconds, then returns a new
    ``Blob(nbytes)`` or, with ``error``, raises it."""

    def __init__(self, nbytes: int = 1, delay: float = 0.0, error: Exception | None = None) -> None:
        self.nbytes, self.delay, self.error, self.calls = nbytes, delay, error, 0

    async def __call__(self) -> Blob:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return Blob(self.nbytes)


async def test_concurrent_requests_share_one_computation() -> None:
    cache = WeightCache()
    compute = Computation(10, delay=0.01)
    got = await asyncio.gather(*(cache.get("k", compute) for _ in range(5)))
    assert compute.calls == 1 and all(g is got[0] for g in got)
    assert (cache.misses, cache.hits, cache.nbytes) == (1, 4, 10)
    assert await cache.get("k", compute) is got[0] and compute.calls == 1


async def test_lru_eviction_by_bytes() -> None:
    cache = WeightCache(max_bytes=25)
    a = await cache.get("a", Computation(10))
    await cache.get("b", Computation(10))
    assert await cache.get("a", Computation(10)) is a  # touch a: b is now least recently used
    await cache.get("c", Computation(10))  # 30 > 25 bytes: b goes
    assert len(cache) == 2 and cache.nbytes == 20
    misses = cache.misses
    await cache.get("b", Computation(10))
    assert cache.misses == misses + 1
    await cache.get("huge", Computation(100))  # above the whole budget: returned, not kept
    assert "huge" not in cache._done and cache.nbytes <= 25
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


async def test_failures_reach_every_waiter_and_are_not_cached() -> None:
    cache = WeightCache()
    failing = Computation(error=ValueError("bad weights"))
    results = await asyncio.gather(*(cache.get("k", failing) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results) and failing.calls == 1
    with pytest.raises(ValueError):
        await cache.get("k", failing)
    assert failing.calls == 2 and len(cache) == 0


async def test_a_cancelled_waiter_does_not_cancel_the_computation() -> None:
    cache = WeightCache()
    slow = Computation(1, delay=0.02)
    first = asyncio.ensure_future(cache.get("k", slow))
    second = asyncio.ensure_future(cache.get("k", slow))
    await asyncio.sleep(0)
    first.cancel()
    assert isinstance(await second, Blob)


def test_digest_depends_on_contents_dtype_and_shape() -> None:
    w = np.arange(12, dtype=np.int64).reshape(3, 4)
    assert weight_digest(w) == weight_digest(w.copy())
    assert weight_digest(w) == weight_digest(np.asfortranarray(w))  # same values, other memory order
    v = w.copy()
    v[2, 3] += 1
    assert weight_digest(v) != weight_digest(w)
    assert weight_digest(w.reshape(4, 3)) != weight_digest(w)
    assert weight_digest(w.astype(np.int32)) != weight_digest(w)


async def test_pinned_entries_stay_and_bound_what_sessions_may_add() -> None:
    cache = WeightCache(max_bytes=30)
    assert cache.put("p", Blob(20)) and cache.put("p", Blob(20))  # a second put of a pinned key: kept, once
    assert not cache.put("q", Blob(11))  # 20 + 11 > 30: refused, not stored
    assert "p" in cache and "q" not in cache and cache.pinned_bytes == cache.nbytes == 20

    def make(n):
        async def compute():
            return Blob(n)
        return compute

    await cache.get("a", make(8))
    await cache.get("b", make(8))  # 20 + 8 + 8 > 30: the unpinned a goes, never p
    assert "p" in cache and "a" not in cache and "b" in cache and cache.nbytes == 28
    await cache.get("c", make(15))  # more than the 10 bytes the pinned entry leaves: used once, not kept
    assert "c" not in cache and "b" in cache
    hits = cache.hits
    assert (await cache.get("p", make(1))).data.size == 20 and cache.hits == hits + 1
    assert cache.put("b", Blob(8)) and cache.pinned_bytes == 28 and cache.nbytes == 28  # promoted, not counted twice
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0
