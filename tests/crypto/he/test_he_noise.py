"""aiompc.crypto.he.noise.flood_bound: a plan's flood distance and noise tail, separately (what the
per-inference composition adds in quadrature and linearly), equal to the combined statistical security, and
``fail_bits`` decoupled from the flooding level (a tail of 2^-(fail+2) for a few hundredths of a bit of noise)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from aiompc.crypto.he import (
    FloodBound,
    ServerPipeline,
    cheetah_params,
    estimate,
    flood_bound,
    flood_distance,
    plan_output,
    statistical_security,
)

PIPE = ServerPipeline(weight_norm=8, weight_count=9, accumulations=16, visible=900)


@pytest.mark.parametrize("terms", [1, 2])
@pytest.mark.parametrize("stat, fail", [(40, 40), (45, 54), (52, 52)])
def test_flood_bound_splits_the_statistical_distance(terms: int, stat: int, fail: int) -> None:
    p = cheetah_params(16)
    pipe = replace(PIPE, flood_terms=terms, stat_bits=stat, fail_bits=fail)
    plan = plan_output(p, pipe)
    b = flood_bound(p, pipe, plan)
    assert isinstance(b, FloodBound) and b.terms == terms == plan.flood_terms
    assert b.tail == 2.0 ** -(fail + 2)
    hidden = estimate(p, replace(pipe, flood=False)).rerandomized  # the noise the flood hides
    assert b.distance == flood_distance(900, hidden, plan.flood_bits, terms)
    assert b.total == pytest.approx(2.0 ** -statistical_security(p, pipe, plan))
    assert b.distance + b.tail <= 2.0**-stat  # the plan floods enough at its level, tail included
    # a smaller flood would not (the two-uniform flood is the least that does; one uniform keeps a bit for the tail)
    weaker = replace(plan, flood_bits=plan.flood_bits - (2 if terms == 1 else 1))
    assert flood_bound(p, pipe, weaker).total > 2.0**-stat


def test_no_flood_requested_is_no_distance() -> None:
    p = cheetah_params(16)
    pipe = replace(PIPE, flood=False)
    b = flood_bound(p, pipe, plan_output(p, pipe))
    assert (b.distance, b.tail) == (0.0, 0.0) and statistical_security(p, pipe, plan_output(p, pipe)) == math.inf


def test_fail_bits_are_cheap_and_separate_from_the_level() -> None:
    """Raising ``fail_bits`` from 40 to 54 at the same flooding level shrinks the tail 2^14-fold and widens the
    hidden noise bound (through ``z``) by well under a bit; raising the level itself costs a bit per bit."""
    p = cheetah_params(16)
    base = replace(PIPE, flood_terms=2, stat_bits=45, fail_bits=45)
    high = replace(base, fail_bits=59)
    e0, e1 = estimate(p, base), estimate(p, high)
    assert flood_bound(p, high, plan_output(p, high)).tail == flood_bound(p, base, plan_output(p, base)).tail / 2**14
    assert 0 < math.log2(e1.rerandomized / e0.rerandomized) < 0.2
    assert e1.flood_bits - e0.flood_bits <= 1
    level = estimate(p, replace(base, stat_bits=59, fail_bits=59))
    assert level.flood_bits - e0.flood_bits >= 13


def test_a_tail_above_the_level_is_refused() -> None:
    from aiompc.errors import InputError

    with pytest.raises(InputError, match="fail_bits"):
        replace(PIPE, stat_bits=50, fail_bits=45)
    replace(PIPE, stat_bits=50, fail_bits=45, flood=False)  # nothing flooded: no level to reach
