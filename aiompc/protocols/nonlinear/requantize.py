"""Requantization between the layers of a quantized network, on shares, bit for bit as
:func:`aiompc.quant.requantize`:

    y = clip(floor((x·M + r) / 2^s), lo, hi),     r = 2^(s−1) ("nearest", round half up) or 0 ("floor")

with a public integer multiplier ``M >= 0`` and shift ``s >= 0``.  ReLU fused = ``lo = 0``.

**Two protocols.**  When the public range of ``x`` (``x_range``, or the whole ring) puts every ``x·M + r``
in one window of ``2^l_in`` values, the requantization runs on the narrow ring
(:mod:`aiompc.protocols.nonlinear.narrow`: truncate-and-reduce, only the carry of the shift is compared,
the clip on ``l_in − s`` bits; ``narrow=True``, the default).  Otherwise — and always with ``narrow=False``,
which the fixed-point Cheetah baseline uses for its truncations — the wrap-based protocol below runs.

**Per-channel multipliers.**  ``M`` may be an array broadcast over ``x`` (one multiplier per output
channel after a conv with per-channel weight scales, one common shift).  On the narrow ring each distinct
multiplier is a group with its own shift and widths, the groups running concurrently
(:mod:`aiompc.protocols.nonlinear.narrow`).  In the wrap-based protocol the whole tensor is ONE
protocol instance, every comparison of every channel in the same batched millionaire.  The public
widths then come from all multipliers at once: powers of two are cancelled against ``s`` only as far as
the smallest 2-adic valuation of the non-zero multipliers allows; the range of ``y'`` (hence ``W`` and
the clip comparisons) is that of the largest ``M`` (the input range contains 0, so ranges grow with
``M``); the wrap weights ``M_i·2^(l−s)`` and the server's constants are per-element ``uint64`` arrays,
computed once per distinct multiplier on Python integers.  The cost per element is that of the
largest multiplier alone (the wrap's B2A width follows the least 2-adic valuation instead of the largest
multiplier's); a single multiplier (or an array of equal ones) takes the scalar path unchanged.

How (all widths are public, derived from ``l_in``, ``M``, ``s``, ``lo``, ``hi``, ``l_out``):

1. **Scale and shift.**  With ``u = x + 2^(l−1)`` (server adds the bias; no bias if ``msb_known_zero``)
   and the wrap ``w = [u_S + u_C >= 2^l]``, the integer ``x·M + r = A + B − w·M·2^l`` with the server's
   ``A = u_S·M + r − bias·M`` and the client's ``B = u_C·M``.  Hence, for ``s <= l``,
   ``y' = floor((x·M + r)/2^s) = (A >> s) + (B >> s) + c − w·M·2^(l−s)`` with ``c`` the carry of the low
   ``s`` bits of ``A`` and ``B``.  ``w`` (an ``l``-bit millionaire, or one COT when the MSB is known) and
   ``c`` (an ``s``-bit millionaire) run in one batch.  For ``s > l`` the wrap is first turned into
   arithmetic shares, folded into ``A`` and ``B``, and the carry computed on the result (one more
   millionaire depth).  ``exact=False`` drops ``c`` (``y`` off by ``e ∈ {−1, 0}``; with ``unbiased`` the
   server adds ``δ = 2^(s−1)`` to ``A`` first, and ``e ∈ {−1, 0, +1}`` as on the narrow ring).
2. ``y'`` is computed only mod ``2^W``, the smallest ring holding what is compared (``y' − lo`` and
   ``y' − hi − 1`` over the public range of ``y'``) and the output ring ``l_out``.
3. **Clip** only where the range of ``y'`` crosses a bound: the DReLUs ``[y' >= lo]`` and/or
   ``[y' > hi]`` in one ``(W_cmp − 1)``-bit millionaire whose OTs are shared (fanout 2), then two
   multiplexers *in the output ring* ``l_out``: ``y = y' + [y'>hi]·(hi − y') + [y'<lo]·(lo − y')``.
   **ReLU fused on a signed input** (``lo = 0``, exact, wrap compared): ``x < 0`` gives ``y' <= 0`` and
   ``x >= 0`` gives ``y' >= 0``, so ``[x < 0]`` is as good a selector as ``[y' < 0]``; it is read off the
   wrap's comparison split at bit ``l − 1`` (``1 ⊕ msb(u_S) ⊕ msb(u_C) ⊕ carry``: local), and only
   ``[y' > hi]`` is compared (fanout 1, on the narrower range of ``y' − hi − 1``).

Cost per element: millionaire(``l``) for ``w`` (none with known MSB: ``1 + W`` bits) + millionaire(``s``)
for ``c`` (exact only) + B2As of ``W`` bits + millionaire(``W_cmp − 1``, fanout ≤ 2; fanout 1 with the
sign trick) + ``2·2(l_out+1)`` bits of multiplexers.  E.g. ``l_in = 16, M = 1, s = 8, [0, 15],
l_out = 4``: ``W = 9``; the 16-bit wrap (split at 15 for the sign) and 8-bit carry comparisons in one
batch (204 bits), B2A of the carry (9 bits; the wrap only matters mod 2: local), the ``[y' > 15]``
DReLU on 8 bits (~70 bits), two 4-bit multiplexers (20 bits): ~300 bits online (345 with both clip
DReLUs, as in approximate mode).  Rounds: two millionaires and two COT round trips in sequence.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.quant import Rounding
from aiompc.ring import check_width, mask
from aiompc.protocols.nonlinear.boolean import b2a, cross_or, mux
from aiompc.protocols.nonlinear.millionaire import DEFAULT_DIGIT_BITS, CompareTask, compare_batch
from aiompc.protocols.nonlinear.narrow import narrow_plan, narrow_requantize
from aiompc.protocols.nonlinear.relu import drelu_shifted, msb_bits

__all__ = ["requantize", "RequantPlan"]

_M64 = (1 << 64) - 1


def _signed_width(lo: int, hi: int) -> int:
    """Smallest ``w >= 1`` with ``[lo, hi] ⊂ [−2^(w−1), 2^(w−1))``."""
    w = 1
    while not (-(1 << (w - 1)) <= lo and hi < (1 << (w - 1))):
        w += 1
    return w


def _v2(v: int) -> int:
    """The exponent of 2 in ``v > 0``."""
    return (v & -v).bit_length() - 1


def _distinct(multiplier: int | np.ndarray) -> tuple[list[int], np.ndarray | None, tuple[int, ...]]:
    """``(values, index, shape)``: the distinct multipliers (ascending Python ints), each array entry's
    position among them (``None`` when there is only one value) and the multiplier's shape."""
    if isinstance(multiplier, (int, np.integer)):
        return [int(multiplier)], None, ()
    a = np.asarray(multiplier)
    if a.dtype.kind not in "iu":
        raise InputError(f"requantize: multipliers must be integers, got an array of dtype {a.dtype}")
    values, index = np.unique(a, return_inverse=True)
    ms = [int(v) for v in values] or [0]  # no elements at all: any multiplier will do
    return ms, (index.reshape(a.shape) if len(ms) > 1 else None), a.shape


