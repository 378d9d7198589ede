"""Split one large computation over the machine's cores: contiguous ranges, one per thread.

The compiled kernels release the GIL (``nogil=True``) and so do OpenSSL's AES calls on large buffers, so
a loop over independent rows (Ferret's LPN rows, GGM trees) runs on several cores when its range is cut
into parts handed to threads.  :func:`run_parts` runs ``fn(lo, hi)`` for each part: the first part in the
calling thread, the others on a small process-wide pool (created on first use).  Pool tasks never wait
for other pool tasks, so callers in several threads at once (two parties in one process) cannot
deadlock: they only queue.

How many parts a computation uses is decided once by the caller (see :func:`default_parts`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from aiompc.errors import InputError

__all__ = ["run_parts", "split_ranges", "default_parts"]

T = TypeVar("T")

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def default_parts() -> int:
    """Parts a large computation is cut into: the number of cores this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, default_parts()), thread_name_prefix="aiompc-kernel")
        return _POOL


def split_ranges(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """``parts`` (or fewer) contiguous ``(lo, hi)`` ranges covering ``0 .. n``, boundaries multiples of
    ``align``, sizes as equal as that allows; empty ranges are dropped."""
    if n < 0 or parts < 1 or align < 1:
        raise InputError(f"split_ranges needs n >= 0, parts >= 1 and align >= 1, got {n}, {parts}, {align}")
    units = -(-n // align)
    bounds = [min(n, (units * i // parts) * align) for i in range(parts)] + [n]
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def run_parts(fn: Callable[[int, int], T], n: int, parts: int, *, align: int = 1) -> list[T]:
    """``[fn(lo, hi) for (lo, hi) in split_ranges(n, parts, align)]``, the ranges run in parallel threads.

    ``fn`` must be safe to run concurrently on disjoint ranges (each call uses its own scratch).  The
    first range runs in the calling thread; an exception in any part is raised here after all parts end.
    """
    ranges = split_ranges(n, parts, align)
    if len(ranges) <= 1:
        return [fn(lo, hi) for lo, hi in ranges]
    futures: list[Future[T]] = [_pool().submit(fn, lo, hi) for lo, hi in ranges[1:]]
    try:
        first = fn(*ranges[0])
    finally:
        rest = [f.exception() for f in futures]  # waits for every part, whatever happened here
    for err in rest:
        if err is not None:
            raise err
    return [first, *(f.result() for f in futures)]
