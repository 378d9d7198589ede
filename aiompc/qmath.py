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
    r  = ((recip_table[u] << (q - E)) + 2^(q-1)) >> q   # look-up; t / 2^E rounded (a product, a truncation)
    p  = requantize(e * r, multiplier, shift, 0, 2^out_bits − 1)

``q = 0`` is the linear form above.  ``N`` is exact and ``r`` exactly rounded; only the tables round.

LayerNorm without its affine part (:class:`LayerNormParams`, over ``H`` values ``x``; gamma and beta are a
separate elementwise affine layer, or are folded into the next matmul)::

    c  = H * x - sum(x)             # local, exact: H times the centred value
    c' = requantize(c, center_multiplier, center_shift, -2^(cb-1), 2^(cb-1) - 1)   # cb = center_bits
    v  = sum(c' * c')               # squares of shares, local sum
    u  = min(v >> var_shift, 2^kr - 1)   # requantize(v, 1, var_shift, 0, 2^kr - 1, "floor")
    r  = rsqrt_table[u]             # look-up (one per row)
    y  = requantize(c' * r, multiplier, shift, -2^(out_bits-1), 2^(out_bits-1) - 1)

With ``octaves = q > 0`` the sum of squares is first scaled up by a power of four, so that the rsqrt table
keeps its relative precision over a range of ``v`` ``4^q`` times wider (``b = var_shift + kr − 2q − 2``,
:attr:`LayerNormParams.octave_base`)::

    E  = sum_{i=1..q} [v >= 2^(b+2i)]    # comparisons with public thresholds (one per octave, per row)
    up = q - E
    u  = min((v << 2·up) >> var_shift, 2^kr - 1)   # requantize(v·4^up, 1, var_shift, 0, 2^kr - 1, "floor")
    r  = rsqrt_table[u] << up            # look-up, then the matching power of two (1/√(4^up·v) = 2^-up/√v)
    y  = requantize(c' * r, multiplier, shift, -2^(out_bits-1), 2^(out_bits-1) - 1)

``q = 0`` is the linear form above.  ``u`` and ``r`` are exact integers; only the table rounds.

Table look-up (GELU, any elementwise function of a ``k``-bit value)::

    y = table[x mod 2^k]            # x signed or unsigned, inside k bits; two's complement index

The builders that choose the tables from the scales (``softmax_params``, ``layernorm_params``,
``gelu_table``) are :mod:`aiompc.qtables`; the definitions here do not depend on how a table was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiompc.errors import InputError
from aiompc.quant import requantize

__all__ = ["MAX_TABLE_BITS", "MAX_OCTAVES", "SoftmaxParams", "LayerNormParams", "table_bits", "int_table",
           "lookup_int", "softmax_int", "softmax_reciprocal", "recip_index", "layernorm_int"]

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


def int_table(table: tuple[int, ...] | np.ndarray, name: str = "table") -> tuple[int, ...]:
    """``table`` as a tuple of Python ints, checked by :func:`table_bits` (``name`` in its error)."""
    out = tuple(int(v) for v in table)
    table_bits(out, name)
    return out


def _rows(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` as ``int64`` with a non-empty last axis (the rows a Softmax / LayerNorm works on); :class:`InputError`
    otherwise."""
    x = np.asarray(x, dtype=np.int64)
    if x.ndim < 1 or x.shape[-1] == 0:
        raise InputError(f"{what} needs a non-empty last axis")
    return x


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
        object.__setattr__(self, "exp_table", int_table(self.exp_table, "softmax exp_table"))
        object.__setattr__(self, "recip_table", int_table(self.recip_table, "softmax recip_table"))
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
    z = _rows(z, "softmax")
    d = z.max(axis=-1, keepdims=True) - z
    e = np.asarray(p.exp_table, dtype=np.int64)[np.minimum(d, (1 << p.exp_bits) - 1)]
    r = softmax_reciprocal(e.sum(axis=-1, keepdims=True), p)
    return requantize(e * r, p.multiplier, p.shift, 0, (1 << p.out_bits) - 1)


def recip_index(s: np.ndarray, p: SoftmaxParams) -> tuple[np.ndarray, np.ndarray]:
    """``(u, E)``: the reciprocal table's index and the octave of row sums ``s >= 0`` (``E = 0`` without octaves)."""
    kr, q = p.recip_bits, p.octaves
    if q == 0:
        return requantize(s, 1, p.sum_shift, 0, (1 << kr) - 1, "floor"), np.zeros_like(s)
    b = p.sum_shift + kr - q
    e = sum((s >= 1 << (b + i)).astype(np.int64) for i in range(1, q + 1))  # E
    return ((s << (q - e)) >> p.sum_shift) & ((1 << kr) - 1), e


def softmax_reciprocal(s: np.ndarray, p: SoftmaxParams) -> np.ndarray:
    """The Softmax's scaled reciprocal ``r`` of row sums ``s >= 0`` (module docstring): ``recip_table[u]``,
    divided by ``2^E`` and rounded with octaves."""
    s = np.asarray(s, dtype=np.int64)
    u, e = recip_index(s, p)
    t = np.asarray(p.recip_table, dtype=np.int64)[u]
    return ((t << (p.octaves - e)) + (1 << p.octaves >> 1)) >> p.octaves if p.octaves else t


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
    octaves: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rsqrt_table", int_table(self.rsqrt_table, "layernorm rsqrt_table"))
        if min(self.rsqrt_table) < 0:
            raise InputError("layernorm: the rsqrt table holds non-negative values")
        if min(self.center_multiplier, self.center_shift, self.var_shift, self.multiplier, self.shift) < 0:
            raise InputError("layernorm: shifts and multipliers are non-negative")
        if not 2 <= self.center_bits <= 16 or not 2 <= self.out_bits <= 16:
            raise InputError("layernorm: center_bits and out_bits in 2..16")
        if not 0 <= self.octaves <= MAX_OCTAVES or (
            self.octaves and self.var_shift + self.rsqrt_bits < 2 * self.octaves + 2
        ):
            raise InputError(f"layernorm: octaves in 0..{MAX_OCTAVES}, with var_shift + rsqrt_bits >= 2·octaves + 2")

    @property
    def octave_base(self) -> int:
        """``b = var_shift + kr − 2q − 2``: the thresholds are ``2^(b+2i)``, ``i = 1..q`` (module docstring)."""
        return self.var_shift + self.rsqrt_bits - 2 * self.octaves - 2

    @property
    def rsqrt_bits(self) -> int:
        """``kr``: the index width of the reciprocal-square-root table."""
        return table_bits(self.rsqrt_table)


def layernorm_int(x: np.ndarray, p: LayerNormParams) -> np.ndarray:
    """The quantized LayerNorm (no affine part) of ``x`` over its last axis (module docstring)."""
    x = _rows(x, "layernorm")
    c = x.shape[-1] * x - x.sum(axis=-1, keepdims=True)
    cb = 1 << (p.center_bits - 1)
    c = requantize(c, p.center_multiplier, p.center_shift, -cb, cb - 1)
    v = (c * c).sum(axis=-1, keepdims=True)
    q, b = p.octaves, p.octave_base
    up = q - sum((v >= 1 << (b + 2 * i)).astype(np.int64) for i in range(1, q + 1)) if q else np.zeros_like(v)
    u = requantize(v << (2 * up), 1, p.var_shift, 0, (1 << p.rsqrt_bits) - 1, "floor")
    r = np.asarray(p.rsqrt_table, dtype=np.int64)[u] << up
    ob = 1 << (p.out_bits - 1)
    return requantize(c * r, p.multiplier, p.shift, -ob, ob - 1)
