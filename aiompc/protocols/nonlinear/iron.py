"""Iron's fixed-point Softmax, GELU and LayerNorm on shares (the ``cheetah`` baseline of issue 25).

Iron (Hao et al., NeurIPS 2022) runs a transformer's non-linear layers with SCI/SIRNN's fixed-point
protocols at Cheetah's widths: shares mod ``2^l`` (``l = 37``), ``f = 12`` fraction bits, millionaire
comparisons with ``m = 4``-bit digits, look-up tables by 1-out-of-``2^k`` OT, products of shares and
truncations.  Each function here computes exactly the integer program of :mod:`aiompc.fxmath` (steps listed
in its docstrings), on the last axis; with ``exact=True`` the output equals it bit for bit.  With
``exact=False`` the scale truncations drop their carry (Cheetah's approximate truncation; see
:mod:`.iron_blocks`); the results stay within the LSB bounds stated per function.

Both parties call with the same label and public arguments; inputs are this party's ``uint64`` shares mod
``2^l`` of signed fixed-point values at scale ``2^-f``; outputs are shares mod ``2^l`` at scale ``2^-f``.

What differs from Iron's C++ (the closest version built from the same primitives):

* the leading one of a row sum / variance is found by comparisons with the public powers ``2^t`` (one
  millionaire with all thresholds in its leaves) instead of SIRNN's digit-wise MSNZB protocol;
* products are this project's OT products in the ring they need (:mod:`.multiply`), with
  truncate-and-reduce / known-MSB extensions between rings, instead of SIRNN's mixed-width products;
* GELU's inner cubic is evaluated on ``|x|`` clipped at 4 (a comparison), its exp on 16 bits (2 tables)
  instead of all ``l`` bits, and ``1 + e < 2`` holds by the table (no comparison before the reciprocal);
* LayerNorm centres with ``H·x − Σx`` (no division) — a constant row gives exactly 0.

Cost (online bytes per element, both directions, counted on the channel by ``benchmarks/iron_nonlinear.py``;
``benchmarks/results/iron-nonlinear.md``; ``tests/protocols/nonlinear/test_iron.py`` checks the ranges):

=======================  ==========  ===========  =============================================
function                 exact       approximate  dominated by
=======================  ==========  ===========  =============================================
softmax, rows of 32      2484        2399         the exp tables (1825 bytes: 5 tables, 14-bit)
softmax, rows of 128     2461        2378         idem; max tree 54, reciprocal ~0.4 per element
GELU                     1790        1690         exp (2 tables) 1001, reciprocal line 167
LayerNorm, H = 128       355         337          per element: 2 products, 2 signed truncations
LayerNorm, H = 768       338         318          idem (rsqrt per row amortised)
=======================  ==========  ===========  =============================================
"""

from __future__ import annotations

import numpy as np

from aiompc import fxmath as fx
from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.ring import check_width, mask
from aiompc.protocols.nonlinear.boolean import b2a, mux
from aiompc.protocols.nonlinear.iron_blocks import (
    BASELINE_DIGIT_BITS,
    exp_neg,
    leading_one_bits,
    public,
    recip_normalized,
    rsqrt,
    trunc_nonneg,
)
from aiompc.protocols.nonlinear.multiply import multiply, square
from aiompc.protocols.nonlinear.pooling import max_reduce
from aiompc.protocols.nonlinear.relu import drelu
from aiompc.protocols.nonlinear.truncation import truncate

__all__ = ["softmax_fx", "gelu_fx", "layernorm_fx", "GELU_CLIP_BITS"]

GELU_CLIP_BITS = fx.GELU_CLIP.bit_length() + 1
"""Signed width of ``c = min(|x|, 4)`` beyond ``f``: values up to ``4·2^f`` need ``f + 4`` signed bits."""


