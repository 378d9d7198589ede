"""The fused LPN kernel against the numpy gather/XOR reference, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from lpn_reference import lpn_encode_rows_reference

from aiompc.crypto.ferret.lpn import LocalLinearCode
from aiompc.crypto.ferret.params import BOOTSTRAP, MAIN
from aiompc.kernels.lpn import lpn_encode_rows


def _blocks(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, np.iinfo(np.uint64).max, (n, 2), dtype=np.uint64, endpoint=True)


@pytest.mark.parametrize("k,d,m", [(1, 1, 7), (5, 3, 64), (1000, 10, 777), (BOOTSTRAP.k, 10, 5000), (MAIN.k, 10, 3000)])
def test_kernel_matches_reference(k: int, d: int, m: int) -> None:
    rng = np.random.default_rng(k + d)
    words = rng.integers(0, 1 << 32, (m, d), dtype=np.uint32)
    words[0] = 0xFFFFFFFF  # the largest index, k - 1
    words[1] = 0  # index 0 repeated d times: cancels in pairs
    table = _blocks(rng, k)
    out = _blocks(rng, m)
    want = out.copy()
    lpn_encode_rows_reference(words, k, table, want)
    other = out.copy()
    lpn_encode_rows(words, k, table, out, 0)
    assert np.array_equal(out, want)
    for ahead in (1, 16, m + 5):  # prefetching changes no result, whatever the distance
        got = other.copy()
        lpn_encode_rows(words, k, table, got, ahead)
        assert np.array_equal(got, want)


def test_encode_into_matches_reference_on_the_code_stream() -> None:
    rng = np.random.default_rng(1)
    k, d, n = MAIN.k, 10, 20_011  # not a multiple of the chunk; a table big enough to be prefetched
    code = LocalLinearCode(bytes(range(16)), k, d)
    table = _blocks(rng, k)
    e = _blocks(rng, n)
    got = e.copy()
    code.encode_into(table, got, start_row=123, chunk_rows=4096)
    want = e.copy()
    raw = np.empty(32 + n * d * 4, np.uint8)
    words = code._stream(123, n, raw, bytes(raw.size))
    lpn_encode_rows_reference(words, k, table, want)
    assert np.array_equal(got, want)
