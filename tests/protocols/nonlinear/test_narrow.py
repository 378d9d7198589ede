"""Requantization on the narrow ring (truncate-and-reduce) equals aiompc.quant.requantize bit for bit.

Every case asserts that the narrow protocol is the one that runs (its plan exists), so a silent fallback
to the wrap-based protocol cannot make these tests pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from aiompc import quant
from aiompc.party import Party
from aiompc.protocols.nonlinear.narrow import narrow_plan
from aiompc.protocols.nonlinear.requantize import _distinct, requantize
from nonlinear_helpers import Shared, opened, run_both


@dataclass(frozen=True)
class NCase:
    l: int
    s: int
    lo: int
    hi: int
    l_out: int
    x_lo: int
    x_hi: int
    M: int | tuple[int, ...] = 1
    rounding: str = "nearest"

    def multiplier(self) -> int | np.ndarray:
        return self.M if isinstance(self.M, int) else np.asarray(self.M, dtype=np.int64).reshape(-1, 1)

    def params(self, **extra) -> dict:
        return dict(l_in=self.l, multiplier=self.multiplier(), shift=self.s, lo=self.lo, hi=self.hi,
                    rounding=self.rounding, l_out=self.l_out, x_range=(self.x_lo, self.x_hi), **extra)

    def plan(self, exact: bool = True, unbiased: bool = False):
        ms, index, shape = _distinct(self.multiplier())
        return narrow_plan(l=self.l, multipliers=ms, index=index, shape=shape, shift=self.s, rounding=self.rounding,
                           lo=self.lo, hi=self.hi, l_out=self.l_out, x_lo=self.x_lo, x_hi=self.x_hi, exact=exact,
                           unbiased=unbiased)

    def rows(self) -> int:
        return 1 if isinstance(self.M, int) else len(self.M)


def reference(x: np.ndarray, c: NCase) -> np.ndarray:
    m = np.broadcast_to(np.asarray(c.multiplier()), x.shape)
    out = np.empty(x.shape, dtype=np.int64)
    for mv in np.unique(m):
        sel = m == mv
        out[sel] = quant.requantize(x[sel], int(mv), c.s, c.lo, c.hi, c.rounding)  # type: ignore[arg-type]
    return out


def edge_inputs(c: NCase, gen: np.random.Generator, n_random: int = 120) -> np.ndarray:
    """The range's ends, 0 and ±1, both sides of every clip bound and rounding step, and random values,
    shaped ``(rows, n)`` (one row per multiplier)."""
    r = (1 << (c.s - 1)) if (c.rounding == "nearest" and c.s > 0) else 0
    rows = []
    ms = [c.M] if isinstance(c.M, int) else list(c.M)
    for m in ms:
        vals = [c.x_lo, c.x_lo + 1, c.x_hi - 1, c.x_hi, -1, 0, 1]
        if m:
            for k in (c.lo, c.lo + 1, c.hi, c.hi + 1, -1, 0, 1):
                x0 = -((r - k * (1 << c.s)) // m)  # first x with y' >= k
                vals += [x0 - 1, x0, x0 + 1]
        vals += [int(v) for v in gen.integers(c.x_lo, c.x_hi + 1, n_random)]
        rows.append(np.clip(np.asarray(vals, dtype=np.int64), c.x_lo, c.x_hi))
    n = min(len(v) for v in rows)
    return np.stack([v[:n] for v in rows])


def narrow_cases(l: int) -> list[NCase]:
    """Every shift 0..l-1 with a ReLU-fused 4-bit output and a signed 4-bit one, input ranges with and
    without headroom; rings of the output narrower and wider than the narrow ring."""
    full = (-(1 << (l - 1)), (1 << (l - 1)) - 1)
    roomy = (-(1 << (l - 1)) + (1 << (l - 2)), (1 << (l - 1)) - (1 << (l - 2)) - 1)  # the engine's bounds
    out = []
    for s in range(l):
        out.append(NCase(l, s, 0, 15, 5 if s % 2 else l + 3, *full, rounding="floor"))
        out.append(NCase(l, s, 0, 15, 4 + (s % 3), *roomy))
        out.append(NCase(l, s, -8, 7, 4 if s % 2 else l, *roomy))
        out.append(NCase(l, s, -8, 7, 6, 0, full[1], rounding="floor"))  # known non-negative input
    return out


async def _run(cases: list[tuple[NCase, np.ndarray]], exact: bool, unbiased: bool = False):
    shared = [Shared(x, c.l) for c, x in cases]

    async def job(p: Party):
        return [await requantize(p, f"q{i}", sx.mine(p), **c.params(exact=exact, unbiased=unbiased))
                for i, ((c, _), sx) in enumerate(zip(cases, shared))]

    return await run_both(job)


@pytest.mark.parametrize("l", [6, 12, 16])
async def test_narrow_exact_every_shift(l: int, gen: np.random.Generator) -> None:
    cases = [c for c in narrow_cases(l) if c.plan() is not None]
    # only nearest rounding over the full signed range (2^l + 1 values of y') is left to the wrap protocol
    assert len(cases) == len(narrow_cases(l))
    data = [(c, edge_inputs(c, gen)) for c in cases]
    s, cl = await _run(data, exact=True)
    for (c, x), a, b in zip(data, s, cl):
        got = opened(a, b, c.l_out, signed=c.lo < 0).astype(np.int64)
        np.testing.assert_array_equal(got, reference(x, c), err_msg=str(c))


async def test_narrow_per_channel_multipliers_one_element_and_odd_shapes(gen: np.random.Generator) -> None:
    """General multipliers where the product fits the ring (the multiply is local), one per channel,
    including 0 and even ones; a one-element input; an odd 3-d shape."""
    chan = NCase(16, 9, 0, 15, 17, -2000, 3000, M=(3, 5, 0, 12, 7))
    signed = NCase(18, 12, -8, 7, 4, -(1 << 14), (1 << 14) - 1, M=(1, 2, 3))
    one = NCase(12, 8, 0, 15, 12, -1500, 1500)
    for c in (chan, signed, one):
        assert c.plan() is not None, c
    x_chan = edge_inputs(chan, gen)
    x_signed = edge_inputs(signed, gen)
    x_one = np.array([[1400]])
    odd = gen.integers(-1500, 1501, size=(3, 5, 7))
    data = [(chan, x_chan), (signed, x_signed), (one, x_one), (one, odd)]
    s, cl = await _run(data, exact=True)
    for (c, x), a, b in zip(data, s, cl):
        assert a.shape == x.shape
        got = opened(a, b, c.l_out, signed=c.lo < 0).astype(np.int64)
        np.testing.assert_array_equal(got, reference(x, c), err_msg=str(c))


async def test_narrow_power_of_two_channel_multipliers_become_channel_shifts(gen: np.random.Generator) -> None:
    """ResNet-18's requantizations: per-channel multipliers 1, 2, 4 with one shift, whose products do not fit
    the accumulator's ring; each channel truncates by its own shift (s, s - 1, s - 2) on its own narrow
    ring, all in one protocol instance (exact and approximate)."""
    cases = [NCase(14, 6, 0, 15, 15, -7610, 7737, M=(1, 2, 4)), NCase(18, 7, 0, 15, 9, -73396, 69916, M=(2, 1, 4, 0)),
             NCase(12, 3, -8, 7, 12, -1800, 1700, M=(8, 1, 4, 2))]
    for c in cases:
        p = c.plan()
        assert p is not None, c
        assert len({g.s for g in p.groups}) > 1
    data = [(c, edge_inputs(c, gen)) for c in cases]
    s, cl = await _run(data, exact=True)
    sa, cla = await _run(data, exact=False, unbiased=True)
    for (c, x), a, b, aa, ba in zip(data, s, cl, sa, cla):
        want = reference(x, c)
        np.testing.assert_array_equal(opened(a, b, c.l_out, signed=c.lo < 0).astype(np.int64), want, err_msg=str(c))
        err = opened(aa, ba, c.l_out, signed=c.lo < 0).astype(np.int64) - want
        assert set(np.unique(err).tolist()) <= {-1, 0, 1}, c


async def test_narrow_approximate_is_within_one_lsb(gen: np.random.Generator) -> None:
    cases = [c for c in narrow_cases(12)[::3] if c.plan(exact=False) is not None]
    assert len(cases) >= 10
    data = [(c, edge_inputs(c, gen)) for c in cases]
    s, cl = await _run(data, exact=False)
    errors = 0
    for (c, x), a, b in zip(data, s, cl):
        got = opened(a, b, c.l_out, signed=c.lo < 0).astype(np.int64)
        err = got - reference(x, c)
        assert set(np.unique(err).tolist()) <= {-1, 0}, c
        assert got.min() >= c.lo and got.max() <= c.hi
        errors += int(np.count_nonzero(err))
    assert errors > 0


def test_narrow_plan_places_a_bound_on_the_top_bit_and_never_compares_the_wrap() -> None:
    c = NCase(16, 8, 0, 15, 16, -(1 << 15) + 256, (1 << 15) - 257)
    p = c.plan()
    assert p is not None and p.groups[0].k == 8
    assert p.groups[0].thresholds(0, 15)[0] == 1 << 7  # [y' >= 0] is the top bit of z: free
    assert (p.need_lo, p.need_hi, p.groups[0].km) == (True, True, 5)
    # a range narrower than the ring: z lives on the fewest bits that hold y' ∈ [-12, 12] with 0 at the top bit
    tight = NCase(16, 8, 0, 15, 16, -3000, 3000).plan()
    assert tight is not None and tight.groups[0].k == 5 and tight.groups[0].thresholds(0, 15)[0] == 1 << 4
    # nearest rounding over the whole signed range: y' takes 2^(l-s) + 1 values, no narrow window
    assert NCase(16, 8, 0, 15, 16, -(1 << 15), (1 << 15) - 1).plan() is None
    assert NCase(16, 8, 0, 15, 16, -(1 << 15), (1 << 15) - 1, rounding="floor").plan() is not None
    # approximate needs one more LSB of room below
    assert NCase(16, 8, 0, 15, 16, -(1 << 15), (1 << 15) - 1, rounding="floor").plan(exact=False) is None


N_STAT = 100_000


@pytest.mark.parametrize("x_range", [(-(1 << 15) + 512, (1 << 15) - 513), None])  # narrow ring / wrap-based
async def test_unbiased_approximate_error_statistics(x_range, gen: np.random.Generator) -> None:
    """10^5 uniform inputs, shift 8, no clip active: the unbiased approximate error e = y − y_exact is in
    {−1, 0, +1} and matches the docstring's distribution — P(+1) = (2^(s−1) + 1)/2^(s+2),
    P(−1) = (2^(s−1) − 1)/2^(s+2), mean 2^−(s+1) — each within 0.01 (about 6 standard errors at 10^5
    samples); the biased variant (unbiased=False) is measured too, with mean −1/2 ± 0.01 — so the test
    tells the two apart."""
    l, s = 16, 8
    lo_x, hi_x = x_range if x_range is not None else (-(1 << 15), (1 << 15) - 1)
    x = gen.integers(lo_x, hi_x + 1, N_STAT)
    sx = Shared(x, l)
    params = dict(l_in=l, multiplier=1, shift=s, lo=-200, hi=200, l_out=l, x_range=x_range, exact=False)

    async def job(p: Party):
        return (await requantize(p, "u", sx.mine(p), **params),
                await requantize(p, "b", sx.mine(p), **params, unbiased=False))

    (us, bs), (uc, bc) = await run_both(job)
    want = quant.requantize(x, 1, s, -200, 200)
    e = opened(us, uc, l).astype(np.int64) - want
    assert set(np.unique(e).tolist()) <= {-1, 0, 1}
    p_plus, p_minus = np.mean(e == 1), np.mean(e == -1)
    assert abs(p_plus - ((1 << (s - 1)) + 1) / (1 << (s + 2))) < 0.01, p_plus
    assert abs(p_minus - ((1 << (s - 1)) - 1) / (1 << (s + 2))) < 0.01, p_minus
    assert abs(e.mean() - 2.0 ** -(s + 1)) < 0.01, e.mean()
    biased = opened(bs, bc, l).astype(np.int64) - want
    assert set(np.unique(biased).tolist()) <= {-1, 0}
    assert abs(biased.mean() + 0.5) < 0.01, biased.mean()


async def test_channel_groups_cost_what_each_group_costs_alone(gen: np.random.Generator) -> None:
    """Per-channel multipliers 1 and 4 (channel shifts s and s - 2): the grouped requantization's online
    bytes are those of the two groups requantized alone (within message framing), not the widest group's
    cost for every element; and it is exact."""
    n = 2000
    c = NCase(16, 7, 0, 15, 16, -(1 << 14), (1 << 14) - 1, M=(1, 4))
    x = gen.integers(c.x_lo, c.x_hi + 1, size=(2, n))
    sx, s0, s1 = Shared(x, 16), Shared(x[0], 16), Shared(x[1], 16)
    alone = [dict(c.params(exact=True), multiplier=m) for m in (1, 4)]

    async def job(p: Party):
        before = p.channel.stats()
        both = await requantize(p, "both", sx.mine(p), **c.params(exact=True))
        mid = p.channel.stats()
        await requantize(p, "m1", s0.mine(p), **alone[0])
        await requantize(p, "m4", s1.mine(p), **alone[1])
        after = p.channel.stats()
        grouped, separate = (mid - before).select(phase="online"), (after - mid).select(phase="online")
        return both, (grouped.bytes_sent + grouped.bytes_recv, separate.bytes_sent + separate.bytes_recv)

    (a, (grouped, separate)), (b, _) = await run_both(job)
    np.testing.assert_array_equal(opened(a, b, 16, signed=False).astype(np.int64), reference(x, c))
    assert abs(grouped - separate) < 0.02 * separate, (grouped, separate)
