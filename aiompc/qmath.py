"""Plaintext integer semantics of the quantized transformer non-linearities: table look-up, Softmax, LayerNorm.

Like :mod:`aiompc.quant`, this module is the one definition that the secure protocols' tests and the
plaintext integer interpreter share: in the ``quantized`` mode a secure Softmax / LayerNorm / look-up must
return exactly what these functions return.  Every step is an integer operation that the secure side can
do exactly on shares: a local sum, a requantization (:func:`aiompc.quant.requantize`), a maximum, an exact
table look-up of a value of at most 8 bits (one 1-out-of-2^k OT, :mod:`aiompc.protocols.nonlinear.lookup`)
and an elementwise product of two shared values.  The tables are public: they follow from the public
scales of the model, not from its weights.

All functions take and return ``int64`` arrays of signed values and work on the **last axis** (the
feature axis of a token, or a row of attention scores).

Softmax (:class:`SoftmaxParams`, over ``n`` values ``z``)::

    m  = max(z)                     # a maximum tree of comparisons
    d  = m - z                      # >= 0, local
    dc = min(d, 2^k - 1)            # k = log2 len(exp_table): a clip
    e  = exp_table[dc]              # look-up, unsigned
    S  = sum(e)                     # local
    u  = min(S >> sum_shift, 2^kr - 1)   # requantize(S, 1, sum_shift, 0, 2^kr - 1, "floor")
    r  = recip_table[u]             # look-up (one per row)
    p  = requantize(e * r, multiplier, shift, 0, 2^out_bits - 1)   # product of two shares, requantize

With ``octaves = q > 0`` the row sum is first normalised into one octave, so that the reciprocal table
covers the whole range ``S ∈ [2^b, 2^(b+q+1))`` (``b = sum_shift + kr − q``) with the same relative
precision (a linear table over ``[S_min, n·S_min]`` has ``n`` times less precision at the peaky end, where
``S`` is smallest and one output is near 1)::

    E  = sum_{i=1..q} [S >= 2^(b+i)]     # comparisons with public thresholds (one per octave, per row)
    N  = S << (q - E)                    # in [2^(sum_shift+kr), 2^(sum_shift+kr+1)) for S in that range
    u  = (N >> sum_shift) mod 2^kr       # truncation, then a local reduction
    r  = recip_table[u] << (q - E)       # look-up, then the same power of two (a product, per row)
    p  = requantize(e * r, multiplier, shift, 0, 2^out_bits - 1)

``q = 0`` is the linear form above.  Both ``N`` and ``r`` are exact integers; only the tables round.

LayerNorm without its affine part (:class:`LayerNormParams`, over ``H`` values ``x``; gamma and beta are a
separate elementwise affine layer, or are folded into the next matmul)::

    c  = H * x - sum(x)             # local, exact: H times the centred value
    c' = requantize(c, center_multiplier, center_shift, -2^(cb-1), 2^(cb-1) - 1)   # cb = center_bits
    v  = sum(c' * c')               # squares of shares, local sum
    u  = min(v >> var_shift, 2^kr - 1)   # requantize(v, 1, var_shift, 0, 2^kr - 1, "floor")
    r  = rsqrt_table[u]             # look-up (one per row)
    y  = requantize(c' * r, multiplier, shift, -2^(out_bits-1), 2^(out_bits-1) - 1)

Table look-up (GELU, any elementwise function of a ``k``-bit value)::

    y = table[x mod 2^k]            # x signed or unsigned, inside k bits; two's complement index

The builders that choose the tables from the scales (``softmax_params``, ``layernorm_params``,
``gelu_table``) live beside these definitions; the definitions above do not depend on how a table was
chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiompc.errors import InputError
from aiompc.quant import requantize

__all__ = ["MAX_TABLE_BITS", "MAX_OCTAVES", "SoftmaxParams", "LayerNormParams", "table_bits", "lookup_int",
           "softmax_int", "softmax_params", "layernorm_int"]

MAX_TABLE_BITS = 8
"""The widest index of a table (a 1-out-of-2^k OT per look-up costs ``k + 2^k·l_out`` bits)."""
MAX_OCTAVES = 16
"""The most octaves a Softmax's reciprocal normalises over (rows of up to ``2^17 − 1`` values)."""


