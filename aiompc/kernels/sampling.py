"""Rejection sampling from CSPRNG words (numba, ``nogil``): the uniform residues of the HE core.

``take_below(words, mask, modulus, out, filled)`` appends to ``out[filled:]`` the values ``w & mask``
of ``words`` (in order) that are below ``modulus``, until ``out`` is full, and returns the new fill
count — one pass, exactly the values and order of the numpy filter it replaced
(``c = words & mask; c[c < modulus][:need]``), so a seeded stream expands to the same polynomial.
"""

from __future__ import annotations

import numpy as np

from aiompc.kernels.jit import kernel

__all__ = ["take_below", "gaussian_from_words"]


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


@kernel()
def gaussian_from_words(words: np.ndarray, sigma: float, tail: float, out: np.ndarray) -> None:  # pragma: no cover
    """Rounded Gaussian samples by Box–Muller: ``out[i] = rint(clip(σ·√(−2 ln u1)·cos(2π u2), ±tail·σ))`` with
    ``u1 = max(u, 2**-53)`` and ``u, u2`` the top 53 bits of ``words[0, i]``, ``words[1, i]`` over ``2**53``.

    One pass, no float temporaries (``words``: ``(2, n)`` uint64; ``out``: ``(n,)`` int64)."""
    n = out.shape[0]
    scale = 1.0 / 9007199254740992.0  # 2**-53
    hi = tail * sigma
    two_pi = 2.0 * np.pi
    for i in range(n):
        u1 = max(np.float64(words[0, i] >> np.uint64(11)) * scale, scale)
        u2 = np.float64(words[1, i] >> np.uint64(11)) * scale
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(two_pi * u2) * sigma
        z = min(max(z, -hi), hi)
        out[i] = np.int64(np.rint(z))
