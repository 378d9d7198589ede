"""Requantization on shares equals aiompc.quant.requantize bit for bit (exact) or within {-1, 0, 1} (approximate)."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc import quant
from aiompc.errors import InputError
from aiompc.party import Party
from nonlinear_helpers import Shared, opened, run_both
from aiompc.protocols.nonlinear.requantize import RequantPlan, requantize
from requant_helpers import Case, inputs, reference


def cases_for(l: int) -> list[Case]:
    b = min(4, l - 1)
    out = [
        Case(l, 1, max(1, l // 4), 0, (1 << b) - 1, b),  # ReLU fused, unsigned b-bit output
        Case(l, 1, l // 2, -(1 << (b - 1)), (1 << (b - 1)) - 1, b, "floor"),  # signed b-bit output
        Case(l, 1, l // 2, -(1 << (b - 1)), (1 << (b - 1)) - 1, min(64, l + 2)),  # wide output ring
        Case(l, 0, 3, -5, 5, 4),  # constant
    ]
    if l <= 37:
        out += [
            Case(l, 181, l + 5, -128, 127, 16),  # fixed-point multiplier, shift beyond l_in (s > l path)
            Case(l, 181, l + 5, 0, 255, 8, "floor"),
            Case(l, 3, 0, -100, 100, 8),  # no shift
            Case(l, 5, 3, 0, 255, 8, msb_known_zero=True),  # after a ReLU
            Case(l, 77, l - 1, -8, 7, 4, msb_known_zero=True),
            Case(l, 180, l + 5, -128, 127, 8),  # even multiplier: 2^2 cancels against the shift
            Case(l, 64, l + 3, -8, 7, 4),  # power-of-two multiplier: becomes a shift by l - 3 (direct)
        ]
    if l == 8:
        out.append(Case(8, 1, 4, -8, 8, 5))  # no clip needed at all
    return out


@pytest.mark.parametrize("l", [4, 8, 16, 37, 64])
async def test_requantize_exact_and_approximate(l: int, gen: np.random.Generator) -> None:
    cases = cases_for(l)
    data = [(c, inputs(c, gen)) for c in cases]
    shared = [Shared(x, l) for _, x in data]

    async def job(p: Party):
        res = []
        for i, ((c, _), sx) in enumerate(zip(data, shared)):
            ex = await requantize(p, f"q{i}", sx.mine(p), **c.params())
            ap = await requantize(p, f"a{i}", sx.mine(p), **c.params(), exact=False)
            res.append((ex, ap))
        return res

    s, cl = await run_both(job)
    approx_errors = 0
    for (c, x), (es, as_), (ec, ac) in zip(data, s, cl):
        want = reference(x, c)
        signed = c.lo < 0
        got = opened(es, ec, c.l_out, signed=signed).astype(np.int64)
        np.testing.assert_array_equal(got, want, err_msg=str(c))
        approx = opened(as_, ac, c.l_out, signed=signed).astype(np.int64)
        err = approx - want
        assert set(np.unique(err)) <= {-1, 0, 1}, f"approximate error outside {{-1, 0, 1}} for {c}"
        assert approx.min() >= c.lo and approx.max() <= c.hi
        approx_errors += int(np.count_nonzero(err))
    assert approx_errors > 0


@pytest.mark.parametrize("multiplier, shift", [(1, 0), (1, 1), (3, 5), (np.array([1, 2, 4]).reshape(3, 1), 6),
                                               (np.array([0, 5, 1]).reshape(3, 1), 3)])
async def test_relu_from_the_sign_of_the_input(multiplier, shift: int, gen: np.random.Generator) -> None:
    """ReLU-fused requantization takes its lower clip from the sign of x (no clip DReLU): exact at the
    edges -- x just below 0 (which rounds to y' = 0), 0, the ring's extremes -- and on random values."""
    l = 12
    plan = RequantPlan(l_in=l, multiplier=multiplier, shift=shift, lo=0, hi=15, rounding="nearest", l_out=5,
                       msb_known_zero=False)
    assert plan.lo_from_sign and plan.offsets == [16]
    edges = np.array([-(1 << (l - 1)), -(1 << (l - 1)) + 1, -(1 << shift) - 1, -(1 << shift), -2, -1, 0, 1,
                      (1 << shift) - 1, 15 << shift, 16 << shift, (1 << (l - 1)) - 1])
    x = np.stack([np.concatenate([edges, gen.integers(-(1 << (l - 1)), 1 << (l - 1), 52)]) for _ in range(3)])
    sx = Shared(x, l)

    async def job(p: Party):
        return await requantize(p, "q", sx.mine(p), l_in=l, multiplier=multiplier, shift=shift, lo=0, hi=15,
                                l_out=5)

    s, c = await run_both(job)
    m = np.broadcast_to(np.asarray(multiplier), x.shape)
    want = np.vectorize(lambda v, k: int(quant.requantize(np.array([v]), int(k), shift, 0, 15)[0]))(x, m)
    np.testing.assert_array_equal(opened(s, c, 5, signed=False), want)


async def test_shapes_are_kept(gen: np.random.Generator) -> None:
    x = gen.integers(-500, 500, size=(2, 3, 5, 5))
    sx = Shared(x, 12)

    async def job(p: Party):
        return await requantize(p, "q", sx.mine(p), l_in=12, multiplier=3, shift=4, lo=0, hi=15, l_out=4)

    s, c = await run_both(job)
    assert s.shape == x.shape
    np.testing.assert_array_equal(opened(s, c, 4, signed=False), quant.requantize(x, 3, 4, 0, 15))


def test_plan_widths_and_errors() -> None:
    p = RequantPlan(l_in=16, multiplier=1, shift=8, lo=0, hi=15, rounding="nearest", l_out=4, msb_known_zero=False)
    # the lower clip's selector is the sign from the wrap's comparison: only [y' > 15] is compared
    assert (p.ymin, p.ymax, p.w_cmp, p.W, p.offsets, p.lo_from_sign) == (-128, 128, 9, 9, [16], True)
    assert p.w_bits == 1  # the wrap only matters mod 2 after its weight 2^(l-s)
    approx = RequantPlan(l_in=16, multiplier=1, shift=8, lo=0, hi=15, rounding="nearest", l_out=4,
                         msb_known_zero=False, exact=False)  # y' may be one low: -1 for x >= 0
    assert (approx.offsets, approx.lo_from_sign) == ([0, 16], False)
    none = RequantPlan(l_in=8, multiplier=1, shift=4, lo=-8, hi=8, rounding="nearest", l_out=5, msb_known_zero=False)
    assert none.offsets == [] and none.W == 5
    with pytest.raises(InputError):  # outputs do not fit the output ring
        RequantPlan(l_in=16, multiplier=1, shift=4, lo=0, hi=255, rounding="nearest", l_out=4, msb_known_zero=False)
    with pytest.raises(InputError):  # needs more than 64-bit words
        RequantPlan(l_in=64, multiplier=181, shift=69, lo=-128, hi=127, rounding="nearest", l_out=8, msb_known_zero=False)
    with pytest.raises(InputError):
        RequantPlan(l_in=8, multiplier=1, shift=2, lo=3, hi=1, rounding="nearest", l_out=8, msb_known_zero=False)