def table_bits(table: tuple[int, ...] | np.ndarray, name: str = "table") -> int:
    """``k`` with ``len(table) == 2^k``, ``1 <= k <= MAX_TABLE_BITS``; :class:`InputError` otherwise."""
    n = len(table)
    k = n.bit_length() - 1
    if n < 2 or n != 1 << k or k > MAX_TABLE_BITS:
        raise InputError(f"{name}: a table has 2^k entries, 1 <= k <= {MAX_TABLE_BITS}; got {n}")
    return k


def lookup_int(x: np.ndarray, table: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """``table[x mod 2^k]`` elementwise (``x`` must lie in ``k`` bits, signed or unsigned)."""
    k = table_bits(table)
    x = np.asarray(x, dtype=np.int64)
    if x.size and (x.min() < -(1 << (k - 1)) or x.max() >= 1 << k):
        raise InputError(f"lookup: values must fit in {k} bits, got [{x.min()}, {x.max()}]")
    return np.asarray(table, dtype=np.int64)[x & ((1 << k) - 1)]


@dataclass(frozen=True)
class SoftmaxParams:
    """The public constants of a quantized Softmax (module docstring).  Output: unsigned ``out_bits``."""

    exp_table: tuple[int, ...]
    sum_shift: int
    recip_table: tuple[int, ...]
    multiplier: int
    shift: int
    out_bits: int
    octaves: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "exp_table", tuple(int(v) for v in self.exp_table))
        object.__setattr__(self, "recip_table", tuple(int(v) for v in self.recip_table))
        table_bits(self.exp_table, "softmax exp_table")
        table_bits(self.recip_table, "softmax recip_table")
        if min(self.exp_table) < 0 or min(self.recip_table) < 0:
            raise InputError("softmax: the exp and reciprocal tables hold non-negative values")
        if self.sum_shift < 0 or self.multiplier < 0 or self.shift < 0 or not 1 <= self.out_bits <= 16:
            raise InputError("softmax: shifts and multiplier are non-negative, out_bits in 1..16")
        if not 0 <= self.octaves <= MAX_OCTAVES or (self.octaves and self.sum_shift + self.recip_bits < self.octaves):
            raise InputError(f"softmax: octaves in 0..{MAX_OCTAVES} and at most sum_shift + recip_bits")

    @property
    def exp_bits(self) -> int:
        """``k``: the index width of the exp table (differences are clipped to ``2^k - 1``)."""
        return table_bits(self.exp_table)

    @property
    def recip_bits(self) -> int:
        """``kr``: the index width of the reciprocal table."""
        return table_bits(self.recip_table)


def softmax_int(z: np.ndarray, p: SoftmaxParams) -> np.ndarray:
    """The quantized Softmax of ``z`` over its last axis (module docstring); unsigned ``p.out_bits`` values."""
    z = np.asarray(z, dtype=np.int64)
    if z.ndim < 1 or z.shape[-1] == 0:
        raise InputError("softmax needs a non-empty last axis")
    d = z.max(axis=-1, keepdims=True) - z
    e = np.asarray(p.exp_table, dtype=np.int64)[np.minimum(d, (1 << p.exp_bits) - 1)]
    s = e.sum(axis=-1, keepdims=True)
    kr, q = p.recip_bits, p.octaves
    table = np.asarray(p.recip_table, dtype=np.int64)
    if q == 0:
        r = table[requantize(s, 1, p.sum_shift, 0, (1 << kr) - 1, "floor")]
    else:
        b = p.sum_shift + kr - q
        up = q - sum((s >= 1 << (b + i)).astype(np.int64) for i in range(1, q + 1))  # q - E
        r = table[((s << up) >> p.sum_shift) & ((1 << kr) - 1)] << up
    return requantize(e * r, p.multiplier, p.shift, 0, (1 << p.out_bits) - 1)


