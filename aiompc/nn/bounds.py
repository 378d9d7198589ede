"""Value ranges and bit widths of integer tensors: the ring widths the secure engine's shares need.

Conventions.  A tensor's values are known to lie in ``[lo, hi]`` (Python ints, ``lo <= hi``).
Its width is the smallest representation that holds that range:

* unsigned (``lo >= 0``): ``bits = max(1, hi.bit_length())``, values in ``[0, 2^bits - 1]``;
* signed (``lo < 0``): the smallest ``B`` with ``-2^(B-1) <= lo`` and ``hi <= 2^(B-1) - 1``.

A secret-shared tensor of width ``B`` is reconstructed correctly in any ring ``Z_{2^l}`` with
``l >= B`` (two's complement for signed values).

Accumulator bound of a linear layer (conv, fc).  For output channel ``o`` with integer weights
``w_o`` (all taps of all the input channels it reads), ``P_o = sum of the positive weights``,
``N_o = sum of |negative weights|``, integer bias ``b_o`` and inputs in ``[lo, hi]`` (``lo <= 0 <= hi``)::

    acc_max(o) = b_o + P_o * hi + N_o * (-lo)
    acc_min(o) = b_o - P_o * (-lo) - N_o * hi

Every output of channel ``o`` lies in ``[acc_min(o), acc_max(o)]`` (zero padding is inside the input
range), and both ends are attained by the input that puts ``hi``/``lo`` under the positive/negative
weights of a window lying wholly inside the unpadded input — so the bound is exact, not just sound,
whenever the kernel fits in the input.  The tensor range is ``[min_o acc_min(o), max_o acc_max(o)]``
and its width follows the convention above (sign bit included).

HEQuant's formula for unsigned ``b_a``-bit inputs is
``b_a + max_o ceil(log2(max(P_o, N_o)))`` magnitude bits (:func:`heq_acc_bits`).  For a zero bias our
signed width is at most that plus one sign bit, since ``P_o * (2^b_a - 1) < 2^(b_a + ceil(log2 P_o))``
(and likewise for ``N_o``); it is smaller when the channels' extremes fall well inside that power of two.
"""

from __future__ import annotations

import numpy as np

from aiompc.errors import InputError, UnsupportedModel

__all__ = [
    "width_for_range",
    "range_of_width",
    "linear_channel_ranges",
    "heq_acc_bits",
    "MAX_BITS",
]

MAX_BITS = 62
"""Widest tensor the integer reference accepts (int64 with headroom for requantization)."""


def width_for_range(lo: int, hi: int) -> tuple[int, bool]:
    """``(bits, signed)`` of the narrowest representation holding every integer of ``[lo, hi]``."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise InputError(f"empty range [{lo}, {hi}]")
    if lo >= 0:
        return max(1, hi.bit_length()), False
    magnitude = max((-lo - 1).bit_length(), max(hi, 0).bit_length())
    return magnitude + 1, True


def range_of_width(bits: int, signed: bool) -> tuple[int, int]:
    """All values of a ``bits``-wide representation: ``[-2^(b-1), 2^(b-1)-1]`` or ``[0, 2^b - 1]``."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def linear_channel_ranges(
    weight: np.ndarray, bias: np.ndarray | None, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel ``(acc_min, acc_max)`` of a linear layer on inputs in ``[lo, hi]``.

    ``weight`` is any integer array whose first axis is the output channel (conv ``(O, C/g, kh, kw)``
    or fc ``(O, I)``); ``bias`` is ``(O,)`` or None.  Returns two int64 arrays of shape ``(O,)``.
    Cost: one pass over the weights.  Raises :class:`UnsupportedModel` if the bound exceeds
    :data:`MAX_BITS`.
    """
    if lo > 0 or hi < 0:
        raise InputError("linear_channel_ranges expects lo <= 0 <= hi")
    w = np.asarray(weight, dtype=np.int64).reshape(weight.shape[0], -1)
    pos = np.where(w > 0, w, 0).sum(axis=1)
    neg = np.where(w < 0, -w, 0).sum(axis=1)
    b = np.zeros(w.shape[0], dtype=np.int64) if bias is None else np.asarray(bias, dtype=np.int64)
    peak = int(max(pos.max(initial=0), neg.max(initial=0))) * max(hi, -lo) + int(np.abs(b).max(initial=0))
    if peak.bit_length() >= MAX_BITS:
        raise UnsupportedModel(
            f"a linear layer's accumulator needs about {peak.bit_length() + 1} bits (> {MAX_BITS}); "
            "quantize the weights or activations to fewer bits"
        )
    return b - pos * (-lo) - neg * hi, b + pos * hi + neg * (-lo)


def heq_acc_bits(weight: np.ndarray, in_bits: int) -> int:
    """HEQuant's accumulator width ``b_a + max_o ceil(log2(max(P_o, N_o)))`` (magnitude bits, no bias).

    ``weight``: integer weights with the output channel first; ``in_bits``: width of the unsigned
    inputs.  A channel of all-zero weights contributes 0.
    """
    w = np.asarray(weight, dtype=np.int64).reshape(weight.shape[0], -1)
    m = np.maximum(np.where(w > 0, w, 0).sum(axis=1), np.where(w < 0, -w, 0).sum(axis=1))
    top = int(m.max(initial=0))
    return in_bits + (0 if top <= 1 else (top - 1).bit_length())
