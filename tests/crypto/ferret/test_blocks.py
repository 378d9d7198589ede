import numpy as np

from aiompc.crypto.ferret.blocks import FixedKeyAES, blocks_from_bytes, lsb, public_key, tccr_hash
from ferret_reference import aes_block, from_bytes, random_blocks, to_bytes, xor_bytes


def test_fixed_key_aes_matches_blockwise_reference_across_chunk_boundaries(nprng) -> None:
    key = public_key("test")
    x = random_blocks(nprng, (1 << 14) + 3)  # more than one internal chunk
    aes = FixedKeyAES(key)
    enc = aes.encrypt(x)
    for i in (0, 1, (1 << 14) - 1, 1 << 14, (1 << 14) + 2):
        assert to_bytes(enc[i]) == aes_block(key, to_bytes(x[i]))
    out = np.zeros((x.shape[0], 2, 2), np.uint64)
    aes.xor_encrypt_into(x, out[:, 1, :])  # strided destination
    assert np.array_equal(out[:, 1, :], enc ^ x)
    assert not out[:, 0, :].any()


def test_tccr_hash_matches_formula_and_depends_on_tweak(nprng) -> None:
    x = random_blocks(nprng, 50)
    tw = random_blocks(nprng, 50)
    got = tccr_hash(x, tw)
    key = public_key("tccr")
    for i in range(50):
        px = aes_block(key, to_bytes(x[i]))
        want = xor_bytes(aes_block(key, xor_bytes(px, to_bytes(tw[i]))), px)
        assert np.array_equal(got[i], from_bytes(want))
    tw2 = tw.copy()
    tw2[:, 0] ^= np.uint64(1)
    assert not (tccr_hash(x, tw2) == got).all(axis=1).any()


def test_block_helpers() -> None:
    data = bytes(range(32))
    b = blocks_from_bytes(data)
    assert b.shape == (2, 2) and b.tobytes() == data
    assert list(lsb(np.array([[1, 0], [2, 1], [3, 7]], np.uint64))) == [1, 0, 1]
