"""Quantized Softmax on shares, bit for bit :func:`aiompc.qmath.softmax_int` (the ``quantized`` mode's Softmax).

Input: shares mod ``2^l_in`` of signed logits ``z`` (public width ``value_bits <= l_in``, default ``l_in``), any
leading shape, the last axis a row of ``n`` values.  Output: shares mod ``2^l_out`` (``l_out >= out_bits``) of
the unsigned ``out_bits``-bit probabilities ``p = softmax_int(z, params)``.  Every step is exact; the public
tables of :class:`~aiompc.qmath.SoftmaxParams` are the only approximation, and they are the reference's too.

Steps (``v = value_bits``, ``w = v + 1``, ``k`` / ``kr`` the exp / reciprocal table widths, ``q`` the octaves,
``L`` the row ring: the least width holding every product ``e·r`` with a known-zero top bit)::

    z -> mod 2^w            local if w <= l_in, else one signed extension (a millionaire per element)
    m  = max over the row    max_reduce on w bits: n - 1 DReLUs + multiplexers, ceil(log2 n) levels
    d  = m - z               local, in [0, 2^v - 1]
    dc = min(d, 2^k - 1)     only if v > k: requantize(d, 1, 0, 0, 2^k - 1) (one comparison, a k-bit mux)
    e  = exp_table[dc]       lookup: one 1-of-2^min(k, v) OT (v <= k: d mod 2^v, the first 2^v entries),
                             l_e = bitlen(max e) + 1 bits
    e -> mod 2^L             extension with a known-zero top bit (one COT, 1 + L - l_e bits)
    S  = sum(e)              local
    per row, q = 0:  u = requantize(S, 1, sum_shift, 0, 2^kr - 1, floor) on kr bits; r = recip_table[u] (l_r bits,
                     extended to L)
    per row, q > 0:  [S >= 2^(b+i)] (compare_thresholds, one millionaire with fanout q), B2A to L bits,
                     P = 2^(q-E); N = S·P (multiply); u = (N >> sum_shift) mod 2^kr (truncation);
                     t = recip_table[u] (lookup on l_r bits, extended to L); r = (t·P + 2^(q−1)) >> q
                     (multiply, truncation with a known-zero top bit)
    e·r                      multiply on L bits, e − 2^(l_e−2) decomposed as a signed (l_e − 1)-bit operand
    p  = requantize(e·r, M, shift, 0, 2^out_bits - 1) into l_out bits (narrow: the carry of the shift; the
                             clip comparison only if some e·r can round past 2^out_bits − 1, which the
                             builder's tables rule out)

Cost per element (``n`` values per row; row terms divided by ``n``): the max tree (≈ one ``w``-bit DReLU and
mux), the clip (if ``v > k``), ``k + 2^k·l_e`` bits of look-up, ``1 + L − l_e`` of extension, the narrow
product ``2·(l_e + l_e·L − l_e(l_e−1)/2)`` bits and the final requantization (a carry of ``shift`` bits); plus per row the reciprocal (``kr + 2^kr·l_r`` bits of look-up, ``q`` comparisons in one
millionaire, two products with a ``(q+2)``-bit operand, two truncations).  Measured online bits per element
on the channel (``benchmarks/softmax.py``, 8-bit logits in a 9-bit ring, scale 1/8, ``out_bits = 8``,
defaults of :func:`~aiompc.qtables.softmax_params`: ``k = 6``, ``l_e = 11``, ``L = 22``; 4096 elements):

=======  =====  ===  ====  ===  =====  ===  ====  ===  ======
n        total  max  clip  exp  ext_e  row  prod  out  rounds
=======  =====  ===  ====  ===  =====  ===  ====  ===  ======
32       1514   73   70    710  12     150  397   102  76
128      1414   78   70    710  12     46   397   102  86
=======  =====  ===  ====  ===  =====  ===  ====  ===  ======

The exp look-up dominates: ``2^k·l_e`` follows from the input scale (``k`` is the least with
``round((2^f − 1)·exp(−(2^k − 1)·scale_in)) = 0``), so a coarser scale of the logits halves it per bit.
Rounds (a request and its reply count two; measured with an injected delay): the max tree's
``ceil(log2 n)`` levels make the difference between n = 32 and 128, the remaining steps run in sequence.
"""

from __future__ import annotations

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.qmath import SoftmaxParams, softmax_reciprocal
from aiompc.ring import check_width, mask
from aiompc.protocols.nonlinear.boolean import b2a
from aiompc.protocols.nonlinear.extension import extend
from aiompc.protocols.nonlinear.lookup import lookup
from aiompc.protocols.nonlinear.millionaire import CompareTask, choose_digit_bits
from aiompc.protocols.nonlinear.multiply import multiply
from aiompc.protocols.nonlinear.pooling import max_reduce
from aiompc.protocols.nonlinear.requantize import requantize
from aiompc.protocols.nonlinear.threshold import compare_thresholds
from aiompc.protocols.nonlinear.truncation import truncate

