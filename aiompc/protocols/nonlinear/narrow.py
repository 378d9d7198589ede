"""Requantization on the narrow ring (SIRNN's truncate-and-reduce): the carry of the shift, never the wrap.

Computes ``y = clip(floor((x·M + r) / 2^s), lo, hi)`` like :func:`aiompc.quant.requantize`, for shares of
``x`` mod ``2^l`` whose public range ``[x_lo, x_hi]`` makes every ``V = x·M + add`` (``add`` = the rounding
term ``r`` plus, in approximate mode, the de-biasing constant ``δ``) fall in one public window
``[β, β + 2^l)`` with ``β`` a multiple of ``2^s`` (:func:`narrow_plan` says whether it does; the multiply
is local: ``x_S·M + x_C·M ≡ x·M mod 2^l``).  Nearest rounding over a whole signed ``l``-bit range does not
fit (``y'`` takes ``2^(l−s) + 1`` values): the engine then shares the accumulator with one more bit
(:func:`aiompc.nn.rings.plan_rings`).

**Per-channel multipliers** ``M = odd·2^t`` form groups that each cancel their own power of two against
the shift (:class:`NarrowGroup`): power-of-two channel multipliers become channel shifts, each group with
its own narrow ring ``k = l − s``, window and thresholds, all in ONE protocol instance — the carry
millionaire on the widest shift and the clip millionaire on the widest ring, narrower operands
zero-padded (so the cost is that of the widest group).

1. **Truncate and reduce.**  With ``u = V − β = u_S + u_C − w·2^l`` (the server subtracts ``β`` and adds
   ``add``), ``z = floor(u / 2^s) = (u_S >> s) + (u_C >> s) + c  (mod 2^k)``, ``k = l − s``: the wrap's term
   ``w·2^(l−s)`` vanishes mod ``2^k``; only the carry ``c`` of the low ``s`` bits is left — an ``s``-bit
   millionaire and a B2A into ``k`` bits (exact), or nothing (approximate).  ``y' = z + β/2^s`` and
   ``z ∈ [0, 2^k)`` is unsigned: no sign handling at the accumulator width at all.
2. **Clip on the narrow ring.**  ``[y' < lo] = 1 ⊕ [z >= lo − β/2^s]`` and ``[y' > hi] = [z >= hi + 1 − β/2^s]``,
   only where the range of ``y'`` crosses a bound, by :func:`~aiompc.protocols.nonlinear.threshold.compare_thresholds`:
   ONE ``(k−1)``-bit millionaire whose OTs serve both bounds (fanout ``1 + #bounds``), the bound placed at
   ``2^(k−1)`` (``β`` is chosen so, when the window allows: the ReLU's bound first) read off its carry for
   free, one AND for the other bound.
3. **Multiplexers in the output's own ring** ``km`` (the fewest bits that hold ``clip``'s range with a known
   top bit, or ``l_out`` if smaller): ``y = y' + [y' < lo]·(lo − y') + [y' > hi]·(hi − y')``, then, if
   ``l_out > km``, extension with the MSB known (one COT, ``1 + l_out − km`` bits) — or, when the range fills
   the ring, a ``km``-bit signed extension.

**Approximate** (``exact=False``): the carry is dropped (``z`` is ``floor(u/2^s)`` or one less).  With
``unbiased`` (the default) the server also adds ``δ = 2^(s−1)`` (half an LSB of the output) before the shift,
so the error ``e = y − y_exact`` lies in ``{−1, 0, +1}``: given the low ``s`` bits ``ρ`` of ``x·M + r``,
``P(e = +1) = max(0, ρ + δ + 1 − 2^s)/2^s`` and ``P(e = −1) = max(0, 2^s − 1 − ρ − δ)/2^s`` (the client's share
is uniform), so for ``ρ`` uniform the mean error is ``+2^−(s+1)`` and ``P(e ≠ 0) ≈ 1/4``.  Without
``unbiased``, ``e ∈ {−1, 0}`` with mean ``≈ −1/2``.  Clipping keeps every output inside ``[lo, hi]``.

Cost per element (``q``: millionaire costs of :mod:`aiompc.protocols.nonlinear.millionaire`, digit size by
:func:`~aiompc.protocols.nonlinear.millionaire.choose_digit_bits`): exact ``q(s) + k`` bits for the carry;
the clip ``q(k−1, fanout 1 + #bounds) + 4·#(bounds not at 2^(k−1))``; the multiplexers ``2·2·(1 + km)`` (one
selector: half); the extension ``1 + l_out − km``.  E.g. ``l = 16, s = 8, [0, 15], l_out = 16``, silent OT:
48 + 8 (carry, m = 3) + 79 (clip, fanout 2 on 7 bits) + 4 (AND) + 24 (multiplexers in 5 bits) + 12
(extension) ≈ 175 bits online and ≈ 30 COTs; approximate ≈ 119.  Rounds: carry millionaire, B2A, clip
millionaire, AND, multiplexers, extension.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.ring import check_width, mask
from aiompc.protocols.nonlinear.boolean import b2a, mux
from aiompc.protocols.nonlinear.extension import extend
from aiompc.protocols.nonlinear.millionaire import CompareTask, choose_digit_bits, compare_batch
from aiompc.protocols.nonlinear.threshold import MAX_K, compare_thresholds

__all__ = ["NarrowGroup", "NarrowPlan", "narrow_plan", "narrow_requantize"]

_M64 = (1 << 64) - 1


def _v2(v: int) -> int:
    return (v & -v).bit_length() - 1


@dataclass(frozen=True)
class NarrowGroup:
    """The public constants of the elements with one multiplier ``M = odd·2^t``: its own power of two is
    cancelled against the shift (``s = shift − t``, ``r >> t``), so power-of-two multipliers per channel become
    per-channel shifts.  ``add``: what the server adds to ``x·odd``; ``beta_q = β / 2^s``; ``k = l − s``;
    ``[ymin, ymax]``: the range of ``y' = z + beta_q`` (approximate included)."""

    odd: int
    s: int
    add: int
    beta_q: int
    k: int
    ymin: int
    ymax: int