@dataclass(frozen=True)
class LayerNormParams:
    """The public constants of a quantized LayerNorm without gamma/beta (module docstring).  Output: signed
    ``out_bits``."""

    center_multiplier: int
    center_shift: int
    center_bits: int
    var_shift: int
    rsqrt_table: tuple[int, ...]
    multiplier: int
    shift: int
    out_bits: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "rsqrt_table", tuple(int(v) for v in self.rsqrt_table))
        table_bits(self.rsqrt_table, "layernorm rsqrt_table")
        if min(self.rsqrt_table) < 0:
            raise InputError("layernorm: the rsqrt table holds non-negative values")
        if min(self.center_multiplier, self.center_shift, self.var_shift, self.multiplier, self.shift) < 0:
            raise InputError("layernorm: shifts and multipliers are non-negative")
        if not 2 <= self.center_bits <= 16 or not 2 <= self.out_bits <= 16:
            raise InputError("layernorm: center_bits and out_bits in 2..16")

    @property
    def rsqrt_bits(self) -> int:
        """``kr``: the index width of the reciprocal-square-root table."""
        return table_bits(self.rsqrt_table)


def layernorm_int(x: np.ndarray, p: LayerNormParams) -> np.ndarray:
    """The quantized LayerNorm (no affine part) of ``x`` over its last axis (module docstring)."""
    x = np.asarray(x, dtype=np.int64)
    if x.ndim < 1 or x.shape[-1] == 0:
        raise InputError("layernorm needs a non-empty last axis")
    c = x.shape[-1] * x - x.sum(axis=-1, keepdims=True)
    cb = 1 << (p.center_bits - 1)
    c = requantize(c, p.center_multiplier, p.center_shift, -cb, cb - 1)
    u = requantize((c * c).sum(axis=-1, keepdims=True), 1, p.var_shift, 0, (1 << p.rsqrt_bits) - 1, "floor")
    r = np.asarray(p.rsqrt_table, dtype=np.int64)[u]
    ob = 1 << (p.out_bits - 1)
    return requantize(c * r, p.multiplier, p.shift, -ob, ob - 1)


def _exp_table(scale_in: float, f: int, max_bits: int) -> tuple[int, ...]:
    """``round(2^f·exp(−i·scale_in))`` for ``i < 2^k``, ``k <= max_bits`` the least width whose last entry is 0
    (so the clip of the difference at ``2^k − 1`` loses nothing); ``k = max_bits`` if none is."""
    for k in range(1, max_bits + 1):
        table = tuple(int(v) for v in np.round(np.exp2(f) * np.exp(-np.arange(1 << k) * scale_in)))
        if table[-1] == 0:
            return table
    return table


def _recip_table(e0: int, s_max: int, kr: int, sum_shift: int, octaves: int, c: int) -> tuple[int, ...]:
    """``r[u] = 2^(c+1) / (N_lo + N_hi)`` rounded, ``[N_lo, N_hi)`` the normalised sums that index ``u`` (clamped
    to the sums that occur): ``r·N / 2^c`` is within ``(N_hi − N_lo)/(N_lo + N_hi)`` of 1 in that bucket."""
    base = (1 << (sum_shift + kr)) if octaves else 0  # the octave's lower end (u = (N >> sum_shift) mod 2^kr)
    n_min = e0 << octaves if octaves else e0  # the least N: S = e0 with E = 0
    n_max = base + (1 << (sum_shift + kr)) - 1 if octaves else s_max
    out = []
    for u in range(1 << kr):
        lo = min(max(base + (u << sum_shift), n_min), n_max)
        hi = max(min(base + ((u + 1) << sum_shift) - 1, n_max), lo)
        if not octaves and u == (1 << kr) - 1:
            hi = max(hi, s_max)  # the clipped index carries every larger sum
        out.append(int(round(2.0 ** (c + 1) / (lo + hi))))
    return tuple(out)