def _cancel(ms: list[int], shift: int, rounding: Rounding) -> tuple[list[int], int, int]:
    """``(multipliers, s, r)`` with the common power of two of the non-zero multipliers cancelled against
    the shift: ``floor((x·2^t·M + r)/2^s) = floor((x·M + (r >> t))/2^(s−t))`` for ``t <= s`` (``r`` is 0 or
    ``2^(s−1)``)."""
    r = (1 << (shift - 1)) if (rounding == "nearest" and shift > 0) else 0
    nonzero = [m for m in ms if m]
    t = min(shift, *map(_v2, nonzero)) if nonzero else 0
    return [m >> t for m in ms], shift - t, r >> t


def _check_fits(out_lo: int, out_hi: int, L: int) -> None:
    """:class:`InputError` unless ``[out_lo, out_hi]`` fits an ``L``-bit ring (unsigned or two's complement)."""
    if not ((out_lo >= 0 and out_hi < (1 << L)) or (-(1 << (L - 1)) <= out_lo and out_hi < (1 << (L - 1)))):
        raise InputError(
            f"requantize: outputs in [{out_lo}, {out_hi}] do not fit an l_out={L}-bit ring; "
            "raise l_out or narrow [lo, hi]"
        )


def _wrap_bits(l: int, s: int, nonzero: list[int], W: int) -> int:
    """Bits of the wrap that matter when ``y'`` is computed mod ``2^W``: its weights in ``y'`` are
    ``M_i·2^(l-s)`` (direct, ``s <= l``) or ``M_i·2^l`` before the shift (``s > l``, work ring ``W + s``),
    so it is only needed modulo the work ring divided by their least power of two (``<= 0``: not at all).
    ``nonzero``: the non-zero multipliers."""
    if not nonzero:
        return 0
    direct = s <= l
    wrap_weight_tz = min(map(_v2, nonzero)) + (l - s if direct else l)
    return (W if direct else W + s) - wrap_weight_tz


