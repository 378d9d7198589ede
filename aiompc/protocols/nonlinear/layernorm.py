"""Quantized LayerNorm (no affine part) and GELU on shares, bit for bit as :mod:`aiompc.qmath`.

``layernorm_q`` runs the steps of :func:`aiompc.qmath.layernorm_int` over the last axis (``H`` features), each
in the tightest ring its public bounds allow (``x`` signed in ``l_in`` bits, ``c'`` in ``cb = center_bits``)::

    x   --extend l_in -> l_c-->      c = H·x − Σx      (local)
    c'  = requantize(c, center_multiplier, center_shift, ±2^(cb−1))      -> ring l_w = max(l_v, l_p)
    v   = Σ square(c')                                    (narrow square, x_bits = cb; local sum; ring l_v)
    per row, octaves q > 0:  E = Σ_i [v >= 2^(b+2i)] (threshold comparisons, B2A);
                             N = v·4^(q−E) (v extended with known MSB, narrow product; ring l_n)
    u   = requantize(N, 1, var_shift, 0, 2^kr − 1, floor) (known MSB; one per row; ring kr)   [N = v if q = 0]
    r   = lookup(u, rsqrt_table) · 2^(q−E)                (1-of-2^kr OT and a narrow product, per row; ring l_p)
    p   = multiply(c', r)                                 (narrow: c' decomposed in cb + 1 bits; ring l_p)
    y   = requantize(p, multiplier, shift, ±2^(out_bits−1))                  -> ring l_out

Rings: ``l_c`` holds ``±(H−1)(2^l_in − 1)`` times the odd part of the centre multiplier (the centre
requantization then runs on its narrow ring: a carry, no wrap); ``l_v = width(H·4^(cb−1)) + 1`` (MSB known
zero); ``l_p`` = the signed width of the largest ``|c'_i·r|`` plus one bit (:func:`_product_bound`: ``c'_i² <= v``
and ``r`` is the entry of the bucket ``v`` falls in, so the bound is per bucket, not ``2^(cb−1)·max r``; the extra
bit lets the output's narrow requantization put a clip bound at the middle of its window).  ``H = 1`` needs no
protocol (``c = 0``, ``y = 0``).

Cost per element (online, silent OT, ``l_in = 8``, default :func:`~aiompc.qtables.layernorm_params`: ``cb = 10``,
4 octaves; measured in ``tests/protocols/nonlinear/test_layernorm.py``, rows of 4): 1182 bits at ``H = 128`` and
1168 at ``H = 768`` — extension 75, centre 144/173, square 262/283, the per-row steps 105/19, product 380/419,
output 216/199.  The linear form (``octaves = 0``): 1143 / 1161.

``gelu_q`` is the table look-up of :func:`aiompc.qmath.lookup_int` (:mod:`.lookup`), with the input brought to
the table's ``k`` bits (local reduction, or a signed extension when ``l_in < k``).
"""

from __future__ import annotations

import math

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.qmath import LayerNormParams, table_bits
from aiompc.ring import check_width, mask
from aiompc.protocols.nonlinear.boolean import b2a
from aiompc.protocols.nonlinear.extension import extend
from aiompc.protocols.nonlinear.lookup import lookup
from aiompc.protocols.nonlinear.multiply import multiply, square
from aiompc.protocols.nonlinear.narrow import narrow_plan
from aiompc.protocols.nonlinear.requantize import requantize
from aiompc.protocols.nonlinear.threshold import compare_thresholds

__all__ = ["layernorm_q", "gelu_q", "LayerNormRings"]


class LayerNormRings:
    """The public ring widths of one :func:`layernorm_q` (module docstring); pure, identical on both sides."""

    def __init__(self, params: LayerNormParams, H: int, l_in: int, l_out: int) -> None:
        self.H, self.l_in, self.l_out = H, check_width(l_in), check_width(l_out)
        if l_out < params.out_bits:
            raise InputError(f"layernorm_q: l_out={l_out} cannot hold signed {params.out_bits}-bit outputs")
        cb, q, kr, vs = params.center_bits, params.octaves, params.rsqrt_bits, params.var_shift
        self.c_max = (H - 1) * ((1 << l_in) - 1)
        # room for c·odd(center_multiplier) as well, so the centre requantization stays on its narrow ring
        m = params.center_multiplier
        odd = (m >> ((m & -m).bit_length() - 1)) if m else 1
        self.l_c = (self.c_max * odd).bit_length() + 2
        self.v_max = H * (1 << (2 * (cb - 1)))
        self.l_v = self.v_max.bit_length() + 1
        # the normalised N = v·4^(q−E) (octaves) stays below 2^(var_shift + kr) unless E = q (then N = v)
        self.n_max = max(self.v_max, (1 << (vs + kr)) - 1) if q else self.v_max
        self.l_n = self.n_max.bit_length() + 1
        self.r_max = max(params.rsqrt_table) << q
        self.r_bits = max(1, self.r_max.bit_length())
        self.p_max = _product_bound(params, self.v_max)
        # one bit beyond the signed width: the output's rounding window then has room to put a clip bound at its
        # middle (free comparison; measured ~60 bits per element less in the output requantization against ~20
        # more in the product), and more if the narrow ring would still not hold every c'·r + 2^(shift−1)
        self.l_p = max(self.p_max.bit_length() + 2, self.r_bits + 1)
        ob = 1 << (params.out_bits - 1)
        if narrow_plan(l=self.l_p, multipliers=[params.multiplier], index=None, shape=(), shift=params.shift,
                       rounding="nearest", lo=-ob, hi=ob - 1, l_out=l_out, x_lo=-self.p_max, x_hi=self.p_max,
                       exact=True) is None:
            self.l_p += 1  # pragma: no cover - not reached by the builder's tables
        self.l_w = max(self.l_v, self.l_p)
        if max(self.l_c, self.l_w, self.l_n) > 62:
            raise InputError(
                f"layernorm_q: H={H}, l_in={l_in} and center_bits={cb} need rings of "
                f"{max(self.l_c, self.l_w, self.l_n)} bits (> 62)"
            )


