"""Arithmetic secret shares over Z_{2^l}, 1 <= l <= 64, held in ``numpy.uint64`` arrays.

A value ``x`` is shared as ``x = x_S + x_C mod 2^l`` between server and client.  Signed values use
two's complement in the ring: ``to_signed`` maps ``[2^(l-1), 2^l)`` to negatives.  All helpers are
vectorised and take/return ``uint64`` arrays reduced mod ``2^l``.
"""

from __future__ import annotations

import numpy as np

from aiompc.crypto.prg import PRG
from aiompc.errors import InputError

__all__ = ["mask", "reduce", "share", "reconstruct", "to_signed", "from_signed", "check_width"]


def check_width(l: int) -> int:
    """Validate a ring width ``l`` (1..64) and return it."""
    if not isinstance(l, (int, np.integer)) or not 1 <= l <= 64:
        raise InputError(f"ring width must be an integer in 1..64, got {l!r}")
    return int(l)


def mask(l: int) -> np.uint64:
    """``2^l - 1`` as ``uint64``."""
    return np.uint64((1 << check_width(l)) - 1)


def reduce(x: np.ndarray, l: int) -> np.ndarray:
    """``x mod 2^l`` as ``uint64`` (two's-complement wrap for signed input)."""
    x = np.asarray(x)
    if x.dtype.kind == "i":
        x = x.astype(np.int64, copy=False).view(np.uint64)
    return x.astype(np.uint64, copy=False) & mask(l)


def from_signed(x: np.ndarray, l: int) -> np.ndarray:
    """Signed integers in ``[-2^(l-1), 2^(l-1))`` into the ring (two's complement)."""
    return reduce(np.asarray(x, dtype=np.int64), l)


def to_signed(x: np.ndarray, l: int) -> np.ndarray:
    """Ring elements to signed ``int64`` in ``[-2^(l-1), 2^(l-1))``."""
    l = check_width(l)
    x = np.asarray(x, dtype=np.uint64) & mask(l)
    if l == 64:
        return x.view(np.int64)
    half = np.uint64(1 << (l - 1))
    return (x ^ half).astype(np.int64) - np.int64(1 << (l - 1))


def share(x: np.ndarray, l: int, rng: PRG) -> tuple[np.ndarray, np.ndarray]:
    """Split ``x`` (ring elements or signed ints) into two uniformly random shares mod ``2^l``."""
    xr = reduce(x, l)
    r = rng.integers(l, xr.shape)
    return r, (xr - r) & mask(l)


def reconstruct(a: np.ndarray, b: np.ndarray, l: int) -> np.ndarray:
    """``a + b mod 2^l``."""
    return (np.asarray(a, dtype=np.uint64) + np.asarray(b, dtype=np.uint64)) & mask(l)
