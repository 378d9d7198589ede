"""Bit-matrix transpose, the data-layout step of OT extension (128 × n bits  ->  n × 128 bits).

A bit matrix with ``r`` rows and ``c`` columns is stored as a ``(r, c/8)`` ``uint8`` array, bits in
little-endian order inside each byte (``numpy.packbits(..., bitorder="little")``): bit ``(i, j)`` is
``(m[i, j // 8] >> (j % 8)) & 1``.  :func:`transpose` returns the ``(c, r/8)`` array of the transposed
matrix.  Both ``r`` and ``c`` must be multiples of 8.

Two vectorised methods, no Python loop over elements:

* **64 × 64 blocks** (when ``r`` and ``c`` are multiples of 64, as in OT extension): rows are read as
  ``uint64`` words, every 64 × 64 block is transposed in place by six shift-and-mask swap stages
  (Hacker's Delight §7-3, stage ``j`` swaps the off-diagonal ``j × j`` sub-blocks), and one word-level
  copy puts word ``p`` of block ``(h, w)`` at output row ``64w + p``, word ``h``.  Columns are processed in
  slices of :data:`SLICE_WORDS` words so the working set stays in the L2 cache.  About 13 ms for
  128 × 2^20 bits on one core.
* **8 × 8 blocks** (any multiples of 8): a byte transpose inside each group of 8 rows turns the 8 bytes
  rows ``8J..8J+7`` hold at byte column ``I`` into one ``uint64`` 8 × 8 bit block, three swap stages
  transpose each block (:func:`transpose_8x8`), and a second byte transpose puts byte ``q`` of block
  ``(J, I)`` at output row ``8I + q``, byte ``J``.  About 3× slower than the 64 × 64 path.

Both are far faster than unpackbits/transpose/packbits (about 0.5 s for 128 × 2^20 bits).
"""

from __future__ import annotations

import numpy as np

from aiompc.errors import InputError

__all__ = ["transpose", "transpose_8x8", "SLICE_WORDS"]

SLICE_WORDS = 1024  # columns (in 64-bit words) per slice of the 64 x 64 method: 1 MiB for 128 rows

_STEPS = (
    (np.uint64(7), np.uint64(0x00AA00AA00AA00AA)),
    (np.uint64(14), np.uint64(0x0000CCCC0000CCCC)),
    (np.uint64(28), np.uint64(0x00000000F0F0F0F0)),
)


_STEPS_64 = tuple(
    (np.uint64(j), np.uint64(m))
    for j, m in (
        (32, 0x00000000FFFFFFFF),
        (16, 0x0000FFFF0000FFFF),
        (8, 0x00FF00FF00FF00FF),
        (4, 0x0F0F0F0F0F0F0F0F),
        (2, 0x3333333333333333),
        (1, 0x5555555555555555),
    )
)


def _delta_swap(a: np.ndarray, b: np.ndarray, shift: np.uint64, mask: np.uint64, t: np.ndarray) -> None:
    """One swap stage, in place: the bits of ``b`` under ``mask`` trade places with the bits of ``a`` under
    ``mask << shift`` (``t``: scratch of their shape).  ``a`` and ``b`` may be the same array: then it swaps
    bit ``i`` with bit ``i + shift`` inside each word, for the ``i`` in ``mask``."""
    np.right_shift(a, shift, out=t)
    t ^= b
    t &= mask
    b ^= t
    np.left_shift(t, shift, out=t)
    a ^= t


def _transpose_64(m: np.ndarray) -> np.ndarray:
    """The 64 × 64 block method; ``m``: ``(r, c/8)`` ``uint8`` with ``r``, ``c`` multiples of 64."""
    rows, cbytes = m.shape
    if m.strides[1] != 1 or m.strides[0] % 8:
        m = np.ascontiguousarray(m)
    words = m.view("<u8")  # (r, W), no copy: row i, word w holds bits 64w .. 64w+63
    nwords = words.shape[1]
    out = np.empty((nwords, 64, rows // 64), dtype="<u8")  # (w, p, h): output row 64w + p, word h
    for lo in range(0, nwords, SLICE_WORDS):
        hi = min(nwords, lo + SLICE_WORDS)
        width = hi - lo
        x = words[:, lo:hi].astype(np.uint64)  # a copy, transposed in place below
        tmp = np.empty((rows // 2, width), dtype=np.uint64)
        for shift, mask in _STEPS_64:
            j = int(shift)
            pairs = x.reshape(rows // (2 * j), 2, j, width)  # rows with bit j of their index clear / set
            _delta_swap(pairs[:, 0], pairs[:, 1], shift, mask, tmp.reshape(rows // (2 * j), j, width))
        out[lo:hi] = x.reshape(rows // 64, 64, width).transpose(2, 1, 0)
    return out.view(np.uint8).reshape(8 * cbytes, rows // 8)


def transpose_8x8(words: np.ndarray) -> np.ndarray:
    """Transpose, in place, the 8×8 bit block held by each ``uint64`` (bit ``8p+q`` ↔ bit ``8q+p``); returns ``words``."""
    tmp = np.empty_like(words)
    for shift, mask in _STEPS:
        _delta_swap(words, words, shift, mask, tmp)
    return words


def transpose(matrix: np.ndarray) -> np.ndarray:
    """Transpose an ``r × c`` bit matrix stored as ``(r, c/8)`` ``uint8``; returns ``(c, r/8)`` ``uint8``.

    ``r`` and ``c`` must be multiples of 8; the 64 × 64 method is used when both are multiples of 64.
    """
    m = np.asarray(matrix)
    if m.dtype != np.uint8 or m.ndim != 2:
        raise InputError(f"transpose takes a 2-D uint8 bit matrix, got {m.dtype} of shape {m.shape}")
    rows, cbytes = m.shape
    if rows % 8:
        raise InputError(f"the number of rows ({rows}) must be a multiple of 8")
    groups = rows // 8
    if groups == 0 or cbytes == 0:
        return np.zeros((8 * cbytes, groups), dtype=np.uint8)
    if rows % 64 == 0 and cbytes % 8 == 0:
        return _transpose_64(m)
    # 1. (J, p, I) -> (J, I, p): one uint64 per 8x8 block
    blocks = m.reshape(groups, 8, cbytes).transpose(0, 2, 1).copy()  # always a copy: step 2 works in place
    words = blocks.view("<u8").reshape(groups, cbytes)
    # 2. transpose the bits inside each block (dtype '<u8' is native uint64 on little-endian hosts)
    if words.dtype != np.uint64:  # pragma: no cover - big-endian host
        words = words.astype(np.uint64)
        transpose_8x8(words)
        words = words.astype("<u8")
    else:
        transpose_8x8(words)
    # 3. (J, I, q) -> (I, q, J)
    out = np.ascontiguousarray(words.view(np.uint8).reshape(groups, cbytes, 8).transpose(1, 2, 0))
    return out.reshape(8 * cbytes, groups)