class RequantPlan:
    """The public widths and branches of one requantization (pure; identical on both sides).

    ``multiplier`` is one integer or an integer array of per-element multipliers (broadcast against
    the input later).  After construction, ``multipliers`` holds the distinct values (ascending) with
    the common power of two cancelled against the shift ``s``, ``M_max`` the largest of them, ``index``
    each array entry's position in ``multipliers`` (``None`` if there is only one value) and ``shape``
    the multiplier's shape (``()`` for an integer).
    """

    def __init__(
        self, *, l_in: int, multiplier: int | np.ndarray, shift: int, lo: int, hi: int, rounding: Rounding,
        l_out: int, msb_known_zero: bool, exact: bool = True, unbiased: bool = False,
    ) -> None:
        self.l = check_width(l_in)
        self.l_out = check_width(l_out)
        ms, self.index, self.shape = _distinct(multiplier)
        if ms[0] < 0 or shift < 0 or lo > hi:
            raise InputError("requantize needs multipliers >= 0, shift >= 0 and lo <= hi")
        if rounding not in ("nearest", "floor"):
            raise InputError(f"rounding must be 'nearest' or 'floor', got {rounding!r}")
        self.lo, self.hi = int(lo), int(hi)
        # cancel common powers of two (limited by the least 2-adic valuation among non-zero multipliers)
        self.multipliers, self.s, self.r = _cancel(ms, int(shift), rounding)
        # approximate and unbiased: the server adds half an output LSB before the shift (see narrow.py)
        self.delta = (1 << (self.s - 1)) if (not exact and unbiased and self.s > 0) else 0
        self.M_max = self.multipliers[-1]
        self._nonzero = [m for m in self.multipliers if m]
        self.msb_known_zero = msb_known_zero
        l, M = self.l, self.M_max
        xmin, xmax = (0, (1 << (l - 1)) - 1) if msb_known_zero else (-(1 << (l - 1)), (1 << (l - 1)) - 1)
        # xmin <= 0 <= xmax: the largest multiplier spans the range of every channel.  Without the carry
        # y' may come out one below the true floor (not when nothing is shifted away): widen the range
        slack = 0 if (exact or self.s == 0 or M == 0) else 1
        self.ymin = ((xmin * M + self.r) >> self.s) - slack
        self.ymax = (xmax * M + self.r + self.delta) >> self.s
        self.out_lo = min(max(self.ymin, self.lo), self.hi)
        self.out_hi = max(min(self.ymax, self.hi), self.lo)
        L = self.l_out
        _check_fits(self.out_lo, self.out_hi, L)
        self.constant = self.out_lo == self.out_hi
        self.need_lo = self.ymin < self.lo
        self.need_hi = self.ymax > self.hi
        self.direct = self.s <= l
        # ReLU fused (lo = 0) on a signed input: x < 0 => x·M + r < r < 2^s => y' <= 0, and x >= 0 => y' >= 0,
        # so [x < 0] selects the lower clip exactly as [y' < 0] would (both give 0).  [x < 0] comes out of
        # the wrap's l-bit comparison split at bit l - 1 (the carry into the sign bit), so no clip DReLU is
        # run for it.  Only where that comparison runs anyway (direct, signed input, wrap needed) and y' is
        # exact (a dropped carry could make y' = -1 for x >= 0).
        hi_range = [(self.ymin - self.hi - 1, self.ymax - self.hi - 1)] if self.need_hi else []
        lo_range = [(self.ymin - self.lo, self.ymax - self.lo)] if self.need_lo else []

        def widths(ranges: list[tuple[int, int]]) -> tuple[int, int]:  # (w_cmp, W)
            w_cmp = _signed_width(min(a for a, _ in ranges), max(b for _, b in ranges)) if ranges else 0
            return w_cmp, max(w_cmp, L)

        self.w_cmp, self.W = widths(hi_range)
        self.lo_from_sign = (
            self.need_lo and self.lo == 0 and self.direct and not msb_known_zero and slack == 0
            and _wrap_bits(l, self.s, self._nonzero, self.W) > 0
        )
        if not self.lo_from_sign:
            self.w_cmp, self.W = widths(lo_range + hi_range)
        if not self.constant:
            if self.s > 63 or self.W > 64:
                raise InputError(
                    f"requantize: shift {self.s} or working width {self.W} beyond 63/64 bits; "
                    "use a smaller shift or a narrower input range"
                )
            product_fits = ((1 << l) - 1) * M < 1 << 64  # u·M exact in uint64
            if not ((self.direct and product_fits) or self.s + self.W <= 64):
                raise InputError(
                    f"requantize: l_in={l} with multiplier {M} and shift {self.s} needs more than 64-bit "
                    "words (x·M overflows and shift + working width > 64); lower the multiplier precision"
                )
        self.w_bits = _wrap_bits(l, self.s, self._nonzero, self.W)  # B2A width of the wrap (<= 0: not needed)

    @property
    def offsets(self) -> list[int]:
        """Public offsets t of the clip DReLUs ``[y' − t >= 0]``: ``lo`` and/or ``hi + 1``."""
        return ([self.lo] if self.need_lo and not self.lo_from_sign else []) + ([self.hi + 1] if self.need_hi else [])

    def public(self, f: Callable[[int], int], shape: tuple[int, ...]) -> np.uint64 | np.ndarray:
        """The public constant ``f(M) mod 2^64`` for every element of an input of ``shape``.

        ``f`` runs once per distinct (cancelled) multiplier on Python integers, so it is exact for any
        sign and size.  Returns one ``uint64`` when all multipliers are equal, else a flat ``uint64``
        array of ``prod(shape)`` entries (the multipliers broadcast to ``shape``, C order).
        """
        table = [f(m) & _M64 for m in self.multipliers]
        if self.index is None:
            return np.uint64(table[0])
        return np.asarray(table, dtype=np.uint64)[np.broadcast_to(self.index, shape)].reshape(-1)


