"""The GGM level kernels against a plain numpy reference, on random and edge blocks (zeros, all ones)."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.kernels.ggm import ggm_level, ggm_level_punctured

ONES = np.iinfo(np.uint64).max


def _blocks(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    if kind == "zeros":
        return np.zeros((n, 2), np.uint64)
    if kind == "ones":
        return np.full((n, 2), ONES, np.uint64)
    return rng.integers(0, ONES, (n, 2), dtype=np.uint64, endpoint=True)


def _reference(parents, enc_left, enc_right, width, clear_lsb):
    """children interleaved (left, right) per parent and per-tree side sums, with numpy."""
    left, right = enc_left ^ parents, enc_right ^ parents
    if clear_lsb:
        left[:, 0] &= np.uint64(ONES - 1)
        right[:, 0] &= np.uint64(ONES - 1)
    children = np.stack([left, right], axis=1).reshape(-1, 2)
    m = parents.shape[0] // width
    sums = np.stack([np.bitwise_xor.reduce(x.reshape(m, width, 2), axis=1) for x in (left, right)])
    return children, sums


@pytest.mark.parametrize("kind", ["random", "zeros", "ones"])
@pytest.mark.parametrize("m,width", [(1, 1), (3, 4), (5, 64)])
@pytest.mark.parametrize("clear_lsb", [False, True])
def test_level_matches_numpy(kind: str, m: int, width: int, clear_lsb: bool) -> None:
    rng = np.random.default_rng(m * width)
    parents, el, er = (_blocks(rng, m * width, kind) for _ in range(3))
    children = np.empty((2 * m * width, 2), np.uint64)
    sums = np.empty((2, m, 2), np.uint64)
    ggm_level(parents, el, er, children, sums, width, clear_lsb)
    want_children, want_sums = _reference(parents, el.copy(), er.copy(), width, clear_lsb)
    assert np.array_equal(children, want_children) and np.array_equal(sums, want_sums)


@pytest.mark.parametrize("kind", ["random", "ones"])
@pytest.mark.parametrize("m,width", [(1, 1), (4, 8), (6, 32)])
def test_punctured_level_matches_numpy(kind: str, m: int, width: int) -> None:
    rng = np.random.default_rng(7 * m + width)
    parents, el, er = (_blocks(rng, m * width, kind) for _ in range(3))
    path = rng.integers(0, width, m)
    path[0] = width - 1  # the edge parents
    path[-1] = 0
    on_side = rng.integers(0, 2, m)
    received = _blocks(rng, m, "random")
    children = np.empty((2 * m * width, 2), np.uint64)
    sums = np.empty((2, m, 2), np.uint64)
    ggm_level_punctured(parents, el, er, children, sums, width, True, path, on_side, received)
    # reference: compute every child, zero the path node's children, fill the off-path one from the sums
    want, _ = _reference(parents, el.copy(), er.copy(), width, True)
    want = want.reshape(m, width, 2, 2)
    rows = np.arange(m)
    want[rows, path] = 0
    known = np.bitwise_xor.reduce(want, axis=1)  # (m, side, 2)
    off = 1 - on_side
    want[rows, path, off] = received ^ known[rows, off]
    want_sums = np.bitwise_xor.reduce(want, axis=1).transpose(1, 0, 2)
    assert np.array_equal(children, want.reshape(-1, 2))
    assert np.array_equal(sums, want_sums)
    assert np.array_equal(sums[off, rows], received)
