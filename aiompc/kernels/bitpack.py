"""Dense bit-packing of b-bit unsigned integers (1 <= b <= 64), little-endian bit order.

The wire format of every bit-packed share and ciphertext coefficient (:mod:`aiompc.wire`,
:mod:`aiompc.crypto.he.serialize`): ``n`` values of ``b`` bits take exactly ``ceil(n*b/8)`` bytes.
"""

from __future__ import annotations

import numpy as np

from aiompc.errors import InputError, ProtocolError

__all__ = ["pack_bits", "unpack_bits", "packed_size"]


def packed_size(count: int, bits: int) -> int:
    """Bytes taken by ``count`` values of ``bits`` bits each: ``ceil(count*bits/8)``."""
    return (count * bits + 7) // 8


def _check_bits(bits: int) -> None:
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 64:
        raise InputError(f"bit width must be an integer in 1..64, got {bits!r}")


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack unsigned integers ``< 2**bits`` densely, little-endian bit order, into ``ceil(n*bits/8)`` bytes.

    ``values`` is flattened; raises :class:`InputError` if a value does not fit in ``bits`` bits.
    Vectorised over blocks of 64 values, which fill exactly ``bits`` 64-bit words: the only Python
    loop is over the 64 positions in a block.
    """
    _check_bits(bits)
    v = np.ascontiguousarray(values).reshape(-1)
    if v.dtype != np.uint64:
        if v.dtype.kind not in "ub" and not (v.dtype.kind == "i" and (v.size == 0 or v.min() >= 0)):
            raise InputError(f"pack_bits takes unsigned integers, got dtype {v.dtype}")
        v = v.astype(np.uint64)
    if bits < 64 and v.size and int(v.max()) >> bits:
        raise InputError(f"a value does not fit in {bits} bits (max {int(v.max())})")
    if bits in (8, 16, 32, 64):
        return v.astype(f"<u{bits // 8}").tobytes()
    n = v.size
    blocks = -(-n // 64)
    padded = np.zeros(blocks * 64, dtype=np.uint64)
    padded[:n] = v
    cols = padded.reshape(blocks, 64)
    words = np.zeros((blocks, bits), dtype=np.uint64)
    for j in range(64):
        w, s = divmod(j * bits, 64)
        col = cols[:, j]
        words[:, w] |= col << np.uint64(s)
        if s + bits > 64:
            words[:, w + 1] |= col >> np.uint64(64 - s)
    return words.astype("<u8").tobytes()[: packed_size(n, bits)]


def unpack_bits(data: bytes | memoryview, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` values as a ``uint64`` array.

    ``data`` must be exactly ``ceil(count*bits/8)`` bytes, with zero padding bits; otherwise
    :class:`ProtocolError`.
    """
    _check_bits(bits)
    if count < 0:
        raise ProtocolError(f"negative element count {count}")
    expected = packed_size(count, bits)
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size != expected:
        raise ProtocolError(f"bit-packed data has {buf.size} bytes, expected {expected} for {count}×{bits} bits")
    if bits in (8, 16, 32, 64):
        return buf.view(f"<u{bits // 8}").astype(np.uint64)
    tail = count * bits % 8
    if tail and buf[-1] >> tail:
        raise ProtocolError("non-zero padding bits in bit-packed data")
    blocks = -(-count // 64)
    raw = np.zeros(blocks * bits * 8, dtype=np.uint8)
    raw[:expected] = buf
    words = raw.view("<u8").reshape(blocks, bits)  # native on little-endian hosts: no copy
    if words.dtype != np.uint64:
        words = words.astype(np.uint64)
    out = np.empty((blocks, 64), dtype=np.uint64)  # the only allocation of 64/bits times the input
    mask = np.uint64((1 << bits) - 1)
    for j in range(64):
        w, s = divmod(j * bits, 64)
        col = words[:, w] >> np.uint64(s)
        if s + bits > 64:
            col |= words[:, w + 1] << np.uint64(64 - s)
        out[:, j] = col & mask
    del raw, words
    flat = out.reshape(-1)
    return flat if flat.size == count else flat[:count]  # a view: no second copy of the expansion


