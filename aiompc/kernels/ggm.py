"""One GGM tree level over a group of trees (numba, ``nogil``): Davies–Meyer feed-forward, children and side sums in one pass.

The PRG of :mod:`aiompc.crypto.ferret.ggm` is ``G(s) = (AES_L(s) ⊕ s, AES_R(s) ⊕ s)``.  The caller runs
the two AES passes (OpenSSL, contiguous ECB over all parents of the level) into ``enc_left`` and
``enc_right``; these kernels do everything else a level needs in a single pass over the parents:

* :func:`ggm_level` (the sender's full trees): ``children[2j] = enc_left[j] ⊕ parents[j]``,
  ``children[2j+1] = enc_right[j] ⊕ parents[j]`` (least significant bit cleared if ``clear_lsb``), and
  per tree ``i`` and side ``b`` the XOR of its children on that side into ``sums[b, i]``;
* :func:`ggm_level_punctured` (the receiver's trees, one unknown path per tree): the same, except that
  the two children of the path node ``path[i]`` are not computed (the path node is unknown): the on-path
  child is set to zero and the off-path child ``1 − on_side[i]`` to ``received[i] ⊕ (XOR of the known
  children on that side)``; ``sums`` then holds the full side sums (the received one on the off-path side).

Blocks are ``(n, 2)`` uint64 rows ``(lo, hi)``; bit 0 of ``lo`` is the block's least significant bit.
A group holds ``m`` trees of ``width`` parents each (``parents`` has ``m·width`` rows, tree ``i`` at rows
``i·width .. (i+1)·width − 1``; its children at rows ``2·i·width ..``).  Cost per parent: 4 loads,
4 stores and 8 XORs (no temporaries, no Python per element).
"""

from __future__ import annotations

import numpy as np

from aiompc.kernels.jit import kernel

__all__ = ["ggm_level", "ggm_level_punctured"]


@kernel(inline="always")
def _children(
    parents: np.ndarray, enc_left: np.ndarray, enc_right: np.ndarray, children: np.ndarray, keep: np.uint64,
    start: int, stop: int,
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:  # pragma: no cover - compiled
    """Children of parents ``start .. stop − 1`` into ``children``; returns the XOR of the left children
    ``(lo, hi)`` and of the right ones ``(lo, hi)``."""
    l0 = np.uint64(0)
    l1 = np.uint64(0)
    r0 = np.uint64(0)
    r1 = np.uint64(0)
    for j in range(start, stop):
        p0 = parents[j, 0]
        p1 = parents[j, 1]
        a0 = (enc_left[j, 0] ^ p0) & keep
        a1 = enc_left[j, 1] ^ p1
        b0 = (enc_right[j, 0] ^ p0) & keep
        b1 = enc_right[j, 1] ^ p1
        children[2 * j, 0] = a0
        children[2 * j, 1] = a1
        children[2 * j + 1, 0] = b0
        children[2 * j + 1, 1] = b1
        l0 ^= a0
        l1 ^= a1
        r0 ^= b0
        r1 ^= b1
    return l0, l1, r0, r1


@kernel()
def ggm_level(
    parents: np.ndarray, enc_left: np.ndarray, enc_right: np.ndarray, children: np.ndarray, sums: np.ndarray,
    width: int, clear_lsb: bool,
) -> None:  # pragma: no cover - compiled
    """Children and side sums of one level: see the module docstring.

    ``parents``, ``enc_left``, ``enc_right``: ``(m·width, 2)`` uint64; ``children``: ``(2·m·width, 2)``
    uint64 (may be a slice of a larger output); ``sums``: ``(2, m, 2)`` uint64, overwritten.
    """
    m = parents.shape[0] // width
    keep = np.uint64(0xFFFF_FFFF_FFFF_FFFE) if clear_lsb else np.uint64(0xFFFF_FFFF_FFFF_FFFF)
    for i in range(m):
        l0, l1, r0, r1 = _children(parents, enc_left, enc_right, children, keep, i * width, (i + 1) * width)
        sums[0, i, 0] = l0
        sums[0, i, 1] = l1
        sums[1, i, 0] = r0
        sums[1, i, 1] = r1


@kernel()
def ggm_level_punctured(
    parents: np.ndarray, enc_left: np.ndarray, enc_right: np.ndarray, children: np.ndarray, sums: np.ndarray,
    width: int, clear_lsb: bool, path: np.ndarray, on_side: np.ndarray, received: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """One level of punctured trees: see the module docstring.

    As :func:`ggm_level`, plus ``path``: ``(m,)`` int64, the index (within its tree, ``< width``) of the
    unknown parent; ``on_side``: ``(m,)`` int64 0/1, the side of the unknown child on the path;
    ``received``: ``(m, 2)`` uint64, the sender's side sum of the off-path side.
    """
    m = parents.shape[0] // width
    keep = np.uint64(0xFFFF_FFFF_FFFF_FFFE) if clear_lsb else np.uint64(0xFFFF_FFFF_FFFF_FFFF)
    zero = np.uint64(0)
    for i in range(m):
        hole = i * width + path[i]
        l0, l1, r0, r1 = _children(parents, enc_left, enc_right, children, keep, i * width, hole)
        m0, m1, s0, s1 = _children(parents, enc_left, enc_right, children, keep, hole + 1, (i + 1) * width)
        l0 ^= m0
        l1 ^= m1
        r0 ^= s0
        r1 ^= s1
        g0 = received[i, 0]
        g1 = received[i, 1]
        if on_side[i] == 0:  # the right child is off the path: it is the received sum minus the known ones
            children[2 * hole, 0] = zero
            children[2 * hole, 1] = zero
            children[2 * hole + 1, 0] = g0 ^ r0
            children[2 * hole + 1, 1] = g1 ^ r1
            r0 = g0
            r1 = g1
        else:
            children[2 * hole, 0] = g0 ^ l0
            children[2 * hole, 1] = g1 ^ l1
            children[2 * hole + 1, 0] = zero
            children[2 * hole + 1, 1] = zero
            l0 = g0
            l1 = g1
        sums[0, i, 0] = l0
        sums[0, i, 1] = l1
        sums[1, i, 0] = r0
        sums[1, i, 1] = r1