__all__ = ["softmax_q", "SoftmaxWidths"]


class SoftmaxWidths:
    """The public ring widths of one quantized Softmax (pure; identical on both sides).

    ``w``: the max tree's ring; ``l_e`` / ``l_r``: the exp / reciprocal look-ups' output rings (a known-zero top
    bit, so extending them is one COT); ``L``: the row ring (sum, reciprocal, products); ``s_bits``: the width
    of the largest row sum; ``prod_max``: the largest ``e·r``."""

    def __init__(self, params: SoftmaxParams, n: int, *, l_in: int, l_out: int, value_bits: int) -> None:
        if not 1 <= value_bits <= l_in:
            raise InputError(f"softmax_q: value_bits must lie in 1..l_in={l_in}, got {value_bits}")
        if l_out < params.out_bits:
            raise InputError(f"softmax_q: l_out={l_out} cannot hold {params.out_bits}-bit probabilities")
        self.v, self.w = value_bits, value_bits + 1
        e_max = max(params.exp_table)
        self.l_e = e_max.bit_length() + 1
        q = params.octaves
        self.s_max = n * e_max
        self.s_bits = max(1, self.s_max.bit_length())
        self.b = params.sum_shift + params.recip_bits - q  # the octaves' base (qmath)
        n_max = max(self.s_max, (1 << (self.b + q + 1)) - 1) if q else self.s_max
        self.l_r = max(params.recip_table).bit_length() + 1
        self.prod_max = _product_bound(params, n, e_max)
        t_scaled = (max(params.recip_table) << q) + (1 << q >> 1)  # recip·2^(q−E) + 2^(q−1) before its shift by q
        self.L = max(max(self.prod_max, n_max, self.s_max, t_scaled).bit_length() + 1, self.l_r)
        if self.L > 62 or params.multiplier * self.prod_max + (1 << params.shift) >= 1 << 62:
            raise InputError(f"softmax_q: the row ring needs {self.L} bits (> 62); use smaller tables or rows")


def _product_bound(params: SoftmaxParams, n: int, e_max: int) -> int:
    """The largest ``e·r`` over every row the tables allow: ``e <= min(e_max, S)`` and ``r = r(S)`` for the row
    sums ``S ∈ [exp_table[0], n·e_max]`` (enumerated up to 2^22 sums, else the product of the maxima)."""
    loose = e_max * max(params.recip_table) << params.octaves
    lo, hi = params.exp_table[0], n * e_max
    if hi - lo >= 1 << 22:
        return loose
    s = np.arange(lo, hi + 1, dtype=np.int64)
    return min(loose, int((np.minimum(s, e_max) * softmax_reciprocal(s, params)).max()))


def _server_const(party: Party, value: int, l: int) -> np.uint64:
    """``value mod 2^l`` on the server, 0 on the client (a public constant added to shares)."""
    return np.uint64(value % (1 << l)) if party.is_server else np.uint64(0)


async def _row_reciprocal(
    party: Party, label: str, s: np.ndarray, params: SoftmaxParams, wd: SoftmaxWidths
) -> np.ndarray:
    """Shares mod ``2^L`` of the row's ``r`` (:func:`aiompc.qmath.softmax_reciprocal`) from shares of its sum."""
    L, kr, q = wd.L, params.recip_bits, params.octaves
    table = np.asarray(params.recip_table, dtype=np.int64) if party.is_server else None
    if q == 0:
        u = await requantize(party, f"{label}/u", s, l_in=L, multiplier=1, shift=params.sum_shift, lo=0,
                             hi=(1 << kr) - 1, rounding="floor", l_out=kr, msb_known_zero=True,
                             x_range=(0, wd.s_max))
        r = await lookup(party, f"{label}/recip", u, k=kr, l_out=wd.l_r, table=table)
        return await extend(party, f"{label}/ext_r", r, l=wd.l_r, l_out=L, signed=False, msb_known_zero=True)
    thresholds = [1 << (wd.b + i) for i in range(1, q + 1)]
    t = await compare_thresholds(party, f"{label}/oct", s & mask(wd.s_bits), k=wd.s_bits, thresholds=thresholds)
    ta = await b2a(party, f"{label}/oct_b2a", t, l=L)  # (q, rows)
    weights = np.asarray([1 << (q - i) for i in range(1, q + 1)], dtype=np.uint64)[:, None]
    p2 = (_server_const(party, 1 << q, L) - (ta * weights).sum(axis=0, dtype=np.uint64)) & mask(L)  # 2^(q-E)
    big_n = await multiply(party, f"{label}/norm", s, p2, l=L, y_bits=q + 2)
    if params.sum_shift:
        u = await truncate(party, f"{label}/trunc", big_n, l=L, f=params.sum_shift, l_out=kr, signed=False,
                           msb_known_zero=True)
    else:
        u = big_n & mask(kr)
    r = await lookup(party, f"{label}/recip", u & mask(kr), k=kr, l_out=wd.l_r, table=table)
    r = await extend(party, f"{label}/ext_r", r, l=wd.l_r, l_out=L, signed=False, msb_known_zero=True)
    scaled = await multiply(party, f"{label}/scale", r, p2, l=L, y_bits=q + 2)
    scaled = (scaled + _server_const(party, 1 << (q - 1), L)) & mask(L)
    return await truncate(party, f"{label}/round", scaled, l=L, f=q, signed=False, msb_known_zero=True)


