"""SIRNN's fixed-point building blocks on shares, as Iron uses them: exp of a non-positive value by digit
tables, the reciprocal of a normalised value, the leading one of a positive value, the reciprocal square root.

Each function computes on shares exactly the integer steps of its counterpart in :mod:`aiompc.fxmath`
(``exact=True``: bit for bit).  ``exact=False`` is Cheetah's approximate truncation for the *scale*
truncations after products: the carry of the low bits is dropped (local, or one COT for the wrap when the
output ring is not smaller); the server first adds ``2^s`` to its share of a non-negative value, so that the
error is ``e ∈ {0, +1}`` instead of ``{−1, 0}`` and non-negative intermediates stay non-negative (their later
known-MSB extensions rely on it).  Digit extraction (``floor(x/2^s) mod 2^w`` as a table index) is a
decomposition, not a scale truncation: it stays exact in both modes, as in SIRNN.

Widths: values are shares mod ``2^L`` (``uint64``); every function states its input and output rings.
Comparisons use Cheetah's millionaire with ``m = 4``-bit digits (:data:`BASELINE_DIGIT_BITS`).
"""

from __future__ import annotations

import asyncio

import numpy as np

from aiompc import fxmath as fx
from aiompc.party import Party
from aiompc.ring import mask
from aiompc.protocols.nonlinear.boolean import and_, b2a, mux
from aiompc.protocols.nonlinear.extension import extend
from aiompc.protocols.nonlinear.lookup import lookup
from aiompc.protocols.nonlinear.millionaire import CompareTask, compare_batch_eq
from aiompc.protocols.nonlinear.multiply import multiply, square
from aiompc.protocols.nonlinear.relu import drelu_shifted
from aiompc.protocols.nonlinear.truncation import truncate

__all__ = ["BASELINE_DIGIT_BITS", "public", "trunc_nonneg", "exp_digits", "exp_neg", "recip_normalized", "leading_one_bits",
           "rsqrt"]

BASELINE_DIGIT_BITS = 4
"""Cheetah's millionaire digit size (the baseline keeps it at every width)."""

THRESHOLDS_PER_TREE = 32
"""Thresholds sharing one millionaire (its leaf OT messages carry 2 bits per threshold, at most 64)."""


def public(party: Party, value: int, L: int) -> np.uint64:
    """This party's share of a public constant mod ``2^L`` (the server holds it, the client 0)."""
    return np.uint64(value % (1 << L)) if party.is_server else np.uint64(0)


async def trunc_nonneg(
    party: Party, label: str, x: np.ndarray, *, L: int, s: int, exact: bool, L_out: int | None = None
) -> np.ndarray:
    """Shares mod ``2^L_out`` (default ``L``) of ``floor(x/2^s)`` (+ ``e ∈ {0, 1}`` if not ``exact``) for
    ``0 <= x < 2^(L−1) − 2^s`` shared mod ``2^L``.  Cost (``L_out = L``): exact 13 + (s-bit millionaire) +
    ``L`` bits (e.g. 150 at ``L = 37, s = 12``); approximate one COT (``1 + s`` bits); with ``L_out <= L − s``
    only the carry (exact) or nothing (approximate); with ``s = 0`` and ``L_out > L`` an extension with a known-zero
    top bit (one COT)"""
    if s == 0:
        xs = np.asarray(x, dtype=np.uint64) & mask(L)
        if L_out is None or L_out <= L:
            return xs if L_out is None else xs & mask(L_out)
        return await extend(party, f"{label}/ext", xs, l=L, l_out=L_out, signed=False, msb_known_zero=True,
                            digit_bits=BASELINE_DIGIT_BITS)
    xs = np.asarray(x, dtype=np.uint64)
    if not exact:
        xs = xs + public(party, 1 << s, L)
    return await truncate(party, label, xs & mask(L), l=L, f=s, l_out=L_out, exact=exact, signed=False,
                          msb_known_zero=True, digit_bits=BASELINE_DIGIT_BITS)


