"""The millionaire's pure parts: digit layout, leaf tables and the AND tree, evaluated in the clear."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiompc.crypto.prg import PRG
from aiompc.errors import InputError
from aiompc.protocols.nonlinear.millionaire import (
    CompareTask,
    ComparePlan,
    _digits,
    digit_widths,
    leaf_tables,
    plan_comparisons,
    unpack_leaf_messages,
)


def evaluate_in_clear(plan: ComparePlan, sender_vals: list[np.ndarray], receiver_vals: list[np.ndarray], greater: bool):
    """Run the plan with both parties simulated: tables, OT selection and tree, all in the clear."""
    n = receiver_vals[0].shape[0]
    L = np.full((n, plan.num_nodes), 7, dtype=np.uint8)  # 7 = "never written": must not leak into results
    E = np.full((n, plan.num_nodes), 7, dtype=np.uint8)
    rng = PRG(b"\x01" * 32)
    for group in plan.groups:
        g = len(group.slots)
        masks = rng.bits((n, g, group.fanout, 2))
        if not group.eq:
            masks[..., 1] = 0
        table = leaf_tables(group, sender_vals, greater, masks)
        choices = np.stack([_digits(receiver_vals[t], off, group.width) for t, off in group.slots], axis=1).reshape(-1)
        picked = table[np.arange(table.shape[0]), choices.astype(np.int64)]
        got = unpack_leaf_messages(group, picked, n) ^ masks  # XOR of the two parties' shares
        L[:, group.nodes] = got[..., 0]
        E[:, group.nodes] = np.where(group.eq, got[..., 1], 7)
    for lv in plan.levels:
        assert np.all(E[:, lv.lt_hi] <= 1) and np.all(L[:, lv.lt_lo] <= 1)
        assert np.all(E[:, lv.eq_hi] <= 1) and np.all(E[:, lv.eq_lo] <= 1)
        L[:, lv.lt_out] = L[:, lv.lt_hi] ^ (E[:, lv.lt_hi] & L[:, lv.lt_lo])
        E[:, lv.eq_out] = E[:, lv.eq_hi] & E[:, lv.eq_lo]
    out = []
    for roots, low in zip(plan.roots, plan.low_roots):
        full = np.zeros((roots.size, n), dtype=np.uint8)
        full[roots >= 0] = L[:, roots[roots >= 0]].T
        out.append((full, None if low is None else L[:, low].T))
    return out


@pytest.mark.parametrize("bits,m", [(1, 4), (3, 4), (4, 4), (5, 4), (7, 4), (8, 4), (31, 4), (36, 4), (37, 4), (63, 4), (64, 4), (13, 1), (13, 3), (64, 8)])
def test_tree_in_clear_equals_comparison(bits: int, m: int, nprng: np.random.Generator) -> None:
    n = 300
    hi = 1 << bits
    s = nprng.integers(0, hi, size=n, dtype=np.uint64, endpoint=False) if bits < 64 else nprng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2)
    r = nprng.integers(0, hi, size=n, dtype=np.uint64, endpoint=False) if bits < 64 else nprng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    # edge values: equal operands, neighbours, extremes
    top = np.uint64((1 << bits) - 1)
    edge_s = np.array([0, 0, top, top, 1, top - np.uint64(1) if bits > 1 else 0], dtype=np.uint64)
    edge_r = np.array([0, top, 0, top, 0, top], dtype=np.uint64)
    s = np.concatenate([s, edge_s, r[:20]])
    r = np.concatenate([r, edge_r, r[:20]])
    plan = plan_comparisons([CompareTask(bits)], m)
    q = math.ceil(bits / m)
    assert plan.ands == 2 * (q - 1) - math.ceil(math.log2(q)) if q > 1 else plan.ands == 0
    for greater in (False, True):
        ((full, low),) = evaluate_in_clear(plan, [s[None, :]], [r], greater)
        want = (s > r) if greater else (s < r)
        assert low is None
        np.testing.assert_array_equal(full[0], want.astype(np.uint8))


def test_fanout_and_split_and_batch(nprng: np.random.Generator) -> None:
    n = 500
    tasks = [CompareTask(16, fanout=3), CompareTask(37, split=12), CompareTask(9, split=5, fanout=2), CompareTask(0), CompareTask(12, split=4)]
    svals, rvals = [], []
    for t in tasks:
        svals.append(nprng.integers(0, 1 << t.bits, size=(t.fanout, n), dtype=np.uint64))
        rvals.append(nprng.integers(0, 1 << t.bits, size=n, dtype=np.uint64))
    # force many equal low parts / equal high parts so every tree branch is exercised
    rvals[1][:100] = svals[1][0, :100] ^ np.uint64(1 << 20)
    rvals[1][100:200] = (svals[1][0, 100:200] & ~np.uint64(0xFFF)) | (rvals[1][100:200] & np.uint64(0xFFF))
    plan = plan_comparisons(tasks, 4)
    res = evaluate_in_clear(plan, svals, rvals, greater=False)
    for t, (full, low), s, r in zip(tasks, res, svals, rvals):
        np.testing.assert_array_equal(full, (s < r[None, :]).astype(np.uint8))
        if 0 < t.split < t.bits:
            msk = np.uint64((1 << t.split) - 1)
            np.testing.assert_array_equal(low, ((s & msk) < (r & msk)[None, :]).astype(np.uint8))
        else:
            assert low is None


def test_layout_facts() -> None:
    assert digit_widths(0, 4) == []
    assert digit_widths(7, 4) == [4, 3]  # the partial digit sits on top
    assert digit_widths(36, 4) == [4] * 9
    plan = plan_comparisons([CompareTask(7)], 4)
    # digit 0 (offset 0) is a one-bit-message leaf, the top digit carries (lt, eq)
    shapes = sorted((g.width, g.eq, g.message_bits) for g in plan.groups)
    assert shapes == [(3, True, 2), (4, False, 1)]
    assert len(plan.levels) == 1 and plan.ands == 1
    split = plan_comparisons([CompareTask(37, split=12)], 4)
    # low run: 3 digits, 2 levels; high run: 7 digits (6 full + 1 of 1 bit), 3 levels; then the join
    assert len(split.levels) == 4
    fan = plan_comparisons([CompareTask(36, fanout=2)], 4)
    assert all(g.fanout == 2 for g in fan.groups) and fan.ands == 2 * plan_comparisons([CompareTask(36)], 4).ands


def test_bad_tasks_are_input_errors() -> None:
    with pytest.raises(InputError):
        CompareTask(65)
    with pytest.raises(InputError):
        CompareTask(8, split=9)
    with pytest.raises(InputError):
        plan_comparisons([CompareTask(8)], 9)


@settings(max_examples=40, deadline=None)
@given(
    specs=st.lists(st.tuples(st.integers(0, 64), st.integers(1, 3), st.integers(0, 64)), min_size=1, max_size=3),
    m=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_batch_plan_in_clear(specs: list[tuple[int, int, int]], m: int, seed: int) -> None:
    gen = np.random.default_rng(seed)
    tasks = [CompareTask(b, fanout=f, split=min(sp, b)) for b, f, sp in specs]
    n = 40
    svals, rvals = [], []
    for t in tasks:
        top = np.uint64((1 << t.bits) - 1) if t.bits < 64 else np.uint64(2**64 - 1)
        s = (gen.integers(0, 2**63, size=(t.fanout, n), dtype=np.uint64) * np.uint64(2) + np.uint64(1)) & top
        r = (gen.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2)) & top
        s[0, :10] = r[:10]  # ties
        svals.append(s)
        rvals.append(r)
    plan = plan_comparisons(tasks, m)
    for t, (full, low), s, r in zip(tasks, evaluate_in_clear(plan, svals, rvals, greater=False), svals, rvals):
        np.testing.assert_array_equal(full, (s < r[None, :]).astype(np.uint8))
        if 0 < t.split < t.bits:
            msk = np.uint64((1 << t.split) - 1)
            np.testing.assert_array_equal(low, ((s & msk) < (r & msk)[None, :]).astype(np.uint8))