@dataclass(frozen=True)
class NarrowPlan:
    """The public constants of one narrow requantization (identical on both sides): one
    :class:`NarrowGroup` per distinct multiplier (``index``: each multiplier-array entry's group, ``None``
    for one group; ``shape``: the multiplier's shape), the clip (which bounds are compared), ``km``: the
    ring of the multiplexers, ``[out_lo, out_hi]``: the output range."""

    l: int
    groups: tuple[NarrowGroup, ...]
    index: np.ndarray | None
    shape: tuple[int, ...]
    lo: int
    hi: int
    need_lo: bool
    need_hi: bool
    out_lo: int
    out_hi: int
    km: int
    l_out: int
    exact: bool

    def per_element(self, f: Callable[[NarrowGroup], int], shape: tuple[int, ...]) -> np.ndarray:
        """``f(group)`` for every element of an input of ``shape``, flat ``int64`` (a 1-element array when
        there is one group)."""
        table = np.asarray([f(g) for g in self.groups], dtype=np.int64)
        if self.index is None:
            return table[:1]
        return table[np.broadcast_to(self.index, shape)].reshape(-1)

    def thresholds(self, shape: tuple[int, ...]) -> list[np.ndarray]:
        """``[z >= T]`` thresholds per element: ``lo − beta_q`` and/or ``hi + 1 − beta_q``."""
        beta = self.per_element(lambda g: g.beta_q, shape)
        return ([self.lo - beta] if self.need_lo else []) + ([self.hi + 1 - beta] if self.need_hi else [])


