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

__all__ = ["MAX_TABLE_BITS", "SoftmaxParams", "LayerNormParams", "table_bits", "lookup_int", "softmax_int",
           "layernorm_int"]

MAX_TABLE_BITS = 8
"""The widest index of a table (a 1-out-of-2^k OT per look-up costs ``k + 2^k·l_out`` bits)."""


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "exp_table", tuple(int(v) for v in self.exp_table))
        object.__setattr__(self, "recip_table", tuple(int(v) for v in self.recip_table))
        table_bits(self.exp_table, "softmax exp_table")
        table_bits(self.recip_table, "softmax recip_table")
        if min(self.exp_table) < 0 or min(self.recip_table) < 0:
            raise InputError("softmax: the exp and reciprocal tables hold non-negative values")
        if self.sum_shift < 0 or self.multiplier < 0 or self.shift < 0 or not 1 <= self.out_bits <= 16:
            raise InputError("softmax: shifts and multiplier are non-negative, out_bits in 1..16")

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
    u = requantize(e.sum(axis=-1, keepdims=True), 1, p.sum_shift, 0, (1 << p.recip_bits) - 1, "floor")
    r = np.asarray(p.recip_table, dtype=np.int64)[u]
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