def _rows(x: np.ndarray, l: int, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
    xs = np.asarray(x)
    if xs.ndim < 1 or xs.shape[-1] == 0:
        raise InputError(f"{name} needs a non-empty last axis, got shape {xs.shape}")
    if xs.size and (not np.issubdtype(xs.dtype, np.unsignedinteger) or (l < 64 and int(xs.max()) >> l)):
        raise InputError(f"{name}: shares must be unsigned integers below 2^{l}")
    return xs.astype(np.uint64).reshape(-1, xs.shape[-1]), xs.shape


async def softmax_fx(party: Party, label: str, z: np.ndarray, *, f: int, l: int, exact: bool = True) -> np.ndarray:
    """Shares mod ``2^l`` of :func:`aiompc.fxmath.softmax_fixed` ``(z)`` (last axis), ``z`` shared mod ``2^l``
    with values in ``[−2^(l−2), 2^(l−2))`` at scale ``2^-f``; output in ``[0, 2^f]``, same shape.

    Steps: max (a tree of ``n − 1`` DReLU + multiplexer, ``ceil(log2 n)`` levels); ``d = max − z``;
    :func:`~.iron_blocks.exp_neg` on ``l − 1`` bits; the row sum (local); ``B − 1`` threshold comparisons
    (``B = bitlen(n)``) and their B2A; ``S·2^(B−1−k)`` (one product per row); the reciprocal line (per row);
    ``r = w·2^(B−1−k)`` (one product per row); ``e·r`` and a truncation by ``f + B − 1`` per element.
    Error against the float softmax: :func:`aiompc.fxmath.softmax_error_bound`; ``exact=False`` adds ``0..+1`` per
    exp product level and per truncation, so each exp term is up to 4 LSB higher and the row sum up to ``4n``:
    within ``6 + y·(4n + 4)/2^f`` LSB of the exact program ``y``."""
    l = check_width(l)
    zr, shape = _rows(z, l, "softmax_fx")
    if zr.size == 0:
        return np.zeros(shape, dtype=np.uint64)
    R, n = zr.shape
    plan = fx.softmax_plan(n, f=f, l=l)
    mx = await max_reduce(party, f"{label}/max", zr, l=l, digit_bits=BASELINE_DIGIT_BITS)
    d = (mx[:, None] - zr) & mask(l)
    e = await exp_neg(party, f"{label}/exp", d, f=f, bw=plan.exp_bits, L_out=l, exact=exact)
    s = e.sum(axis=1) & mask(l)
    B = plan.B
    if B > 1:
        bits = await leading_one_bits(party, f"{label}/lead", s, L=l, lo=f + 1, hi=f + B)
        bits_a = await b2a(party, f"{label}/b2a", bits, l=l)
        a = public(party, 1 << (B - 1), l) - sum(
            (bits_a[t - 1] * np.uint64(1 << (B - 1 - t)) for t in range(1, B)), np.zeros(R, np.uint64))
        a = a & mask(l)
        sn = await multiply(party, f"{label}/norm", s, a, l=l, x_bits=f + B + 1, y_bits=B + 1)
    else:
        a = np.full(R, public(party, 1, l), dtype=np.uint64)
        sn = s
    w = await recip_normalized(party, f"{label}/recip", sn, s_dn=plan.s_dn, s_out=f, m=plan.m, L=l, exact=exact)
    r = await multiply(party, f"{label}/r", w, a, l=l, x_bits=f + 2, y_bits=B + 1) if B > 1 else w
    y = await multiply(party, f"{label}/out", e, r[:, None], l=l, x_bits=f + 2, y_bits=f + B + 1)
    y = await trunc_nonneg(party, f"{label}/tr", y, L=l, s=plan.s_dn, exact=exact)
    return y.reshape(shape)


async def gelu_fx(party: Party, label: str, x: np.ndarray, *, f: int, l: int, exact: bool = True) -> np.ndarray:
    """Shares mod ``2^l`` of :func:`aiompc.fxmath.gelu_fixed` ``(x)`` (elementwise), ``x`` shared mod ``2^l``
    with ``|x| < 2^(l−3−f)`` at scale ``2^-f``; same shape.

    Steps: ``a = |x|`` (DReLU, multiplexer); ``c = min(a, 4)`` (DReLU, multiplexer); ``c³`` (a square, a
    product, two known-MSB truncations); ``v = 2g(c)`` (public constants, a truncation); the exp on 16 bits
    (two tables, one product); ``1/(1 + e)`` (the reciprocal line in the ring ``2f + 2``); ``t = (1 − e)·w``
    (a product, a truncation into ``l`` bits); ``(x·2^f + a·t) >> (f + 1)`` (a product, a signed truncation).
    Error against the tanh-form GELU: :func:`aiompc.fxmath.gelu_error_bound`; ``exact=False`` within ``4``
    LSB of the exact program plus ``2^-f·|x|``."""
    l = check_width(l)
    xs = np.asarray(x)
    if xs.size and (not np.issubdtype(xs.dtype, np.unsignedinteger) or int(xs.max()) >> l):
        raise InputError(f"gelu_fx: shares must be unsigned integers below 2^{l}")
    if l < 2 * f + fx.GELU_RING_MARGIN:
        raise InputError(f"gelu_fx: needs l >= 2f + {fx.GELU_RING_MARGIN} (the cube of the clipped |x| must fit the "
                         f"ring), got f = {f}, l = {l}")
    flat = xs.astype(np.uint64).reshape(-1)
    if flat.size == 0:
        return np.zeros(xs.shape, dtype=np.uint64)
    k = fx.gelu_consts(f)
    pos = await drelu(party, f"{label}/sign", flat, l=l, digit_bits=BASELINE_DIGIT_BITS)
    a = (await mux(party, f"{label}/abs", pos, (flat << np.uint64(1)) & mask(l), l=l) - flat) & mask(l)
    over = (a - public(party, k.clip, l)) & mask(l)
    ge = await drelu(party, f"{label}/clip", over, l=l, digit_bits=BASELINE_DIGIT_BITS)
    c = (a - await mux(party, f"{label}/clipmux", ge, over, l=l)) & mask(l)
    cw = f + GELU_CLIP_BITS
    sq = await trunc_nonneg(party, f"{label}/sqtr", await square(party, f"{label}/sq", c, l=l, x_bits=cw),
                            L=l, s=f, exact=exact)
    cube = await trunc_nonneg(party, f"{label}/cbtr",
                              await multiply(party, f"{label}/cube", sq, c, l=l, x_bits=f + 6, y_bits=cw),
                              L=l, s=f, exact=exact)
    v = await trunc_nonneg(party, f"{label}/v", (c * np.uint64(k.c1) + cube * np.uint64(k.c3)) & mask(l),
                           L=l, s=f, exact=exact)
    P = 2 * f + 2
    e = await exp_neg(party, f"{label}/exp", v, f=f, bw=k.exp_bits, L_out=P, exact=exact, saturate=True)
    den = (e + public(party, 1 << f, P)) & mask(P)
    w = await recip_normalized(party, f"{label}/recip", den, s_dn=f, s_out=f, m=k.m, L=P, exact=exact)
    num = (public(party, 1 << f, P) - e) & mask(P)
    t = await trunc_nonneg(party, f"{label}/t",
                           await multiply(party, f"{label}/tanh", num, w, l=P, x_bits=f + 2, y_bits=f + 2),
                           L=P, s=f, exact=exact, L_out=l)
    at = await multiply(party, f"{label}/at", a, t, l=l, y_bits=f + 2)
    y = await truncate(party, f"{label}/out", ((flat << np.uint64(f)) + at) & mask(l), l=l, f=f + 1, exact=exact,
                       signed=True, digit_bits=BASELINE_DIGIT_BITS)
    return y.reshape(xs.shape)


async def layernorm_fx(
    party: Party, label: str, x: np.ndarray, *, f: int, l: int, exact: bool = True, eps: float = 1e-5
) -> np.ndarray:
    """Shares mod ``2^l`` of :func:`aiompc.fxmath.layernorm_fixed` ``(x)`` (last axis ``H``, no gamma/beta),
    ``x`` shared mod ``2^l`` in the domain of :class:`aiompc.fxmath.LayerNormPlan`; same shape.

    Steps: ``c = (H·x − Σx) >> T`` (local, an exact signed truncation per element, in both modes); ``q = c² >> (f − 2g)`` (a square,
    a truncation); ``V = Σq + eps`` (local); :func:`~.iron_blocks.rsqrt` per row; ``r`` (a public product,
    a product, two truncations per row); ``y = (c·r) >> (s_r − g)`` (a product, a signed truncation).
    Error against the float LayerNorm: :func:`aiompc.fxmath.layernorm_error_bound`; ``exact=False`` within
    ``4 + 2^-6·|y|`` LSB of the exact program (the carries dropped before the reciprocal square root move
    ``r`` by a few units of ``2^-12``)."""
    l = check_width(l)
    xr, shape = _rows(x, l, "layernorm_fx")
    if xr.size == 0:
        return np.zeros(shape, dtype=np.uint64)
    R, H = xr.shape
    p = fx.layernorm_plan(H, f=f, l=l, eps=eps)
    s = xr.sum(axis=1) & mask(l)
    cw = (xr * np.uint64(H) - s[:, None]) & mask(l)
    # exact in both modes: the approximate signed truncation needs the wrap comparison anyway (381 vs 422 bits),
    # and an exact centring keeps constant rows exactly 0 (a -1 there is amplified by the rsqrt of eps)
    c = await truncate(party, f"{label}/c", cw, l=l, f=p.T, exact=True, signed=True, digit_bits=BASELINE_DIGIT_BITS)
    q = await trunc_nonneg(party, f"{label}/q", await square(party, f"{label}/sq", c, l=l, x_bits=p.x_bits),
                           L=l, s=f - 2 * p.g, exact=exact)
    v = (q.sum(axis=1) + public(party, p.eps_int, l)) & mask(l)
    x1, a = await rsqrt(party, f"{label}/rsqrt", v, f=f, W=p.W, s_y=p.s_y, E=p.E, L=l, exact=exact)
    x1c = await trunc_nonneg(party, f"{label}/x1c", (x1 * np.uint64(p.c_H)) & mask(l), L=l, s=f, exact=exact)
    r = await trunc_nonneg(party, f"{label}/r", await multiply(party, f"{label}/ra", x1c, a, l=l),
                           L=l, s=p.s_y + p.E - p.s_r, exact=exact)
    y = await multiply(party, f"{label}/out", c, r[:, None], l=l, x_bits=p.x_bits)
    y = await truncate(party, f"{label}/tr", y, l=l, f=p.s_r - p.g, exact=exact, signed=True,
                       digit_bits=BASELINE_DIGIT_BITS)
    return y.reshape(shape)
