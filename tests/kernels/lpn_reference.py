"""Plain numpy reference of Ferret's LPN encoding (test data only): the loop the compiled kernel replaced."""

from __future__ import annotations

import numpy as np

V16 = np.dtype((np.void, 16))


def lpn_encode_rows_reference(words: np.ndarray, k: int, table: np.ndarray, out: np.ndarray) -> None:
    """In place: ``out[i] ^= XOR_j table[(words[i, j]·k) >> 32]`` with ``d`` numpy gathers and XORs."""
    m, d = words.shape
    items = np.ascontiguousarray(table).view(V16).reshape(k)
    cols = (words.T.astype(np.int64) * k) >> 32
    gathered = np.empty(m, V16)
    got = gathered.view(np.uint64).reshape(m, 2)
    for j in range(d):
        np.take(items, cols[j], out=gathered, mode="clip")
        np.bitwise_xor(out, got, out=out)
