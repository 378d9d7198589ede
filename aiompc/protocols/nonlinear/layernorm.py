"""Quantized LayerNorm (no affine part) and GELU on shares, bit for bit as :mod:`aiompc.qmath`.

``layernorm_q`` runs the steps of :func:`aiompc.qmath.layernorm_int` over the last axis (``H`` features), each
in the tightest ring its public bounds allow (``x`` signed in ``l_in`` bits, ``c'`` in ``cb = center_bits``)::

    x   --extend l_in -> l_c-->      c = H·x − Σx      (local; l_c = width of ±(H−1)(2^l_in − 1)·odd(M_c))
    c'  = requantize(c, center_multiplier, center_shift, ±2^(cb−1))      -> ring l_w = max(l_v, l_p)
    v   = Σ square(c')                                    (narrow square, x_bits = cb; local sum; ring l_v)
    u   = requantize(v, 1, var_shift, 0, 2^kr − 1, floor) (known MSB; one per row; ring kr)
    r   = lookup(u, rsqrt_table)                          (1-of-2^kr OT, one per row; ring l_p)
    p   = multiply(c', r)                                 (narrow operands: cb and rb + 1 bits; ring l_p)
    y   = requantize(p, multiplier, shift, ±2^(out_bits−1))                  -> ring l_out

with ``l_c`` wide enough that ``c·M_c`` (odd part) fits too (the centre requantization then runs on its narrow
ring: a carry, no wrap), ``l_v = width(H·4^(cb−1)) + 1`` (the sum of squares, MSB known zero), ``rb`` the width of the largest
table entry, ``l_p = width(2^(cb−1)·r_max) + 1``.  ``H = 1`` needs no protocol (``c = 0``, ``y = 0``).

Cost per element (online, measured in ``tests/protocols/nonlinear/test_layernorm.py``): the extension of ``x``,
the centre requantization, one narrow square in ``l_v`` bits, one narrow product in ``l_p`` bits and the output
requantization, plus per row one requantization and one look-up of ``kr + 2^kr·l_p`` bits.  E.g. ``l_in = 8``,
default :func:`~aiompc.qmath.layernorm_params` (``cb = 10``, ``l_c = 17/22``, ``l_v = 27/29``, ``l_p = 22``), silent
OT: 1174 bits per element at ``H = 128`` and 1138 at ``H = 768`` (extension 75, centre 144/173, square 262/283,
product 402/397, output 224/199, the per-row steps 66/12).

``gelu_q`` is the table look-up of :func:`aiompc.qmath.lookup_int` (:mod:`.lookup`), with the input brought to
the table's ``k`` bits (local reduction, or a signed extension when ``l_in < k``).
"""

from __future__ import annotations

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.qmath import LayerNormParams, table_bits
from aiompc.ring import check_width, mask
from aiompc.protocols.nonlinear.extension import extend
from aiompc.protocols.nonlinear.lookup import lookup
from aiompc.protocols.nonlinear.multiply import multiply, square
from aiompc.protocols.nonlinear.requantize import requantize

__all__ = ["layernorm_q", "gelu_q", "LayerNormRings"]


class LayerNormRings:
    """The public ring widths of one :func:`layernorm_q` (module docstring); pure, identical on both sides."""

    def __init__(self, params: LayerNormParams, H: int, l_in: int, l_out: int) -> None:
        self.H, self.l_in, self.l_out = H, check_width(l_in), check_width(l_out)
        if l_out < params.out_bits:
            raise InputError(f"layernorm_q: l_out={l_out} cannot hold signed {params.out_bits}-bit outputs")
        cb = params.center_bits
        self.c_max = (H - 1) * ((1 << l_in) - 1)
        # room for c·odd(center_multiplier) as well, so the centre requantization stays on its narrow ring
        m = params.center_multiplier
        odd = (m >> ((m & -m).bit_length() - 1)) if m else 1
        self.l_c = (self.c_max * odd).bit_length() + 2
        self.v_max = H * (1 << (2 * (cb - 1)))
        self.l_v = self.v_max.bit_length() + 1
        self.r_max = max(params.rsqrt_table)
        self.r_bits = max(1, self.r_max.bit_length())
        self.p_max = (1 << (cb - 1)) * self.r_max
        self.l_p = self.p_max.bit_length() + 1
        self.l_w = max(self.l_v, self.l_p)
        if max(self.l_c, self.l_w) > 64:
            raise InputError(
                f"layernorm_q: H={H}, l_in={l_in} and center_bits={cb} need rings of {max(self.l_c, self.l_w)} bits (> 64)"
            )


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
    u = await requantize(
        party, f"{label}/var", v, l_in=rings.l_v, multiplier=1, shift=params.var_shift, lo=0, hi=(1 << kr) - 1,
        rounding="floor", l_out=kr, msb_known_zero=True, x_range=(0, rings.v_max),
    )
    table = np.asarray(params.rsqrt_table, dtype=np.int64) if party.is_server else None
    r = await lookup(party, f"{label}/rsqrt", u, k=kr, l_out=rings.l_p, table=table)
    p = await multiply(party, f"{label}/mul", cq & mask(rings.l_p), r, l=rings.l_p, x_bits=cb, y_bits=rings.r_bits + 1)
    ohalf = 1 << (ob - 1)
    return await requantize(
        party, f"{label}/out", p, l_in=rings.l_p, multiplier=params.multiplier, shift=params.shift, lo=-ohalf,
        hi=ohalf - 1, rounding="nearest", l_out=l_out, x_range=(-rings.p_max, rings.p_max),
    )


async def gelu_q(
    party: Party, label: str, x: np.ndarray, *, table: tuple[int, ...] | np.ndarray, l_in: int, l_out: int
) -> np.ndarray:
    """Shares mod ``2^l_out`` of ``lookup_int(x, table)`` (e.g. :func:`aiompc.qmath.gelu_table`).

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
