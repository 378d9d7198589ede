"""Requantization with per-channel multipliers: ONE protocol instance equals aiompc.quant.requantize applied
channel by channel (exact) or within {-1, 0, 1} (approximate), and costs what its largest multiplier costs alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.quant import signed_range
from nonlinear_helpers import Shared, opened, run_both
from aiompc.protocols.nonlinear.requantize import RequantPlan, requantize
from requant_helpers import Case, inputs, reference

N = 120  # values per channel: the channel's edge inputs (at most 44) and random ones, repeated to this length
LAYOUTS = ("(C, n)", "(C, H, W)", "(B, C, H, W)")


@dataclass(frozen=True)
class ChannelCase(Case):
    """A :class:`Case` with one multiplier per channel: ``M`` is their tuple (also ``Ms``)."""

    M: tuple[int, ...]  # type: ignore[assignment]

    @property
    def Ms(self) -> tuple[int, ...]:
        return self.M

    def channel(self, m: int) -> Case:
        """The scalar case of the channel with multiplier ``m``."""
        return Case(**{**asdict(self), "M": m})

    def params(self) -> dict:
        """:meth:`Case.params` without the multiplier (the test passes the per-channel array)."""
        return {k: v for k, v in super().params().items() if k != "multiplier"}


def channel_inputs(c: ChannelCase, gen: np.random.Generator) -> np.ndarray:
    """``(C, N)`` int64: row ``i`` holds the edge values of multiplier ``Ms[i]`` (range extremes, 0, ±1, both
    sides of the clip bounds and rounding boundaries) and random values, repeated to ``N``."""
    return np.stack([np.resize(inputs(c.channel(m), gen, n_random=N - 44), N) for m in c.Ms])


def per_channel_reference(x: np.ndarray, c: ChannelCase) -> np.ndarray:
    return np.stack([reference(row, c.channel(m)) for row, m in zip(x, c.Ms)])


def arrange(x: np.ndarray, Ms: tuple[int, ...], layout: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``(C, N)`` values and their multipliers in one of the layouts (channels on axis 0, or 1 with a batch)."""
    C = len(Ms)
    m = np.array(Ms, dtype=np.int64)
    if layout == "(C, n)":
        return x, m.reshape(C, 1)
    if layout == "(C, H, W)":
        return x.reshape(C, 10, 12), m.reshape(C, 1, 1)
    return x.reshape(C, 2, 6, 10).transpose(1, 0, 2, 3), m.reshape(1, C, 1, 1)


def unarrange(y: np.ndarray, C: int, layout: str) -> np.ndarray:
    return y.transpose(1, 0, 2, 3).reshape(C, N) if layout == "(B, C, H, W)" else y.reshape(C, N)