async def exp_digits(party: Party, label: str, u: np.ndarray, widths: list[int]) -> list[np.ndarray]:
    """Shares mod ``2^w_i`` of the digits ``floor(u/2^(8i)) mod 2^w_i`` of ``u`` shared mod ``2^Σw`` (exact).

    SIRNN-style digit decomposition: each party splits its share into digits ``a_i``; the carry into digit
    ``i + 1`` is ``C_(i+1) = g_i ⊕ (e_i ∧ C_i)`` with ``g_i = [a_S,i + a_C,i >= 2^8]`` and
    ``e_i = [a_S,i + a_C,i = 2^8 − 1]`` — one 8-bit millionaire per digit (its equality output for ``e``) and
    a chain of ANDs; ``digit_i = a_S,i + a_C,i + C_i`` after a B2A of ``C_i``.  Cost per element for
    ``widths = [8, 8, 8, 8, 4]``: four 8-bit comparisons (three with equality), 3 ANDs, four B2As."""
    D = fx.EXP_DIGIT_BITS
    nd = len(widths)
    flat = np.asarray(u, dtype=np.uint64).reshape(-1)
    a = [(flat >> np.uint64(D * i)) & mask(w) for i, w in enumerate(widths)]
    if nd == 1:
        return [a[0].reshape(np.shape(u))]
    top = np.uint64((1 << D) - 1)
    tasks, values = [], []
    for i in range(nd - 1):
        eq = i >= 1  # e_0 is never needed: C_0 = 0
        if party.is_server:
            op = top - a[i]
            values.append(np.stack([op << np.uint64(1)] * 2) if eq else op[None, :])
        else:
            values.append(a[i] << np.uint64(1) if eq else a[i])
        tasks.append(CompareTask(D + 1, split=1, eq_rows=1) if eq else CompareTask(D))
    res = await compare_batch_eq(party, f"{label}/cmp", tasks, values, sender="server",
                                 digit_bits=BASELINE_DIGIT_BITS)
    carries: list[np.ndarray] = [np.zeros(flat.shape, np.uint8), res[0][0][0]]
    for i in range(1, nd - 1):
        e = res[i][2]
        assert e is not None
        carries.append(res[i][0][0] ^ await and_(party, f"{label}/and{i}", e[0], carries[i]))
    arith = await asyncio.gather(*(b2a(party, f"{label}/b2a{i}", carries[i], l=widths[i]) for i in range(1, nd)))
    out = [a[0]] + [(a[i] + arith[i - 1]) & mask(widths[i]) for i in range(1, nd)]
    return [d.reshape(np.shape(u)) for d in out]