async def softmax_q(
    party: Party,
    label: str,
    z: np.ndarray,
    *,
    params: SoftmaxParams,
    l_in: int,
    l_out: int,
    value_bits: int | None = None,
) -> np.ndarray:
    """Shares mod ``2^l_out`` of ``softmax_int(z, params)`` over the last axis of ``z`` (module docstring).

    Both parties pass their shares of ``z`` (``uint64`` mod ``2^l_in``, shape ``(..., n)``, ``n >= 1``), the
    same public ``params``, ``l_in``, ``l_out`` and ``value_bits`` (the signed width of the logits, default
    ``l_in``; a narrower width lets the max run without extending the shares).  Returns this party's output
    shares, the shape of ``z``.  Raises :class:`~aiompc.errors.InputError` for bad widths, shapes or params.
    """
    if not isinstance(params, SoftmaxParams):
        raise InputError(f"softmax_q: params must be a SoftmaxParams, got {type(params).__name__}")
    l_in, l_out = check_width(l_in), check_width(l_out)
    zs = np.asarray(z)
    if zs.ndim < 1 or zs.shape[-1] == 0:
        raise InputError(f"softmax_q needs a non-empty last axis, got shape {zs.shape}")
    if zs.size and (not np.issubdtype(zs.dtype, np.unsignedinteger) or (l_in < 64 and int(zs.max()) >> l_in)):
        raise InputError(f"softmax_q: shares must be unsigned integers below 2^{l_in}")
    shape, n = zs.shape, zs.shape[-1]
    wd = SoftmaxWidths(params, n, l_in=l_in, l_out=l_out, value_bits=l_in if value_bits is None else int(value_bits))
    if zs.size == 0:
        return np.zeros(shape, dtype=np.uint64)
    x = zs.astype(np.uint64).reshape(-1, n)
    if wd.w <= l_in:
        x = x & mask(wd.w)
    else:
        x = await extend(party, f"{label}/ext_z", x, l=l_in, l_out=wd.w, signed=True)
    digits = choose_digit_bits(party, [CompareTask(wd.w - 1)])
    m = await max_reduce(party, f"{label}/max", x, l=wd.w, digit_bits=digits)
    d = (m[:, None] - x) & mask(wd.w)  # in [0, 2^v - 1]
    k = params.exp_bits
    if wd.v > k:
        d = await requantize(party, f"{label}/clip", d, l_in=wd.w, multiplier=1, shift=0, lo=0, hi=(1 << k) - 1,
                             rounding="floor", l_out=k, msb_known_zero=True, x_range=(0, (1 << wd.v) - 1))
    else:  # d < 2^v <= 2^k: no clip, and only the first 2^v entries can be read (shares reduce to v bits)
        k = wd.v
    table = np.asarray(params.exp_table[: 1 << k], dtype=np.int64) if party.is_server else None
    e = await lookup(party, f"{label}/exp", d & mask(k), k=k, l_out=wd.l_e, table=table)
    e = await extend(party, f"{label}/ext_e", e, l=wd.l_e, l_out=wd.L, signed=False, msb_known_zero=True)
    s = e.sum(axis=-1, dtype=np.uint64) & mask(wd.L)
    r = await _row_reciprocal(party, f"{label}/row", s, params, wd)
    # e in [0, 2^(l_e-1)): centred, e - 2^(l_e-2) is a signed (l_e - 1)-bit operand (one bit fewer to decompose)
    half = 1 << (wd.l_e - 2) if wd.l_e >= 2 else 0
    centred = (e - _server_const(party, half, wd.L)) & mask(wd.L)
    prod = await multiply(party, f"{label}/prod", centred, r[:, None], l=wd.L, x_bits=max(1, wd.l_e - 1))
    prod = (prod + r[:, None] * np.uint64(half)) & mask(wd.L)
    p = await requantize(party, f"{label}/out", prod, l_in=wd.L, multiplier=params.multiplier, shift=params.shift,
                         lo=0, hi=(1 << params.out_bits) - 1, rounding="nearest", l_out=l_out,
                         msb_known_zero=True, x_range=(0, wd.prod_max))
    return p.reshape(shape)
