"""Comparisons against public thresholds, and the digit-size cost model of the millionaire."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.protocols.nonlinear.millionaire import (
    DEFAULT_DIGIT_BITS,
    CompareTask,
    choose_digit_bits,
    comparison_cost,
    plan_comparisons,
)
from aiompc.protocols.nonlinear.threshold import compare_thresholds
from nonlinear_helpers import Shared, run_both


def _values(k: int, gen: np.random.Generator) -> np.ndarray:
    top = (1 << k) - 1
    edges = [0, 1, 2, top - 1, top, 1 << (k - 1), (1 << (k - 1)) - 1, (1 << (k - 1)) + 1]
    return np.concatenate([np.clip(edges, 0, top), gen.integers(0, top + 1, 200)]).astype(np.int64)


def _thresholds(k: int) -> list[int]:
    top = (1 << k) - 1
    half = 1 << (k - 1)
    return sorted(set(t for t in [1, 2, half - 1, half, half + 1, top - 1, top, (top * 3) // 4] if 1 <= t <= top))


@pytest.mark.parametrize("k", [1, 2, 5, 8, 13])
async def test_compare_thresholds_every_digit_size(k: int, gen: np.random.Generator) -> None:
    z = _values(k, gen)
    ts = _thresholds(k) + [_thresholds(k)[0]]  # a repeated threshold too
    sz = Shared(z, k)
    sizes = [None, 1, 3, 5, 6]

    async def job(p: Party):
        return [await compare_thresholds(p, f"t{m}", sz.mine(p), k=k, thresholds=ts, digit_bits=m) for m in sizes]

    s, c = await run_both(job)
    want = np.stack([(z >= t) for t in ts]).astype(np.uint8)
    for m, a, b in zip(sizes, s, c):
        np.testing.assert_array_equal(a ^ b, want, err_msg=f"k={k} m={m}")


async def test_per_element_widths_thresholds_and_constants(gen: np.random.Generator) -> None:
    """Each element its own ring width and thresholds, including the constant ones (T <= 0, T >= 2^k)
    and a slot at 2^(k-1) for some elements only."""
    n = 400
    k = gen.integers(1, 11, n)
    z = gen.integers(0, 1 << 62, n) & ((1 << k) - 1)
    t1 = gen.integers(-3, (1 << k) + 3)
    t2 = np.where(np.arange(n) % 2 == 0, 1 << (k - 1), gen.integers(0, (1 << k) + 1))
    sz = Shared(z, 62)  # shares mod 2^62: the protocol reduces them mod 2^k per element

    async def job(p: Party):
        out = await compare_thresholds(p, "t", sz.mine(p), k=k, thresholds=[t1, t2, 1 << 20])
        with pytest.raises(InputError):
            await compare_thresholds(p, "bad", np.zeros(3, dtype=np.uint64), k=63, thresholds=[1])
        return out

    s, c = await run_both(job)
    want = np.stack([z >= t1, z >= t2, z >= (1 << 20)]).astype(np.uint8)
    np.testing.assert_array_equal(s ^ c, want)


def test_digit_size_is_the_cheapest_under_the_engine_price() -> None:
    for task in (CompareTask(8), CompareTask(7, fanout=2), CompareTask(36), CompareTask(12, split=5)):
        for kind, price in (("silent", 1.0), ("iknp", 128.0)):
            m = choose_digit_bits(kind, [task])
            costs = {d: comparison_cost([task], d, price) for d in range(1, 7)}
            assert costs[m] == min(costs.values()), (task, kind)
    # silent OT: 3-bit digits beat Cheetah's 4 on an 8-bit comparison (48 vs 60 bits online)
    assert choose_digit_bits("silent", [CompareTask(8)]) == 3
    assert (plan_comparisons([CompareTask(8)], 3).online_bits, plan_comparisons([CompareTask(8)], 4).online_bits) == (48, 60)
    # IKNP charges 128 bits per COT: fewer, larger digits (fewer AND triples)
    assert choose_digit_bits("iknp", [CompareTask(36)]) > choose_digit_bits("silent", [CompareTask(36)])
    assert choose_digit_bits("silent", [CompareTask(0)]) == DEFAULT_DIGIT_BITS == 4  # the baseline's m


@pytest.mark.parametrize("k", [3, 6, 10, 14])
async def test_window_of_two_to_the_j_every_j_and_digit_size(k: int, gen: np.random.Generator) -> None:
    """Thresholds K and K + 2^j (the clip of a j-bit output with its lower bound at K): the equality-row
    path, every j in 1..k-2, either order, several digit sizes; every value of z (k <= 10) or the edges
    around both thresholds and random ones, checked against the plain comparison."""
    from aiompc.protocols.nonlinear.threshold import window_bits

    half = 1 << (k - 1)
    if k <= 10:
        z = np.arange(1 << k, dtype=np.int64)
    else:
        near = [t + d for t in (0, half, half + 1, half + 16, half + 32, (1 << k) - 1) for d in (-2, -1, 0, 1, 2)]
        z = np.concatenate([np.clip(near, 0, (1 << k) - 1), gen.integers(0, 1 << k, 3000)]).astype(np.int64)
    sz = Shared(z, k)
    cases = [(j, m, [half, half + (1 << j)] if j % 2 else [half + (1 << j), half])
             for j in range(1, k - 1) for m in ([None, 2] if j % 2 else [3])]
    for j, _, ts in cases:
        assert window_bits(k, ts) == j
    assert window_bits(k, [half, half + 3]) is None and window_bits(k, [half - 4, half]) is None

    async def job(p: Party):
        return [await compare_thresholds(p, f"w{i}", sz.mine(p), k=k, thresholds=ts, digit_bits=m)
                for i, (_, m, ts) in enumerate(cases)]

    s, c = await run_both(job)
    for (j, m, ts), a, b in zip(cases, s, c):
        want = np.stack([(z >= t) for t in ts]).astype(np.uint8)
        np.testing.assert_array_equal(a ^ b, want, err_msg=f"k={k} j={j} m={m}")


async def test_equality_rows_ride_on_the_comparison_ots(gen: np.random.Generator) -> None:
    """compare_batch_eq: the comparison, its low split, the eq of every row's high run and of the
    equality-only rows, against plain arithmetic; the rows cost one message bit per high digit each."""
    from aiompc.protocols.nonlinear.millionaire import compare_batch_eq

    bits, split, n = 11, 4, 3000
    r = gen.integers(0, 1 << bits, n).astype(np.uint64)
    s0 = gen.integers(0, 1 << bits, n).astype(np.uint64)
    s1 = np.where(np.arange(n) % 3 == 0, r, gen.integers(0, 1 << bits, n)).astype(np.uint64)  # many equal highs
    s2 = np.where(np.arange(n) % 2 == 0, (r >> 4) << 4, s0).astype(np.uint64)
    task = CompareTask(bits, fanout=2, split=split, eq_rows=1)
    plan, base = plan_comparisons([task], 3), plan_comparisons([CompareTask(bits, fanout=2, split=split)], 3)
    high_digits = -(-(bits - split) // 3)
    assert plan.leaf_bits - base.leaf_bits == sum(1 << w for w in (3, 3, 1)[:high_digits])

    async def job(p: Party):
        mine = np.stack([s0, s1, s2]) if p.is_server else r
        return await compare_batch_eq(p, "e", [task], [mine], sender="server", digit_bits=3)

    ((fs, ls, es),), ((fc, lc, ec),) = await run_both(job)
    lowm = np.uint64((1 << split) - 1)
    np.testing.assert_array_equal(fs ^ fc, np.stack([s0 < r, s1 < r]).astype(np.uint8))
    np.testing.assert_array_equal(ls ^ lc, np.stack([(s0 & lowm) < (r & lowm), (s1 & lowm) < (r & lowm)]).astype(np.uint8))
    hi = [(v >> np.uint64(split)) == (r >> np.uint64(split)) for v in (s0, s1, s2)]
    np.testing.assert_array_equal(es ^ ec, np.stack(hi).astype(np.uint8))
