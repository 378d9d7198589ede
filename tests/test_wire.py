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


@pytest.mark.parametrize(("bits", "dtype"), [(1, np.uint8), (5, np.uint8), (8, np.uint8), (9, np.uint16),
                                             (16, np.uint16), (31, np.uint32), (33, np.uint64), (64, np.uint64)])
def test_bit_packed_arrays_decode_to_the_narrowest_dtype(bits: int, dtype: type) -> None:
    import tracemalloc

    rng = np.random.default_rng(bits)
    v = rng.integers(0, 1 << min(bits, 63), 50_000, dtype=np.uint64)
    data = wire.encode(wire.Packed(v, bits))
    tracemalloc.start()
    out = wire.decode(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.dtype == dtype and np.array_equal(out, v)
    # the result plus copies of the payload (msgpack's ext bytes, the padded word buffer): nothing 64x
    assert out.nbytes <= 8 * len(data)
    assert peak <= out.nbytes + 4 * len(data) + 64 * 1024 <= 12 * len(data) + 64 * 1024


def test_expect_checks_count_shape_and_width() -> None:
    from aiompc.errors import ProtocolError

    a = wire.decode(wire.encode(wire.Packed(np.arange(6, dtype=np.uint64), 3)))
    assert wire.expect(a, 6, 3, "x") is a and wire.expect(a, (6,), 3, "x") is a
    for args in [(7, 3), ((2, 3), 3), (6, 2)]:
        with pytest.raises(ProtocolError, match="x"):
            wire.expect(a, *args, "x")
    with pytest.raises(ProtocolError):
        wire.expect([1, 2], 2, 3, "x")
