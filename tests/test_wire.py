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
    wire.decode(data)  # compile (or load) the unpack kernel first: a cold numba cache is not the decoder's memory
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


# --------------------------------------------------------------------------- the decode budget and containers

def _list_of(n: int, element: bytes) -> bytes:
    """A msgpack array (array32 header) of ``n`` copies of the encoded ``element``."""
    import struct

    return b"\xdd" + struct.pack(">I", n) + element * n


def _ext(code: int, body: bytes) -> bytes:
    import msgpack

    return msgpack.packb(msgpack.ExtType(code, body))


# Elements whose decoded Python objects hold far more than their encoded bytes (measured: an empty list
# 64 B for 1 byte, an empty map 72 B, a 3-byte string 59 B, a decoded array 200-760 B for 6-72 bytes).
_BLOATED = {
    "empty list": b"\x90",
    "empty map": b"\x80",
    "map {a: []}": b"\x81\xa1a\x90",
    "2-char string": b"\xa2ab",
    "1-char non-latin string": b"\xa3" + "中".encode(),
    "int16": b"\xd1\xfe\xd4",
    "float": b"\xcb" + bytes(8),
    "2-byte bin": b"\xc4\x02ab",
    "0-d bit-packed array": _ext(2, b"\x01\x00\x01"),
    "empty plain array": _ext(1, b"\x03|u1\x01" + bytes(8)),
    "empty 8-d plain array": _ext(1, b"\x03|u1\x08" + bytes(64)),
    "empty 8-d bit-packed array": _ext(2, b"\x01\x08" + bytes(64)),
}


def test_the_reviewers_container_bomb_is_refused() -> None:
    """2^20 empty lists in 1 MiB would hold 64 MiB; an 8 MiB budget refuses them (typed, actionable)."""
    from aiompc.errors import LimitExceeded

    with pytest.raises(LimitExceeded, match="max_decoded_bytes"):
        wire.decode(_list_of(1 << 20, b"\x90"), max_decoded=8 << 20)


@pytest.mark.parametrize("kind", sorted(_BLOATED))
def test_the_decode_budget_covers_what_the_decoded_value_holds(kind: str) -> None:
    """Whatever a message decodes to holds at most its budget plus the message's own length: decoding with
    a budget just below (what it holds − its length) is refused with LimitExceeded, by the charges (the
    lists stay within the per-container cap); and a refused decode peaks below the budget (plus the
    message length and the cap's floor)."""
    import tracemalloc

    from aiompc.errors import LimitExceeded

    element = _BLOATED[kind]
    data = _list_of(128, _list_of(128, element))
    wire.decode(_list_of(1, element))  # warm up (compiled kernels)
    tracemalloc.start()
    try:
        value = wire.decode(data)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del value
    budget = held - len(data) - 1
    assert 128 <= wire.container_cap(budget) and budget > 0
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceeded, match="budget"):
            wire.decode(data, max_decoded=budget)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 2 * max(budget, 24 << 20) + len(data), (peak, budget, len(data))
    assert wire.decode(data, max_decoded=6 * held) is not None  # charges: at most 5x what the tiniest elements hold


def test_containers_left_open_peak_below_twice_the_budget() -> None:
    """The elements of containers still open are charged only when they complete; the per-container cap
    bounds them: 1023 nested lists, each as long as the cap allows and full of 1-character strings that
    hold 84 bytes per 3 message bytes, never closed (a truncated message) peak below twice the budget.
    Without the cap one such list of 2^20 strings would hold 84 MiB before anything is charged."""
    import struct
    import tracemalloc

    from aiompc.errors import LimitExceeded

    budget = 8 << 20
    cap = wire.container_cap(budget)
    s = b"\xa2" + "Ā".encode()
    level = b"\xdd" + struct.pack(">I", cap) + s * (cap - 1)  # the last element is the next level
    wire.decode(_list_of(1, s))
    for data, error in ((level * (wire.MSGPACK_DEPTH - 1), ProtocolError),  # truncated: never completes
                        (_list_of(1 << 20, s)[:-3], LimitExceeded)):  # refused at its header
        tracemalloc.start()
        try:
            with pytest.raises(error):
                wire.decode(data, max_decoded=budget)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= 2 * max(budget, 24 << 20) + len(data), (peak, len(data))


def test_msgpack_refuses_deeper_nesting_than_the_cap_assumes() -> None:
    """container_cap's bound relies on msgpack's limit of MSGPACK_DEPTH nested containers."""
    assert wire.decode(b"\x91" * (wire.MSGPACK_DEPTH - 1) + b"\x90") is not None
    with pytest.raises(ProtocolError):
        wire.decode(b"\x91" * wire.MSGPACK_DEPTH + b"\x90")


def test_small_messages_with_containers_decode_within_a_small_budget() -> None:
    msg = {"proto": "aiompc", "version": 1, "options": {"mode": "quantized", "exact": True}, "n": [1, 2, 3]}
    assert wire.decode(wire.encode(msg), max_decoded=4096) == msg
