import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiompc import wire
from aiompc.errors import ProtocolError


def test_encode_decode_arrays_and_packed() -> None:
    msg = {
        "a": np.arange(12, dtype=np.uint64).reshape(3, 4),
        "f": np.linspace(0, 1, 5),
        "i": np.array([-1, 2], dtype=np.int8),
        "p": wire.Packed(np.arange(10, dtype=np.uint64).reshape(2, 5) % 8, 3),
        "s": "text",
        "n": [1, 2, np.int64(3)],
    }
    out = wire.decode(wire.encode(msg))
    assert np.array_equal(out["a"], msg["a"]) and out["a"].dtype == np.uint64
    assert np.array_equal(out["f"], msg["f"])
    assert np.array_equal(out["i"], msg["i"])
    assert np.array_equal(out["p"], msg["p"].values) and out["p"].shape == (2, 5)
    assert out["s"] == "text" and out["n"] == [1, 2, 3]


def test_packed_is_smaller() -> None:
    v = np.arange(1000, dtype=np.uint64) % 16
    assert len(wire.encode(wire.Packed(v, 4))) < 520
    assert len(wire.encode(v)) > 8000


def test_decode_rejects_object_dtype_and_bad_shapes() -> None:
    import msgpack

    for payload in (
        b"\x03|O8\x01" + (1).to_bytes(8, "little") + b"x" * 8,  # object dtype
        b"\x03<u8\x01" + (3).to_bytes(8, "little") + b"x" * 8,  # shape says 24 bytes
        b"\x03<u8\x01" + (1 << 62).to_bytes(8, "little"),  # absurd shape
        b"\x03<u8\x09",  # too many dims
    ):
        with pytest.raises(ProtocolError):
            wire.decode(msgpack.packb(msgpack.ExtType(1, payload)))
    with pytest.raises(ProtocolError):
        wire.decode(msgpack.packb(msgpack.ExtType(99, b"")))
    with pytest.raises(ProtocolError):
        wire.decode(b"\xc1garbage")
    with pytest.raises(ProtocolError):
        wire.decode(b"\x92\x01")  # truncated array


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_decode_garbage_never_crashes(data: bytes) -> None:
    try:
        wire.decode(data)
    except ProtocolError:
        pass