async def requantize(
    party: Party,
    label: str,
    x: np.ndarray,
    *,
    l_in: int,
    multiplier: int | np.ndarray,
    shift: int,
    lo: int,
    hi: int,
    rounding: Rounding = "nearest",
    l_out: int,
    exact: bool = True,
    msb_known_zero: bool = False,
    x_range: tuple[int, int] | None = None,
    narrow: bool = True,
    unbiased: bool = True,
    digit_bits: int | None = None,
) -> np.ndarray:
    """Shares mod ``2^l_out`` of ``clip(floor((x·multiplier + r) / 2^shift), lo, hi)``.

    Input: shares of ``x`` mod ``2^l_in`` (signed; ``msb_known_zero`` asserts ``x ∈ [0, 2^(l_in−1))``),
    any shape.  ``multiplier``: one integer ``>= 0``, or an integer array broadcastable to ``x.shape``
    (numpy rules) giving each element its own multiplier, e.g. shape ``(C, 1, 1)`` for ``x`` of shape
    ``(C, H, W)`` or ``(B, C, H, W)``, or ``(1, C, 1, 1)``; the shift, clip bounds and rounding are
    common.  Output: shares mod ``2^l_out`` (two's complement if ``lo < 0``), shape of ``x``; the clipped
    range must fit ``l_out`` bits.  Equal to :func:`aiompc.quant.requantize` (per element with its own
    multiplier) when ``exact``; otherwise ``clip(y' + e, lo, hi)`` with ``e ∈ {−1, 0, +1}`` of mean
    ``≈ 0`` (``unbiased``, the default) or ``e ∈ {−1, 0}`` (so still in ``[lo, hi]``).  Word-size limits (after cancelling powers of two between the multipliers and
    ``2^s``; ``M`` the largest multiplier): ``s <= 63``, ``W <= 64``, and either ``s <= l_in`` with
    ``(2^l_in − 1)·M < 2^64`` or ``s + W <= 64`` (``W`` the working width, see the module docstring);
    otherwise :class:`InputError`.  Cost: see the module docstring; per-element multipliers cost what the
    largest one costs alone, in one protocol instance.

    ``x_range``: public bounds ``(x_lo, x_hi)`` of ``x`` (e.g. a layer's proven accumulator bounds), inside
    the ``l_in``-bit signed range (``[0, 2^(l_in−1))`` with ``msb_known_zero``); they decide whether the
    narrow protocol applies.  ``narrow=False`` forces the wrap-based protocol (the Cheetah baseline's).
    ``unbiased`` (approximate only): the server adds half an output LSB before the shift, so the error is
    ``e ∈ {−1, 0, +1}`` with mean ``2^−(s+1)`` over uniform low bits instead of ``{−1, 0}`` with mean
    ``≈ −1/2`` (distribution in :mod:`aiompc.protocols.nonlinear.narrow`; both protocols).
    ``digit_bits``: the millionaires' digit size; ``None`` picks it per comparison width on the narrow
    protocol (:func:`~aiompc.protocols.nonlinear.millionaire.choose_digit_bits`) and uses Cheetah's 4 on
    the wrap-based one.
    """
    l_in, l_out = check_width(l_in), check_width(l_out)
    ms, index, mshape = _distinct(multiplier)
    if ms[0] < 0 or shift < 0 or lo > hi:
        raise InputError("requantize needs multipliers >= 0, shift >= 0 and lo <= hi")
    if rounding not in ("nearest", "floor"):
        raise InputError(f"rounding must be 'nearest' or 'floor', got {rounding!r}")
    xs = np.asarray(x, dtype=np.uint64) & mask(l_in)
    shape = xs.shape
    try:
        fits = np.broadcast_shapes(mshape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise InputError(
            f"requantize: multipliers of shape {mshape} do not broadcast to the input's shape {shape}; "
            "give one multiplier per channel with singleton axes elsewhere, e.g. (C, 1, 1)"
        )
    x_lo, x_hi = (0 if msb_known_zero else -(1 << (l_in - 1))), (1 << (l_in - 1)) - 1
    if x_range is not None:
        a, b = int(x_range[0]), int(x_range[1])
        if not x_lo <= a <= b <= x_hi:
            raise InputError(f"requantize: x_range {x_range} is not inside [{x_lo}, {x_hi}] (l_in = {l_in})")
        x_lo, x_hi = a, b
    if narrow:
        nplan = narrow_plan(
            l=l_in, multipliers=ms, index=index, shape=mshape, shift=int(shift), rounding=rounding, lo=int(lo),
            hi=int(hi), l_out=l_out, x_lo=x_lo, x_hi=x_hi, exact=exact, unbiased=unbiased,
        )
        if nplan is not None:
            _check_fits(nplan.out_lo, nplan.out_hi, l_out)
            if nplan.out_lo == nplan.out_hi:
                value = np.uint64(nplan.out_lo % (1 << l_out)) if party.is_server else np.uint64(0)
                return np.full(shape, value, dtype=np.uint64)
            return await narrow_requantize(party, label, xs, nplan, digit_bits=digit_bits)
    plan = RequantPlan(
        l_in=l_in, multiplier=multiplier, shift=shift, lo=lo, hi=hi, rounding=rounding, l_out=l_out,
        msb_known_zero=msb_known_zero, exact=exact, unbiased=unbiased,
    )
    digit_bits = DEFAULT_DIGIT_BITS if digit_bits is None else digit_bits
    if plan.constant:
        value = np.uint64(plan.out_lo % (1 << plan.l_out)) if party.is_server else np.uint64(0)
        return np.full(shape, value, dtype=np.uint64)

    y, negative = await _scale_shift(party, f"{label}/scale", xs.reshape(-1), shape, plan, exact, digit_bits)
    out = await _clip(party, f"{label}/clip", y, plan, digit_bits, negative)
    return out.reshape(shape)


async def _scale_shift(
    party: Party, label: str, x: np.ndarray, shape: tuple[int, ...], plan: RequantPlan, exact: bool,
    digit_bits: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Shares mod ``2^W`` of ``y' = floor((x·M + r)/2^s)`` (minus the carry if not ``exact``), and with
    ``plan.lo_from_sign`` XOR shares of ``[x < 0]`` (``uint8``, else ``None``); ``x`` is the flattened input
    of ``shape`` (to which the multipliers broadcast)."""
    l, s, W = plan.l, plan.s, plan.W
    biased = not plan.msb_known_zero
    server = party.is_server
    u = (x + np.uint64(1 << (l - 1))) & mask(l) if (biased and server) else x

    def const(m: int) -> int:  # public, may be negative
        return plan.r + plan.delta - ((1 << (l - 1)) * m if biased else 0)

    # A = u_S·M + r − bias·M (server), B = u_C·M (client); p = u·M mod 2^64
    p = u * plan.public(lambda m: m, shape)
    need_w = plan.w_bits > 0
    need_c = exact and s > 0
    low_s = np.uint64((1 << s) - 1)
    wrap_operand = (mask(l) - u) if server else u

    def carry_operand(v: np.ndarray) -> np.ndarray:
        return (low_s - (v & low_s)) if server else (v & low_s)

    def own(arr: np.ndarray) -> np.ndarray:
        return arr[None, :] if server else arr

    if plan.direct:
        tasks: list[CompareTask] = []
        operands: list[np.ndarray] = []
        if need_w and not plan.msb_known_zero:  # split at l - 1: the carry into the sign bit as well
            tasks.append(CompareTask(l, split=l - 1 if plan.lo_from_sign else 0))
            operands.append(own(wrap_operand))
        # A >> s and A mod 2^s without leaving uint64: A = P + C with P = u·M (exact when it fits, else
        # everything is taken mod 2^(s+W) <= 2^64), C = C_hi·2^s + C_lo public
        if server:
            c_lo = plan.public(lambda m: const(m) & ((1 << s) - 1), shape)
            low = (p & low_s) + c_lo  # < 2^(s+1) <= 2^64
            high = (p >> np.uint64(s)) + (low >> np.uint64(s)) + plan.public(lambda m: const(m) >> s, shape)
            low &= low_s
        else:
            high, low = p >> np.uint64(s), p & low_s
        if need_c:
            tasks.append(CompareTask(s))
            operands.append(own(carry_operand(low)))

        async def comparisons() -> list[tuple[np.ndarray, np.ndarray | None]]:
            if not tasks:
                return []
            return await compare_batch(party, f"{label}/cmp", tasks, operands, sender="server", digit_bits=digit_bits)

        async def known_wrap() -> np.ndarray | None:
            if need_w and plan.msb_known_zero:
                return await cross_or(party, f"{label}/wrap", msb_bits(u, l), l=plan.w_bits)
            return None

        results, w_arith = await asyncio.gather(comparisons(), known_wrap())
        jobs = []
        k = 0
        negative = None
        if need_w and not plan.msb_known_zero:
            jobs.append(b2a(party, f"{label}/b2a_w", results[k][0][0], l=plan.w_bits))
            if plan.lo_from_sign:  # [x < 0] = 1 ^ msb(u) = 1 ^ msb(u_S) ^ msb(u_C) ^ carry into bit l - 1
                sign_carry = results[k][1]
                assert sign_carry is not None
                negative = sign_carry[0] ^ msb_bits(u, l) ^ np.uint8(1 if server else 0)
            k += 1
        if need_c:
            jobs.append(b2a(party, f"{label}/b2a_c", results[k][0][0], l=W))
        arith = await asyncio.gather(*jobs)
        if need_w and not plan.msb_known_zero:
            w_arith, arith = arith[0], arith[1:]
        y = high
        if need_c:
            y = y + arith[0]
        if need_w:
            assert w_arith is not None
            y = y - w_arith * plan.public(lambda m: m << (l - s), shape)
        return y & mask(W), negative

    # s > l: fold the arithmetic wrap into the shares first, then truncate (carry on the new shares);
    # everything mod 2^(W+s) <= 2^64
    big = mask(W + s)
    a = p + plan.public(const, shape) if server else p
    if need_w:
        if plan.msb_known_zero:
            w_arith = await cross_or(party, f"{label}/wrap", msb_bits(u, l), l=plan.w_bits)
        else:
            ((w_bool, _),) = await compare_batch(
                party, f"{label}/cmp_w", [CompareTask(l)], [own(wrap_operand)], sender="server", digit_bits=digit_bits
            )
            w_arith = await b2a(party, f"{label}/b2a_w", w_bool[0], l=plan.w_bits)
        a = a - w_arith * plan.public(lambda m: m << l, shape)
    a = a & big
    y = a >> np.uint64(s)
    if need_c:
        ((c, _),) = await compare_batch(
            party, f"{label}/cmp_c", [CompareTask(s)], [own(carry_operand(a))], sender="server", digit_bits=digit_bits
        )
        y = y + await b2a(party, f"{label}/b2a_c", c[0], l=W)
    return y & mask(W), None


async def _clip(
    party: Party, label: str, y: np.ndarray, plan: RequantPlan, digit_bits: int, negative: np.ndarray | None,
) -> np.ndarray:
    """Shares mod ``2^l_out`` of ``clip(y', lo, hi)`` from shares of ``y'`` mod ``2^W`` (and, with
    ``plan.lo_from_sign``, XOR shares of ``[x < 0]``, the lower clip's selector)."""
    L = plan.l_out
    y_out = y & mask(L)
    if not (plan.need_lo or plan.need_hi):
        return y_out
    offsets = plan.offsets
    d = None
    if offsets:
        d = await drelu_shifted(party, f"{label}/drelu", y & mask(plan.w_cmp), l=plan.w_cmp, offsets=offsets,
                                digit_bits=digit_bits)
    sels, targets = [], []
    k = 0
    if plan.lo_from_sign:
        assert negative is not None
        sels.append(negative)
        targets.append(plan.lo)
    elif plan.need_lo:  # [y' < lo] = 1 ^ DReLU(y' - lo)
        assert d is not None
        sels.append(d[k] ^ np.uint8(1) if party.is_server else d[k])
        targets.append(plan.lo)
        k += 1
    if plan.need_hi:  # [y' > hi] = DReLU(y' - hi - 1)
        assert d is not None
        sels.append(d[k])
        targets.append(plan.hi)
    # values (target - y') as shares mod 2^L: the server adds the public target
    vals = [((np.uint64(t % (1 << L)) if party.is_server else np.uint64(0)) - y_out) & mask(L) for t in targets]
    corr = await mux(party, f"{label}/mux", np.concatenate(sels), np.concatenate(vals), l=L)
    n = y_out.size
    return (y_out + corr.reshape(len(targets), n).sum(axis=0, dtype=np.uint64)) & mask(L)
