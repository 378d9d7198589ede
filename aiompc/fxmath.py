"""Plaintext integer programs of Iron's fixed-point Softmax, GELU and LayerNorm (the ``cheetah`` baseline).

Iron (Hao et al., NeurIPS 2022) evaluates a transformer's non-linear layers with SCI/SIRNN's fixed-point
building blocks at Cheetah's widths: shares mod ``2^l`` (``l = 37``), ``f = 12`` fractional bits, look-up
tables by 1-out-of-``2^k`` OT (``k <= 8``), comparisons (millionaire, ``m = 4``-bit digits), products of
shares and truncations.  This module is the one definition of what those protocols compute, step by step,
with every truncation written out: the secure protocols (:mod:`aiompc.protocols.nonlinear.iron`) equal
these functions bit for bit in exact mode.  No I/O; ``int64`` in, ``int64`` out; last axis.

Inputs and outputs are fixed-point integers at scale ``2^-f``.  ``>>`` is the floor shift (an exact
truncation on shares).  The building blocks, after SIRNN (Rathee et al., S&P 2021; its ``math-functions``):

* **exp of a non-positive value** :func:`exp_neg_fixed`: ``d >= 0`` of ``bw`` bits is cut into 8-bit digits
  ``d = Σ 2^(8i) d_i``; digit ``i`` indexes a public table ``T_i[j] = floor(2^f · exp(-j·2^(8i-f)))``
  (``f + 2``-bit entries); the digit values are multiplied pairwise in a tree, each product truncated by
  ``f`` (SIRNN's ``lookup_table_exp``).  Error: each table entry and each truncation loses < 1 LSB, the result
  is below the true value by at most ``2·(#digits − 1) + 1`` LSB.
* **reciprocal of a normalised value** :func:`recip_normalized_fixed`: ``dn ∈ [2^s, 2^(s+1))`` (a value in
  ``[1, 2)``): its top ``m`` fraction bits index two tables, the slope ``A0`` and intercept ``A1`` of the
  minimax line of ``1/x`` on the table interval, and ``1/x ≈ A1 − A0·(x − p)`` (SIRNN's
  ``reciprocal_approximation``; ``m = ceil((s_out − 2)/2)``, no Newton step for ``s_out <= 18``).
* **normalisation**: the position ``j`` of the leading one of a positive value is found by comparisons with
  the public powers ``2^t`` (``b_t = [v >= 2^t]``, ``j = Σ b_t − 1``); ``2^(W−1−j)`` and any ``2^(e(j))`` are
  linear in the ``b_t`` (SIRNN finds the same one-hot vector by its MSNZB protocol).
* **reciprocal square root** (:func:`rsqrt_fixed`, SIRNN's ``sqrt(inverse=True)``): normalise, a table on the
  top ``m`` fraction bits and the exponent's parity, one Newton step ``y ← y·(3 − x·y²)/2``, and the power of
  two of the exponent.

Functions (domains are public: outside them the fixed-point ring overflows, as in Iron):

* :func:`softmax_fixed` — max, ``exp(z − max)``, one reciprocal of the row sum, one product per element.
* :func:`gelu_fixed` — ``GELU(x) = (x + |x|·tanh(g(|x|)))/2`` with ``g(a) = √(2/π)(a + 0.044715a³)`` (the
  tanh form), ``tanh(g) = (1 − e)/(1 + e)``, ``e = exp(−2g)``, ``|x|`` clipped at 4 inside ``g`` (beyond,
  ``e`` is 0 at ``f = 12`` anyway).
* :func:`layernorm_fixed` — mean by a shift and a public multiplier, variance from truncated squares,
  ``rsqrt`` per row, one product per element (no gamma/beta: a separate elementwise layer).

Error bounds against the float functions (derived in their docstrings, asserted in ``tests/test_fxmath.py``,
in LSB of ``2^-f``): :func:`softmax_error_bound` (``5 + y·(3n + 4)/2^f``), :func:`gelu_error_bound`
(``2 + |x|·2^-f``), :func:`layernorm_error_bound` (``16 + |y|·(2^-7 + δV/2V)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from aiompc.errors import InputError

__all__ = [
    "EXP_DIGIT_BITS",
    "GELU_CLIP",
    "GELU_RING_MARGIN",
    "LAYERNORM_RING_MARGIN",
    "exp_digit_widths",
    "exp_tables",
    "exp_neg_fixed",
    "recip_lut_bits",
    "recip_tables",
    "recip_normalized_fixed",
    "leading_one_counts",
    "softmax_fixed",
    "softmax_plan",
    "SoftmaxPlan",
    "gelu_consts",
    "gelu_fixed",
    "rsqrt_tables",
    "rsqrt_fixed",
    "layernorm_plan",
    "LayerNormPlan",
    "layernorm_fixed",
    "softmax_error_bound",
    "gelu_error_bound",
    "layernorm_error_bound",
]

EXP_DIGIT_BITS = 8
"""SIRNN's look-up digit (its ``KKOT_LIMIT``): the widest table a 1-out-of-``2^k`` OT serves."""

