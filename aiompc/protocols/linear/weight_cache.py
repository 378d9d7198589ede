"""Prepared weight plaintexts, computed once and reused across calls (samples of a batch, repeated queries).

Turning a layer's weights into NTT-form plaintexts costs about one NTT per weight polynomial and prime
(:func:`aiompc.protocols.linear.prepared.prepare_weights`) — for a deep ResNet layer more than the rest of the
server's work for one sample.  The result depends only on the weight array and the plan (layout, HE
parameters, weight bound), never on the client's data, so the server may keep it: :class:`WeightCache` maps
``(digest of the weight bytes, plan)`` to the prepared plaintexts, bounded in bytes (least recently used
entries are dropped first).

The cache lives in ``party.state["he_weight_cache"]`` (one per session, created on first use).  A server
that runs many sessions in one event loop may put one shared :class:`WeightCache` there before running each
session: entries hold only the server's own weights in a public format, so sharing them across sessions is
safe.  Concurrent requests for the same entry wait for one computation (which runs in the party's executor
and is not cancelled when one waiter is).

A model prepared ahead of its sessions (:func:`aiompc.nn.prepare.prepare_model`) stores its layers with
:meth:`~WeightCache.put`, *pinned*: they stay for the life of the cache, up to ``max_bytes`` in all; what does
not fit is prepared by each call that needs it.  Entries computed during a session use the budget the pinned ones leave
and are evicted least recently used first, never pushing out a pinned one (so a model larger than the budget
does not make an inference evict, one layer after the other, the layers the next inference needs first).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Hashable

import numpy as np

__all__ = ["WeightCache", "weight_digest", "STATE_KEY", "DEFAULT_MAX_BYTES"]

STATE_KEY = "he_weight_cache"
DEFAULT_MAX_BYTES = 1 << 30  # one deep layer of a ResNet-18 in NTT form is a few hundred MB


def weight_digest(weight: np.ndarray) -> bytes:
    """16-byte BLAKE2b digest of an array's dtype, shape and contents (C order)."""
    arr = np.ascontiguousarray(weight)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.dtype.str}|{arr.shape}".encode())
    h.update(arr.view(np.uint8).reshape(-1) if arr.size else b"")
    return h.digest()


def _nbytes(value: Any) -> int:
    """Bytes held by a cached value: its ``nbytes`` (a :class:`~aiompc.protocols.linear.prepared.PreparedWeights`),
    or the ``data`` arrays of its parts (a tuple of plaintexts and masks)."""
    parts = value if isinstance(value, tuple) else (value,)
    total = 0
    for p in parts:
        data = getattr(p, "data", p)
        total += int(getattr(data, "nbytes", 0))
    return total


class WeightCache:
    """An LRU map ``key -> prepared weights`` bounded by ``max_bytes`` (see the module docstring).

    ``hits``/``misses`` count lookups (a request that waits for a computation in flight is a hit).
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._done: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._pinned: dict[Hashable, tuple[Any, int]] = {}
        self._pending: dict[Hashable, asyncio.Task[Any]] = {}
        self._bytes = 0
        self._pinned_bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the completed entries (pinned ones included)."""
        return self._bytes + self._pinned_bytes

    @property
    def pinned_bytes(self) -> int:
        """Bytes held by the pinned entries (:meth:`put`)."""
        return self._pinned_bytes

    @property
    def room(self) -> int:
        """Bytes an entry computed during a session may take and still be kept (what the pinned entries leave
        of ``max_bytes``); a larger one is used once and dropped."""
        return self.max_bytes - self._pinned_bytes

    def __len__(self) -> int:
        return len(self._done) + len(self._pinned)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._pinned or key in self._done

    def put(self, key: Hashable, value: Any) -> bool:
        """Store ``value`` pinned (never evicted) if it fits in what the other pinned entries leave of
        ``max_bytes``; evicts unpinned entries to make room.  Returns whether it was stored (a key already
        pinned counts as stored).  Synchronous: for the one-time preparation of a model, before or between
        sessions, from the thread that owns the cache."""
        if key in self._pinned:
            return True
        size = _nbytes(value)
        if self._pinned_bytes + size > self.max_bytes:
            return False
        if key in self._done:
            self._bytes -= self._done.pop(key)[1]
        self._pinned[key] = (value, size)
        self._pinned_bytes += size
        self._evict()
        return True

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[Any]]) -> Any:
        """The value for ``key``, computing it with ``compute()`` on a miss.  An exception is raised to every
        waiter and not cached."""
        if key in self._pinned:
            self.hits += 1
            return self._pinned[key][0]
        if key in self._done:
            self.hits += 1
            self._done.move_to_end(key)
            return self._done[key][0]
        task = self._pending.get(key)
        if task is None:
            self.misses += 1
            task = asyncio.ensure_future(compute())
            self._pending[key] = task
            task.add_done_callback(lambda t, k=key: self._finish(k, t))
        else:
            self.hits += 1
        return await asyncio.shield(task)

    def _finish(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        self._pending.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return
        value = task.result()
        size = _nbytes(value)
        if key in self._pinned or size > self.max_bytes - self._pinned_bytes:
            return  # larger than the budget the pinned entries leave: used once, not kept
        self._done[key] = (value, size)
        self._bytes += size
        self._evict()

    def _evict(self) -> None:
        while self._done and self._bytes + self._pinned_bytes > self.max_bytes:
            _, (_, dropped) = self._done.popitem(last=False)
            self._bytes -= dropped

    def clear(self) -> None:
        """Drop every completed entry, pinned ones included (computations in flight finish and are kept)."""
        self._done.clear()
        self._pinned.clear()
        self._bytes = self._pinned_bytes = 0
