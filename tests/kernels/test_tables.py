"""The look-up tables kernel (aiompc.kernels.tables) against a plain reference: Python integers, entry by entry."""

import numpy as np
import pytest

from aiompc.kernels.tables import rotate_tables

ONES = (1 << 64) - 1


def reference(table: list[int], x: list[int], r: list[int], bits: int) -> list[list[int]]:
    """By definition: row i is the table rotated left by x[i], minus r[i], mod 2^bits."""
    n = len(table)
    return [[(table[(j + xi) % n] - ri) % (1 << bits) for j in range(n)] for xi, ri in zip(x, r)]


@pytest.mark.parametrize("k,bits", [(1, 1), (2, 5), (4, 16), (7, 37), (8, 8), (8, 64)])
def test_rotate_tables_equals_reference(k: int, bits: int) -> None:
    rng = np.random.default_rng(k * 100 + bits)
    size, top = 1 << k, (1 << bits) - 1
    table = rng.integers(0, top, size, dtype=np.uint64, endpoint=True)
    table[0], table[-1] = top, 0  # edge entries
    x = rng.integers(0, size, 50, dtype=np.uint64)
    x[:2] = [0, size - 1]  # no rotation, the largest
    r = rng.integers(0, top, 50, dtype=np.uint64, endpoint=True)
    r[:3] = [0, top, 1]
    out = np.empty((50, size), np.uint64)
    rotate_tables(table, x, r, np.uint64(top), out)
    want = reference([int(v) for v in table], [int(v) for v in x], [int(v) for v in r], bits)
    assert out.tolist() == want


def test_rotate_tables_reduces_the_share_and_handles_no_rows() -> None:
    table = np.arange(8, dtype=np.uint64)
    out = np.empty((1, 8), np.uint64)
    rotate_tables(table, np.array([8 + 3], np.uint64), np.array([0], np.uint64), np.uint64(ONES), out)
    assert out[0].tolist() == [3, 4, 5, 6, 7, 0, 1, 2]
    empty = np.empty((0, 8), np.uint64)
    rotate_tables(table, np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.uint64(255), empty)
    assert empty.shape == (0, 8)
