"""Plaintext integer semantics of the quantized operations: the ground truth for secure protocols.

Both the secure protocols' tests and the model's plaintext integer interpreter use these functions,
so "secure equals reference bit for bit" has one definition.  All take and return ``int64`` arrays
(signed values, not ring elements).

* ``requantize(x, M, s, lo, hi, rounding)``: ``clip(floor((x*M + r) / 2^s), lo, hi)`` with
  ``r = 2^(s-1)`` for ``rounding="nearest"`` (round half up) and ``r = 0`` for ``"floor"``.
  ``M >= 0`` is a public integer multiplier, ``s >= 0`` a public shift.  ReLU fused = ``lo = 0``.
* ``truncate(x, f)``: arithmetic shift right, ``floor(x / 2^f)``.
* ``relu(x)``: ``max(x, 0)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from aiompc.errors import InputError

__all__ = ["requantize", "truncate", "relu", "Rounding", "signed_range", "unsigned_range"]

Rounding = Literal["floor", "nearest"]


def signed_range(bits: int) -> tuple[int, int]:
    """``(-2^(bits-1), 2^(bits-1) - 1)``."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def unsigned_range(bits: int) -> tuple[int, int]:
    """``(0, 2^bits - 1)``."""
    return 0, (1 << bits) - 1


def truncate(x: np.ndarray, f: int) -> np.ndarray:
    """``floor(x / 2^f)`` for signed integers."""
    return np.asarray(x, dtype=np.int64) >> np.int64(f)


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)``."""
    return np.maximum(np.asarray(x, dtype=np.int64), 0)


def requantize(
    x: np.ndarray,
    multiplier: int,
    shift: int,
    lo: int,
    hi: int,
    rounding: Rounding = "nearest",
) -> np.ndarray:
    """``clip(floor((x*multiplier + r) / 2^shift), lo, hi)``; ``r = 2^(shift-1)`` when rounding to nearest.

    Raises :class:`InputError` if ``x*multiplier`` could overflow 63 bits.
    """
    x = np.asarray(x, dtype=np.int64)
    if multiplier < 0 or shift < 0 or lo > hi:
        raise InputError("requantize needs multiplier >= 0, shift >= 0 and lo <= hi")
    if x.size:
        peak = max(abs(int(x.min())), abs(int(x.max())))
        if (peak * multiplier + (1 << shift)).bit_length() > 62:
            raise InputError("requantize: x*multiplier exceeds 62 bits; lower the multiplier precision")
    r = (1 << (shift - 1)) if (rounding == "nearest" and shift > 0) else 0
    y = (x * np.int64(multiplier) + np.int64(r)) >> np.int64(shift)
    return np.clip(y, lo, hi)
