"""Rejection sampling from CSPRNG words (numba, ``nogil``): the uniform residues of the HE core.

``take_below(words, mask, modulus, out, filled)`` appends to ``out[filled:]`` the values ``w & mask``
of ``words`` (in order) that are below ``modulus``, until ``out`` is full, and returns the new fill
count — one pass, exactly the values and order of the numpy filter it replaced
(``c = words & mask; c[c < modulus][:need]``), so a seeded stream expands to the same polynomial.
"""

from __future__ import annotations

import numpy as np

from aiompc.kernels.jit import kernel

__all__ = ["take_below"]


@kernel()
def take_below(words: np.ndarray, mask: np.uint64, modulus: np.uint64, out: np.ndarray, filled: int) -> int:  # pragma: no cover
    """Append the accepted candidates of ``words`` to ``out`` from position ``filled``; return the new count."""
    n = out.shape[0]
    for i in range(words.shape[0]):
        if filled >= n:
            break
        v = words[i] & mask
        if v < modulus:
            out[filled] = v
            filled += 1
    return filled
