"""Requantization test cases, their plaintext reference and their edge inputs (shared by the scalar and
per-channel requantization tests)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiompc import quant
from aiompc.errors import InputError
from nonlinear_helpers import signed_values


@dataclass(frozen=True)
class Case:
    l: int
    M: int
    s: int
    lo: int
    hi: int
    l_out: int
    rounding: str = "nearest"
    msb_known_zero: bool = False

    def params(self) -> dict:
        return dict(l_in=self.l, multiplier=self.M, shift=self.s, lo=self.lo, hi=self.hi, rounding=self.rounding,
                    l_out=self.l_out, msb_known_zero=self.msb_known_zero)


def reference(x: np.ndarray, c: Case) -> np.ndarray:
    """aiompc.quant.requantize; beyond its 62-bit guard (l_in = 64) the same formula on Python integers."""
    try:
        return quant.requantize(x, c.M, c.s, c.lo, c.hi, c.rounding)  # type: ignore[arg-type]
    except InputError:
        r = (1 << (c.s - 1)) if (c.rounding == "nearest" and c.s > 0) else 0
        return np.array([min(max((int(v) * c.M + r) >> c.s, c.lo), c.hi) for v in x], dtype=np.int64)


def inputs(c: Case, gen: np.random.Generator, n_random: int = 300) -> np.ndarray:
    """``n_random`` random values, the range's edges, and both sides of every clip bound and rounding boundary."""
    lo_x, hi_x = (0 if c.msb_known_zero else -(1 << (c.l - 1))), (1 << (c.l - 1)) - 1
    vals = [int(v) for v in signed_values(c.l, n_random, gen)]
    r = (1 << (c.s - 1)) if (c.rounding == "nearest" and c.s > 0) else 0
    if c.M:
        for k in (c.lo, c.lo + 1, c.hi, c.hi + 1, -1, 0, 1, 2):
            x0 = -((r - k * (1 << c.s)) // c.M)  # ceil((k·2^s − r)/M): first x with y' >= k
            vals += [x0 - 2, x0 - 1, x0, x0 + 1]
    x = np.array([min(max(v, lo_x), hi_x) for v in vals], dtype=np.int64)
    return np.abs(x) if c.msb_known_zero else x
