"""Bit packing against a plain reference: Python integers, bit by bit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiompc.errors import InputError, ProtocolError
from aiompc.kernels import bitpack


def reference_pack(values: list[int], bits: int) -> bytes:
    """The format by definition: value i occupies bits i*b .. i*b+b-1 of one little-endian integer."""
    acc = 0
    for i, v in enumerate(values):
        acc |= v << (i * bits)
    return acc.to_bytes((len(values) * bits + 7) // 8, "little")


@settings(max_examples=100, deadline=None)
@given(bits=st.integers(1, 64), data=st.data())
def test_pack_equals_reference(bits: int, data: st.DataObject) -> None:
    vals = data.draw(st.lists(st.integers(0, (1 << bits) - 1), max_size=200))
    assert bitpack.pack_bits(np.array(vals, dtype=np.uint64), bits) == reference_pack(vals, bits)


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(1, 64), data=st.data())
def test_pack_roundtrip(bits: int, data: st.DataObject) -> None:
    vals = data.draw(st.lists(st.integers(0, (1 << bits) - 1), max_size=300))
    arr = np.array(vals, dtype=np.uint64)
    packed = bitpack.pack_bits(arr, bits)
    assert len(packed) == bitpack.packed_size(len(vals), bits)
    assert np.array_equal(bitpack.unpack_bits(packed, bits, len(vals)), arr)


@pytest.mark.parametrize("bits", [1, 3, 4, 13, 37, 63, 64])
def test_pack_extremes(bits: int) -> None:
    top = (1 << bits) - 1
    arr = np.array([0, top, 1, top - 1, 0, top] * 23, dtype=np.uint64)
    assert np.array_equal(bitpack.unpack_bits(bitpack.pack_bits(arr, bits), bits, arr.size), arr)


def test_pack_rejects_wide_values() -> None:
    with pytest.raises(InputError):
        bitpack.pack_bits(np.array([16], dtype=np.uint64), 4)
    with pytest.raises(InputError):
        bitpack.pack_bits(np.array([1]), 0)


def test_unpack_rejects_bad_lengths_and_padding() -> None:
    good = bitpack.pack_bits(np.array([5, 6, 7], dtype=np.uint64), 3)  # 9 bits -> 2 bytes
    with pytest.raises(ProtocolError):
        bitpack.unpack_bits(good[:1], 3, 3)
    with pytest.raises(ProtocolError):
        bitpack.unpack_bits(good + b"\0", 3, 3)
    with pytest.raises(ProtocolError):
        bitpack.unpack_bits(bytes([good[0], good[1] | 0x80]), 3, 3)