RSQRT_LOOKUP_SCALE = 2
"""Extra fraction bits of the rsqrt table beyond its index width (SIRNN's ``SQRT_LOOKUP_SCALE``)."""

GELU_CLIP = 4
"""``|x|`` is clipped at this value inside ``g`` (real units): ``exp(−2g(4)) < 2^-15``, so ``e = 0`` beyond."""

LAYERNORM_RING_MARGIN = 8
"""The least ``l − 2f`` at which the LayerNorm plan is accepted: below it rsqrt's Newton products (``Y0²·b``) pass
``2^(l−1)`` (measured: wrong at ``l = 2f + 4``, right from ``2f + 6``; two bits of margin)."""

GELU_RING_MARGIN = 8
"""The least ``l − 2f`` at which the GELU program fits its ring: the cube of the clipped ``|x|``, up to
``(4·2^f)^3 / 2^(2f) = 2^(2f+6)``, must stay below the known-MSB truncation's bound ``2^(l−1) − 2^f``."""

def softmax_error_bound(y_ref: np.ndarray, n: int, f: int) -> np.ndarray:
    """Bound on ``|softmax_fixed − y_ref|`` (LSB), ``y_ref = 2^f·softmax`` (float): ``5 + y_ref·(3n + 4)/2^f``.

    Each exp term is below the truth by < 3 LSB (two floored tables, one floored product; the higher
    digits' entries are exactly ``2^f`` or 0), so the row sum by < ``3n``, relative < ``3n/2^f`` (the sum is
    at least ``2^f``); the reciprocal line is within ``2^-10`` relative; two more floors."""
    return 5.0 + np.asarray(y_ref, dtype=np.float64) * (3 * n + 4) / 2.0**f


def gelu_error_bound(x: np.ndarray, f: int) -> np.ndarray:
    """Bound on ``|gelu_fixed − 2^f·GELU_tanh(x/2^f)|`` (LSB): ``2 + |x|·2^-f`` (``tanh`` saturates at
    ``1 − 2^-f``: SIRNN's reciprocal of 1 is ``(2^f − 1)/2^f``).  The tanh form itself is within
    ``4.8·10^-4`` (2 LSB at ``f = 12``) of the exact erf GELU: add 2 LSB against ``x·Φ(x)``."""
    return 2.0 + np.abs(np.asarray(x, dtype=np.float64)) * 2.0**-f


def layernorm_error_bound(x: np.ndarray, y_ref: np.ndarray, f: int, l: int, eps: float = 1e-5) -> np.ndarray:
    """Bound on ``|layernorm_fixed − y_ref|`` (LSB), ``y_ref = 2^f·LN(x/2^f)`` (float):
    ``16 + 2^(g+2)/sqrt(var + eps) + |y_ref|·(2^-7 + δV/(2V))`` (the first term: the floor of the centred
    value, ``2^g/κ`` LSB, amplified by the reciprocal standard deviation) with ``V = Σd²/2^f + H·eps·2^f`` and ``δV = 4·(H + 2^(g+1−f)·Σ|d|)``,
    the loss of the truncated centred values and squares (``d`` = the centred integers; the 4 is ``1/κ²``).
    Rows with a tiny variance (next to ``2^-f``) lose accuracy: the squares keep ``f`` fraction bits only, as
    in Iron's 37-bit ring."""
    x = np.asarray(x, dtype=np.int64)
    p = layernorm_plan(x.shape[-1], f=f, l=l, eps=eps)
    d = (x - x.mean(axis=-1, keepdims=True)).astype(np.float64)
    v = (d * d).sum(axis=-1, keepdims=True) / 2.0**f + x.shape[-1] * eps * 2.0**f
    dv = 4.0 * (x.shape[-1] + 2.0 ** (p.g + 1 - f) * np.abs(d).sum(axis=-1, keepdims=True))
    amp = 2.0 ** (p.g + 2) / np.sqrt(v / (x.shape[-1] * 2.0**f))
    return 16.0 + amp + np.abs(np.asarray(y_ref, dtype=np.float64)) * (2.0**-7 + dv / (2 * v))


