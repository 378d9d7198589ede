"""Requantization on the narrow ring (SIRNN's truncate-and-reduce): the carry of the shift, never the wrap.

Computes ``y = clip(floor((x·M + r) / 2^s), lo, hi)`` like :func:`aiompc.quant.requantize`, for shares of
``x`` mod ``2^l`` whose public range ``[x_lo, x_hi]`` makes every ``V = x·M + add`` (``add`` = the rounding
term ``r`` plus, in approximate mode, the de-biasing constant ``δ``) fall in one public window
``[β, β + 2^l)`` with ``β`` a multiple of ``2^s`` (:func:`narrow_plan` says whether it does; the multiply
is local: ``x_S·M + x_C·M ≡ x·M mod 2^l``).  Nearest rounding over a whole signed ``l``-bit range does not
fit (``y'`` takes ``2^(l−s) + 1`` values): the engine then shares the accumulator with one more bit
(:func:`aiompc.nn.rings.plan_rings`).

**Per-channel multipliers** ``M = odd·2^t`` form groups that each cancel their own power of two against
the shift (:class:`NarrowGroup`): power-of-two channel multipliers become channel shifts.  Each group runs
the protocol below on its own elements with its own widths (its shift, its narrow ring, its bounds), all
groups concurrently; so a tensor costs what each channel's own widths cost, not the widest group's.

1. **Truncate and reduce.**  With ``u = V − β = u_S + u_C − w·2^l`` (the server subtracts ``β`` and adds
   ``add``), ``z = floor(u / 2^s) = (u_S >> s) + (u_C >> s) + c  (mod 2^(l−s))``: the wrap's term
   ``w·2^(l−s)`` vanishes; only the carry ``c`` of the low ``s`` bits is left — an ``s``-bit millionaire
   and a B2A into ``k`` bits (exact), or nothing (approximate).  ``y' = z + β/2^s`` and ``z`` is unsigned.
   **Tight ring:** ``z`` lies in ``[0, 2^k)`` for the smallest ``k <= l − s`` that holds the range of ``y'``
   (``β`` is placed so), and everything after the carry works mod ``2^k`` (reduction is local).
2. **Clip on the narrow ring.**  ``[y' < lo] = 1 ⊕ [z >= lo − β/2^s]`` and ``[y' > hi] = [z >= hi + 1 − β/2^s]``,
   only where the group's range of ``y'`` crosses a bound, by
   :func:`~aiompc.protocols.nonlinear.threshold.compare_thresholds`: ONE ``(k−1)``-bit millionaire whose
   OTs serve both bounds (fanout ``1 + #bounds not at 2^(k−1)``); ``β`` (and ``k``) are chosen by the
   modelled cost so that a bound sits at ``2^(k−1)`` and is read off the carry of the low ``k−1`` bits
   for free, one AND for the other bound.
3. **Select in the output's own ring** ``km`` (the fewest bits that hold the clipped range with a known
   top bit, at most ``k`` and ``l_out``).  The two selectors exclude each other, so
   ``y = keep·y' + [y' < lo]·lo + [y' > hi]·hi`` with ``keep = 1 ⊕ [y' < lo] ⊕ [y' > hi]`` (local): ONE
   multiplexer and a B2A per non-zero bound (ReLU-fused: only ``hi``'s), concurrently.  Then, if
   ``l_out > km``, extension with the MSB known (one COT, ``1 + l_out − km`` bits) — or, when the range
   fills the ring, a ``km``-bit signed extension.

**Approximate** (``exact=False``): the carry is dropped (``z`` is ``floor(u/2^s)`` or one less).  With
``unbiased`` (the default) the server also adds ``δ = 2^(s−1)`` (half an LSB of the output) before the shift,
so the error ``e = y − y_exact`` lies in ``{−1, 0, +1}``: given the low ``s`` bits ``ρ`` of ``x·M + r``,
``P(e = +1) = max(0, ρ + δ + 1 − 2^s)/2^s`` and ``P(e = −1) = max(0, 2^s − 1 − ρ − δ)/2^s`` (the client's share
is uniform), so for ``ρ`` uniform the mean error is ``+2^−(s+1)`` and ``P(e ≠ 0) ≈ 1/4``.  Without
``unbiased``, ``e ∈ {−1, 0}`` with mean ``≈ −1/2``.  Clipping keeps every output inside ``[lo, hi]``.

Cost per element (``q``: millionaire costs of :mod:`aiompc.protocols.nonlinear.millionaire`, digit size by
:func:`~aiompc.protocols.nonlinear.millionaire.choose_digit_bits`): exact ``q(s) + k`` bits for the carry;
the clip ``q(k−1, fanout 1 + #bounds not at 2^(k−1)) + 4·#(those bounds)``; the selection ``2·(1 + km)``
plus ``km`` per non-zero bound; the extension ``1 + l_out − km``.  E.g. ``l = 16, s = 8, x ∈ [−2^14, 2^14),
[0, 15], l_out = 16``, silent OT: ``k = 8`` (``y' ∈ [−64, 64]``), 48 + 8 (carry, m = 3) + 79 (clip, fanout 2
on 7 bits) + 4 (AND) + 12 + 5 (selection in 5 bits) + 12 (extension) ≈ 168 bits online and ≈ 30 COTs;
approximate ≈ 112.  Rounds: carry millionaire, B2A, clip millionaire, AND, selection, extension.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.ring import check_width, mask
from aiompc.protocols.nonlinear.boolean import b2a, mux
from aiompc.protocols.nonlinear.extension import extend
from aiompc.protocols.nonlinear.millionaire import CompareTask, choose_digit_bits, compare_batch, comparison_cost
from aiompc.protocols.nonlinear.threshold import MAX_K, compare_thresholds, window_bits

__all__ = ["NarrowGroup", "NarrowPlan", "narrow_plan", "narrow_requantize"]

_M64 = (1 << 64) - 1
_PLAN_COT_BITS = 1.0  # the placement of z's ring is modelled with silent OT's cost per COT


def _v2(v: int) -> int:
    return (v & -v).bit_length() - 1


@dataclass(frozen=True)
class NarrowGroup:
    """The public constants of the elements with one multiplier ``M = odd·2^t``: its own power of two is
    cancelled against the shift (``s = shift − t``, ``r >> t``), so power-of-two multipliers per channel
    become per-channel shifts.  ``add``: what the server adds to ``x·odd``; ``beta_q = β / 2^s``; ``k``: the
    ring of ``z = y' − beta_q`` (``<= l − s``); ``[ymin, ymax]``: the range of ``y'`` (approximate
    included); ``need_lo``/``need_hi``: which bounds the range crosses; ``[out_lo, out_hi]``: the group's
    output range; ``km``: the ring of its selection."""

    odd: int
    s: int
    add: int
    beta_q: int
    k: int
    ymin: int
    ymax: int
    need_lo: bool
    need_hi: bool
    out_lo: int
    out_hi: int
    km: int

    def thresholds(self, lo: int, hi: int) -> list[int]:
        """``[z >= T]`` thresholds: ``lo − beta_q`` and/or ``hi + 1 − beta_q``."""
        return ([lo - self.beta_q] if self.need_lo else []) + ([hi + 1 - self.beta_q] if self.need_hi else [])


@dataclass(frozen=True)
class NarrowPlan:
    """The public constants of one narrow requantization (identical on both sides): one
    :class:`NarrowGroup` per distinct multiplier (``index``: each multiplier-array entry's group, ``None``
    for one group; ``shape``: the multiplier's shape), the clip bounds and ``[out_lo, out_hi]``: the
    output range over all groups."""

    l: int
    groups: tuple[NarrowGroup, ...]
    index: np.ndarray | None
    shape: tuple[int, ...]
    lo: int
    hi: int
    out_lo: int
    out_hi: int
    l_out: int
    exact: bool

    @property
    def need_lo(self) -> bool:
        return any(g.need_lo for g in self.groups)

    @property
    def need_hi(self) -> bool:
        return any(g.need_hi for g in self.groups)


def _clip_cost(k: int, thresholds: list[int]) -> float:
    """Modelled bits of the clip comparison on a ``k``-bit ring (:func:`compare_thresholds`)."""
    if not thresholds:
        return 0.0
    j = window_bits(k, thresholds)
    off = sum(t != 1 << (k - 1) for t in thresholds)
    task = CompareTask(k - 1, fanout=1 + off) if j is None else CompareTask(k - 1, split=j, eq_rows=1)
    m = choose_digit_bits("silent", [task])
    ands = off if j is None else 2
    return comparison_cost([task], m, _PLAN_COT_BITS) + 4 * ands + k  # + the carry's B2A into k bits


def _place(gmin: int, gmax: int, k_full: int, lo: int, hi: int, need_lo: bool, need_hi: bool) -> tuple[int, int]:
    """``(k, beta_q)``: ``z = y' − beta_q ∈ [0, 2^k)`` for every ``y' ∈ [gmin, gmax]``, ``k <= k_full``, of least
    modelled clip cost, a bound on ``2^(k−1)`` where possible (the lower bound first), else ``beta_q = gmin``."""
    best: tuple[float, int, int] | None = None
    for k in range(max(1, (gmax - gmin).bit_length()), k_full + 1):
        qmin, qmax = gmax - (1 << k) + 1, gmin  # z >= 0 and z < 2^k
        if qmin > qmax:
            continue
        half = 1 << (k - 1)
        beta = qmax
        for b in ([lo] if need_lo else []) + ([hi + 1] if need_hi else []):
            if qmin <= b - half <= qmax:
                beta = b - half
                break
        ts = ([lo - beta] if need_lo else []) + ([hi + 1 - beta] if need_hi else [])
        cost = _clip_cost(k, ts)
        if best is None or cost < best[0]:
            best = (cost, k, beta)
    assert best is not None  # k = k_full always fits (the caller checked the window)
    return best[1], best[2]


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
        k_full = l - s
        if k_full > MAX_K:
            return None
        odd = m >> t
        delta = (1 << (s - 1)) if (not exact and unbiased and s > 0) else 0
        add = r + delta
        vmin, vmax = x_lo * odd + add, x_hi * odd + add
        slack = 0 if (exact or s == 0) else 1  # a dropped carry takes z one below floor(u / 2^s)
        gmin, gmax = (vmin >> s) - slack, vmax >> s
        if gmax - gmin >= 1 << k_full:  # no window of 2^l values holds every V − β
            return None
        need_lo, need_hi = gmin < lo, gmax > hi
        out_lo, out_hi = min(max(gmin, lo), hi), max(min(gmax, hi), lo)
        k, beta_q = _place(gmin, gmax, k_full, lo, hi, need_lo, need_hi)
        km = min(l_out, (out_hi - out_lo).bit_length() + 1, k)
        groups.append(NarrowGroup(odd=odd, s=s, add=add, beta_q=beta_q, k=k, ymin=gmin, ymax=gmax, need_lo=need_lo,
                                  need_hi=need_hi, out_lo=out_lo, out_hi=out_hi, km=km))
    return NarrowPlan(
        l=l, groups=tuple(groups), index=index if len(groups) > 1 else None, shape=shape, lo=lo, hi=hi,
        out_lo=min(g.out_lo for g in groups), out_hi=max(g.out_hi for g in groups), l_out=l_out, exact=exact,
    )


async def narrow_requantize(
    party: Party, label: str, x: np.ndarray, plan: NarrowPlan, *, digit_bits: int | None = None,
) -> np.ndarray:
    """Shares mod ``2^l_out`` of the requantization of ``plan`` (see the module docstring) from shares of
    ``x`` mod ``2^l`` (any shape to which the multipliers broadcast).  ``digit_bits``: the millionaires'
    digit size, ``None`` to choose per comparison width (:func:`choose_digit_bits`).  With several groups
    each runs on its own elements under ``f"{label}/g{i}"``, concurrently."""
    check_width(plan.l_out)
    xs = np.asarray(x, dtype=np.uint64) & mask(plan.l)
    shape = xs.shape
    flat = xs.reshape(-1)
    if plan.index is None:
        return (await _group(party, label, flat, plan, plan.groups[0], digit_bits)).reshape(shape)
    gid = np.broadcast_to(plan.index, shape).reshape(-1)
    members = [np.flatnonzero(gid == i) for i in range(len(plan.groups))]
    jobs = [(i, idx) for i, idx in enumerate(members) if idx.size]
    parts = await asyncio.gather(*(_group(party, f"{label}/g{i}", flat[idx], plan, plan.groups[i], digit_bits)
                                   for i, idx in jobs))
    out = np.empty(flat.size, dtype=np.uint64)
    for (_, idx), part in zip(jobs, parts):
        out[idx] = part
    return out.reshape(shape)


async def _group(
    party: Party, label: str, v: np.ndarray, plan: NarrowPlan, g: NarrowGroup, digit_bits: int | None,
) -> np.ndarray:
    """Shares mod ``2^l_out`` of the requantization of the elements ``v`` (flat shares mod ``2^l``) of group ``g``."""
    l, L, server = plan.l, plan.l_out, party.is_server
    if g.out_lo == g.out_hi:  # a constant (e.g. a zero multiplier): the server holds it
        return np.full(v.size, np.uint64(g.out_lo % (1 << L)) if server else np.uint64(0), dtype=np.uint64)
    u = v * np.uint64(g.odd)
    if server:  # + add − β, with β = beta_q·2^s (a Python int, reduced mod 2^l first)
        u = u + np.uint64((g.add - (g.beta_q << g.s)) % (1 << l))
    u &= mask(l)
    z = u >> np.uint64(g.s)
    if plan.exact and g.s > 0:  # the carry of the low s bits: [2^s − 1 − low(u_S) < low(u_C)]
        low_s = mask(g.s)
        low = u & low_s
        task = CompareTask(g.s)
        m = digit_bits if digit_bits is not None else choose_digit_bits(party, [task])
        operand = (low_s - low)[None, :] if server else low
        ((c, _),) = await compare_batch(party, f"{label}/carry", [task], [operand], sender="server", digit_bits=m)
        z = z + await b2a(party, f"{label}/b2a", c[0], l=g.k)
    z &= mask(g.k)

    km = g.km
    y = (z + (np.uint64(g.beta_q % (1 << km)) if server else np.uint64(0))) & mask(km)  # y' mod 2^km
    if g.need_lo or g.need_hi:
        sel = await compare_thresholds(party, f"{label}/clip", z, k=g.k, thresholds=g.thresholds(plan.lo, plan.hi),
                                       digit_bits=digit_bits)
        bounds: list[tuple[np.ndarray, int]] = []
        if g.need_lo:  # [y' < lo] = 1 ⊕ [z >= lo − beta_q]
            bounds.append((sel[0] ^ np.uint8(1) if server else sel[0], plan.lo))
        if g.need_hi:  # [y' > hi] = [z >= hi + 1 − beta_q]
            bounds.append((sel[-1], plan.hi))
        keep = np.uint8(1) if server else np.uint8(0)
        for b, _ in bounds:  # the selectors exclude each other: keep = 1 ⊕ below ⊕ above
            keep = keep ^ b
        jobs = [mux(party, f"{label}/mux", keep, y, l=km)]
        jobs += [b2a(party, f"{label}/bound{j}", b, l=km) for j, (b, t) in enumerate(bounds) if t % (1 << km)]
        parts = await asyncio.gather(*jobs)
        y = parts[0]
        consts = [t for b, t in bounds if t % (1 << km)]
        for part, t in zip(parts[1:], consts):
            y = y + part * np.uint64(t % (1 << km))
        y &= mask(km)
    if L > km:
        y = await _widen(party, f"{label}/ext", y, g, L)
    return y & mask(L)


async def _widen(party: Party, label: str, y: np.ndarray, g: NarrowGroup, L: int) -> np.ndarray:
    """Shares mod ``2^L`` of ``y ∈ [out_lo, out_hi]`` from shares mod ``2^km``: known-MSB extension of
    ``y − out_lo`` when it stays below ``2^(km−1)`` (one COT), else a signed extension around the middle."""
    km = g.km
    server = party.is_server
    known = (g.out_hi - g.out_lo) < (1 << (km - 1))
    if known:
        center = g.out_lo
    else:
        center = (g.out_lo + g.out_hi + 1) // 2  # y − center ∈ [−2^(km−1), 2^(km−1))
        if not (-(1 << (km - 1)) <= g.out_lo - center and g.out_hi - center < (1 << (km - 1))):
            raise InputError("narrow requantization: the output range does not fit its multiplexer ring")
    off = np.uint64(center & _M64) if server else np.uint64(0)
    t = (y - off) & mask(km)
    m = choose_digit_bits(party, [CompareTask(km)])
    e = await extend(party, label, t, l=km, l_out=L, signed=not known, msb_known_zero=known, digit_bits=m)
    return (e + off) & mask(L)
