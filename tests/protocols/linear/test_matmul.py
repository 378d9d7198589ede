"""Shared × shared matrix products (``matmul_shared``): reconstructed output == numpy's ``a @ b`` mod 2^l, on random
and edge inputs, both planners, Cheetah's l = 37 and tight rings; the byte model equals the channel statistics;
the digit decomposition of the server's share; the method chooser; and the constant-weight products of
transformer shapes (the Cheetah planner's fallback blocks, planning time)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, UndecryptableParameters
from aiompc.protocols.linear.costs import plan_cost
from aiompc.protocols.linear.fc import fc_plan
from aiompc.protocols.linear.layouts import MatmulLayout
from aiompc.protocols.linear.matmul import (
    MAX_DIGITS,
    STATE_KEY,
    CrossShape,
    digit_inputs,
    digit_split,
    digit_weights,
    matmul_shared,
    matmul_shared_plan,
    ot_cross_bits,
    plan_cross,
    shared_matmul_bytes,
)
from aiompc.protocols.linear.plan import CheetahPlanner, make_plan
from aiompc.protocols.linear.planners import PLANNERS
from aiompc.protocols.linear.tiling import MatmulShape, cheetah_matmul_tiling
from aiompc.ring import reconstruct, share
from aiompc.session import run_local


def ring(l: int) -> np.uint64:
    return np.uint64((1 << l) - 1)


# --------------------------------------------------------------------------- digits


@pytest.mark.parametrize("l", [8, 16, 24, 37, 60])
def test_digit_split_reconstructs_every_value_within_the_digit_bound(l: int, nprng) -> None:
    edges = np.array([0, 1, (1 << (l - 1)) - 1, 1 << (l - 1), (1 << (l - 1)) + 1, (1 << l) - 1], dtype=np.uint64)
    y = np.concatenate([edges, nprng.integers(0, 1 << l, 200, dtype=np.uint64)])
    for d in range(1, 7):
        h = -(-l // d)
        if (d - 1) * h >= l:
            with pytest.raises(InputError):
                digit_split(y, l, d)
            continue
        parts = digit_split(y, l, d)
        assert parts.shape == (d, y.size)
        assert np.abs(parts).max() <= 1 << (h - 1)
        total = np.zeros_like(y)
        for i in range(d):
            total += parts[i].astype(np.uint64) << np.uint64(i * h)
        assert np.array_equal(total & ring(l), y)


@pytest.mark.parametrize("l, d", [(37, 1), (37, 3), (37, 4), (12, 2), (16, 3)])
def test_digit_inputs_times_digit_weights_is_the_product(l: int, d: int, nprng) -> None:
    """What the client uploads times what the server multiplies by is ``X @ Y`` mod 2^l (plain numpy)."""
    x = nprng.integers(0, 1 << l, (3, 4, 5), dtype=np.uint64)
    y = nprng.integers(0, 1 << l, (3, 5, 6), dtype=np.uint64)
    y[0] = 1 << (l - 1)  # the most negative share
    xi = digit_inputs(x, l, d)  # (3, 4, d*5)
    w = digit_weights(y, l, d)  # (3, 6, d*5)
    got = np.matmul(xi, np.swapaxes(w, 1, 2).astype(np.uint64)) & ring(l)
    assert np.array_equal(got, np.matmul(x, y) & ring(l))


# --------------------------------------------------------------------------- the protocol


def shares_at_extremes(x: np.ndarray, l: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``(server share, client share)`` of ``x``: uniform, or the server's share at the most negative value
    ``2^(l-1)`` everywhere (the largest plaintext the HE products carry)."""
    if kind == "uniform":
        return share(x, l, PRG())
    s = np.full(x.shape, 1 << (l - 1), dtype=np.uint64)
    return s, (x - s) & ring(l)