async def exp_neg(
    party: Party, label: str, d: np.ndarray, *, f: int, bw: int, L_out: int, exact: bool, saturate: bool = False
) -> np.ndarray:
    """Shares mod ``2^L_out`` of :func:`aiompc.fxmath.exp_neg_fixed` ``(d)`` for ``0 <= d < 2^bw`` shared mod any
    ``2^L >= 2^bw`` (only the low ``bw`` bits are read).

    SIRNN's ``lookup_table_exp``: 8-bit digits (exact, :func:`exp_digits`), one table per digit (1-out-of-``2^w`` OT,
    ``f + 2``-bit entries), a product tree in the ring ``2f + 2`` (each factor extended from ``f + 2`` bits by
    one COT, the product truncated back to ``f + 2`` bits), the result extended to ``L_out``.
    Cost per element for ``bw = 36``: the digit carries (four 8-bit comparisons, 3 ANDs), tables
    ``4·(8 + 256·14) + (4 + 16·14)`` bits, four products in 26 bits with their truncations."""
    widths = fx.exp_digit_widths(bw)
    tables = fx.exp_tables(bw, f, saturate=saturate)
    u = np.asarray(d, dtype=np.uint64) & mask(bw)
    S, P = f + 2, 2 * f + 2
    digits = await exp_digits(party, f"{label}/dig", u, widths)
    vals = list(await asyncio.gather(*(
        lookup(party, f"{label}/lut{i}", digits[i], k=w, l_out=S, table=tables[i] if party.is_server else None)
        for i, w in enumerate(widths))))

    async def product(tag: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        wa, wb = await asyncio.gather(
            extend(party, f"{tag}/xa", a, l=S, l_out=P, signed=False, msb_known_zero=True),
            extend(party, f"{tag}/xb", b, l=S, l_out=P, signed=False, msb_known_zero=True))
        p = await multiply(party, f"{tag}/mul", wa, wb, l=P, x_bits=S, y_bits=S)
        return await trunc_nonneg(party, f"{tag}/tr", p, L=P, s=f, exact=exact, L_out=S)

    for lv, level in enumerate(fx.exp_tree_pairs(len(vals))):
        outs = await asyncio.gather(*(product(f"{label}/t{lv}.{j}", vals[j], vals[k]) for j, k in level))
        for (j, _), o in zip(level, outs):
            vals[j] = o
    if L_out == S:
        return vals[0]
    return await extend(party, f"{label}/out", vals[0], l=S, l_out=L_out, signed=False, msb_known_zero=True)


async def recip_normalized(
    party: Party, label: str, dn: np.ndarray, *, s_dn: int, s_out: int, m: int, L: int, exact: bool
) -> np.ndarray:
    """Shares mod ``2^L`` of :func:`aiompc.fxmath.recip_normalized_fixed` ``(dn)``, ``dn ∈ [2^s_dn, 2^(s_dn+1))``
    shared mod ``2^L`` (``L >= s_dn + m + 4``).

    ``q = floor(dn/2^(s_dn−m))`` exactly (an ``(s_dn−m)``-bit millionaire and one COT), ``idx = q mod 2^m``,
    ``low = dn − q·2^(s_dn−m)`` (local); the two tables by two 1-out-of-``2^m`` OTs (``m + 4`` and ``2m + 3``-bit
    entries, each extended to ``L`` by one COT); one product ``A0·low``; a truncation by ``s_dn + m + 3 − s_out``."""
    a0, a1 = fx.recip_tables(m)
    sh = s_dn - m
    q = await trunc_nonneg(party, f"{label}/idx", dn, L=L, s=sh, exact=True)
    idx = q & mask(m)
    low = (np.asarray(dn, dtype=np.uint64) - (q << np.uint64(sh))) & mask(L)
    w0, w1 = m + 4, 2 * m + 3
    c0, c1 = await asyncio.gather(
        lookup(party, f"{label}/A0", idx, k=m, l_out=w0, table=a0 if party.is_server else None),
        lookup(party, f"{label}/A1", idx, k=m, l_out=w1, table=a1 if party.is_server else None))
    c0, c1 = await asyncio.gather(
        extend(party, f"{label}/x0", c0, l=w0, l_out=L, signed=False, msb_known_zero=True),
        extend(party, f"{label}/x1", c1, l=w1, l_out=L, signed=False, msb_known_zero=True))
    prod = await multiply(party, f"{label}/mul", c0, low, l=L, x_bits=w0, y_bits=sh + 1)
    out = ((c1 << np.uint64(sh + 1)) - prod) & mask(L)
    return await trunc_nonneg(party, f"{label}/out", out, L=L, s=s_dn + m + 3 - s_out, exact=exact)


async def leading_one_bits(party: Party, label: str, v: np.ndarray, *, L: int, lo: int, hi: int) -> np.ndarray:
    """XOR shares (``uint8``, shape ``(hi − lo, *v.shape)``) of ``b_t = [v >= 2^t]`` for ``t = lo .. hi−1``,
    ``0 <= v < 2^(L−1)`` shared mod ``2^L``: one ``(L−1)``-bit millionaire whose leaves carry all the
    thresholds (:func:`~aiompc.protocols.nonlinear.relu.drelu_shifted`; at most :data:`THRESHOLDS_PER_TREE`
    per millionaire, so that a leaf message of 2 bits per threshold fits one 64-bit OT message)."""
    ts = list(range(lo, hi))
    chunks = [ts[i:i + THRESHOLDS_PER_TREE] for i in range(0, len(ts), THRESHOLDS_PER_TREE)]
    parts = await asyncio.gather(*(drelu_shifted(party, f"{label}/{i}", v, l=L, offsets=[1 << t for t in c],
                                                 digit_bits=BASELINE_DIGIT_BITS) for i, c in enumerate(chunks)))
    return np.concatenate(parts, axis=0)


def _powers(party: Party, bits_a: np.ndarray, weights: list[int], L: int) -> np.ndarray:
    """Shares of ``Σ_j onehot_j·2^weights[j]`` (``j = 0..len−1``), ``onehot_j = b_j − b_(j+1)``, ``b_0 = 1``,
    ``b_len = 0``; ``bits_a`` the arithmetic shares of ``b_1..b_(len−1)``.  Local."""
    acc = np.zeros(bits_a.shape[1:], dtype=np.uint64) + public(party, 1 << weights[0], L)
    for t in range(1, len(weights)):
        coef = ((1 << weights[t]) - (1 << weights[t - 1])) % (1 << L)
        acc = acc + bits_a[t - 1] * np.uint64(coef)
    return acc & mask(L)


async def rsqrt(
    party: Party, label: str, v: np.ndarray, *, f: int, W: int, s_y: int, E: int, L: int, exact: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Shares mod ``2^L`` of :func:`aiompc.fxmath.rsqrt_fixed` ``(v)`` = ``(x1, a)`` for ``1 <= v < 2^W``
    shared mod ``2^L`` (``W <= L − 2``).

    Leading one by ``W − 1`` threshold comparisons (one millionaire), their B2A; ``2^(W−1−j)`` and
    ``2^(e_j)`` are linear in them and the exponent's parity is an XOR of them (local); ``X = v·2^(W−1−j)``
    (one product); the table index ``floor(X/2^(W−1−m)) mod 2^m`` plus ``2^m·parity`` (exact); the table
    (``2^(m+1)`` entries of ``m + 4`` bits) and one COT extension; ``b = (X >> (W−1−s_y))·2^p`` (a truncation,
    a multiplexer); Newton: one square, two products, two truncations.  Per row only."""
    m = fx.rsqrt_lut_bits(s_y)
    bits = await leading_one_bits(party, f"{label}/lead", v, L=L, lo=1, hi=W)  # b_1 .. b_(W-1)
    bits_a = await b2a(party, f"{label}/b2a", bits, l=L)
    # parity of (j - f) from the one-hot bits b_j ^ b_(j+1): local XOR
    one = np.uint8(1 if party.is_server else 0)
    b_full = [np.broadcast_to(one, bits.shape[1:])] + [bits[t] for t in range(W - 1)] + [np.zeros(bits.shape[1:], np.uint8)]
    par = np.zeros(bits.shape[1:], dtype=np.uint8)
    for j in range(W):
        if (j - f) & 1:
            par ^= b_full[j] ^ b_full[j + 1]
    adj1 = _powers(party, bits_a, [W - 1 - j for j in range(W)], L)
    adj2 = _powers(party, bits_a, [(f - j + ((j - f) & 1)) // 2 + E for j in range(W)], L)
    X = await multiply(party, f"{label}/norm", v, adj1, l=L)
    q = await trunc_nonneg(party, f"{label}/idx", X, L=L, s=W - 1 - m, exact=True)
    lut_in = (q + public(party, 1 << m, L) + (par.astype(np.uint64) << np.uint64(m))) & mask(m + 1)
    wy = m + fx.RSQRT_LOOKUP_SCALE + 2
    table = fx.rsqrt_tables(m)
    y0, b0 = await asyncio.gather(
        lookup(party, f"{label}/lut", lut_in, k=m + 1, l_out=wy, table=table if party.is_server else None),
        trunc_nonneg(party, f"{label}/b", X, L=L, s=W - 1 - s_y, exact=exact))
    y0, pb = await asyncio.gather(
        extend(party, f"{label}/ext", y0, l=wy, l_out=L, signed=False, msb_known_zero=True),
        mux(party, f"{label}/par", par, b0, l=L))
    b = (b0 + pb) & mask(L)
    ysq = await square(party, f"{label}/sq", y0, l=L, x_bits=wy)
    b1 = await trunc_nonneg(party, f"{label}/b1", await multiply(party, f"{label}/yb", ysq, b, l=L),
                            L=L, s=2 * (m + fx.RSQRT_LOOKUP_SCALE), exact=exact)
    yc = (public(party, 3 << s_y, L) - b1) & mask(L)
    x1 = await trunc_nonneg(party, f"{label}/x1", await multiply(party, f"{label}/yy", y0, yc, l=L, x_bits=wy),
                            L=L, s=m + fx.RSQRT_LOOKUP_SCALE + 1, exact=exact)
    return x1, adj2

