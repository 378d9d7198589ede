"""Message structure of output packing: which result coefficients are packed together, and where they land.

Pure (no I/O, no HE): both parties and the byte model derive the same groups from the public layout.

Two ways to make *leaves* (:mod:`aiompc.crypto.he.packing`), chosen by the layout's output positions:

* **strided** — when every output coefficient of every output polynomial is a multiple of ``2^m``
  (``m = packing_stride(layout) >= 1``; e.g. the matrix-product layout with a power-of-two ``d1``), whole
  ciphertexts are leaves: ``2^m`` consecutive output polynomials of a unit per packed ciphertext,
  ``2^ℓ − 1`` key switches for up to ``N`` outputs;
* **per coefficient** — otherwise (``m = 0``; the convolution layouts, whose outputs fill windows), each
  output coefficient is a leaf ``X^(−p)·ct`` and a unit's outputs are packed ``N`` per ciphertext: one key
  switch per output, much more server compute (the planner weighs it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from aiompc.crypto.he.packing import leaf_offsets, tree_elements
from aiompc.protocols.linear.layouts import Layout

__all__ = ["PackedGroup", "packing_stride", "packed_groups", "group_shapes", "layout_elements"]


@dataclass(frozen=True)
class PackedGroup:
    """One packed result message.  Leaf ``k`` is ``X^(−shifts[k])·ct[index[k]]`` with its values at multiples
    of ``2^stride_bits``; ``positions`` are the packed coefficients of the group's outputs, in output order."""

    index: np.ndarray
    shifts: np.ndarray
    stride_bits: int
    positions: np.ndarray

    @property
    def count(self) -> int:
        """Output values carried (visible ``c0`` coefficients)."""
        return int(self.positions.size)

    @property
    def leaves(self) -> int:
        return int(self.index.size)

    @property
    def switches(self) -> int:
        """Key switches to pack it: ``2^ℓ − 1``."""
        return (1 << (self.leaves - 1).bit_length()) - 1


def _reps(layout: Layout) -> list[int]:
    from aiompc.protocols.linear.costs import unit_kinds

    return [u for u, _ in unit_kinds(layout)]


@functools.lru_cache(maxsize=4096)
def packing_stride(layout: Layout) -> int:
    """The largest ``m <= log2 N`` with every output coefficient a multiple of ``2^m`` (0 if there is none)."""
    from aiompc.protocols.linear.layouts import ConvLayout, MatmulLayout

    logn = layout.n.bit_length() - 1
    acc = 0
    # the built-in layouts repeat the first output polynomial's pattern (shifted by multiples of the
    # per-group tile size, or truncated for the last group): the first and last outputs decide
    outs = ({0, layout.outputs - 1} if isinstance(layout, (ConvLayout, MatmulLayout)) else range(layout.outputs))
    for u in _reps(layout):
        for j in outs:
            acc = int(np.bitwise_or.reduce(layout.positions(u, j).astype(np.int64), initial=acc))
    if acc == 0:
        return logn
    return min(logn, (acc & -acc).bit_length() - 1)


def packed_groups(layout: Layout, unit: int, stride_bits: int | None = None) -> tuple[list[PackedGroup], list[int]]:
    """The packed result messages of ``unit`` and the number of outputs of each output polynomial (to split
    the decrypted values again).  ``stride_bits`` defaults to :func:`packing_stride`."""
    n = layout.n
    m = packing_stride(layout) if stride_bits is None else stride_bits
    pos = [layout.positions(unit, j).astype(np.int64) for j in range(layout.outputs)]
    sizes = [int(p.size) for p in pos]
    groups: list[PackedGroup] = []
    if m >= 1:
        per = 1 << m
        for j0 in range(0, layout.outputs, per):
            j1 = min(layout.outputs, j0 + per)
            off = leaf_offsets(n, j1 - j0, m)
            packed = np.concatenate([pos[j] + off[j - j0] for j in range(j0, j1)])
            groups.append(PackedGroup(np.arange(j0, j1, dtype=np.int64), np.zeros(j1 - j0, np.int64), m, packed))
        return groups, sizes
    logn = n.bit_length() - 1
    index = np.repeat(np.arange(layout.outputs, dtype=np.int64), sizes)
    flat = np.concatenate(pos)
    for k0 in range(0, flat.size, n):
        k1 = min(flat.size, k0 + n)
        groups.append(PackedGroup(index[k0:k1], flat[k0:k1], logn, leaf_offsets(n, k1 - k0, logn)))
    return groups, sizes


def group_shapes(layout: Layout, unit: int, stride_bits: int, counts: np.ndarray) -> list[tuple[int, int]]:
    """``(values, leaves)`` of each packed message of ``unit`` from its per-output ``counts`` (the byte and
    compute model; equals :func:`packed_groups` without building positions)."""
    n = layout.n
    if stride_bits >= 1:
        per = 1 << stride_bits
        return [(int(counts[j0 : j0 + per].sum()), min(per, counts.size - j0)) for j0 in range(0, counts.size, per)]
    total = int(counts.sum())
    return [(min(n, total - k0), min(n, total - k0)) for k0 in range(0, total, n)]


@functools.lru_cache(maxsize=4096)
def layout_elements(layout: Layout) -> tuple[int, ...]:
    """The Galois elements output packing of ``layout`` needs (sorted): the client sends a key for each, once
    per session and parameter set."""
    from aiompc.protocols.linear.costs import output_counts, unit_kinds

    m = packing_stride(layout)
    out: set[int] = set()
    for u, _ in unit_kinds(layout):
        for _, leaves in group_shapes(layout, u, m, output_counts(layout, u)):
            out.update(tree_elements(layout.n, leaves, m if m >= 1 else None))
    return tuple(sorted(out))
