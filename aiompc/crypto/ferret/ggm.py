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

Trees are processed in groups of about 2^16 leaves, level by level over the whole group: two AES-ECB
passes (OpenSSL) over the level's parents into scratch buffers, then one compiled pass
(:mod:`aiompc.kernels.ggm`, no GIL) that forms the children and the level's side sums, so the
intermediate levels stay in cache and scratch memory is bounded whatever the number of trees; the leaves
go straight into the caller's output buffer.  Trees are independent: a caller may expand disjoint ranges
of trees (with the matching slices of the output) in parallel threads.
Cost per tree: ``2·(2**h - 1)`` AES blocks and ``O(2**h)`` XORs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiompc.crypto.ferret.blocks import FixedKeyAES, public_key
from aiompc.errors import InputError
from aiompc.kernels.ggm import ggm_level, ggm_level_punctured
from aiompc.kernels.threads import run_parts

__all__ = ["GGMTrees", "expand", "expand_punctured", "GROUP_LEAVES"]

GROUP_LEAVES = 1 << 16
"""Leaves per group of trees expanded together (1 MiB of blocks)."""

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

    def __init__(self, depth: int, trees: int, out: np.ndarray) -> None:
        self.depth = depth
        self.left = FixedKeyAES(public_key("ggm/left"))
        self.right = FixedKeyAES(public_key("ggm/right"))
        self.group = max(1, GROUP_LEAVES >> depth)
        half = min(self.group, trees) << (depth - 1)
        self.scratch = (np.empty((half, 2), np.uint64), np.empty((half, 2), np.uint64))
        self.enc = (np.empty((half + 1, 2), np.uint64), np.empty((half + 1, 2), np.uint64))  # + OpenSSL's spare block
        self.group_sums = np.empty((2, min(self.group, trees), 2), np.uint64)
        self.out = out
        self.sums = np.empty((depth, 2, trees, 2), np.uint64)

    def level(
        self,
        parents: np.ndarray,
        level: int,
        g0: int,
        clear_lsb: bool,
        puncture: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Expand ``parents`` (the contiguous level ``level - 1`` of trees ``g0 ..``) into level ``level``
        (returned, contiguous) and record its side sums.  ``puncture = (path, on_side, received)`` for the
        receiver's trees (:func:`~aiompc.kernels.ggm.ggm_level_punctured`)."""
        width = 1 << (level - 1)
        rows = parents.shape[0]
        m = rows // width
        if level == self.depth:
            dst = self.out[g0 << self.depth : (g0 + m) << self.depth]
        else:
            dst = self.scratch[level % 2][: 2 * rows]
        self.left.encrypt_into(parents, self.enc[0])
        self.right.encrypt_into(parents, self.enc[1])
        enc_left, enc_right = self.enc[0][:rows], self.enc[1][:rows]
        sums = self.group_sums[:, :m]
        last = clear_lsb and level == self.depth
        if puncture is None:
            ggm_level(parents, enc_left, enc_right, dst, sums, width, last)
        else:
            ggm_level_punctured(parents, enc_left, enc_right, dst, sums, width, last, *puncture)
        self.sums[level - 1, :, g0 : g0 + m] = sums
        return dst


def _output(out: np.ndarray | None, n: int) -> np.ndarray:
    if out is None:
        return np.empty((n, 2), np.uint64)
    if out.shape != (n, 2) or out.dtype != np.uint64 or not out.flags.c_contiguous:
        raise InputError(f"GGM output buffer must be a C-contiguous ({n}, 2) uint64 array")
    return out


def expand(
    roots: np.ndarray, depth: int, *, out: np.ndarray | None = None, clear_lsb: bool = False, parts: int = 1
) -> GGMTrees:
    """Expand ``t`` GGM trees of depth ``h`` from their roots (the sender's side).

    Args:
        roots: ``(t, 2)`` uint64 root seeds (secret, from the sender's PRG).
        depth: ``h``, 1..20.
        out: optional preallocated ``(t·2**h, 2)`` uint64 buffer for the leaves (reused across calls).
        clear_lsb: zero the least significant bit of every leaf (level sums are of the cleared leaves).
        parts: cut the trees into this many ranges expanded in parallel threads (same result).

    Returns:
        :class:`GGMTrees` with all leaves and all level sums.
    """
    if roots.ndim != 2 or roots.shape[1] != 2 or roots.dtype != np.uint64:
        raise InputError(f"GGM roots must be a (t, 2) uint64 array, got {roots.dtype} {roots.shape}")
    t = roots.shape[0]
    if not 1 <= depth <= 20:
        raise InputError(f"GGM depth must be in 1..20, got {depth}")
    leaves = _output(out, t << depth)

    def part(lo: int, hi: int) -> np.ndarray:
        ex = _Expander(depth, hi - lo, leaves[lo << depth : hi << depth])
        for g0 in range(0, hi - lo, ex.group):
            cur = np.ascontiguousarray(roots[lo + g0 : min(hi, lo + g0 + ex.group)])
            for level in range(1, depth + 1):
                cur = ex.level(cur, level, g0, clear_lsb)
        return ex.sums

    return GGMTrees(leaves, _join(run_parts(part, t, parts), depth))


def _join(sums: list[np.ndarray], depth: int) -> np.ndarray:
    """The level sums of consecutive tree ranges, joined along the tree axis."""
    return sums[0] if len(sums) == 1 else np.concatenate(sums, axis=2) if sums else np.empty((depth, 2, 0, 2), np.uint64)


def expand_punctured(
    alpha: np.ndarray,
    received_sums: np.ndarray,
    depth: int,
    *,
    out: np.ndarray | None = None,
    clear_lsb: bool = False,
    parts: int = 1,
) -> GGMTrees:
    """Rebuild all leaves but leaf ``α`` of each tree from the off-path level sums (the receiver's side).

    Args:
        alpha: ``(t,)`` punctured leaf index per tree, in ``[0, 2**h)``.
        received_sums: ``(h, t, 2)`` uint64, ``received_sums[l-1, i]`` = the sender's
            ``level_sums[l-1, 1 - α_l, i]`` where ``α_l = (α_i >> (h - l)) & 1``.
        depth: ``h``.
        out, clear_lsb, parts: as in :func:`expand` (use the same ``clear_lsb`` as the sender).

    Returns:
        :class:`GGMTrees` whose leaves equal the sender's except the punctured one, which is zero.
        Cost: as :func:`expand`.
    """
    if not 1 <= depth <= 20:
        raise InputError(f"GGM depth must be in 1..20, got {depth}")
    alpha = np.asarray(alpha, dtype=np.int64)
    t = alpha.shape[0]
    if alpha.ndim != 1 or (t and (alpha.min() < 0 or alpha.max() >> depth)):
        raise InputError(f"punctured indices must be a (t,) array of values below 2^{depth}")
    if received_sums.shape != (depth, t, 2) or received_sums.dtype != np.uint64:
        raise InputError(f"received level sums must be a ({depth}, {t}, 2) uint64 array, got {received_sums.shape}")
    leaves = _output(out, t << depth)

    def part(lo: int, hi: int) -> np.ndarray:
        ex = _Expander(depth, hi - lo, leaves[lo << depth : hi << depth])
        for g0 in range(0, hi - lo, ex.group):
            a = alpha[lo + g0 : min(hi, lo + g0 + ex.group)]
            cur = np.zeros((a.shape[0], 2), np.uint64)  # the roots are unknown: never read (the path node)
            for level in range(1, depth + 1):
                path = a >> (depth - level + 1)
                on_side = (a >> (depth - level)) & 1
                got = np.ascontiguousarray(received_sums[level - 1, lo + g0 : lo + g0 + a.shape[0]])
                cur = ex.level(cur, level, g0, clear_lsb, (path, on_side, got))
        return ex.sums

    return GGMTrees(leaves, _join(run_parts(part, t, parts), depth))