def softmax_params(
    scale_in: float,
    n: int,
    *,
    out_bits: int = 8,
    exp_bits: int = MAX_TABLE_BITS,
    recip_bits: int = MAX_TABLE_BITS,
    frac_bits: int | None = None,
    octaves: int | None = None,
    guard_bits: int = 2,
) -> tuple[SoftmaxParams, float]:
    """The public constants of a quantized Softmax over rows of ``n`` values at input scale ``scale_in``, and its
    output scale ``2^−out_bits`` (``p`` unsigned ``out_bits``; a probability of 1 saturates at ``2^out_bits − 1``).

    * ``exp_table[i] = round(2^f·exp(−i·scale_in))``, ``f = frac_bits`` (default ``out_bits + 2``), as short
      as possible (``2^k`` entries, ``k <= exp_bits``) with a last entry of 0, so the clip of ``max − z`` at
      ``2^k − 1`` is exact; if even ``2^exp_bits`` entries are not enough (``scale_in`` below
      ``ln(2^(f+1)) / (2^exp_bits − 1)``) the clipped tail keeps ``exp_table[-1] > 0``.
    * The row sum lies in ``[2^f, n·2^f]`` (the maximum contributes ``2^f``).  With ``octaves = q``
      (default ``bitlen(n) − 1``, the least with ``n < 2^(q+1)``) it is normalised into one octave and
      ``recip_table`` (``2^recip_bits`` entries) holds ``2^c / N`` at the middle of each of its buckets: the
      relative error of the reciprocal is at most ``2^−(recip_bits+1)`` whatever ``n``.  ``octaves = 0``
      (the plain linear table) spreads the same entries over ``[2^f, n·2^f]``: relative error up to
      ``≈ n·2^−(recip_bits+1)`` at the peaky end (``n = 128``: 25%) — the trade-off is ``q`` threshold
      comparisons and two products per row (shared by the ``n`` values of the row) against that error.
    * ``c = f + q + out_bits + guard_bits``, ``multiplier = 1``, ``shift = c − out_bits``:
      ``p = round(e·r / 2^shift) ≈ 2^out_bits·e/S``; the rounding of ``r·2^(q−E)`` costs at most
      ``2^−(guard_bits+1)`` output LSB.

    Error against the float softmax (``tests/test_qmath.py`` measures it): the exp table's rounding
    (``2^−(f+1)`` per value, accumulated in the sum), the reciprocal's buckets and the final rounding; with the
    defaults the measured maximum is 2.4 output LSB (random and edge rows of up to 128 values at input scales
    1/16..1/2; the tests check 2.5; ``frac_bits = out_bits`` gives up to 7, ``octaves = 0`` up to 84 on a
    one-hot row of 128).  Above ``out_bits = 8`` the reciprocal's relative error ``2^−(recip_bits+1)``
    dominates (8-bit tables).
    """
    if not scale_in > 0 or not np.isfinite(scale_in):
        raise InputError(f"softmax_params: scale_in must be a positive number, got {scale_in!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"softmax_params: n must be a positive integer, got {n!r}")
    if not 1 <= exp_bits <= MAX_TABLE_BITS or not 1 <= recip_bits <= MAX_TABLE_BITS:
        raise InputError(f"softmax_params: table widths in 1..{MAX_TABLE_BITS}")
    f = out_bits + 2 if frac_bits is None else int(frac_bits)
    q = int(n).bit_length() - 1 if octaves is None else int(octaves)
    if not 0 <= f <= 24 or not 0 <= q <= MAX_OCTAVES or not 0 <= guard_bits <= 16:
        raise InputError("softmax_params: frac_bits in 0..24, octaves in 0..16, guard_bits in 0..16")
    exp_table = _exp_table(float(scale_in), f, exp_bits)
    e0, s_max = exp_table[0], int(n) * exp_table[0]  # e0 = 2^f
    if q:
        kr = min(recip_bits, f + q)  # b = f: the octaves start at the least sum 2^f
        sum_shift = f + q - kr
    else:
        kr = recip_bits
        sum_shift = max(0, s_max.bit_length() - kr)
    c = f + q + out_bits + guard_bits
    recip = _recip_table(e0, s_max, kr, sum_shift, q, c)
    params = SoftmaxParams(exp_table=exp_table, sum_shift=sum_shift, recip_table=recip, multiplier=1,
                           shift=c - out_bits, out_bits=out_bits, octaves=q)
    return params, 2.0 ** -out_bits
