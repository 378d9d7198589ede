import numpy as np
import pytest

from aiompc.crypto.ferret.lpn import LocalLinearCode
from aiompc.errors import InputError
from ferret_reference import random_blocks, ref_lpn_indices


def _naive_encode(table: np.ndarray, e: np.ndarray, rows: list[list[int]]) -> np.ndarray:
    out = e.copy()
    for i, cols in enumerate(rows):
        for c in cols:
            out[i] ^= table[c]
    return out


@pytest.mark.parametrize("k,d,n", [(1, 1, 5), (37, 10, 300), (1000, 10, 777), (5, 3, 64)])
def test_encoder_matches_naive_reference(nprng, k: int, d: int, n: int) -> None:
    seed = nprng.bytes(16)
    code = LocalLinearCode(seed, k, d)
    rows = ref_lpn_indices(seed, k, d, n)
    assert code.indices(0, n).tolist() == rows
    table = random_blocks(nprng, k)
    e = random_blocks(nprng, n)
    out = e.copy()
    code.encode_into(table, out, chunk_rows=64)
    assert np.array_equal(out, _naive_encode(table, e, rows))


def test_indices_cover_the_range_and_are_near_uniform() -> None:
    k = 64
    idx = LocalLinearCode(bytes(16), k, 10).indices(0, 20_000).ravel()
    assert idx.min() == 0 and idx.max() == k - 1
    counts = np.bincount(idx, minlength=k)
    expected = idx.size / k  # 3125; 6 sigma ≈ 335
    assert np.abs(counts - expected).max() < 6 * np.sqrt(expected)


def test_chunking_and_offsets_compose(nprng) -> None:
    k, d, n = 300, 10, 1001
    code = LocalLinearCode(nprng.bytes(16), k, d)
    table = random_blocks(nprng, k)
    e = random_blocks(nprng, n)
    whole = e.copy()
    code.encode_into(table, whole)
    for chunk in (1, 3, 64, 5000):
        out = e.copy()
        code.encode_into(table, out, chunk_rows=chunk)
        assert np.array_equal(out, whole)
    for chunk, parts in ((64, 2), (13, 3), (1, 7), (5000, 4), (100, 2000)):  # row ranges in parallel threads
        out = e.copy()
        code.encode_into(table, out, chunk_rows=chunk, parts=parts)
        assert np.array_equal(out, whole)
    # any split point, including ones not aligned to AES blocks, gives the same rows
    for split in (1, 2, 3, 7, 500):
        a, b = e[:split].copy(), e[split:].copy()
        code.encode_into(table, a)
        code.encode_into(table, b, start_row=split, chunk_rows=13)
        assert np.array_equal(np.concatenate([a, b]), whole)
    assert np.array_equal(code.indices(501, 7), code.indices(0, 600)[501:508])


def test_encoder_is_linear(nprng) -> None:
    """A(u1 ⊕ u2) = A·u1 ⊕ A·u2: what keeps the COT correlation through the LPN step."""
    k, n = 200, 500
    code = LocalLinearCode(nprng.bytes(16), k, 10)
    u1, u2 = random_blocks(nprng, k), random_blocks(nprng, k)
    z = np.zeros((n, 2), np.uint64)
    y1, y2, y12 = z.copy(), z.copy(), z.copy()
    code.encode_into(u1, y1)
    code.encode_into(u2, y2)
    code.encode_into(u1 ^ u2, y12)
    assert np.array_equal(y12, y1 ^ y2)
    assert y1.any()


def test_bad_inputs_raise(nprng) -> None:
    with pytest.raises(InputError):
        LocalLinearCode(b"short", 10, 10)
    with pytest.raises(InputError):
        LocalLinearCode(bytes(16), 0, 10)
    code = LocalLinearCode(bytes(16), 10, 3)
    with pytest.raises(InputError):
        code.encode_into(random_blocks(nprng, 9), np.zeros((4, 2), np.uint64))
    with pytest.raises(InputError):
        code.encode_into(random_blocks(nprng, 10), np.zeros((4, 3), np.uint64))
