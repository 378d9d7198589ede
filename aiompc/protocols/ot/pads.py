"""Pads: the ``l``-bit values a 128-bit COT block hashes to (pure functions, no I/O).

The pad stream of a block ``x`` with tweak ``w`` is ``H(x, (w, 0)) ‖ H(x, (w, 1)) ‖ …``
(:func:`~aiompc.crypto.hashing.tccr_expand`), cut into *lanes* of ``L`` bytes, ``L`` the smallest of
1, 2, 4, 8 with ``8·L >= bits``; lane ``v`` read little-endian and reduced mod ``2^bits`` is pad value
``v``.  (Lanes waste at most half the hash output and make extraction a plain dtype view.)  Sender and
receiver derive identical pads from identical blocks; the flavours XOR or add them to messages.
"""

from __future__ import annotations

import numpy as np

from aiompc.crypto.hashing import tccr_expand

__all__ = ["lane_bytes", "lane_dtype", "value_mask", "pad_lanes", "pads", "pads_at"]

_ROW_BLOCKS = 1 << 18  # hash blocks per piece (4 MiB): bounds temporary memory


def lane_bytes(bits: int) -> int:
    """Bytes per pad lane for ``bits``-bit values: 1, 2, 4 or 8."""
    return 1 if bits <= 8 else 2 if bits <= 16 else 4 if bits <= 32 else 8


def value_mask(bits: int) -> np.uint64:
    """``2^bits − 1`` as ``uint64`` (all ones for 64)."""
    return np.uint64((1 << bits) - 1)


def lane_dtype(bits: int) -> np.dtype:
    """The little-endian unsigned dtype of one lane."""
    return np.dtype(f"<u{lane_bytes(bits)}")


def _lanes(raw: np.ndarray, width: int, bits: int) -> np.ndarray:
    """``(n, width·L)`` ``uint8`` -> ``(n, width)`` ``uint64`` values below ``2^bits``."""
    vals = np.ascontiguousarray(raw).view(lane_dtype(bits)).astype(np.uint64)
    if bits < 64:
        vals &= value_mask(bits)
    return vals.reshape(raw.shape[0], width)


def pad_lanes(blocks: np.ndarray, tweaks: np.ndarray, width: int, bits: int) -> np.ndarray:
    """Raw lanes ``0 .. width-1`` of every block's pad stream: ``(n, width)`` of :func:`lane_dtype`, *not*
    reduced mod ``2^bits`` (for XOR-only work on narrow lanes; reduce once at the end).

    ``blocks``: ``(n, 2)`` ``uint64``; ``tweaks``: ``(n,)`` ``uint64``.  Cost: ``n·(1 + ⌈width·L/16⌉)`` AES blocks.
    """
    n = blocks.shape[0]
    lb = lane_bytes(bits)
    nblocks = -(-width * lb // 16)
    out = np.empty((n, width), dtype=lane_dtype(bits))
    step = max(1, _ROW_BLOCKS // nblocks)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        raw = tccr_expand(blocks[lo:hi], tweaks[lo:hi], nblocks).view(np.uint8).reshape(hi - lo, 16 * nblocks)
        out[lo:hi] = np.ascontiguousarray(raw[:, : width * lb]).view(out.dtype)
    return out


def pads(blocks: np.ndarray, tweaks: np.ndarray, width: int, bits: int) -> np.ndarray:
    """Pad values ``0 .. width-1`` of every block: ``(n, width)`` ``uint64`` below ``2^bits``.

    ``blocks``: ``(n, 2)`` ``uint64``; ``tweaks``: ``(n,)`` ``uint64``.  Cost: ``n·(1 + ⌈width·L/16⌉)`` AES blocks.
    """
    vals = pad_lanes(blocks, tweaks, width, bits).astype(np.uint64)
    if bits < 64:
        vals &= value_mask(bits)
    return vals


def pads_at(blocks: np.ndarray, tweaks: np.ndarray, first: np.ndarray, width: int, bits: int) -> np.ndarray:
    """Pad values ``first[i] .. first[i]+width-1`` of block ``i`` only: ``(n, width)`` ``uint64``.

    Equal to ``pads(blocks, tweaks, W, bits)[i, first[i]:first[i]+width]`` for any large enough ``W``,
    but hashes only the blocks that hold those lanes (what a 1-of-N receiver needs).
    """
    n = blocks.shape[0]
    lb = lane_bytes(bits)
    offset = np.asarray(first, dtype=np.int64) * lb  # byte offset in the stream
    nblocks = -(-(16 - lb + width * lb) // 16)  # enough whatever the offset inside the first block
    out = np.empty((n, width), dtype=np.uint64)
    step = max(1, _ROW_BLOCKS // nblocks)
    cols = np.arange(width * lb, dtype=np.int64)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        off = offset[lo:hi]
        raw = tccr_expand(blocks[lo:hi], tweaks[lo:hi], nblocks, first=off // 16)
        raw = raw.view(np.uint8).reshape(hi - lo, 16 * nblocks)
        picked = np.take_along_axis(raw, (off % 16)[:, None] + cols[None, :], axis=1)
        out[lo:hi] = _lanes(picked, width, bits)
    return out
