import numpy as np

from aiompc.crypto.ferret.blocks import FixedKeyAES, lsb, public_key
from ferret_reference import aes_block, random_blocks, to_bytes


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


def test_lsb_is_bit_zero_of_the_low_word() -> None:
    assert list(lsb(np.array([[1, 0], [2, 1], [3, 7]], np.uint64))) == [1, 0, 1]
