"""Message encoding: msgpack with numpy arrays, and dense bit-packing of b-bit unsigned integers.

Two ext types carry arrays:

* ``EXT_ARRAY`` — a numpy array of a plain numeric dtype: ``dtype-string, shape, raw bytes``.
  Decoding is zero-copy (a read-only view on the received buffer).
* ``EXT_BITS`` — a :class:`Packed` array of unsigned integers below ``2**bits``: its shape, its bit
  width and ``ceil(n*bits/8)`` bytes of little-endian bit-packed values.  A 4-bit share costs half a
  byte on the wire, never a 64-bit word.  Decodes to an array of the original shape in the narrowest
  unsigned dtype that holds the width (``uint8`` up to 8 bits, ... ``uint64``): a decode allocates at most
  8 times the packed size (1-bit values), never 64 times.  Receivers widen what they compute with.

Decoding never executes code: only whitelisted numeric dtypes are accepted and every length is checked
against the shape before anything is allocated; anything malformed raises :class:`ProtocolError`.
``decode(data, max_decoded=n)`` also refuses (:class:`LimitExceeded`, before allocating) a message whose
bit-packed arrays would expand to more than ``n`` bytes.  :func:`expect` checks a decoded array against
the shape and width the receiver expects.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from aiompc.errors import InputError, LimitExceeded, ProtocolError
from aiompc.kernels.bitpack import narrowest_uint, pack_bits, packed_size, unpack_bits

__all__ = ["Packed", "encode", "decode", "expect", "pack_bits", "unpack_bits", "packed_size"]

EXT_ARRAY = 1
EXT_BITS = 2
MAX_NDIM = 8
_ALLOWED_DTYPES = frozenset(
    np.dtype(t).str
    for t in ("bool", "u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f4", "f8",
              "<u2", "<u4", "<u8", "<i2", "<i4", "<i8", "<f4", "<f8")
)


# --------------------------------------------------------------------------- msgpack with arrays


@dataclass(frozen=True)
class Packed:
    """An array of unsigned integers to be sent bit-packed at ``bits`` bits per value."""

    values: np.ndarray
    bits: int


def _shape_header(shape: tuple[int, ...]) -> bytes:
    if len(shape) > MAX_NDIM:
        raise InputError(f"arrays of more than {MAX_NDIM} dimensions are not sent")
    return struct.pack(f"<B{len(shape)}Q", len(shape), *shape)


def _read_shape(data: memoryview, offset: int) -> tuple[tuple[int, ...], int]:
    if len(data) < offset + 1:
        raise ProtocolError("truncated array header")
    ndim = data[offset]
    if ndim > MAX_NDIM:
        raise ProtocolError(f"array header claims {ndim} dimensions (max {MAX_NDIM})")
    end = offset + 1 + 8 * ndim
    if len(data) < end:
        raise ProtocolError("truncated array shape")
    shape = struct.unpack_from(f"<{ndim}Q", data, offset + 1)
    return tuple(shape), end


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
        if n > 1 << 40:
            raise ProtocolError(f"absurd array shape {shape}")
    return n


def _default(obj: Any) -> Any:
    if isinstance(obj, Packed):
        v = np.asarray(obj.values)
        head = struct.pack("<B", obj.bits) + _shape_header(v.shape)
        return msgpack.ExtType(EXT_BITS, head + pack_bits(v, obj.bits))
    if isinstance(obj, np.ndarray):
        dt = obj.dtype.newbyteorder("<") if obj.dtype.byteorder == ">" else obj.dtype
        if dt.str not in _ALLOWED_DTYPES:
            raise InputError(f"cannot send arrays of dtype {obj.dtype}")
        ds = dt.str.encode()
        head = struct.pack("<B", len(ds)) + ds + _shape_header(obj.shape)
        return msgpack.ExtType(EXT_ARRAY, head + np.ascontiguousarray(obj, dtype=dt).tobytes())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    raise InputError(f"cannot encode object of type {type(obj).__name__}")


class _Budget:
    """Bytes that the bit-packed arrays of one message may still expand to."""

    __slots__ = ("left",)

    def __init__(self, left: int | None) -> None:
        self.left = left

    def take(self, nbytes: int) -> None:
        if self.left is None:
            return
        if nbytes > self.left:
            raise LimitExceeded(
                f"message would decode to more than its budget of bytes ({nbytes} more, {self.left} left); "
                "the peer announced arrays larger than this side accepts"
            )
        self.left -= nbytes


def _ext_hook(code: int, data: bytes, budget: _Budget | None = None) -> Any:
    mv = memoryview(data)
    if code == EXT_ARRAY:
        if len(mv) < 1 or len(mv) < 1 + mv[0]:
            raise ProtocolError("truncated array dtype")
        ds = bytes(mv[1 : 1 + mv[0]]).decode("ascii", "replace")
        if ds not in _ALLOWED_DTYPES:
            raise ProtocolError(f"array dtype {ds!r} not allowed")
        shape, off = _read_shape(mv, 1 + mv[0])
        dt = np.dtype(ds)
        if len(mv) - off != _count(shape) * dt.itemsize:
            raise ProtocolError(f"array payload of {len(mv) - off} bytes does not match shape {shape} of {ds}")
        return np.frombuffer(mv[off:], dtype=dt).reshape(shape)
    if code == EXT_BITS:
        if len(mv) < 1:
            raise ProtocolError("truncated packed-bits header")
        bits = mv[0]
        if not 1 <= bits <= 64:
            raise ProtocolError(f"packed-bits width {bits} out of range")
        shape, off = _read_shape(mv, 1)
        count = _count(shape)
        if len(mv) - off != packed_size(count, bits):
            raise ProtocolError(f"bit-packed payload of {len(mv) - off} bytes does not match shape {shape} at {bits} bits")
        if budget is not None:
            budget.take(narrowest_uint(bits).itemsize * count)
        return unpack_bits(mv[off:], bits, count, narrow=True).reshape(shape)
    raise ProtocolError(f"unknown msgpack ext type {code}")


def expect(value: Any, shape: tuple[int, ...] | int, bits: int, what: str) -> np.ndarray:
    """``value`` if it is an unsigned-integer array of ``shape`` (or that many elements) whose values fit
    ``bits`` bits — what the receiver expects of a peer's :class:`Packed` message; :class:`ProtocolError`
    naming ``what`` otherwise."""
    if not isinstance(value, np.ndarray) or value.dtype.kind != "u":
        raise ProtocolError(f"{what}: expected an array of unsigned integers, got {type(value).__name__}")
    ok = value.size == shape if isinstance(shape, int) else value.shape == tuple(shape)
    if not ok:
        raise ProtocolError(f"{what}: expected {shape} values, got an array of shape {value.shape}")
    if value.dtype.itemsize * 8 > bits and value.size and int(value.max()) >> bits:
        raise ProtocolError(f"{what}: a value exceeds {bits} bits")
    return value


def encode(obj: Any) -> bytes:
    """Serialize ``obj`` (msgpack types, numpy arrays, :class:`Packed`) to bytes."""
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def decode(data: bytes | memoryview, *, max_decoded: int | None = None) -> Any:
    """Deserialize untrusted bytes; raises :class:`ProtocolError` on anything malformed, and
    :class:`LimitExceeded` if bit-packed arrays would expand past ``max_decoded`` bytes."""
    budget = _Budget(max_decoded)
    try:
        return msgpack.unpackb(data, ext_hook=lambda code, d: _ext_hook(code, d, budget), raw=False,
                               strict_map_key=True)
    except ProtocolError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, msgpack.ExtraData, RecursionError) as exc:
        raise ProtocolError(f"malformed message: {exc}") from None
