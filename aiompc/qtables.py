"""The builders of the quantized transformer's public tables: they choose the constants of
:mod:`aiompc.qmath`'s integer programs (the exp and reciprocal tables of a Softmax, the centring, variance shift
and rsqrt table of a LayerNorm, a GELU table) from the public scales of a model.

:mod:`aiompc.qmath` defines what a Softmax / LayerNorm / look-up computes given its constants; this module only
picks constants that make those programs approximate the float functions, with the error bounds stated per
builder and checked in ``tests/test_qmath.py``.  Nothing here depends on a secret.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from aiompc.errors import InputError
from aiompc.qmath import (MAX_OCTAVES, MAX_TABLE_BITS, LayerNormParams, SoftmaxParams, recip_index,
                          softmax_reciprocal)

__all__ = ["softmax_params", "layernorm_params", "gelu_table", "GELU_APPROXIMATIONS", "DEFAULT_LAYERNORM_OCTAVES"]

DEFAULT_LAYERNORM_OCTAVES = 4
"""Factor-4 steps of variance a LayerNorm normalises by default: accurate rows down to ``std_max/32``."""


def _exp_table(scale_in: float, f: int, max_bits: int) -> tuple[int, ...]:
    """``round((2^f − 1)·exp(−i·scale_in))`` for ``i < 2^k``, ``k <= max_bits`` the least width whose last entry
    is 0 (so the clip of the difference at ``2^k − 1`` loses nothing); ``k = max_bits`` if none is."""
    for k in range(1, max_bits + 1):
        table = tuple(int(v) for v in np.round((2.0**f - 1) * np.exp(-np.arange(1 << k) * scale_in)))
        if table[-1] == 0:
            return table
    return table


def _recip_table(e0: int, s_max: int, kr: int, sum_shift: int, octaves: int, c: int) -> tuple[int, ...]:
    """``r[u] = 2^(c+1) / (N_lo + N_hi)`` rounded, ``[N_lo, N_hi)`` the normalised sums that index ``u`` (clamped
    to the sums that occur): ``r·N / 2^c`` is within ``(N_hi − N_lo)/(N_lo + N_hi)`` of 1 in that bucket."""
    base = (1 << (sum_shift + kr)) if octaves else 0  # the octave's lower end (u = (N >> sum_shift) mod 2^kr)
    n_min = base if octaves else e0  # the least N (sums from e0 to 2^(b+1) - 1 all normalise into the octave)
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

    * ``exp_table[i] = round((2^f − 1)·exp(−i·scale_in))``, ``f = frac_bits`` (default ``out_bits + 2``; the
      ``− 1`` keeps every entry below ``2^f``, so the shared look-up output has ``f`` bits and a known-zero top
      bit in ``f + 1``; the scale cancels in ``e / S``), as short as possible (``2^k`` entries,
      ``k <= exp_bits``) with a last entry of 0, so the clip of ``max − z`` at ``2^k − 1`` is exact; if even
      ``2^exp_bits`` entries are not enough (``scale_in`` below ``ln(2^(f+1)) / (2^exp_bits − 1)``) the
      clipped tail keeps ``exp_table[-1] > 0``.
    * The row sum lies in ``[e0, n·e0]``, ``e0 = exp_table[0] = 2^f − 1`` (the maximum contributes ``e0``).
      With ``octaves = q`` (default and least: the ``q`` with ``n·e0 < 2^(b+q+1)``, ``b = bitlen(e0) − 1``, i.e.
      ``ceil(log2 n)``) it is normalised into one octave and ``recip_table`` (``2^recip_bits`` entries) holds
      ``2^(c+q) / N`` at the middle of each of its buckets, so ``r = round(recip_table[u] / 2^E) ≈ 2^c / S``
      with a relative error of at most ``2^−(recip_bits+1)`` whatever ``n`` (plus the rounding).  ``octaves = 0`` (the
      plain linear table of ``2^c / S``) spreads the same entries over ``[e0, n·e0]``: relative error up to
      ``≈ n·2^−(recip_bits+1)`` at the peaky end — the trade-off is ``q`` threshold comparisons, two products
      and a truncation per row (shared by the ``n`` values of the row) against that error.
    * ``c = f + out_bits + guard_bits (+ 1 with octaves)``, ``multiplier = 1``, ``shift = c − out_bits``:
      ``p = round(e·r / 2^shift) ≈ 2^out_bits·e/S``; the rounding of ``r`` (twice with octaves) costs at most
      ``2^−(guard_bits+1)`` output LSB: ``e < 2^f``.  The product
      ``e·r < 2^(c+1)`` sets the row ring of the protocol, whatever ``n``.
    * The few reciprocal entries that could round ``e·r`` past ``2^out_bits − 1`` (sums within a few units of
      ``e0``) are lowered by a unit or two, so the final requantization never clips (the protocol then skips
      that comparison; the outputs of those rows stay ``2^out_bits − 1``).

    Error against the float softmax (``tests/test_qmath.py`` measures it): the exp table's rounding
    (``2^−(f+1)`` per value, accumulated in the sum), the reciprocal's buckets and the final rounding; with the
    defaults the measured maximum is 2.1 output LSB (random and edge rows of up to 128 values at input scales
    1/16..1/2; the tests check 2.5).  ``frac_bits = out_bits`` gives up to 7; ``octaves = 0`` up to 35 on random
    rows of 128 and more than 10 on rows of 128 with a few equal maxima.  Above ``out_bits = 8`` the
    reciprocal's relative error ``2^−(recip_bits+1)`` dominates (8-bit tables).
    """
    if not scale_in > 0 or not np.isfinite(scale_in):
        raise InputError(f"softmax_params: scale_in must be a positive number, got {scale_in!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"softmax_params: n must be a positive integer, got {n!r}")
    if not 1 <= exp_bits <= MAX_TABLE_BITS or not 1 <= recip_bits <= MAX_TABLE_BITS:
        raise InputError(f"softmax_params: table widths in 1..{MAX_TABLE_BITS}")
    f = out_bits + 2 if frac_bits is None else int(frac_bits)
    if not 1 <= f <= 24 or not 0 <= guard_bits <= 16:
        raise InputError("softmax_params: frac_bits in 1..24, guard_bits in 0..16")
    exp_table = _exp_table(float(scale_in), f, exp_bits)
    e0, s_max = exp_table[0], int(n) * exp_table[0]  # e0 = 2^f - 1
    b = e0.bit_length() - 1  # 2^b <= e0 <= S
    need = s_max.bit_length() - 1 - b  # the least q with S_max < 2^(b+q+1)
    q = need if octaves is None else int(octaves)
    if not 0 <= q <= MAX_OCTAVES or 0 < q < need:
        raise InputError(f"softmax_params: octaves must be 0 or in {need}..{MAX_OCTAVES} for rows of {n}, got {q}")
    if q:
        kr = min(recip_bits, b + q)  # the octaves start at 2^b
        sum_shift = b + q - kr
    else:
        kr = recip_bits
        sum_shift = max(0, s_max.bit_length() - kr)
    c = f + out_bits + guard_bits + (1 if q else 0)
    params = SoftmaxParams(exp_table=exp_table, sum_shift=sum_shift, recip_table=_recip_table(
        e0, s_max, kr, sum_shift, q, c + q), multiplier=1, shift=c - out_bits, out_bits=out_bits, octaves=q)
    return _below_saturation(params, int(n)), 2.0 ** -out_bits


def _below_saturation(p: SoftmaxParams, n: int) -> SoftmaxParams:
    """``p`` with the few reciprocal entries lowered that could round a product ``e·r`` (``e <= S``) past
    ``2^out_bits − 1``: then no output needs the clip (the protocol skips that comparison).  Only the buckets
    of sums within a few units of ``e0`` (rows where one value takes almost everything) are touched; their
    outputs stay ``2^out_bits − 1``.  Rows of at most ``2^20`` possible sums; larger ones are left as they are."""
    e0 = p.exp_table[0]
    sums = np.arange(e0, n * max(p.exp_table) + 1, dtype=np.int64)
    if sums.size > 1 << 20:
        return p
    limit = (((1 << p.out_bits) - 1) << p.shift) + ((1 << p.shift) >> 1) - 1  # rounds to 2^out_bits − 1
    table = list(p.recip_table)
    for _ in range(64):
        over = np.minimum(sums, max(p.exp_table)) * softmax_reciprocal(sums, p) > limit
        if not over.any():
            return p
        for u in np.unique(recip_index(sums[over], p)[0]):
            table[int(u)] -= 1
        p = replace(p, recip_table=tuple(table))
    return p




# --------------------------------------------------------------------------- builders: LayerNorm and GELU


def _small_multiplier(value: float, bits: int = 4) -> tuple[int, int]:
    """``(M, s)`` with ``M < 2^bits`` and ``M / 2^s`` the largest such fraction ``<= value`` (``value > 0``):
    a few-bit multiplier keeps the secure requantization on its narrow ring (the product ``x·M`` stays within
    a few bits of ``x``), and rounding down never widens the result.  ``value >= 1``: ``(min(floor(value),
    2^bits − 1), 0)``."""
    if value >= 1:
        return min(math.floor(value), (1 << bits) - 1), 0
    s = 0
    while math.floor(value * 2.0 ** (s + 1)) < (1 << bits):
        s += 1
    return max(1, math.floor(value * 2.0**s)), s


def layernorm_params(
    scale_in: float,
    n: int,
    *,
    out_bits: int = 8,
    in_bits: int = 8,
    center_bits: int | None = None,
    rsqrt_bits: int = MAX_TABLE_BITS,
    rsqrt_out_bits: int = 12,
    eps: float = 1e-5,
    std_max: float | None = None,
    out_range: float = 8.0,
    octaves: int | None = None,
) -> tuple[LayerNormParams, float]:
    """The constants of a quantized LayerNorm (no affine part) of ``n`` features, and its output scale.

    Input: signed ``in_bits`` integers ``x`` at scale ``scale_in`` (real value ``x·scale_in``).  Output:
    ``(params, scale_out)``; :func:`layernorm_int` then returns signed ``out_bits`` integers ``y`` with
    ``y·scale_out ≈ (x − mean)/sqrt(var + eps)`` (float LayerNorm of the real values), ``scale_out =
    out_range / 2^(out_bits−1)`` (outputs beyond ``±out_range`` clip).

    Choices (each a step of :func:`layernorm_int`):

    * centre: ``c' = round(c·M_c/2^s_c) ≈ (x − mean)·2^g``, ``g = center_bits − 1 − in_bits`` (default
      ``center_bits = in_bits + 2``, ``g = 1``: about half an input unit of resolution), with a 4-bit multiplier
      ``M_c/2^s_c <= 2^g/n`` (at most ``2^g/n`` so ``c'`` never clips when ``g >= 0``, since
      ``|x − mean| < 2^in_bits``; LayerNorm is scale-invariant, so only the resolution, not the result,
      depends on how close it is).  The ``c'`` unit is ``scale_c = scale_in·2^s_c/(n·M_c)``.
    * variance index: ``u = min(Σc'² >> var_shift, 2^rsqrt_bits − 1)`` with ``var_shift`` the least that maps a
      row of standard deviation ``std_max`` (real; default ``2^(in_bits−1)·scale_in``, the largest any row of
      ``in_bits`` values has) into the table.  Rows with a larger deviation clip to the last entry.
    * ``rsqrt_table[u] = round(R / sqrt(v_u/n + eps_c))``: ``v_u`` the midpoint of bucket ``u``
      (``(u + 1/2)·2^var_shift``; ``max(u, 1)`` when ``var_shift = 0``, where ``u = 0`` means ``c' = 0``),
      ``eps_c = eps/scale_c²``, ``R = 2^shift/scale_out`` with the largest ``shift`` that keeps every entry
      below ``2^rsqrt_out_bits`` (so the largest entry has ``rsqrt_out_bits`` or ``rsqrt_out_bits − 1`` bits).
    * output: ``y = round(c'·r / 2^shift)`` (``multiplier = 1``: a plain rounding shift), clipped to ``out_bits``.

    Error (``tests/test_qmath.py`` checks it): for a row of deviation ``σ`` (input units) whose variance index
    ``u = floor(n·σ²·4^g / 2^var_shift)`` lies in ``[16, 2^rsqrt_bits − 2)``, every output not clipped obeys::

        |y·scale_out − LN(x)| <= scale_out/2 + |LN(x)|·(1/(4(u−1)+2) + 1/min(table) + 2^−12)
                                 + 1.25·2^−(g+1)/σ

    (output rounding; the bucket's relative rsqrt error with ``c'``'s rounding moving ``u`` by at most one; the
    table rounding; the centre's rounding, half a ``c'`` unit of at most ``(9/8)·2^−g`` input units).  With
    ``octaves = 0`` the variance index is linear, so the accurate range of deviations spans a factor of
    ``2^(rsqrt_bits/2)/4`` (4 for 8-bit tables) below ``std_max``, and a calibrated ``std_max`` (the largest row
    deviation seen) matters.  ``octaves = q > 0`` (module docstring; default ``DEFAULT_LAYERNORM_OCTAVES = 4`` where the variance range
    allows, ``0`` is the linear form): ``var_shift`` maps ``std_max`` below ``2^(var_shift+kr)`` as before,
    and rows down to ``std_max·2^−(q+1)`` are normalised into the table's top three quarters (``u >= 2^kr/4``
    in the bound above, with ``u`` the normalised index: a relative rsqrt error of at most ``1/254`` for 8-bit
    tables); ``eps`` enters those entries
    as for the rows normalised by ``E = q`` (for the others, a further relative error of about ``eps/(2·var)``),
    and the entries below ``2^kr/4`` (rows with ``E = 0`` only) as ``eps_c·4^q``, exactly.
    Zero-variance rows (and ``n = 1``) give exactly 0, as the float LayerNorm does.
    """
    if not scale_in > 0 or not math.isfinite(scale_in):
        raise InputError(f"layernorm_params: scale_in must be a positive number, got {scale_in!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"layernorm_params: n must be a positive integer, got {n!r}")
    if not 2 <= in_bits <= 15:
        raise InputError(f"layernorm_params: in_bits in 2..15, got {in_bits}")
    cb = in_bits + 2 if center_bits is None else int(center_bits)
    if not 2 <= cb <= 16:
        raise InputError(f"layernorm_params: center_bits in 2..16, got {cb} (in_bits + 2 by default)")
    if not 1 <= rsqrt_bits <= MAX_TABLE_BITS or not 2 <= rsqrt_out_bits <= 24:
        raise InputError("layernorm_params: rsqrt_bits in 1..8 and rsqrt_out_bits in 2..24")
    if not eps > 0 or not out_range > 0 or (std_max is not None and not std_max > 0):
        raise InputError("layernorm_params: eps, out_range and std_max are positive")
    if octaves is not None and (not isinstance(octaves, (int, np.integer)) or not 0 <= octaves <= MAX_OCTAVES):
        raise InputError(f"layernorm_params: octaves in 0..{MAX_OCTAVES}, got {octaves!r}")
    n = int(n)
    g = cb - 1 - in_bits
    center_multiplier, center_shift = _small_multiplier(2.0**g / n)
    scale_c = scale_in * 2.0**center_shift / (n * center_multiplier)
    sigma = (2.0 ** (in_bits - 1) * scale_in) if std_max is None else float(std_max)
    v_max = n * (sigma / scale_c) ** 2  # Σc'² of a row of deviation std_max
    var_shift = max(0, math.ceil(math.log2(max(v_max, 1.0))) - rsqrt_bits)
    if octaves is None:  # default: 4, as far as the variance range allows
        octaves = max(0, min(DEFAULT_LAYERNORM_OCTAVES, (var_shift + rsqrt_bits - 2) // 2))
    if octaves and var_shift + rsqrt_bits < 2 * octaves + 2:
        raise InputError(f"layernorm_params: {octaves} octaves need a variance range of 2^{2 * octaves + 2}; use fewer")
    eps_c = eps / scale_c**2
    size = 1 << rsqrt_bits
    mids = [((u + 0.5) * 2.0**var_shift) if var_shift else float(max(u, 1)) for u in range(size)]
    # octaves: indices below 2^(kr−2) are only reached by rows that were scaled by 4^q (E = 0): their eps is
    # scaled alike; the rest holds rows of every E and takes eps as for E = q (an error of about eps/(2·var)
    # relative for the others, the size of eps's own effect on them)
    epss = [eps_c * 4.0**octaves if octaves and u < size // 4 else eps_c for u in range(size)]
    inv = [1.0 / math.sqrt(v / n + e) for v, e in zip(mids, epss)]
    scale_out = out_range / 2.0 ** (out_bits - 1)
    # R = 2^shift / scale_out, the largest with every entry below 2^rsqrt_out_bits
    shift = math.floor(math.log2(((1 << rsqrt_out_bits) - 0.5) * scale_out / max(inv)))
    if shift < 0:
        raise InputError("layernorm_params: out_range too small for the table; raise rsqrt_out_bits or out_range")
    R = 2.0**shift / scale_out
    table = tuple(int(math.floor(R * t + 0.5)) for t in inv)
    multiplier = 1
    params = LayerNormParams(
        center_multiplier=center_multiplier, center_shift=center_shift, center_bits=cb, var_shift=var_shift,
        rsqrt_table=table, multiplier=multiplier, shift=shift, out_bits=out_bits, octaves=int(octaves),
    )
    return params, scale_out


GELU_APPROXIMATIONS = ("none", "tanh")
"""GELU forms: ``"none"`` is ``x·Φ(x)`` (the erf form), ``"tanh"`` PyTorch's tanh approximation."""


def _gelu(v: float, approximate: str) -> float:
    if approximate == "tanh":
        return 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))
    return 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))


def gelu_table(k: int, scale_in: float, scale_out: float, out_bits: int, *, approximate: str = "none") -> tuple[int, ...]:
    """The exact look-up table of a quantized GELU: entry ``j`` is the output for the signed ``k``-bit input
    ``x = j − 2^k·[j >= 2^(k−1)]`` (two's complement index, as :func:`lookup_int` reads it)::

        table[j] = clip(round(GELU(x·scale_in) / scale_out), −2^(out_bits−1), 2^(out_bits−1) − 1)

    Output: signed ``out_bits`` integers at ``scale_out``.  Error against the float GELU of the quantized input:
    at most ``scale_out/2`` wherever the output is not clipped (rounded to nearest, half up).
    """
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_TABLE_BITS:
        raise InputError(f"gelu_table: k in 1..{MAX_TABLE_BITS}, got {k!r}")
    if not scale_in > 0 or not scale_out > 0 or not (math.isfinite(scale_in) and math.isfinite(scale_out)):
        raise InputError("gelu_table: scales are positive numbers")
    if not isinstance(out_bits, (int, np.integer)) or not 2 <= out_bits <= 32:
        raise InputError(f"gelu_table: out_bits in 2..32, got {out_bits!r}")
    if approximate not in GELU_APPROXIMATIONS:
        raise InputError(f"gelu_table: approximate is one of {GELU_APPROXIMATIONS}, got {approximate!r}")
    lo, hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    out = []
    for j in range(1 << k):
        x = j - (1 << k) if j >= 1 << (k - 1) else j
        out.append(min(hi, max(lo, math.floor(_gelu(x * scale_in, approximate) / scale_out + 0.5))))
    return tuple(out)