def narrow_plan(
    *, l: int, multipliers: list[int], index: np.ndarray | None, shape: tuple[int, ...], shift: int,
    rounding: str, lo: int, hi: int, l_out: int, x_lo: int, x_hi: int, exact: bool, unbiased: bool = True,
) -> NarrowPlan | None:
    """The narrow plan, or ``None`` when for some multiplier no window of ``2^l`` values holds every
    ``V = x·odd + add`` (or the narrow ring would be empty or over 62 bits); then the caller uses the
    wrap-based protocol.  ``multipliers``: the distinct multipliers (``index``/``shape`` as from the
    requantization's multiplier argument); ``[x_lo, x_hi]``: the public range of ``x``."""
    groups = []
    for m in multipliers:
        t = min(shift, _v2(m)) if m else 0
        s = shift - t
        r = ((1 << (shift - 1)) if (rounding == "nearest" and shift > 0) else 0) >> t
        if s >= l:
            return None
        k = l - s
        if k > MAX_K:
            return None
        odd = m >> t
        delta = (1 << (s - 1)) if (not exact and unbiased and s > 0) else 0
        add = r + delta
        vmin, vmax = x_lo * odd + add, x_hi * odd + add
        slack = 0 if (exact or s == 0) else 1  # a dropped carry takes z one below floor(u / 2^s)
        q_hi = (vmin >> s) - slack  # largest admissible beta_q
        q_lo = ((vmax - (1 << l)) >> s) + 1  # smallest: V − β < 2^l
        if q_lo > q_hi:
            return None
        groups.append((odd, s, add, q_lo, q_hi, k, (vmin >> s) - slack, vmax >> s))
    ymin = min(g[6] for g in groups)
    ymax = max(g[7] for g in groups)
    need_lo, need_hi = ymin < lo, ymax > hi
    out_lo, out_hi = min(max(ymin, lo), hi), max(min(ymax, hi), lo)
    done = []
    for odd, s, add, q_lo, q_hi, k, gmin, gmax in groups:
        half = 1 << (k - 1)
        beta_q = q_hi
        for want in ([lo - half] if need_lo else []) + ([hi + 1 - half] if need_hi else []):
            if q_lo <= want <= q_hi:  # a bound at 2^(k-1) is read off the carry of the low k-1 bits
                beta_q = want
                break
        done.append(NarrowGroup(odd=odd, s=s, add=add, beta_q=beta_q, k=k, ymin=gmin, ymax=gmax))
    km_needed = (out_hi - out_lo).bit_length() + 1
    km = min(l_out, km_needed, min(g.k for g in done))
    if km < l_out and out_hi - out_lo >= 1 << km:
        return None  # a narrow group's ring cannot hold the output range of a wider one (mixed shifts)
    return NarrowPlan(
        l=l, groups=tuple(done), index=index if len(done) > 1 else None, shape=shape, lo=lo, hi=hi,
        need_lo=need_lo, need_hi=need_hi, out_lo=out_lo, out_hi=out_hi, km=km, l_out=l_out, exact=exact,
    )


def _u64(a: np.ndarray) -> np.ndarray:
    """Python-int-valued ``int64`` constants (possibly negative) as ``uint64`` mod ``2^64``."""
    return np.asarray(a, dtype=np.int64).view(np.uint64)


