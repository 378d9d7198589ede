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

__all__ = ["release", "available", "bound_growth", "ARENAS"]

ARENAS = 2
"""malloc arenas a bounded process may use (:func:`bound_growth`)."""


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


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, looked up once; ``None`` on other C libraries."""
    if _malloc_trim() is None:
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    fn = libc.mallopt
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def bound_growth(arenas: int = ARENAS, mmap_threshold: int | None = None) -> bool:
    """Keep a process's resident size nearer its live memory *during* a session, not only after it: at most
    ``arenas`` malloc arenas (each thread would otherwise get its own, each keeping its own high-water mark of
    freed temporaries), and, if ``mmap_threshold`` is given, every allocation of at least that many bytes
    mapped on its own and unmapped when freed (a fixed threshold: glibc otherwise raises it up to 32 MiB after
    a large free, and chunked temporaries of a few MiB then stay in the heap).  The threshold is off by
    default: on a ResNet-50 layer (2048 outputs) a 4 MiB threshold cost 60–80% more CPU in page faults.
    Call once at the start of a process that serves (before its worker threads start); returns whether it
    took effect (glibc only)."""
    fn = _mallopt()
    if fn is None:
        return False
    ok = bool(fn(_M_ARENA_MAX, int(arenas)))
    if mmap_threshold is not None:
        ok = bool(fn(_M_MMAP_THRESHOLD, int(mmap_threshold))) and ok
    return ok


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