def _floor_shift(x: np.ndarray, s: int) -> np.ndarray:
    return np.right_shift(x, s) if s > 0 else x


# --------------------------------------------------------------------------- exp


def exp_digit_widths(bw: int) -> list[int]:
    """Widths of the digits of a ``bw``-bit input, low first: 8 bits each, the last one what remains."""
    if bw < 1:
        raise InputError(f"exp input width must be >= 1, got {bw}")
    return [min(EXP_DIGIT_BITS, bw - i) for i in range(0, bw, EXP_DIGIT_BITS)]


@lru_cache(maxsize=None)
def _exp_tables(bw: int, f: int, saturate: bool) -> tuple[tuple[int, ...], ...]:
    tables = []
    for i, w in enumerate(exp_digit_widths(bw)):
        step = 2.0 ** (EXP_DIGIT_BITS * i - f)
        t = [int(math.floor(math.exp(-j * step) * 2.0**f)) for j in range(1 << w)]
        if saturate and i == 0:
            t[0] = (1 << f) - 1  # keeps 1 + e below 2 (no comparison needed before the reciprocal)
        tables.append(tuple(t))
    return tuple(tables)


def exp_tables(bw: int, f: int, *, saturate: bool = False) -> list[np.ndarray]:
    """The public tables ``T_i[j] = floor(2^f·exp(−j·2^(8i−f)))`` of each digit (``int64``, ``f + 1`` bits).

    ``saturate``: ``T_0[0] = 2^f − 1`` instead of ``2^f`` (GELU's tanh: ``e < 1`` strictly)."""
    return [np.asarray(t, dtype=np.int64) for t in _exp_tables(bw, f, saturate)]


def exp_tree_pairs(n_digits: int) -> list[list[tuple[int, int]]]:
    """The product tree over the digit values: per level the pairs ``(j, j + step)``, ``j`` keeps the product."""
    levels, step = [], 1
    while step < n_digits:
        levels.append([(j, j + step) for j in range(0, n_digits - step, 2 * step)])
        step *= 2
    return levels


def exp_neg_fixed(d: np.ndarray, *, f: int, bw: int, saturate: bool = False) -> np.ndarray:
    """``≈ 2^f·exp(−d/2^f)`` for ``0 <= d < 2^bw`` (``int64``, same shape), result in ``[0, 2^f]``.

    Digits ``d_i`` of 8 bits, ``v_i = T_i[d_i]``, then the tree of :func:`exp_tree_pairs` with
    ``v_j ← (v_j·v_k) >> f``.  Error: ``0 <= 2^f·exp(−d/2^f) − result < 2·(#digits − 1) + 1``."""
    d = np.asarray(d, dtype=np.int64)
    tables = exp_tables(bw, f, saturate=saturate)
    vals = []
    for i, (w, t) in enumerate(zip(exp_digit_widths(bw), tables)):
        digit = (d >> (EXP_DIGIT_BITS * i)) & ((1 << w) - 1)
        vals.append(t[digit])
    for level in exp_tree_pairs(len(vals)):
        for j, k in level:
            vals[j] = (vals[j] * vals[k]) >> f
    return vals[0]


# --------------------------------------------------------------------------- reciprocal


def recip_lut_bits(s_out: int) -> int:
    """SIRNN's table index width for a reciprocal with ``s_out`` fraction bits (no Newton step, ``s_out <= 18``)."""
    if not 3 <= s_out <= 18:
        raise InputError(f"reciprocal output scale must be in 3..18, got {s_out}")
    return math.ceil((s_out - 2) / 2)


