import numpy as np
from aiompc.errors import InputError
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import pytest

from aiompc.crypto.hashing import (
    FIXED_KEY,
    HashScratch,
    aes_fixed,
    blocks_from_bytes,
    blocks_to_bytes,
    derive_key,
    tccr,
    tccr_expand,
)


def aes_ref(block: bytes) -> bytes:
    return Cipher(algorithms.AES(FIXED_KEY), modes.ECB()).encryptor().update(block)


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def block(lo: int, hi: int) -> bytes:
    return lo.to_bytes(8, "little") + hi.to_bytes(8, "little")


def test_aes_fixed_matches_cryptography(nprng: np.random.Generator) -> None:
    x = nprng.integers(0, 2**64 - 1, (7, 3, 2), dtype=np.uint64)
    y = aes_fixed(x)
    assert y.shape == x.shape and y.dtype == np.uint64
    for xb, yb in zip(blocks_to_bytes(x.reshape(-1, 2)), blocks_to_bytes(y.reshape(-1, 2))):
        assert yb.tobytes() == aes_ref(xb.tobytes())


def test_tccr_formula_against_byte_reference(nprng: np.random.Generator) -> None:
    x = nprng.integers(0, 2**64 - 1, (20, 2), dtype=np.uint64)
    idx = nprng.integers(0, 2**64 - 1, 20, dtype=np.uint64)
    out = tccr_expand(x, idx, 3)
    first = nprng.integers(0, 100, 20)
    shifted = tccr_expand(x, idx, 2, first=first)
    for i in range(20):
        xb = blocks_to_bytes(x[i : i + 1]).tobytes()
        px = aes_ref(xb)
        for j in range(3):
            ref = xor(aes_ref(xor(px, block(int(idx[i]), j))), px)
            assert blocks_to_bytes(out[i, j : j + 1]).tobytes() == ref
        for j in range(2):
            ref = xor(aes_ref(xor(px, block(int(idx[i]), int(first[i]) + j))), px)
            assert blocks_to_bytes(shifted[i, j : j + 1]).tobytes() == ref
    tw = np.stack([idx, np.ones(20, dtype=np.uint64)], axis=1)
    np.testing.assert_array_equal(tccr(x, tw), out[:, 1])


def test_tccr_separates_tweaks_and_correlated_inputs(nprng: np.random.Generator) -> None:
    x = nprng.integers(0, 2**64 - 1, (1000, 2), dtype=np.uint64)
    delta = nprng.integers(0, 2**64 - 1, 2, dtype=np.uint64)
    idx = np.arange(1000, dtype=np.uint64)
    h0, h1 = tccr_expand(x, idx, 1), tccr_expand(x ^ delta, idx, 1)
    assert not (h0 == h1).all(axis=-1).any()
    assert not (tccr_expand(x, idx + np.uint64(1), 1) == h0).all(axis=-1).any()
    assert not ((h0 ^ h1) == (h0[0] ^ h1[0])).all(axis=-1)[1:].any()  # the XOR correlation does not survive


def test_block_byte_round_trip(nprng: np.random.Generator) -> None:
    raw = nprng.integers(0, 256, (9, 16), dtype=np.uint8)
    b = blocks_from_bytes(raw)
    assert b.shape == (9, 2) and int(b[0, 0]) == int.from_bytes(raw[0, :8].tobytes(), "little")
    np.testing.assert_array_equal(blocks_to_bytes(b), raw)


def test_derive_key_is_length_prefixed_and_domain_separated() -> None:
    assert derive_key(b"d", b"ab", b"c") != derive_key(b"d", b"a", b"bc")
    assert derive_key(b"d", b"x") != derive_key(b"e", b"x")
    assert len(derive_key(b"d", b"x")) == 16 and len(derive_key(b"d", b"x", size=32)) == 32
    assert derive_key(b"d", b"x") == derive_key(b"d", b"x")


def test_scratch_buffers_give_the_same_hash_and_are_reused(nprng: np.random.Generator) -> None:
    scratch = HashScratch()
    for n, nb in [(20, 3), (5, 2), (40, 4), (1, 1)]:  # grows, then shrinks into the same buffers
        x = nprng.integers(0, 2**64 - 1, (n, 2), dtype=np.uint64, endpoint=True)
        idx = nprng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
        first = nprng.integers(0, 100, n)
        want = tccr_expand(x, idx, nb, first=first)
        got = tccr_expand(x, idx, nb, first=first, scratch=scratch)
        np.testing.assert_array_equal(got, want)
        assert np.shares_memory(got, scratch.output)
    x = nprng.integers(0, 2**64 - 1, (6, 2), dtype=np.uint64)
    buf = np.zeros(6 * 16 + 16, np.uint8)
    np.testing.assert_array_equal(aes_fixed(x, buf), aes_fixed(x))


def test_aes_fixed_rejects_a_short_or_mistyped_buffer(nprng: np.random.Generator) -> None:
    x = nprng.integers(0, 2**64 - 1, (6, 2), dtype=np.uint64)
    with pytest.raises(InputError):
        aes_fixed(x, np.zeros(6 * 16, np.uint8))  # no spare block
    with pytest.raises(InputError):
        aes_fixed(x, np.zeros(6 * 2 + 2, np.uint64))
