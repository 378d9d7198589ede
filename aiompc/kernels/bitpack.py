"""Dense bit-packing of b-bit unsigned integers (1 <= b <= 64), little-endian bit order.

The wire format of every bit-packed share and ciphertext coefficient (:mod:`aiompc.wire`,
:mod:`aiompc.crypto.he.serialize`): ``n`` values of ``b`` bits take exactly ``ceil(n*b/8)`` bytes.
Widths 8, 16, 32 and 64 are plain little-endian arrays; the others go through two compiled loops
(numba, ``nogil``) that place value ``i`` at bit ``i·b`` of a little-endian array of 64-bit words.
"""

from __future__ import annotations

import numpy as np

from aiompc.errors import InputError, ProtocolError
from aiompc.kernels.jit import kernel

__all__ = ["pack_bits", "unpack_bits", "packed_size", "narrowest_uint"]


def packed_size(count: int, bits: int) -> int:
    """Bytes taken by ``count`` values of ``bits`` bits each: ``ceil(count*bits/8)``."""
    return (count * bits + 7) // 8


def narrowest_uint(bits: int) -> np.dtype:
    """The narrowest unsigned dtype holding ``bits``-bit values: ``uint8`` up to 8 bits, ..., ``uint64``."""
    for size in (8, 16, 32, 64):
        if bits <= size:
            return np.dtype(f"uint{size}")
    raise InputError(f"bit width must be at most 64, got {bits}")


def _check_bits(bits: int) -> None:
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 64:
        raise InputError(f"bit width must be an integer in 1..64, got {bits!r}")


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack unsigned integers ``< 2**bits`` densely, little-endian bit order, into ``ceil(n*bits/8)`` bytes.

    ``values`` is flattened; raises :class:`InputError` if a value does not fit in ``bits`` bits.
    One compiled pass over the values (:func:`_pack_words`).
    """
    _check_bits(bits)
    v = np.ascontiguousarray(values).reshape(-1)
    if v.dtype != np.uint64:
        if v.dtype.kind not in "ub" and not (v.dtype.kind == "i" and (v.size == 0 or v.min() >= 0)):
            raise InputError(f"pack_bits takes unsigned integers, got dtype {v.dtype}")
        v = v.astype(np.uint64)
    if bits in (8, 16, 32, 64):
        if bits < 64 and v.size and int(v.max()) >> bits:
            raise InputError(f"a value does not fit in {bits} bits (max {int(v.max())})")
        return v.astype(f"<u{bits // 8}").tobytes()
    n = v.size
    words = np.empty(-(-n * bits // 64), dtype=np.uint64)
    if int(_pack_words(v, bits, words)) >> bits:  # the OR of all values, computed in the same pass
        raise InputError(f"a value does not fit in {bits} bits (max {int(v.max())})")
    return words.astype("<u8", copy=False).view(np.uint8)[: packed_size(n, bits)].tobytes()


def unpack_bits(data: bytes | memoryview, bits: int, count: int, *, narrow: bool = False) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` values as a ``uint64`` array, or with ``narrow`` in the
    narrowest unsigned dtype that holds ``bits`` bits (:func:`narrowest_uint`), so that the result takes at
    most 8 × the packed size (1-bit values into ``uint8``) and the decode allocates little more.

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
    dtype = narrowest_uint(bits) if narrow else np.dtype(np.uint64)
    if bits in (8, 16, 32, 64):
        return buf.view(f"<u{bits // 8}").astype(dtype)
    tail = count * bits % 8
    if tail and buf[-1] >> tail:
        raise ProtocolError("non-zero padding bits in bit-packed data")
    raw = np.empty(-(-count * bits // 64) * 8 + 8, dtype=np.uint8)  # one spare word: reads past the end see 0
    raw[:expected] = buf
    raw[expected:] = 0
    out = np.empty(count, dtype=dtype)
    _unpack_words(raw.view("<u8").astype(np.uint64, copy=False), bits, out)
    return out


@kernel()
def _pack_words(v: np.ndarray, bits: int, words: np.ndarray) -> np.uint64:  # pragma: no cover - compiled
    """Write values ``v`` (``bits < 64`` each) at bit ``i·bits`` of ``words`` (little-endian 64-bit words, every
    word written once from a register) and return the OR of all values (the caller's range check: a value
    of more than ``bits`` bits corrupts the words, and the OR shows it)."""
    acc = np.uint64(0)
    seen = np.uint64(0)
    fill = 0
    w = 0
    for i in range(v.shape[0]):
        x = v[i]
        seen |= x
        acc |= x << np.uint64(fill)
        fill += bits
        if fill >= 64:
            words[w] = acc
            w += 1
            fill -= 64
            acc = x >> np.uint64(bits - fill) if fill > 0 else np.uint64(0)
    if fill > 0:
        words[w] = acc
    return seen


@kernel()
def _unpack_words(words: np.ndarray, bits: int, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[i]`` = the ``bits`` bits of ``words`` from bit ``i·bits`` (``bits < 64``; ``words`` padded by a word;
    ``out`` of any unsigned dtype wide enough for ``bits``)."""
    mask = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    pos = 0
    for i in range(out.shape[0]):
        w = pos >> 6
        s = pos & 63
        x = words[w] >> np.uint64(s)
        if s + bits > 64:
            x |= words[w + 1] << np.uint64(64 - s)
        out[i] = x & mask
        pos += bits