@lru_cache(maxsize=None)
def _recip_tables(m: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    k = 1 << m
    a0, a1 = [], []
    for idx in range(k):
        p = 1.0 + idx / k
        z = p * (p + 1.0 / k)
        a0.append(int(math.floor(2.0 ** (m + 3) / z)))  # slope of the chord, in (1/4, 1), scale m + 3
        a1.append(int(math.floor(2.0 ** (2 * m + 2) * (1.0 / (2 * k) + math.sqrt(z)) / z)))  # intercept, scale 2m + 2
    return tuple(a0), tuple(a1)


def recip_tables(m: int) -> tuple[np.ndarray, np.ndarray]:
    """``(A0, A1)``: for ``x ∈ [p, p + 2^-m)``, ``p = 1 + idx/2^m``: ``1/x ≈ A1 − A0·(x − p)`` (minimax line).

    ``A0 = floor(2^(m+3)/(p(p + 2^-m)))`` (``m + 3`` bits), ``A1 = floor(2^(2m+2)·(2^-(m+1) + √z)/z)``,
    ``z = p(p + 2^-m)`` (``2m + 2`` bits)."""
    a0, a1 = _recip_tables(m)
    return np.asarray(a0, dtype=np.int64), np.asarray(a1, dtype=np.int64)


def recip_normalized_fixed(dn: np.ndarray, *, s_dn: int, s_out: int, m: int) -> np.ndarray:
    """``≈ 2^s_out·2^s_dn/dn`` for ``dn ∈ [2^s_dn, 2^(s_dn+1))``: SIRNN's reciprocal approximation.

    ``idx = (dn >> (s_dn − m)) mod 2^m``, ``low = dn mod 2^(s_dn − m)``,
    ``w = (A1[idx]·2^(s_dn−m+1) − A0[idx]·low) >> (s_dn + m + 3 − s_out)``.  Error about ``2^-(2m+1)``
    relative plus one LSB of ``s_out`` (the result is in ``(2^(s_out−1), 2^s_out)``)."""
    dn = np.asarray(dn, dtype=np.int64)
    a0, a1 = recip_tables(m)
    idx = (dn >> (s_dn - m)) & ((1 << m) - 1)
    low = dn & ((1 << (s_dn - m)) - 1)
    out = a1[idx] * (1 << (s_dn - m + 1)) - a0[idx] * low
    return out >> (s_dn + m + 3 - s_out)


def leading_one_counts(v: np.ndarray, thresholds: range) -> np.ndarray:
    """``Σ_t [v >= 2^t]`` over ``t`` in ``thresholds`` (the comparisons the protocol makes)."""
    v = np.asarray(v, dtype=np.int64)
    k = np.zeros(v.shape, dtype=np.int64)
    for t in thresholds:
        k += (v >= (1 << t)).astype(np.int64)
    return k


# --------------------------------------------------------------------------- softmax


@dataclass(frozen=True)
class SoftmaxPlan:
    """Public parameters of a softmax over rows of ``n`` (``f``, ``l``): ``B = bitlen(n)`` (the row sum is in
    ``[2^f, 2^(f+B))``), ``m`` the reciprocal table's index bits, ``exp_bits`` the exp input width ``l − 1``."""

    n: int
    f: int
    l: int
    B: int
    m: int
    exp_bits: int

    @property
    def s_dn(self) -> int:
        """Scale of the normalised row sum (a value in ``[1, 2)``)."""
        return self.f + self.B - 1


def softmax_plan(n: int, *, f: int, l: int) -> SoftmaxPlan:
    """The plan of :func:`softmax_fixed` (raises :class:`~aiompc.errors.InputError` where the ring is too small)."""
    if n < 1:
        raise InputError("softmax needs a non-empty last axis")
    B = n.bit_length()
    plan = SoftmaxPlan(n=n, f=f, l=l, B=B, m=recip_lut_bits(f), exp_bits=l - 1)
    if 2 * f + B + 1 > l - 1 or plan.s_dn + plan.m + 4 > l:
        raise InputError(f"softmax over {n} values at f={f} does not fit l={l} bits")
    return plan


def softmax_fixed(z: np.ndarray, *, f: int, l: int) -> np.ndarray:
    """Iron's softmax over the last axis: ``int64`` in ``[−2^(l−2), 2^(l−2))`` at scale ``2^-f`` → ``[0, 2^f]``.

    Steps (``n`` values, ``B = bitlen(n)``; each is a protocol step of
    :func:`~aiompc.protocols.nonlinear.iron.softmax_fx`)::

        d   = max(z) − z                         # comparisons tree, local subtraction
        e   = exp_neg_fixed(d, bw = l − 1)       # digits, 5 tables, 4 products (scale f, <= 2^f)
        S   = Σ e                                # in [2^f, n·2^f]: the max term is exactly 2^f
        k   = Σ_{t=1}^{B−1} [S >= 2^(f+t)]        # leading one of S is at f + k
        a   = 2^(B−1−k)                          # linear in the comparison bits
        w   = recip_normalized_fixed(S·a, s_dn = f + B − 1, s_out = f)    # ≈ 2^f / (S·a/2^(f+B−1))
        r   = w·a                                # ≈ 2^(f+B−1)·2^f/S  (scale f + B − 1)
        y   = (e·r) >> (f + B − 1)

    Error: :func:`softmax_error_bound`."""
    z = np.asarray(z, dtype=np.int64)
    plan = softmax_plan(z.shape[-1], f=f, l=l)
    d = z.max(axis=-1, keepdims=True) - z
    e = exp_neg_fixed(d, f=f, bw=plan.exp_bits)
    s = e.sum(axis=-1, keepdims=True)
    k = leading_one_counts(s, range(f + 1, f + plan.B))
    a = np.left_shift(np.int64(1), plan.B - 1 - k)
    w = recip_normalized_fixed(s * a, s_dn=plan.s_dn, s_out=f, m=plan.m)
    r = w * a
    return (e * r) >> plan.s_dn


# --------------------------------------------------------------------------- GELU


@dataclass(frozen=True)
class GeluConsts:
    """Public constants of :func:`gelu_fixed` at ``f`` fraction bits."""

    clip: int  # GELU_CLIP·2^f
    c1: int  # round(2^f · 2·sqrt(2/pi))
    c3: int  # round(2^f · 2·sqrt(2/pi)·0.044715)
    exp_bits: int  # width of v = 2g(|x| clipped)
    m: int  # reciprocal table bits


def gelu_consts(f: int) -> GeluConsts:
    """The constants of :func:`gelu_fixed` (``f`` fraction bits)."""
    k = 2.0 * math.sqrt(2.0 / math.pi)
    c1, c3 = round(k * 2.0**f), round(k * 0.044715 * 2.0**f)
    clip = GELU_CLIP << f
    vmax = (c1 * clip + c3 * ((((clip * clip) >> f) * clip) >> f)) >> f
    return GeluConsts(clip=clip, c1=c1, c3=c3, exp_bits=int(vmax).bit_length(), m=recip_lut_bits(f))


def gelu_fixed(x: np.ndarray, *, f: int, l: int) -> np.ndarray:
    """Iron's GELU (tanh form) elementwise: ``int64`` at scale ``2^-f`` with ``|x| < 2^(l−3−f)`` (real
    ``|x| < 2^(l−3−2f)``, 1024 at Cheetah's widths) → ``int64`` at scale ``2^-f``.

    Steps (each a protocol step of :func:`~aiompc.protocols.nonlinear.iron.gelu_fx`)::

        a   = |x|                                 # DReLU + multiplexer
        c   = min(a, 4·2^f)                       # comparison + multiplexer
        c3  = (((c·c) >> f)·c) >> f               # square, product, truncations
        v   = (c1·c + c3'·c3) >> f                 # 2·g(c) at scale f, public constants, < 2^16
        e   = exp_neg_fixed(v, bw = 16, saturate) # ≈ exp(−2g), < 2^f
        w   = recip_normalized_fixed(2^f + e, s_dn = f, s_out = f)   # ≈ 1/(1 + e)
        t   = ((2^f − e)·w) >> f                  # ≈ tanh(g(|x|))
        y   = (x·2^f + a·t) >> (f + 1)            # (x + |x|·tanh)/2 = x·(1 + tanh(g(x)))/2

    Error: :func:`gelu_error_bound` against the tanh-form GELU."""
    x = np.asarray(x, dtype=np.int64)
    k = gelu_consts(f)
    a = np.abs(x)
    c = np.minimum(a, k.clip)
    cube = (((c * c) >> f) * c) >> f
    v = (k.c1 * c + k.c3 * cube) >> f
    e = exp_neg_fixed(v, f=f, bw=k.exp_bits, saturate=True)
    w = recip_normalized_fixed((1 << f) + e, s_dn=f, s_out=f, m=k.m)
    t = (((1 << f) - e) * w) >> f
    return (x * (1 << f) + a * t) >> (f + 1)


# --------------------------------------------------------------------------- reciprocal square root


def rsqrt_lut_bits(s_out: int) -> int:
    """SIRNN's rsqrt table index width (one Newton step for ``s_out <= 14``)."""
    if not 2 <= s_out <= 14:
        raise InputError(f"rsqrt output scale must be in 2..14, got {s_out}")
    return math.ceil(s_out / 2)


@lru_cache(maxsize=None)
def _rsqrt_table(m: int) -> tuple[int, ...]:
    out = []
    for j in range(1 << (m + 1)):  # index = (top m fraction bits) + 2^m·parity
        idx, parity = j & ((1 << m) - 1), j >> m
        u = (1.0 + idx / (1 << m)) * (2.0**parity)
        out.append(int(math.floor(2.0 ** (m + RSQRT_LOOKUP_SCALE) / math.sqrt(u))))
    return tuple(out)


def rsqrt_tables(m: int) -> np.ndarray:
    """``Y[idx + 2^m·p] = floor(2^(m+2)/sqrt((1 + idx/2^m)·2^p))`` (``int64``, ``2^(m+1)`` entries)."""
    return np.asarray(_rsqrt_table(m), dtype=np.int64)


def rsqrt_fixed(v: np.ndarray, *, f: int, W: int, s_y: int, E: int) -> tuple[np.ndarray, np.ndarray]:
    """SIRNN's reciprocal square root of ``1 <= v < 2^W`` (scale ``2^-f``): returns ``(x1, a)`` with
    ``x1·a ≈ 2^(s_y+E)/sqrt(v/2^f)``.

    ``j`` = leading one of ``v`` (comparisons with ``2^t``, ``t = 1..W−1``), ``X = v·2^(W−1−j)`` (scale ``W−1``),
    ``p = (j − f) mod 2``, table index ``(X >> (W−1−m)) mod 2^m + 2^m·p``, ``Y0`` at scale ``m + 2``;
    ``b = (X >> (W−1−s_y))·2^p``; one Newton step ``b1 = (Y0²·b) >> (2m+4)``,
    ``x1 = (Y0·(3·2^s_y − b1)) >> (m + 3)`` (scale ``s_y``); ``a = 2^((f − j + p)/2 + E)``."""
    v = np.asarray(v, dtype=np.int64)
    m = rsqrt_lut_bits(s_y)
    j = leading_one_counts(v, range(1, W))
    X = v * np.left_shift(np.int64(1), W - 1 - j)
    p = (j - f) & 1
    q = X >> (W - 1 - m)
    y0 = rsqrt_tables(m)[(q & ((1 << m) - 1)) + (p << m)]
    b = (X >> (W - 1 - s_y)) << p
    b1 = ((y0 * y0) * b) >> (2 * m + 2 * RSQRT_LOOKUP_SCALE)
    x1 = (y0 * ((3 << s_y) - b1)) >> (m + RSQRT_LOOKUP_SCALE + 1)
    e = (f - j + p) // 2 + E
    if np.any(e < 0):
        raise InputError("rsqrt: the exponent offset E is too small for this range")
    return x1, np.left_shift(np.int64(1), e)


# --------------------------------------------------------------------------- LayerNorm


@dataclass(frozen=True)
class LayerNormPlan:
    """Public parameters of :func:`layernorm_fixed` over rows of ``H`` (``f``, ``l``).

    * centring without a division: ``c = (H·x − Σx) >> T``, ``T = bitlen(H) + g``, so ``c ≈ κ·(x − mean)/2^g``
      with ``κ = H/2^bitlen(H) ∈ [1/2, 1)`` (κ cancels in the ratio; a constant row gives ``c = 0`` exactly);
    * domain: ``|x_i − mean| < 2^A`` (real), ``A = floor((l − 2 − f − bitlen(H))/2)``;
    * squares: ``q = c² >> (f − 2g)`` (scale ``f``), ``g = max(0, f + A − floor((l−1)/2))`` keeps ``c² < 2^(l−1)``;
    * ``V = Σq + eps_int`` (``eps_int = max(1, round(κ²·H·eps·2^f))``), ``1 <= V < 2^W``, ``W = l − 2``;
    * rsqrt (:func:`rsqrt_fixed`): ``s_y = f`` fraction bits, ``E`` offsets the exponent;
      ``r = (((x1·c_H) >> f)·a) >> (s_y + E − s_r)``, ``c_H = round(sqrt(H)·2^f)``,
      ``s_r = s_y + E − ceil(log2(H)/2)``: ``r ≈ 2^s_r/(κ·sqrt(var + eps))``;
    * ``y = (c·r) >> (s_r − g)`` (every intermediate below ``2^(l−1)``: ``|c|·r <= sqrt(H)·2^(f+s_r−g)``)."""

    H: int
    f: int
    l: int
    T: int
    A: int
    g: int
    eps_int: int
    W: int
    s_y: int
    E: int
    c_H: int
    s_r: int

    @property
    def x_bits(self) -> int:
        """Signed width of the centred ``c`` (the product operand)."""
        return self.f + self.A - self.g + 1


def layernorm_plan(H: int, *, f: int, l: int, eps: float = 1e-5) -> LayerNormPlan:
    """The plan of :func:`layernorm_fixed` (raises :class:`~aiompc.errors.InputError` where the ring is too small)."""
    if H < 1:
        raise InputError("layernorm needs a non-empty last axis")
    if l < 2 * f + LAYERNORM_RING_MARGIN:
        raise InputError(f"layernorm needs l >= 2f + {LAYERNORM_RING_MARGIN} (rsqrt's Newton products must fit the "
                         f"ring), got f = {f}, l = {l}")
    hb = H.bit_length()
    A = (l - 2 - f - hb) // 2
    if A < 0:
        raise InputError(f"layernorm over {H} features does not fit l={l} bits at f={f}")
    g = max(0, f + A - (l - 1) // 2)
    W = l - 2
    s_y = f
    E = max(0, -((f - (W - 1)) // 2))
    kappa = H / 2.0**hb
    s_r = s_y + E - math.ceil(math.log2(H) / 2)
    return LayerNormPlan(H=H, f=f, l=l, T=hb + g, A=A, g=g, eps_int=max(1, round(kappa * kappa * H * eps * 2.0**f)),
                         W=W, s_y=s_y, E=E, c_H=round(math.sqrt(H) * 2.0**f), s_r=s_r)


def layernorm_fixed(x: np.ndarray, *, f: int, l: int, eps: float = 1e-5) -> np.ndarray:
    """Iron's LayerNorm without affine over the last axis: ``int64`` at scale ``2^-f`` (domain of
    :class:`LayerNormPlan`) → ``int64`` at scale ``2^-f``, ``≈ 2^f·(x − mean)/sqrt(var + eps)``.

    Steps (each a protocol step of :func:`~aiompc.protocols.nonlinear.iron.layernorm_fx`)::

        c  = (H·x − Σx) >> T                  # local, one truncation per element
        q  = c² >> (f − 2g)                   # square, truncation
        V  = Σq + eps_int                     # >= 1
        x1, a = rsqrt_fixed(V)                # per row: comparisons, table, Newton step
        r  = (((x1·c_H) >> f)·a) >> (s_y + E − s_r)   # per row
        y  = (c·r) >> (s_r − g)

    Error: :func:`layernorm_error_bound`."""
    x = np.asarray(x, dtype=np.int64)
    p = layernorm_plan(x.shape[-1], f=f, l=l, eps=eps)
    c = (p.H * x - x.sum(axis=-1, keepdims=True)) >> p.T
    q = (c * c) >> (f - 2 * p.g)
    v = q.sum(axis=-1, keepdims=True) + p.eps_int
    x1, a = rsqrt_fixed(v, f=f, W=p.W, s_y=p.s_y, E=p.E)
    r = (((x1 * p.c_H) >> f) * a) >> (p.s_y + p.E - p.s_r)
    return (c * r) >> (p.s_r - p.g)
