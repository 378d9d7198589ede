"""GGM trees over many roots at once: the sender's full expansion and the receiver's punctured one.

PRG: the length-doubling ``G(s) = (AES_{k0}(s) ⊕ s, AES_{k1}(s) ⊕ s)`` with two fixed public keys
(:func:`~aiompc.crypto.ferret.blocks.public_key` of ``"ggm/left"`` and ``"ggm/right"``), the
Davies–Meyer-style two-key construction of the reference implementation.  A tree of depth ``h`` has
``2**h`` leaves; node ``j`` of level ``l`` has children ``2j`` (left, *side 0*) and ``2j + 1`` (right,
*side 1*) at level ``l + 1``; the root is level 0.

Level sums: for every level ``l = 1..h``, side ``b`` and tree, ``K[l, b]`` is the XOR of the tree's
level-``l`` nodes on side ``b``.  Knowing every node of a tree except the path to leaf ``α`` and the sums
``K[l, 1 - α_l]`` (``α_l`` = bit ``l`` of ``α`` counted from the root, i.e. bit ``h - l``), the receiver
rebuilds every leaf except ``α``: at level ``l`` the only unknown nodes are the two children of the path
node, and the off-path one is ``K[l, 1 - α_l]`` XOR the other known nodes on its side.

Trees are processed in groups of about 2^16 leaves (level by level over the whole group: a few AES-ECB
calls and numpy passes per level), so the intermediate levels stay in cache and scratch memory is
bounded whatever the number of trees; the leaves go straight into the caller's output buffer.
Cost per tree: ``2·(2**h - 1)`` AES blocks and ``O(2**h)`` XORs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiompc.crypto.ferret.blocks import FixedKeyAES, public_key
from aiompc.errors import InputError

__all__ = ["GGMTrees", "expand", "expand_punctured", "GROUP_LEAVES"]

GROUP_LEAVES = 1 << 16
"""Leaves per group of trees expanded together (1 MiB of blocks)."""

_LSB_MASK = np.uint64(0xFFFF_FFFF_FFFF_FFFE)


@dataclass(frozen=True)
class GGMTrees:
    """The result of expanding ``t`` trees of depth ``h``.

    Attributes:
        leaves: ``(t·2**h, 2)`` uint64, tree ``i``'s leaves at rows ``i·2**h .. (i+1)·2**h - 1``
            (the receiver's punctured leaf is all-zero).
        level_sums: ``(h, 2, t, 2)`` uint64, ``level_sums[l-1, b, i]`` = XOR of tree ``i``'s level-``l``
            nodes on side ``b`` (for the receiver: of the nodes it knows, the punctured one counting 0).
    """

    leaves: np.ndarray
    level_sums: np.ndarray

    def leaf_sums(self) -> np.ndarray:
        """XOR of each tree's leaves, ``(t, 2)`` (free: the two last-level side sums)."""
        return self.level_sums[-1, 0] ^ self.level_sums[-1, 1]


class _Expander:
    """The two PRG halves and reusable scratch levels (one instance per call: not shared by threads)."""

    def __init__(self, depth: int, trees: int, out: np.ndarray | None) -> None:
        if not 1 <= depth <= 20:
            raise InputError(f"GGM depth must be in 1..20, got {depth}")
        self.depth = depth
        self.trees = trees
        self.left = FixedKeyAES(public_key("ggm/left"))
        self.right = FixedKeyAES(public_key("ggm/right"))
        self.group = max(1, GROUP_LEAVES >> depth)
        half = min(self.group, trees) << (depth - 1)
        self.scratch = (np.empty((half, 2), np.uint64), np.empty((half, 2), np.uint64))
        self.fold = np.empty((half, 4), np.uint64)
        n = trees << depth
        if out is None:
            out = np.empty((n, 2), np.uint64)
        elif out.shape != (n, 2) or out.dtype != np.uint64 or not out.flags.c_contiguous:
            raise InputError(f"GGM output buffer must be a C-contiguous ({n}, 2) uint64 array")
        self.out = out
        self.sums = np.empty((depth, 2, trees, 2), np.uint64)

    def level(self, parents: np.ndarray, level: int, g0: int, m: int, clear_lsb: bool) -> np.ndarray:
        """Expand ``parents`` (``m·2**(level-1)`` blocks of ``m`` trees) into a ``(m, width, 2, 2)`` children view."""
        width = 1 << (level - 1)
        if level == self.depth:
            dst = self.out[g0 << self.depth : (g0 + m) << self.depth]
        else:
            dst = self.scratch[level % 2][: m * 2 * width]
        pairs = dst.reshape(m * width, 2, 2)
        self.left.xor_encrypt_into(parents, pairs[:, 0, :])
        self.right.xor_encrypt_into(parents, pairs[:, 1, :])
        if clear_lsb and level == self.depth:
            dst[:, 0] &= _LSB_MASK
        return dst.reshape(m, width, 2, 2)


def _side_sums(kids: np.ndarray, scratch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XOR over the nodes of each side of each tree, ``kids`` ``(m, width, 2, 2)`` -> two ``(m, 2)``.

    Folds the width axis in halves (contiguous XORs of whole rows) instead of ``ufunc.reduce`` along a
    middle axis, which walks 32-byte rows one at a time and is several times slower.
    """
    m, width = kids.shape[:2]
    rows = kids.reshape(m, width, 4)
    if width == 1:
        acc = rows[:, 0]
    else:
        half = width // 2
        acc = scratch[: m * half].reshape(m, half, 4)
        np.bitwise_xor(rows[:, :half], rows[:, half:], out=acc)
        while half > 1:
            half //= 2
            np.bitwise_xor(acc[:, :half], acc[:, half : 2 * half], out=acc[:, :half])
        acc = acc[:, 0]
    return acc[:, 0:2].copy(), acc[:, 2:4].copy()


def expand(roots: np.ndarray, depth: int, *, out: np.ndarray | None = None, clear_lsb: bool = False) -> GGMTrees:
    """Expand ``t`` GGM trees of depth ``h`` from their roots (the sender's side).

    Args:
        roots: ``(t, 2)`` uint64 root seeds (secret, from the sender's PRG).
        depth: ``h``, 1..20.
        out: optional preallocated ``(t·2**h, 2)`` uint64 buffer for the leaves (reused across calls).
        clear_lsb: zero the least significant bit of every leaf (level sums are of the cleared leaves).

    Returns:
        :class:`GGMTrees` with all leaves and all level sums.
    """
    if roots.ndim != 2 or roots.shape[1] != 2 or roots.dtype != np.uint64:
        raise InputError(f"GGM roots must be a (t, 2) uint64 array, got {roots.dtype} {roots.shape}")
    t = roots.shape[0]
    ex = _Expander(depth, t, out)
    for g0 in range(0, t, ex.group):
        m = min(ex.group, t - g0)
        cur = np.ascontiguousarray(roots[g0 : g0 + m])
        for level in range(1, depth + 1):
            kids = ex.level(cur, level, g0, m, clear_lsb)
            s0, s1 = _side_sums(kids, ex.fold)
            ex.sums[level - 1, 0, g0 : g0 + m] = s0
            ex.sums[level - 1, 1, g0 : g0 + m] = s1
            cur = kids.reshape(-1, 2)
    return GGMTrees(ex.out, ex.sums)


def expand_punctured(
    alpha: np.ndarray,
    received_sums: np.ndarray,
    depth: int,
    *,
    out: np.ndarray | None = None,
    clear_lsb: bool = False,
) -> GGMTrees:
    """Rebuild all leaves but leaf ``α`` of each tree from the off-path level sums (the receiver's side).

    Args:
        alpha: ``(t,)`` punctured leaf index per tree, in ``[0, 2**h)``.
        received_sums: ``(h, t, 2)`` uint64, ``received_sums[l-1, i]`` = the sender's
            ``level_sums[l-1, 1 - α_l, i]`` where ``α_l = (α_i >> (h - l)) & 1``.
        depth: ``h``.
        out, clear_lsb: as in :func:`expand` (use the same ``clear_lsb`` as the sender).

    Returns:
        :class:`GGMTrees` whose leaves equal the sender's except the punctured one, which is zero.
        Cost: as :func:`expand` plus ``O(t)`` fancy-indexed writes per level.
    """
    alpha = np.asarray(alpha, dtype=np.int64)
    t = alpha.shape[0]
    if alpha.ndim != 1 or (t and (alpha.min() < 0 or alpha.max() >> depth)):
        raise InputError(f"punctured indices must be a (t,) array of values below 2^{depth}")
    if received_sums.shape != (depth, t, 2) or received_sums.dtype != np.uint64:
        raise InputError(f"received level sums must be a ({depth}, {t}, 2) uint64 array, got {received_sums.shape}")
    ex = _Expander(depth, t, out)
    zero_roots = np.zeros((min(ex.group, t), 2), np.uint64)
    for g0 in range(0, t, ex.group):
        m = min(ex.group, t - g0)
        a = alpha[g0 : g0 + m]
        rows = np.arange(m)
        cur = zero_roots[:m]
        for level in range(1, depth + 1):
            kids = ex.level(cur, level, g0, m, clear_lsb)
            parent = a >> (depth - level + 1)
            off_side = 1 - ((a >> (depth - level)) & 1)
            kids[rows, parent] = 0  # the path node's children are not known yet
            s0, s1 = _side_sums(kids, ex.fold)
            known = np.where(off_side[:, None] == 1, s1, s0)
            got = received_sums[level - 1, g0 : g0 + m]
            kids[rows, parent, off_side] = got ^ known
            ex.sums[level - 1, 0, g0 : g0 + m] = np.where(off_side[:, None] == 0, got, s0)
            ex.sums[level - 1, 1, g0 : g0 + m] = np.where(off_side[:, None] == 1, got, s1)
            cur = kids.reshape(-1, 2)
    return GGMTrees(ex.out, ex.sums)
