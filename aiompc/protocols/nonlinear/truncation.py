"""Truncation (arithmetic or logical shift right by ``f``) of shares, exact or with a one-LSB error.

Let ``u = u_S + u_C mod 2^l`` be the value read as unsigned.  Over the integers

    u >> f = (u_S >> f) + (u_C >> f) + c − w·2^(l−f)

with ``c = [low_f(u_S) + low_f(u_C) >= 2^f]`` the carry of the low ``f`` bits and
``w = [u_S + u_C >= 2^l]`` the wrap of the shares.  A signed ``x`` is shifted through the biased
``u = x + 2^(l−1)`` (the server adds the bias to its share): ``x >> f = (u >> f) − 2^(l−1−f)``.

* ``c`` is a millionaire on ``f`` bits, ``w`` one on ``l`` bits; exact truncation with ``w`` runs both
  in *one* tree (the wrap comparison split at bit ``f`` yields the carry on the way).
* Approximate truncation drops ``c``: the result is ``floor(x/2^f) + e`` with ``e ∈ {−1, 0}``.
* Output ring ``l_out``: ``w`` is multiplied by ``2^(l−f)``, so it is not needed at all when
  ``l_out <= l − f`` (truncate-and-reduce), and otherwise only mod ``2^(l_out−l+f)``.
* Known MSB (``msb_known_zero``: the value is in ``[0, 2^(l−1))``, e.g. after ReLU): no bias is needed
  and ``w = msb(u_S) ∨ msb(u_C)``, a product of two bits held in the clear: one COT, no comparison.

Ring extension is the case ``f = 0`` (:mod:`aiompc.protocols.nonlinear.extension`).
"""

from __future__ import annotations

import asyncio

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.ring import check_width, mask
from aiompc.protocols.nonlinear.boolean import b2a, cross_or
from aiompc.protocols.nonlinear.millionaire import DEFAULT_DIGIT_BITS, CompareTask, compare_batch
from aiompc.protocols.nonlinear.relu import msb_bits

__all__ = ["truncate"]


async def truncate(
    party: Party,
    label: str,
    x: np.ndarray,
    *,
    l: int,
    f: int,
    l_out: int | None = None,
    exact: bool = True,
    signed: bool = True,
    msb_known_zero: bool = False,
    digit_bits: int = DEFAULT_DIGIT_BITS,
) -> np.ndarray:
    """Shares mod ``2^l_out`` of ``floor(x / 2^f)`` (+ ``e ∈ {−1, 0}`` if not ``exact``).

    Input: shares of ``x`` mod ``2^l`` (any shape), read as signed two's complement (``signed=True``) or
    as unsigned.  ``0 <= f < l``; ``l_out`` defaults to ``l``.  If ``l_out < l − f`` the result is
    reduced mod ``2^l_out``; if larger it is sign- (or zero-) extended exactly.  ``msb_known_zero``
    asserts ``x ∈ [0, 2^(l−1))`` (the result is wrong otherwise).

    Cost per element (``L = l_out``; millionaire costs as in :mod:`aiompc.protocols.nonlinear.millionaire`):

    * the wrap ``w`` (only if ``L > l − f``): with ``msb_known_zero`` one COT, ``1 + (L−l+f)`` bits;
      otherwise an ``l``-bit millionaire and a B2A of ``L−l+f`` bits;
    * the carry ``c`` (only if ``exact`` and ``f > 0``): an ``f``-bit millionaire — folded into the
      ``l``-bit one when that runs — and a B2A of ``L`` bits;
    * approximate with ``L <= l − f``: nothing, purely local.

    E.g. ``l = L = 37, f = 12`` (bits online, payload): known MSB approximate 13 (one COT); known MSB
    exact 13 + 100 + 37 = 150; general approximate 369 + 12 = 381; general exact (one split tree)
    373 + 12 + 37 = 422; plus one random COT per OT bit offline.  Rounds: at most one millionaire,
    then one COT round trip.
    """
    l = check_width(l)
    L = check_width(l if l_out is None else l_out)
    if not 0 <= f < l:
        raise InputError(f"truncation by f={f} bits needs 0 <= f < l = {l}")
    xs = np.asarray(x, dtype=np.uint64) & mask(l)
    shape = xs.shape
    flat = xs.reshape(-1)

    biased = signed and not msb_known_zero
    u = flat
    if biased and party.is_server:
        u = (flat + np.uint64(1 << (l - 1))) & mask(l)
    result = u >> np.uint64(f)
    if biased and party.is_server:
        result = result - np.uint64(1 << (l - 1 - f))

    need_w = L > l - f
    need_c = exact and f > 0
    w_bits = L - (l - f)  # the wrap has weight 2^(l-f): only its value mod 2^(L-l+f) matters
    low_mask = np.uint64((1 << f) - 1)
    zero = np.zeros_like(u)

    async def carry_alone() -> np.ndarray:
        """Arithmetic shares mod 2^L of the carry of the low f bits (an f-bit millionaire + B2A)."""
        if not need_c:
            return zero
        operand = (low_mask - (u & low_mask))[None, :] if party.is_server else (u & low_mask)
        ((c, _),) = await compare_batch(
            party, f"{label}/carry", [CompareTask(f)], [operand], sender="server", digit_bits=digit_bits
        )
        return await b2a(party, f"{label}/b2a_c", c[0], l=L)

    async def wrap_known_msb() -> np.ndarray:
        """Arithmetic shares mod 2^w_bits of w = msb(u_S) OR msb(u_C) (valid when msb(u) = 0)."""
        if not need_w:
            return zero
        return await cross_or(party, f"{label}/wrap", msb_bits(u, l), l=w_bits)

    async def wrap_and_carry() -> tuple[np.ndarray, np.ndarray]:
        """One l-bit millionaire for w = [2^l - 1 - u_S < u_C], split at f for the carry; then B2As."""
        operand = (mask(l) - u)[None, :] if party.is_server else u
        ((w, c),) = await compare_batch(
            party, f"{label}/wrap", [CompareTask(l, split=f if need_c else 0)], [operand],
            sender="server", digit_bits=digit_bits,
        )
        w_a = b2a(party, f"{label}/b2a_w", w[0], l=w_bits)
        if not need_c:
            return await w_a, zero
        assert c is not None
        return await asyncio.gather(w_a, b2a(party, f"{label}/b2a_c", c[0], l=L))

    if msb_known_zero:
        w_arith, c_arith = await asyncio.gather(wrap_known_msb(), carry_alone())
    elif need_w:
        w_arith, c_arith = await wrap_and_carry()
    else:
        w_arith, c_arith = zero, await carry_alone()
    out = result + c_arith
    if need_w:
        out = out - (np.asarray(w_arith, dtype=np.uint64) << np.uint64(l - f))
    return (out & mask(L)).reshape(shape)