def _product_bound(params: LayerNormParams, v_max: int) -> int:
    """The largest ``|c'_i·r|`` of any row: ``c'_i² <= v`` (one term of the sum), and ``r`` is the entry (shifted by
    ``q − E``) of the bucket ``v`` falls in, so per bucket ``min(2^(cb−1), isqrt(v_hi))·r`` bounds it."""
    cb, q, kr, vs = params.center_bits, params.octaves, params.rsqrt_bits, params.var_shift
    table, top = params.rsqrt_table, (1 << kr) - 1
    b = params.octave_base
    best = 0
    for e in range(q + 1):
        lo = 0 if e == 0 else 1 << (b + 2 * e)
        hi = v_max if e == q else min(v_max, (1 << (b + 2 * e + 2)) - 1)
        if lo > hi:
            continue
        f = 4 ** (q - e)  # N = v·f
        for u in range(min((lo * f) >> vs, top), min((hi * f) >> vs, top) + 1):
            v_hi = hi if u == top else min(hi, (((u + 1) << vs) - 1) // f)
            best = max(best, min(1 << (cb - 1), math.isqrt(v_hi)) * (table[u] << (q - e)))
    return best


def _check(x: np.ndarray, l: int, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind != "u" or (a.size and l < 64 and int(a.max()) >> l):
        raise InputError(f"{name}: shares must be unsigned integers below 2^{l}")
    return a.astype(np.uint64, copy=False)


async def layernorm_q(
    party: Party, label: str, x: np.ndarray, *, params: LayerNormParams, l_in: int, l_out: int
) -> np.ndarray:
    """Shares mod ``2^l_out`` of ``layernorm_int(x, params)`` over the last axis (module docstring).

    ``x``: shares mod ``2^l_in`` of signed ``l_in``-bit values, shape ``(..., H)``, ``H >= 1``.  Both parties pass
    the same public ``params``, widths and shape.  Output: signed ``params.out_bits`` values in two's complement
    mod ``2^l_out``, the shape of ``x``.  Raises :class:`~aiompc.errors.InputError` for bad shares, shapes or widths.
    """
    if not isinstance(params, LayerNormParams):
        raise InputError(f"layernorm_q: params must be LayerNormParams, got {type(params).__name__}")
    l_in, l_out = check_width(l_in), check_width(l_out)
    xs = _check(x, l_in, "layernorm_q")
    if xs.ndim < 1 or xs.shape[-1] == 0:
        raise InputError(f"layernorm_q needs a non-empty last axis, got shape {xs.shape}")
    shape, H = xs.shape, xs.shape[-1]
    rings = LayerNormRings(params, H, l_in, l_out)
    if xs.size == 0 or H == 1:  # nothing, or c = 0 and y = 0 exactly
        return np.zeros(shape, dtype=np.uint64)
    cb, kr, ob = params.center_bits, params.rsqrt_bits, params.out_bits
    # c = H·x − Σx, exact in l_c bits
    xw = await extend(party, f"{label}/ext", xs, l=l_in, l_out=rings.l_c, signed=True)
    c = (np.uint64(H) * xw - xw.sum(axis=-1, keepdims=True, dtype=np.uint64)) & mask(rings.l_c)
    half = 1 << (cb - 1)
    cq = await requantize(
        party, f"{label}/center", c, l_in=rings.l_c, multiplier=params.center_multiplier, shift=params.center_shift,
        lo=-half, hi=half - 1, rounding="nearest", l_out=rings.l_w, x_range=(-rings.c_max, rings.c_max),
    )
    sq = await square(party, f"{label}/sq", cq & mask(rings.l_v), l=rings.l_v, x_bits=cb)
    v = sq.sum(axis=-1, keepdims=True, dtype=np.uint64) & mask(rings.l_v)
    r = await _row_rsqrt(party, f"{label}/var", v, params, rings)
    p = await multiply(party, f"{label}/mul", cq & mask(rings.l_p), r, l=rings.l_p, x_bits=cb, y_bits=rings.r_bits + 1)
    ohalf = 1 << (ob - 1)
    return await requantize(
        party, f"{label}/out", p, l_in=rings.l_p, multiplier=params.multiplier, shift=params.shift, lo=-ohalf,
        hi=ohalf - 1, rounding="nearest", l_out=l_out, x_range=(-rings.p_max, rings.p_max),
    )


def _server_const(party: Party, value: int, l: int) -> np.uint64:
    return np.uint64(value % (1 << l)) if party.is_server else np.uint64(0)


async def _row_rsqrt(party: Party, label: str, v: np.ndarray, params: LayerNormParams, rings: LayerNormRings) -> np.ndarray:
    """Shares mod ``2^l_p`` of ``r = rsqrt_table[u] << (q − E)`` per row from shares of ``v`` mod ``2^l_v``."""
    kr, q, vs = params.rsqrt_bits, params.octaves, params.var_shift
    table = np.asarray(params.rsqrt_table, dtype=np.int64) if party.is_server else None
    if q == 0:
        u = await requantize(party, f"{label}/u", v, l_in=rings.l_v, multiplier=1, shift=vs, lo=0, hi=(1 << kr) - 1,
                             rounding="floor", l_out=kr, msb_known_zero=True, x_range=(0, rings.v_max))
        return await lookup(party, f"{label}/rsqrt", u, k=kr, l_out=rings.l_p, table=table)
    b, l_n, l_p = params.octave_base, rings.l_n, rings.l_p
    thresholds = [1 << (b + 2 * i) for i in range(1, q + 1)]
    t = await compare_thresholds(party, f"{label}/oct", v, k=rings.l_v, thresholds=thresholds)
    ta = await b2a(party, f"{label}/oct_b2a", t, l=max(l_n, l_p))  # (q, rows, 1)
    w4 = np.asarray([3 * 4 ** (q - i) for i in range(1, q + 1)], dtype=np.uint64).reshape((q,) + (1,) * v.ndim)
    w2 = np.asarray([1 << (q - i) for i in range(1, q + 1)], dtype=np.uint64).reshape((q,) + (1,) * v.ndim)
    p4 = (_server_const(party, 4**q, l_n) - (ta * w4).sum(axis=0, dtype=np.uint64)) & mask(l_n)  # 4^(q−E)
    p2 = (_server_const(party, 1 << q, l_p) - (ta * w2).sum(axis=0, dtype=np.uint64)) & mask(l_p)  # 2^(q−E)
    vn = await extend(party, f"{label}/ext_v", v, l=rings.l_v, l_out=l_n, signed=False, msb_known_zero=True)
    big_n = await multiply(party, f"{label}/norm", vn, p4, l=l_n, y_bits=2 * q + 2)
    u = await requantize(party, f"{label}/u", big_n, l_in=l_n, multiplier=1, shift=vs, lo=0, hi=(1 << kr) - 1,
                         rounding="floor", l_out=kr, msb_known_zero=True, x_range=(0, rings.n_max))
    r = await lookup(party, f"{label}/rsqrt", u, k=kr, l_out=l_p, table=table)
    return await multiply(party, f"{label}/scale", r, p2, l=l_p, y_bits=q + 2)


async def gelu_q(
    party: Party, label: str, x: np.ndarray, *, table: tuple[int, ...] | np.ndarray, l_in: int, l_out: int
) -> np.ndarray:
    """Shares mod ``2^l_out`` of ``lookup_int(x, table)`` (e.g. :func:`aiompc.qtables.gelu_table`).

    ``x``: shares mod ``2^l_in`` of values inside the table's ``k`` bits (signed, two's complement index).  The
    table is public metadata; both parties pass it (the server's copy is what the OT offers).  ``l_in >= k``:
    the shares are reduced mod ``2^k`` (local); ``l_in < k``: sign-extended to ``k`` bits (a millionaire).  Cost:
    that, plus ``k + 2^k·l_out`` bits per element (:mod:`.lookup`).
    """
    k = table_bits(table, "gelu_q table")
    l_in, l_out = check_width(l_in), check_width(l_out)
    xs = _check(x, l_in, "gelu_q")
    if l_in >= k:
        idx = xs & mask(k)
    else:
        idx = await extend(party, f"{label}/ext", xs, l=l_in, l_out=k, signed=True)
    t = np.asarray(table, dtype=np.int64) if party.is_server else None
    return await lookup(party, f"{label}/lut", idx, k=k, l_out=l_out, table=t)
