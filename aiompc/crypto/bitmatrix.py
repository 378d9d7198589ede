"""Bit-matrix transpose, the data-layout step of OT extension (128 × n bits  ->  n × 128 bits).

A bit matrix with ``r`` rows and ``c`` columns is stored as a ``(r, c/8)`` ``uint8`` array, bits in
little-endian order inside each byte (``numpy.packbits(..., bitorder="little")``): bit ``(i, j)`` is
``(m[i, j // 8] >> (j % 8)) & 1``.  :func:`transpose` returns the ``(c, r/8)`` array of the transposed
matrix.  Both ``r`` and ``c`` must be multiples of 8.

Method (three vectorised passes, no Python loop over elements):

1. byte transpose inside each group of 8 rows: the 8 bytes that rows ``8J..8J+7`` have at byte column
   ``I`` become one little-endian ``uint64`` ``w[J, I]`` holding an 8×8 bit block (bit ``8p + q`` =
   bit ``(8J + p, 8I + q)``);
2. transpose every 8×8 block in its word with three shift-and-mask swaps (Hacker's Delight §7-3),
   so bit ``8q + p`` of the word now holds bit ``(8J + p, 8I + q)``;
3. byte ``q`` of ``w[J, I]`` is byte ``J`` of output row ``8I + q``: a second byte transpose.

About 30 ms for 128 × 2^20 bits on one core, against about 0.5 s for unpackbits/transpose/packbits.
"""

from __future__ import annotations

import numpy as np

from aiompc.errors import InputError

__all__ = ["transpose", "transpose_8x8"]

_STEPS = (
    (np.uint64(7), np.uint64(0x00AA00AA00AA00AA)),
    (np.uint64(14), np.uint64(0x0000CCCC0000CCCC)),
    (np.uint64(28), np.uint64(0x00000000F0F0F0F0)),
)


def transpose_8x8(words: np.ndarray) -> np.ndarray:
    """Transpose, in place, the 8×8 bit block held by each ``uint64`` (bit ``8p+q`` ↔ bit ``8q+p``); returns ``words``."""
    tmp = np.empty_like(words)
    for shift, mask in _STEPS:
        np.right_shift(words, shift, out=tmp)
        tmp ^= words
        tmp &= mask
        words ^= tmp
        np.left_shift(tmp, shift, out=tmp)
        words ^= tmp
    return words


def transpose(matrix: np.ndarray) -> np.ndarray:
    """Transpose an ``r × c`` bit matrix stored as ``(r, c/8)`` ``uint8``; returns ``(c, r/8)`` ``uint8``.

    ``r`` and ``c`` must be multiples of 8.  Cost: three passes over ``r·c/8`` bytes.
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
