"""Returning freed heap memory to the operating system (a long-running server's resident size).

A session allocates and frees hundreds of MiB (ciphertexts, OT extension buffers) from several threads.
glibc's ``malloc`` keeps freed memory in its per-thread arenas and raises its mmap threshold after large
frees, so a server's resident size climbs to a high-water mark and stays there although nothing is alive
(measured with ``benchmarks/load_server.py``: the traced Python/numpy memory is flat from session to
session while RSS grows; ``malloc_trim(0)`` after sessions brings it back).  :func:`release` asks glibc to
give the free pages back; elsewhere (no glibc) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
from typing import Callable

__all__ = ["release", "available"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once on first use; ``None`` on other C libraries."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    try:
        trim = libc.malloc_trim
    except AttributeError:  # musl and others have no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def available() -> bool:
    """Whether :func:`release` can do anything here (glibc)."""
    return _malloc_trim() is not None


def release() -> bool:
    """Collect cyclic garbage (a finished session's tasks and tracebacks can keep big arrays alive until
    the next collection), then return free heap pages of every arena to the OS (``malloc_trim(0)``);
    whether any pages were released.  Thread-safe; tens of milliseconds for a heap of a few hundred MiB."""
    gc.collect()
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