async def narrow_requantize(
    party: Party, label: str, x: np.ndarray, plan: NarrowPlan, *, digit_bits: int | None = None,
) -> np.ndarray:
    """Shares mod ``2^l_out`` of the requantization of ``plan`` (see the module docstring) from shares of
    ``x`` mod ``2^l`` (any shape to which the multipliers broadcast).  ``digit_bits``: the millionaires'
    digit size, ``None`` to choose per comparison width (:func:`choose_digit_bits`)."""
    l, km = plan.l, plan.km
    check_width(plan.l_out)
    xs = np.asarray(x, dtype=np.uint64) & mask(l)
    shape = xs.shape
    flat = xs.reshape(-1)
    server = party.is_server
    s_e = _u64(plan.per_element(lambda g: g.s, shape))
    k_e = plan.per_element(lambda g: g.k, shape)
    v = flat * _u64(plan.per_element(lambda g: g.odd, shape))
    if server:  # + add − β, with β = beta_q·2^s (a Python int, reduced mod 2^l first)
        v = v + _u64(plan.per_element(lambda g: _signed64((g.add - (g.beta_q << g.s)) % (1 << l)), shape))
    v &= mask(l)
    z = v >> s_e
    s_max, k_max = max(g.s for g in plan.groups), max(g.k for g in plan.groups)
    if plan.exact and s_max > 0:  # the carry of the low s bits: [2^s − 1 − low(u_S) < low(u_C)]
        low_s = (np.uint64(1) << s_e) - np.uint64(1)
        low = v & low_s
        task = CompareTask(s_max)
        m = digit_bits if digit_bits is not None else choose_digit_bits(party, [task])
        operand = (low_s - low)[None, :] if server else low
        ((c, _),) = await compare_batch(party, f"{label}/carry", [task], [operand], sender="server", digit_bits=m)
        z = z + await b2a(party, f"{label}/b2a", c[0], l=k_max)
    z &= _u64((np.int64(1) << k_e) - 1)

    # y' mod 2^km (km <= every k): the server adds beta_q
    beta = _u64(plan.per_element(lambda g: g.beta_q, shape))
    y = (z + (beta if server else np.uint64(0))) & mask(km)
    if plan.need_lo or plan.need_hi:
        sel = await compare_thresholds(party, f"{label}/clip", z, k=k_e if k_e.size == z.size else int(k_e[0]),
                                       thresholds=plan.thresholds(shape), digit_bits=digit_bits)
        sels, targets = [], []
        i = 0
        if plan.need_lo:  # [y' < lo] = 1 ⊕ [z >= lo − beta_q]
            sels.append(sel[i] ^ np.uint8(1) if server else sel[i])
            targets.append(plan.lo)
            i += 1
        if plan.need_hi:  # [y' > hi] = [z >= hi + 1 − beta_q]
            sels.append(sel[i])
            targets.append(plan.hi)
        vals = [((np.uint64(t % (1 << km)) if server else np.uint64(0)) - y) & mask(km) for t in targets]
        corr = await mux(party, f"{label}/mux", np.concatenate(sels), np.concatenate(vals), l=km)
        y = (y + corr.reshape(len(targets), -1).sum(axis=0, dtype=np.uint64)) & mask(km)
    if plan.l_out > km:
        y = await _widen(party, f"{label}/ext", y, plan)
    return (y & mask(plan.l_out)).reshape(shape)


def _signed64(v: int) -> int:
    """``v mod 2^64`` as a signed 64-bit integer (so it fits an ``int64`` table)."""
    v &= _M64
    return v - (1 << 64) if v >> 63 else v


async def _widen(party: Party, label: str, y: np.ndarray, plan: NarrowPlan) -> np.ndarray:
    """Shares mod ``2^l_out`` of ``y ∈ [out_lo, out_hi]`` from shares mod ``2^km``: known-MSB extension of
    ``y − out_lo`` when it stays below ``2^(km−1)`` (one COT), else a signed extension around the middle."""
    km, L = plan.km, plan.l_out
    server = party.is_server
    known = (plan.out_hi - plan.out_lo) < (1 << (km - 1))
    if known:
        center = plan.out_lo
    else:
        center = (plan.out_lo + plan.out_hi + 1) // 2  # y − center ∈ [−2^(km−1), 2^(km−1))
        if not (-(1 << (km - 1)) <= plan.out_lo - center and plan.out_hi - center < (1 << (km - 1))):
            raise InputError("narrow requantization: the output range does not fit its multiplexer ring")
    off = np.uint64(center & _M64) if server else np.uint64(0)
    t = (y - off) & mask(km)
    m = choose_digit_bits(party, [CompareTask(km)])
    e = await extend(party, label, t, l=km, l_out=L, signed=not known, msb_known_zero=known, digit_bits=m)
    return (e + off) & mask(L)