def operands(kind: str, lead: tuple[int, ...], s: int, k: int, t: int, l: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    if kind == "zeros":
        return np.zeros((*lead, s, k), dtype=np.uint64), np.zeros((*lead, k, t), dtype=np.uint64)
    if kind == "extremes":  # ±2^(l-1) and -1 as values (two's complement)
        vals = np.array([1 << (l - 1), (1 << (l - 1)) - 1, (1 << l) - 1], dtype=np.uint64)
        return (vals[rng.integers(0, 3, (*lead, s, k))], vals[rng.integers(0, 3, (*lead, k, t))])
    return (rng.integers(0, 1 << l, (*lead, s, k), dtype=np.uint64),
            rng.integers(0, 1 << l, (*lead, k, t), dtype=np.uint64))


async def run_shared(runner, a, b, l: int, planner: str, shares: str = "uniform", label: str = "mm"):
    a_s, a_c = shares_at_extremes(a, l, shares)
    b_s, b_c = shares_at_extremes(b, l, shares)

    async def server(p):
        return await matmul_shared(p, label, a_s, b_s, l=l, planner=PLANNERS[planner])

    async def client(p):
        y = await matmul_shared(p, label, a_c, b_c, l=l, planner=PLANNERS[planner])
        return y, p.channel.stats(), p.state[STATE_KEY][label]

    ys, (yc, stats, plan) = await runner(server, client)
    return reconstruct(ys, yc, l), stats, plan


CASES = [
    # planner, l, leading axes, S, K, T, operands, shares
    ("cheetah", 37, (2,), 5, 3, 4, "random", "uniform"),
    ("cheetah", 37, (1,), 1, 1, 1, "extremes", "extreme"),  # one head, S = K = 1
    ("cheetah", 37, (2, 2), 3, 7, 2, "extremes", "uniform"),  # batch x heads
    ("cheetah", 37, (1,), 4, 4, 4, "zeros", "extreme"),
    ("cheetah-baseline", 37, (1,), 3, 5, 2, "random", "uniform"),  # the cheetah mode's planner
    ("cheetah-smallest", 16, (3,), 6, 2, 5, "random", "extreme"),
    ("quantized", 37, (2,), 3, 4, 1, "random", "uniform"),  # T = 1
    ("quantized", 14, (2,), 4, 9, 3, "extremes", "extreme"),  # a tight ring
    ("quantized", 10, (1,), 1, 16, 1, "random", "uniform"),
    ("quantized", 20, (2,), 17, 16, 17, "zeros", "uniform"),
]


@pytest.mark.parametrize("planner, l, lead, s, k, t, kind, shares", CASES)
async def test_matmul_shared_exact(planner: str, l: int, lead, s: int, k: int, t: int, kind: str, shares: str,
                                   nprng) -> None:
    a, b = operands(kind, lead, s, k, t, l, nprng)
    got, stats, plan = await run_shared(run_local, a, b, l, planner, shares)
    assert got.shape == (*lead, s, t)
    assert np.array_equal(got, np.matmul(a, b) & ring(l))
    # the plan both parties used is the pure one, recorded for the report; its bytes are the channel's
    g = int(np.prod(lead))
    assert plan == matmul_shared_plan(g, s, k, t, l, PLANNERS[planner])
    assert plan.methods == ("he", "he")
    assert (stats.select("mm").bytes_sent, stats.select("mm").bytes_recv) == shared_matmul_bytes(plan, "mm")
    # every product of both cross terms ran as its own fc call (labels per group), and nothing else under the label
    names = {lab.split("/tile")[0] for lab in stats.select("mm").labels}
    assert names == {f"mm/{c}/g{i}" for c in ("ac_bs", "bc_as") for i in range(g)}
    for cross in (plan.ac_bs, plan.bc_as):
        assert cross.fc.stat_security >= 40 and cross.fc.weight_bits == cross.digit_bits


async def test_matmul_shared_over_tcp(nprng, tcp) -> None:
    l = 37
    a, b = operands("random", (2,), 4, 6, 3, l, nprng)
    got, stats, plan = await run_shared(tcp, a, b, l, "cheetah")
    assert np.array_equal(got, np.matmul(a, b) & ring(l))


async def test_matmul_shared_rejects_mismatched_operands() -> None:
    async def call(p, a, b, **kw):
        return await matmul_shared(p, "mm", a, b, l=16, planner=PLANNERS["cheetah-smallest"], **kw)

    bad = [
        (np.zeros((2, 3, 4), np.uint64), np.zeros((2, 5, 2), np.uint64)),  # inner dimensions differ
        (np.zeros((2, 3, 4), np.uint64), np.zeros((3, 4, 2), np.uint64)),  # leading axes differ
        (np.zeros((4,), np.uint64), np.zeros((4, 2), np.uint64)),  # a is not a matrix
        (np.zeros((2, 3), np.float64), np.zeros((3, 2), np.uint64)),  # not ring elements
    ]
    for a, b in bad:
        with pytest.raises(InputError):
            await run_local(lambda p: call(p, a, b), lambda p: call(p, a, b))
    other = matmul_shared_plan(1, 2, 2, 2, 16, PLANNERS["cheetah-smallest"])
    a, b = np.zeros((1, 3, 2), np.uint64), np.zeros((1, 2, 2), np.uint64)
    with pytest.raises(InputError):
        await run_local(lambda p: call(p, a, b, plan=other), lambda p: call(p, a, b, plan=other))
    # a plan naming OT cannot run with the HE-only runner table (this package's default)
    ot = matmul_shared_plan(1, 3, 2, 2, 16, PLANNERS["cheetah-smallest"], methods=("ot",))
    with pytest.raises(InputError):
        await run_local(lambda p: call(p, a, b, plan=ot), lambda p: call(p, a, b, plan=ot))


# --------------------------------------------------------------------------- the chooser


def test_ot_price_is_gilboas_count() -> None:
    """Per element of X: l COTs (l choice bits + the engine's cost each) and, for bit i, an (l-i)-bit
    correlation over the cols outputs."""
    shape = CrossShape(2, 3, 4, 5)
    l, cot = 10, 1.0
    per_element = sum(1 + cot + 5 * (l - i) for i in range(l))
    assert ot_cross_bits(shape, l, cot) == 2 * 3 * 4 * per_element
    assert ot_cross_bits(shape, l, 128.0) > ot_cross_bits(shape, l, 1.0)


def test_the_chooser_claims_only_a_method_that_runs() -> None:
    with pytest.raises(InputError):
        plan_cross(CrossShape(1, 1, 1, 1), 16, PLANNERS["cheetah-smallest"], methods=("magic",))
    # a tiny product: OT would be cheaper; with HE alone the plan runs HE and says what OT would cost
    tiny = plan_cross(CrossShape(1, 1, 1, 1), 16, PLANNERS["cheetah-smallest"])
    assert tiny.method == "he" and tiny.ot_bits / 8 < tiny.he_bytes
    both = plan_cross(CrossShape(1, 1, 1, 1), 16, PLANNERS["cheetah-smallest"], methods=("he", "ot"))
    assert both.method == "ot" and both.modelled_bytes < both.he_bytes
    # attention-sized: HE is orders of magnitude cheaper
    big = plan_cross(CrossShape(2, 32, 64, 32), 37, PLANNERS["cheetah"])
    assert big.method == "he" and big.he_bytes * 5 < big.ot_bits / 8


def test_digits_are_the_cheapest_that_decrypt() -> None:
    """Under Cheetah's q ~ 2^109 a full-ring 37-bit share cannot be flooded with 40 bits: the plan splits it,
    and no decrypting digit count up to MAX_DIGITS is cheaper."""
    shape, l, planner = CrossShape(2, 8, 16, 8), 37, PLANNERS["cheetah"]
    with pytest.raises(UndecryptableParameters):
        fc_plan(MatmulShape(8, 16, 8), l, weight_bits=l, planner=planner)
    plan = plan_cross(shape, l, planner)
    assert plan.digits > 1 and plan.fc.stat_security >= 40
    for d in range(1, MAX_DIGITS + 1):
        h = -(-l // d)
        try:
            other = fc_plan(MatmulShape(8, d * 16, 8), l, weight_bits=h, planner=planner)
        except UndecryptableParameters:
            continue
        assert plan.he_bytes <= shape.groups * plan_cost(other, "matmul").total


# --------------------------------------------------------------------------- constant weights, transformer shapes

BERT = [MatmulShape(32, 128, 512), MatmulShape(128, 768, 768), MatmulShape(128, 768, 3072), MatmulShape(128, 3072, 768)]


def test_cheetah_planner_keeps_its_blocks_where_they_decrypt_and_falls_back_where_not() -> None:
    planner = CheetahPlanner()
    fc_1001 = MatmulShape(1, 2048, 1001)  # a CNN classifier: Cheetah's own blocks, unchanged
    assert planner(fc_1001, 37, 12).layout.tiling == cheetah_matmul_tiling(fc_1001)
    wide = MatmulShape(128, 768, 3072)  # BERT-base FFN: Iron's blocks cannot be flooded with 40 bits at q ~ 2^109
    plan = planner(wide, 37, 10)
    t = plan.layout.tiling
    full = cheetah_matmul_tiling(wide)
    with pytest.raises(UndecryptableParameters):
        make_plan(MatmulLayout(full), 37, 10, he=plan.he, tight_rounding=True, flood_terms=2)
    assert plan.stat_security >= 40 and t != full
    assert t.input_ciphertexts + t.output_ciphertexts >= full.input_ciphertexts + full.output_ciphertexts


@pytest.mark.parametrize("planner", ["cheetah", "quantized"])
def test_transformer_shapes_plan_in_seconds(planner: str) -> None:
    l, wb = (37, 10) if planner == "cheetah" else (26, 8)
    for shape in BERT:
        t0 = time.process_time()
        plan = fc_plan(shape, l, weight_bits=wb, planner=PLANNERS[planner])
        assert time.process_time() - t0 < 20
        assert plan.stat_security >= 40


@pytest.mark.parametrize("l, planner", [(16, "cheetah-smallest"), (24, "quantized")])
async def test_full_ring_plaintexts_at_the_extremes(l: int, planner: str, nprng) -> None:
    """One digit (``weight_bits = l``): the server's whole share is the plaintext, here ``-2^(l-1)`` everywhere,
    the largest centered value the noise bound and the flooding must hold."""
    from aiompc.protocols.linear.matmul import CrossPlan, SharedMatmulPlan

    g, s, k, t = 2, 3, 5, 4

    def one_digit(rows: int, cols: int) -> CrossPlan:
        fcp = fc_plan(MatmulShape(rows, k, cols), l, weight_bits=l, planner=PLANNERS[planner])
        assert fcp.weight_bits == l and fcp.stat_security >= 40
        return CrossPlan(CrossShape(g, rows, k, cols), l, "he", 1, fcp, 0, 0.0)

    plan = SharedMatmulPlan(one_digit(s, t), one_digit(t, s))
    a, b = operands("random", (g,), s, k, t, l, nprng)
    a_s, a_c = shares_at_extremes(a, l, "extreme")
    b_s, b_c = shares_at_extremes(b, l, "extreme")
    ys, yc = await run_local(lambda p: matmul_shared(p, "mm", a_s, b_s, l=l, plan=plan),
                             lambda p: matmul_shared(p, "mm", a_c, b_c, l=l, plan=plan))
    assert np.array_equal(reconstruct(ys, yc, l), np.matmul(a, b) & ring(l))
