import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiompc.crypto.bitmatrix import SLICE_WORDS, transpose, transpose_8x8
from aiompc.errors import InputError


def naive_transpose(m: np.ndarray) -> np.ndarray:
    """Reference: unpack to one byte per bit, transpose, pack again."""
    bits = np.unpackbits(m, axis=1, bitorder="little")
    return np.packbits(np.ascontiguousarray(bits.T), axis=1, bitorder="little")


@pytest.mark.parametrize(
    "rows,cols",
    [(8, 8), (128, 8), (128, 1024), (128, 1016), (16, 24), (64, 4096), (256, 128), (128, 64 * (2 * SLICE_WORDS + 3))],
)
def test_transpose_matches_naive_reference(nprng: np.random.Generator, rows: int, cols: int) -> None:
    m = nprng.integers(0, 256, (rows, cols // 8), dtype=np.uint8)
    out = transpose(m)
    assert out.shape == (cols, rows // 8) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, naive_transpose(m))
    np.testing.assert_array_equal(transpose(out), m)  # an involution


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_transpose_random_shapes(groups: int, cbytes: int, seed: int) -> None:
    m = np.random.default_rng(seed).integers(0, 256, (8 * groups, cbytes), dtype=np.uint8)
    np.testing.assert_array_equal(transpose(m), naive_transpose(m))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_transpose_64_path_random_shapes_and_strided_input(blocks: int, cwords: int, seed: int) -> None:
    big = np.random.default_rng(seed).integers(0, 256, (64 * blocks, 8 * cwords + 24), dtype=np.uint8)
    for m in (big[:, : 8 * cwords], big[:, 16 : 16 + 8 * cwords], big[:, 3 : 3 + 8 * cwords]):
        np.testing.assert_array_equal(transpose(m), naive_transpose(m))


def test_single_bits_land_where_they_should() -> None:
    for i, j in [(0, 0), (0, 127), (127, 0), (5, 77), (127, 1023), (64, 512)]:
        m = np.zeros((128, 128), dtype=np.uint8)  # 128 x 1024 bits
        m[i, j // 8] = 1 << (j % 8)
        out = transpose(m)
        assert out.sum() == 1 << (i % 8) and out[j, i // 8] == 1 << (i % 8)


def test_transpose_8x8_on_words() -> None:
    rng = np.random.default_rng(3)
    w = rng.integers(0, 2**63, 200, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 200, dtype=np.uint64)
    t = transpose_8x8(w.copy())
    for x, y in zip(w[:20], t[:20]):
        a = [[(int(x) >> (8 * p + q)) & 1 for q in range(8)] for p in range(8)]
        b = [[(int(y) >> (8 * p + q)) & 1 for q in range(8)] for p in range(8)]
        assert b == [list(r) for r in zip(*a)]
    np.testing.assert_array_equal(transpose_8x8(t), w)


def test_transpose_rejects_bad_input() -> None:
    with pytest.raises(InputError):
        transpose(np.zeros((12, 4), dtype=np.uint8))
    with pytest.raises(InputError):
        transpose(np.zeros((8, 4), dtype=np.uint16))
    assert transpose(np.zeros((8, 0), dtype=np.uint8)).shape == (0, 1)


def test_transpose_leaves_its_input_alone(nprng: np.random.Generator) -> None:
    for cbytes in (1, 2, 16):
        m = nprng.integers(0, 256, (128, cbytes), dtype=np.uint8)
        before = m.copy()
        transpose(m)
        np.testing.assert_array_equal(m, before)
