"""The block XOR kernel against numpy on contiguous, strided and aliased (n, 2) views."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.kernels.blocks import xor_blocks_into


@pytest.mark.parametrize("n", [0, 1, 7, 4096])
def test_xor_matches_numpy(n: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.integers(0, np.iinfo(np.uint64).max, (n, 2), dtype=np.uint64, endpoint=True)
    b = rng.integers(0, np.iinfo(np.uint64).max, (n, 2), dtype=np.uint64, endpoint=True)
    want = a ^ b
    out = np.zeros((n, 2), np.uint64)
    xor_blocks_into(a, b, out)
    assert np.array_equal(out, want)
    pairs = np.zeros((n, 2, 2), np.uint64)  # every other row, as a GGM level writes left children
    xor_blocks_into(a, b, pairs[:, 1, :])
    assert np.array_equal(pairs[:, 1], want) and not pairs[:, 0].any()
    c = a.copy()
    xor_blocks_into(c, b, c)  # in place
    assert np.array_equal(c, want)