def channel_cases(l: int) -> list[ChannelCase]:
    b = min(4, l - 1)
    slo, shi = signed_range(b)
    # l = 64: x·M must fit a 64-bit word, so the multipliers are 0 or 1 once powers of two are cancelled
    mixed, even, single = ((1, 2, 3, 0, 4), (6, 12, 20), (5,)) if l < 64 else ((1, 0, 1), (2, 0, 2), (1,))
    out = [
        ChannelCase(l, mixed, max(1, l // 2), 0, (1 << b) - 1, b),  # different powers of two, M = 0, ReLU fused
        ChannelCase(l, even, max(2, l // 2), slo, shi, b, "floor"),  # a power of two cancels; signed output
        ChannelCase(l, single, max(1, l // 2), slo, shi, b),  # a single channel
    ]
    if l <= 37:
        out += [
            ChannelCase(l, (181, 362, 724, 90, 0, 1, 255), l + 5, -128, 127, 16),  # shift beyond l_in (s > l path)
            ChannelCase(l, (181, 362, 724, 90, 0, 1, 255), l + 5, 0, 255, 8, "floor"),
            ChannelCase(l, (8, 16, 64), 2, -100, 100, 16),  # powers of two beyond the shift: cancelled down to s = 0
            ChannelCase(l, (3, 5, 0, 7), 0, -100, 100, 8),  # no shift
            ChannelCase(l, (5, 77, 12, 0), l - 1, -8, 7, 4, msb_known_zero=True),  # after a ReLU
            ChannelCase(l, (181, 40, 3), l // 2 + 2, 0, 255, 8, "floor", msb_known_zero=True),
        ]
    return out


async def check_cases(cases: list[ChannelCase], gen: np.random.Generator, *, layouts: bool = True) -> int:
    """Run every case exact and approximate in one session; assert; return the number of approximate errors."""
    data = []
    for i, c in enumerate(cases):
        layout = LAYOUTS[i % len(LAYOUTS)] if layouts else LAYOUTS[0]
        x = channel_inputs(c, gen)
        xa, m = arrange(x, c.Ms, layout)
        data.append((c, layout, x, m, Shared(xa, c.l)))

    async def job(p: Party) -> list[tuple[np.ndarray, np.ndarray]]:
        res = []
        for i, (c, _, _, m, sx) in enumerate(data):
            ex = await requantize(p, f"q{i}", sx.mine(p), multiplier=m, **c.params())
            ap = await requantize(p, f"a{i}", sx.mine(p), multiplier=m, **c.params(), exact=False)
            res.append((ex, ap))
        return res

    s, cl = await run_both(job)
    approx_errors = 0
    for (c, layout, x, _, sx), (es, as_), (ec, ac) in zip(data, s, cl):
        assert es.shape == sx.s.shape
        want = per_channel_reference(x, c)
        signed = c.lo < 0
        got = unarrange(opened(es, ec, c.l_out, signed=signed).astype(np.int64), len(c.Ms), layout)
        np.testing.assert_array_equal(got, want, err_msg=f"{c} {layout}")
        approx = unarrange(opened(as_, ac, c.l_out, signed=signed).astype(np.int64), len(c.Ms), layout)
        err = approx - want
        assert set(np.unique(err)) <= {-1, 0, 1}, f"approximate error outside {{-1, 0, 1}} for {c}"
        assert approx.min() >= c.lo and approx.max() <= c.hi
        approx_errors += int(np.count_nonzero(err))
    return approx_errors


@pytest.mark.parametrize("l", [4, 8, 16, 37, 64])
async def test_per_channel_exact_and_approximate(l: int, gen: np.random.Generator) -> None:
    assert await check_cases(channel_cases(l), gen) > 0


def random_case(gen: np.random.Generator) -> ChannelCase | None:
    """A random configuration: multipliers ``odd·2^k`` and zeros, a shift that keeps ``y'`` within about
    ``±2^10`` and clip bounds within ``±128`` (None if it cannot be planned or its output is constant)."""
    l = int(gen.integers(3, 41))
    C = int(gen.integers(1, 7))
    odd = gen.integers(0, 1 << int(gen.integers(1, 9)), size=C) | 1
    Ms = tuple(int(v) << int(k) for v, k in zip(odd, gen.integers(0, 6, size=C)))
    Ms = tuple(0 if z else m for m, z in zip(Ms, gen.random(C) < 0.15))
    s = min(max(l + max(Ms).bit_length() - int(gen.integers(1, 12)), 0), l + 8)
    b = int(gen.integers(2, 9))
    lo = int(gen.integers(-(1 << (b - 1)), 1 << (b - 1)))
    hi = int(gen.integers(lo, 1 << (b - 1)))
    c = ChannelCase(l, Ms, s, lo, hi, 10, "nearest" if gen.random() < 0.5 else "floor", bool(gen.random() < 0.3))
    try:
        plan = RequantPlan(multiplier=np.array(Ms), exact=False, **c.params())
    except InputError:
        return None
    return None if plan.constant else c


async def test_random_per_channel_configurations(gen: np.random.Generator) -> None:
    cases = [c for c in (random_case(gen) for _ in range(60)) if c is not None][:16]
    assert len(cases) == 16
    await check_cases(cases, gen, layouts=False)


async def test_one_instance_costs_what_the_largest_multiplier_costs(gen: np.random.Generator) -> None:
    """Per-channel multipliers: the online messages, rounds and bytes of the largest multiplier alone, and far
    fewer messages and rounds than one call per distinct multiplier."""
    Ms = (181, 90, 0, 1, 255, 3, 12, 361)  # the largest is odd, like the least 2-adic valuation: same widths
    C, n = len(Ms), 64
    x = gen.integers(-(1 << 15), 1 << 15, size=(2, C, n))
    sx = Shared(x, 16)
    kw = dict(l_in=16, shift=12, lo=0, hi=15, l_out=4)

    async def job(p: Party):
        await requantize(p, "one", sx.mine(p), multiplier=np.array(Ms).reshape(C, 1), **kw)
        await requantize(p, "max", sx.mine(p), multiplier=max(Ms), **kw)
        await _grouped(p, "per", sx.mine(p), Ms, kw)
        # one snapshot at the end: the peer may already have sent a later call's first messages
        return [p.channel.stats().select(label, phase="online") for label in ("one", "max", "per")]

    (channels, largest, grouped), _ = await run_both(job)
    assert (channels.messages, channels.rounds) == (largest.messages, largest.rounds)
    both = channels.bytes_sent + channels.bytes_recv, largest.bytes_sent + largest.bytes_recv
    assert abs(both[0] - both[1]) <= 4 * channels.messages  # equal payloads; encodings vary by a byte or two
    assert channels.messages * 4 <= grouped.messages and channels.rounds * 4 <= grouped.rounds


async def _grouped(p: Party, label: str, x: np.ndarray, Ms: tuple[int, ...], kw: dict) -> None:
    """The old way: one requantization per distinct multiplier, one after another."""
    for k, mv in enumerate(sorted(set(Ms))):
        idx = [i for i, mi in enumerate(Ms) if mi == mv]
        await requantize(p, f"{label}/m{k}", x[:, idx], multiplier=mv, **kw)


def plan(multiplier: int | np.ndarray, shift: int, **kw) -> RequantPlan:
    args = dict(l_in=16, lo=-128, hi=127, rounding="nearest", l_out=8, msb_known_zero=False) | kw
    return RequantPlan(multiplier=multiplier, shift=shift, **args)


def test_plan_from_all_multipliers() -> None:
    p = plan(np.array([2, 4, 8]).reshape(3, 1, 1), 3)
    assert (p.multipliers, p.M_max, p.s, p.r, p.shape) == ([1, 2, 4], 4, 2, 2, (3, 1, 1))
    assert p.index is not None and p.index.ravel().tolist() == [0, 1, 2]
    largest = plan(8, 3)  # the range of y' is the largest multiplier's
    assert (p.ymin, p.ymax, p.W, p.w_cmp) == (largest.ymin, largest.ymax, largest.W, largest.w_cmp)
    assert p.w_bits == p.W - (16 - 2)  # the least wrap weight, 1·2^(l-s), decides the wrap's width
    limited = plan(np.array([0, 4, 8]), 1)  # zeros do not limit the cancellation; the shift does
    assert (limited.multipliers, limited.s, limited.r) == ([0, 2, 4], 0, 0)
    assert plan(np.array([0, 12, 20]), 6).multipliers == [0, 3, 5]
    odd = plan(np.array([3, 6]), 6)
    assert (odd.multipliers, odd.s) == ([3, 6], 6)


def test_equal_multipliers_take_the_scalar_path() -> None:
    p = plan(np.full((4, 1, 1), 6), 3)
    q = plan(6, 3)
    assert p.index is None and p.multipliers == q.multipliers == [3]
    assert (p.W, p.w_cmp, p.w_bits, p.ymin, p.ymax) == (q.W, q.w_cmp, q.w_bits, q.ymin, q.ymax)
    assert p.public(lambda m: m << 5, (2, 4, 3, 3)) == np.uint64(3 << 5)


def test_public_constants_per_element() -> None:
    p = plan(np.array([3, 0, 5]).reshape(3, 1), 4)
    got = p.public(lambda m: m - 4, (2, 3, 2))  # negative values wrap mod 2^64
    want = (np.array([3, 3, 0, 0, 5, 5] * 2, dtype=object) - 4) % (1 << 64)
    np.testing.assert_array_equal(got, want.astype(np.uint64))
    assert got.dtype == np.uint64 and got.shape == (12,)


def test_all_zero_multipliers_are_constant() -> None:
    assert plan(np.zeros((3, 1, 1), dtype=np.int64), 4).constant
    assert plan(np.zeros((3, 1, 1), dtype=np.int64), 4, exact=False).constant  # nothing is shifted away


def test_plan_errors() -> None:
    with pytest.raises(InputError, match="integers"):
        plan(np.array([1.5, 2.0]), 3)
    with pytest.raises(InputError, match="multipliers >= 0"):
        plan(np.array([3, -1]), 3)
    with pytest.raises(InputError, match="64-bit"):  # the largest multiplier decides the word size
        plan(np.array([1, 1 << 50]), 30, l_in=40, lo=0, hi=1 << 40, l_out=62)


async def test_multipliers_must_broadcast_to_the_input() -> None:
    x = np.zeros((2, 3, 4, 4), dtype=np.int64)
    sx = Shared(x, 12)

    async def job(p: Party):
        return await requantize(p, "q", sx.mine(p), l_in=12, multiplier=np.array([1, 2, 3]).reshape(3, 1), shift=4,
                                lo=0, hi=15, l_out=4)

    with pytest.raises(InputError, match="broadcast"):
        await run_both(job)


async def test_zero_channels_and_mixed_zero_multipliers(gen: np.random.Generator) -> None:
    """M = 0 channels give 0 clipped; an all-zero multiplier array is a local constant (no messages)."""
    x = gen.integers(-2000, 2000, size=(3, 5, 5))
    sx = Shared(x, 12)
    c = ChannelCase(12, (0, 7, 0), 4, -3, 15, 5)

    async def job(p: Party):
        before = p.channel.stats()
        const = await requantize(p, "z", sx.mine(p), multiplier=np.zeros((3, 1, 1), dtype=np.int64), **c.params())
        silent = (p.channel.stats() - before).messages == 0
        mixed = await requantize(p, "m", sx.mine(p), multiplier=np.array(c.Ms).reshape(3, 1, 1), **c.params())
        return const, silent, mixed

    (cs, silent, ms), (cc, _, mc) = await run_both(job)
    assert silent
    np.testing.assert_array_equal(opened(cs, cc, 5), np.zeros(x.shape))
    want = per_channel_reference(x.reshape(3, -1), c).reshape(x.shape)
    np.testing.assert_array_equal(opened(ms, mc, 5), want)
