"""Ring extension ``Z_{2^l} → Z_{2^l'}`` (``l' > l``, needs the wrap bit) and reduction (``l' < l``, local).

Extension of ``u = u_S + u_C mod 2^l`` (unsigned) is ``u_S + u_C − w·2^l`` with the wrap
``w = [u_S + u_C >= 2^l]``; a signed value is extended through the biased ``x + 2^(l−1)``.  It is the
``f = 0`` case of :func:`aiompc.protocols.nonlinear.truncation.truncate`, which this module wraps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.ring import check_width, mask
from aiompc.protocols.nonlinear.millionaire import DEFAULT_DIGIT_BITS
from aiompc.protocols.nonlinear.truncation import truncate

__all__ = ["extend", "reduce_ring", "change_ring"]


def reduce_ring(x: np.ndarray, *, l_out: int) -> np.ndarray:
    """Shares mod ``2^l_out`` of ``x mod 2^l_out`` (local: reduction is a ring homomorphism).

    For a signed ``x`` that fits in ``l_out`` bits this is the same signed value.  Cost: nothing.
    """
    return np.asarray(x, dtype=np.uint64) & mask(check_width(l_out))


async def extend(
    party: Party,
    label: str,
    x: np.ndarray,
    *,
    l: int,
    l_out: int,
    signed: bool = True,
    msb_known_zero: bool = False,
    digit_bits: int = DEFAULT_DIGIT_BITS,
) -> np.ndarray:
    """Shares mod ``2^l_out`` of the same value as ``x`` mod ``2^l`` (``l_out >= l``), exactly.

    ``signed``: ``x`` is two's complement (sign extension); otherwise zero extension.
    ``msb_known_zero``: ``x ∈ [0, 2^(l−1))`` is asserted, and the wrap is one COT.

    Cost: the wrap — an ``l``-bit millionaire, or with ``msb_known_zero`` a single COT — plus a B2A of
    ``l_out − l`` bits: e.g. ``l = 8 → 16``: 56 + 4 (1 AND) + 8 = 68 bits online; with known MSB 9.
    """
    l = check_width(l)
    l_out = check_width(l_out)
    if l_out < l:
        raise InputError(f"extend: l_out={l_out} < l={l}; use reduce_ring to drop bits")
    if l_out == l:
        return np.asarray(x, dtype=np.uint64) & mask(l)
    return await truncate(
        party, label, x, l=l, f=0, l_out=l_out, signed=signed, msb_known_zero=msb_known_zero, digit_bits=digit_bits
    )


async def change_ring(party: Party, label: str, x: np.ndarray, *, l: int, l_out: int, **options: Any) -> np.ndarray:
    """:func:`extend` if ``l_out > l`` (``options``: its ``signed``, ``msb_known_zero``, ``digit_bits``), else
    :func:`reduce_ring` (the caller knows the value fits)."""
    if l_out <= l:
        return reduce_ring(x, l_out=l_out)
    return await extend(party, label, x, l=l, l_out=l_out, **options)
