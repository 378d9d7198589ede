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
``decode(data, max_decoded=n)`` also refuses (:class:`LimitExceeded`) a message whose decoded value would
hold more than ``n`` bytes: arrays (bit-packed ones before they are allocated) and msgpack containers are
charged (see :func:`decode`).  :func:`expect` checks a decoded array against
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

__all__ = ["Packed", "encode", "decode", "expect", "pack_bits", "unpack_bits", "packed_size", "container_cap",
           "CONTAINER_COST", "ARRAY_COST", "MSGPACK_DEPTH"]

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


CONTAINER_COST = 96
"""Bytes a decode budget charges for each msgpack array or map and for each of its elements (a map entry
counts twice: key and value): covers what the decoded Python objects hold beyond the message's own bytes
(measured: an empty list 64 B for 1 byte of message, an empty map 72 B, a 1-character non-Latin string
84 B for 4 bytes)."""

ARRAY_COST = 1024
"""Bytes a decode budget charges for each decoded numpy array beside its data (measured: 200-760 B of
objects and views per array)."""

MSGPACK_DEPTH = 1024
"""msgpack's own limit on nested containers (deeper is a ``StackError``: :class:`ProtocolError`)."""

_CAP_FLOOR = 24 << 20


def container_cap(max_decoded: int) -> int:
    """Elements one msgpack array may announce under a decode budget of ``max_decoded`` bytes (a map: half
    as many entries): ``max(max_decoded, 24 MiB) // (CONTAINER_COST · MSGPACK_DEPTH)``, at least 256.

    Elements are charged when their container completes; with this cap, the elements of all the
    containers still open at once (at most :data:`MSGPACK_DEPTH` nested) hold less than
    ``max(max_decoded, 24 MiB)`` bytes beyond their payload, so the peak while decoding stays below twice
    that plus the message length.  Honest messages hold lists of at most a few dozen elements."""
    return max(max_decoded, _CAP_FLOOR) // (CONTAINER_COST * MSGPACK_DEPTH)


class _Budget:
    """Bytes that one message's decoded value may still hold: arrays (their data plus :data:`ARRAY_COST`)
    and msgpack containers (:data:`CONTAINER_COST` per container and per element).  A container is
    charged when msgpack completes it (``list_hook`` / ``object_hook``)."""

    __slots__ = ("left", "limit")

    def __init__(self, left: int) -> None:
        self.left = left
        self.limit = left

    def take(self, nbytes: int) -> None:
        if nbytes > self.left:
            raise LimitExceeded(
                f"message would decode to more than its budget of {self.limit} bytes ({nbytes} more, {self.left} "
                "left): the peer sent larger arrays or more msgpack containers than this side accepts (raise "
                "Limits.max_decoded_bytes if such messages are expected)"
            )
        self.left -= nbytes

    def ext_hook(self, code: int, data: bytes) -> Any:
        return _ext_hook(code, data, self)

    def list_hook(self, value: list) -> list:
        self.take(CONTAINER_COST * (1 + len(value)))
        return value

    def object_hook(self, value: dict) -> dict:
        self.take(CONTAINER_COST * (1 + 2 * len(value)))
        return value


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
        if budget is not None:
            budget.take(ARRAY_COST + len(mv) - off)  # a view on msgpack's copy of the payload
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
            budget.take(ARRAY_COST + narrowest_uint(bits).itemsize * count)
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
    """Deserialize untrusted bytes; raises :class:`ProtocolError` on anything malformed.

    With ``max_decoded``, raises :class:`LimitExceeded` once the decoded value would hold more than
    ``max_decoded`` bytes, counting every array's data (a bit-packed one in the narrowest dtype; refused
    before it is allocated) plus :data:`ARRAY_COST`, and :data:`CONTAINER_COST` per msgpack array/map and
    per element, key and value (charged as each container completes), or once one array or map announces
    more elements than :func:`container_cap` allows.  Not charged: the payload of strings and binaries
    (at most the message's own length) and a scalar outside any container.  So the decoded value holds at
    most ``max_decoded`` plus the message length, and the peak while decoding stays below
    ``2·max(max_decoded, 24 MiB)`` plus the message length (:func:`container_cap`).  Cost of the
    accounting: one Python call per container and per array, nothing per array element."""
    try:
        if max_decoded is None:
            return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=True)
        budget = _Budget(max_decoded)
        cap = min(container_cap(max_decoded), len(data))  # (unpackb's own default: the message length)
        return msgpack.unpackb(data, ext_hook=budget.ext_hook, list_hook=budget.list_hook,
                               object_hook=budget.object_hook, max_array_len=cap, max_map_len=cap // 2, raw=False,
                               strict_map_key=True)
    except ProtocolError:
        raise
    except ValueError as exc:
        if max_decoded is not None and container_cap(max_decoded) < len(data) and "exceeds max_" in str(exc):
            # msgpack's "N exceeds max_array_len(M)", M set by the budget (not by the message length)
            raise LimitExceeded(
                f"a msgpack container in the message is longer than a decode budget of {max_decoded} bytes allows "
                f"({exc}; the cap is max(budget, 24 MiB) // {CONTAINER_COST * MSGPACK_DEPTH} elements): raise "
                "Limits.max_decoded_bytes if such messages are expected") from None
        raise ProtocolError(f"malformed message: {exc}") from None
    except (TypeError, msgpack.UnpackException, msgpack.ExtraData, RecursionError) as exc:
        raise ProtocolError(f"malformed message: {exc}") from None
