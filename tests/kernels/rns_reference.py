"""Plain numpy references of the RNS kernels (test data only): the code the compiled kernels replaced."""

from __future__ import annotations

import numpy as np

LAZY_PRODUCTS = 16


def multiply_accumulate_reference(x: np.ndarray, w: np.ndarray, primes: tuple[int, ...]) -> np.ndarray:
    """``out[c, o, l] = Σ_j x[c, j, l]·w[o, j, l] mod p_l`` — ``multiply_accumulate``'s numpy loop before the kernel.

    ``x``: ``(C, J, L, N)``; ``w``: ``(O, J, L, N)``; uint64 residues.  Returns ``(C, O, L, N)``.
    """
    n_c, n_in, level, n = x.shape
    n_out = w.shape[0]
    col = np.array(primes, dtype=np.uint64).reshape(-1, 1)
    xx = x.reshape(n_c, n_in, level * n)
    ww = w.reshape(n_out, n_in, level * n)
    out = np.empty((n_c, n_out, level, n), dtype=np.uint64)
    for o in range(n_out):
        acc = np.zeros((n_c, level, n), dtype=np.uint64)
        for j0 in range(0, n_in, LAZY_PRODUCTS):
            j1 = j0 + LAZY_PRODUCTS
            part = np.einsum("jx,cjx->cx", ww[o, j0:j1], xx[:, j0:j1])
            acc += part.reshape(n_c, level, n)
            acc %= col
        out[:, o] = acc
    return out
