"""aiompc.protocols.linear.stat_sum: the result ciphertexts a call returns (counted on a real run, packed and
not), the composed statistical distance (one-uniform floods and noise tails linearly, two-uniform floods in
quadrature — on hand-built plans, and against the exact distance of toy products of shifted tents, adaptive
shifts included), and the check that refuses a set of calls above the budget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, InsecureParameters
from aiompc.protocols.linear import engine
from aiompc.protocols.linear.conv import conv2d, conv_plan
from aiompc.crypto.he import flood_distance
from aiompc.protocols.linear.plan import CheetahPlanner, make_plan, packed_plan
from aiompc.protocols.linear.reference import conv2d_ref
from aiompc.protocols.linear.stat_sum import composition, distance, require_distance, result_ciphertexts, security_bits
from aiompc.protocols.linear.tiling import ConvShape
from aiompc.ring import reconstruct, share, to_signed
from aiompc.session import run_local

L = 16
SHAPE = ConvShape.make(3, 6, 6, 5, 3, padding=1)


def _plans() -> dict[str, object]:
    plain = conv_plan(SHAPE, L, weight_bits=4, planner=CheetahPlanner())  # q ~ 2^109: room to pack
    return {"unpacked": plain, "packed": packed_plan(plain)}


@pytest.mark.parametrize("kind", ["unpacked", "packed"])
async def test_result_ciphertexts_are_what_the_client_decrypts(kind: str, monkeypatch, nprng) -> None:
    plan = _plans()[kind]
    decrypted: list[int] = []
    original = engine._decrypt

    def counting(plan_, sk, res, count):
        decrypted.append(res.batch)
        return original(plan_, sk, res, count)

    monkeypatch.setattr(engine, "_decrypt", counting)
    x = nprng.integers(0, 16, SHAPE.in_shape)
    w = nprng.integers(-8, 8, SHAPE.weight_shape)
    xs, xc = share(x, L, PRG())
    kw = dict(out_channels=SHAPE.out_channels, kernel=3, padding=1, l=L, weight_bits=4, plan=plan)

    async def server(p):
        return await conv2d(p, "conv", xs, weight=w, **kw)

    async def client(p):
        return await conv2d(p, "conv", xc, **kw)

    ys, yc = await run_local(server, client)
    assert np.array_equal(to_signed(reconstruct(ys, yc, L), L), conv2d_ref(x, w, SHAPE, 64).view(np.int64))
    assert sum(decrypted) == result_ciphertexts(plan) > 0
    if kind == "packed":
        assert result_ciphertexts(plan) < result_ciphertexts(_plans()["unpacked"])


def _tent_plan(stat_bits: int = 40, fail_bits: int | None = None):
    """The unpacked plan's layout flooded with two uniforms (the smallest q for it at N = 4096)."""
    layout = _plans()["unpacked"].layout
    plan = make_plan(layout, L, 4, stat_bits=stat_bits, flood_terms=2, fail_bits=fail_bits)
    assert plan.output.flood_terms == 2 and plan.flood_bound.terms == 2
    return plan


def test_one_uniform_distances_add_over_results_and_calls() -> None:
    plan = _plans()["unpacked"]
    assert plan.output.flood_terms == 1
    r, bits = result_ciphertexts(plan), plan.stat_security
    assert bits >= 40
    assert distance([(plan, 1)]) == pytest.approx(r * 2.0**-bits)
    assert distance([(plan, 3), (plan, 2)]) == pytest.approx(5 * r * 2.0**-bits)
    assert security_bits([(plan, 4)]) == pytest.approx(bits - math.log2(4 * r))
    assert security_bits([(plan, 0)]) == math.inf
    with pytest.raises(InputError):
        distance([(plan, -1)])


def test_two_uniform_distances_add_in_quadrature_and_tails_linearly() -> None:
    plan = _tent_plan()
    r, b = result_ciphertexts(plan), plan.flood_bound
    assert b.tail == 2.0**-42 and 0 < b.distance and b.total == pytest.approx(2.0**-plan.stat_security)
    for k in (1, 4, 25):
        assert distance([(plan, k)]) == pytest.approx(math.sqrt(k * r) * b.distance + k * r * b.tail)
    # R results: sqrt(R) times one result's flood distance, not R times (with the tail made negligible: it
    # adds linearly, which is why a per-inference budget raises fail_bits with log2 R)
    cheap_tail = _tent_plan(fail_bits=64)
    many = distance([(cheap_tail, 100)])
    assert many < 100 * r * cheap_tail.flood_bound.total / 5
    assert many > math.sqrt(100 * r) * cheap_tail.flood_bound.distance
    # two calls of different plans: squares add
    strong = _tent_plan(stat_bits=46, fail_bits=50)
    s = strong.flood_bound
    assert s.tail == 2.0**-52 and s.distance < b.distance
    got = distance([(plan, 2), (strong, 3)])
    want = math.sqrt(2 * r * b.distance**2 + 3 * r * s.distance**2) + 2 * r * b.tail + 3 * r * s.tail
    assert got == pytest.approx(want)


def test_mixed_floods_uniform_linear_tent_in_quadrature() -> None:
    uni, tent = _plans()["unpacked"], _tent_plan()
    u, t = uni.flood_bound, tent.flood_bound
    ru, rt = result_ciphertexts(uni), result_ciphertexts(tent)
    c = composition([(uni, 3), (tent, 5)])
    assert c.uniform == pytest.approx(3 * ru * u.distance)
    assert c.tent_squares == pytest.approx(5 * rt * t.distance**2)
    assert c.tails == pytest.approx(3 * ru * u.tail + 5 * rt * t.tail)
    assert distance([(uni, 3), (tent, 5)]) == pytest.approx(c.uniform + math.sqrt(c.tent_squares) + c.tails)
    # the order of the calls does not matter; adding a call never lowers the distance
    assert distance([(tent, 5), (uni, 3)]) == pytest.approx(c.total)
    assert distance([(uni, 3)]) < c.total and distance([(tent, 5)]) < c.total


# ----------------------------------------------------------------- the composition against exact distances


def _tent_pmf(m: int, shift: int, width: int) -> np.ndarray:
    """pmf of ``shift + U1 + U2`` (``U`` uniform on ``0..m-1``) over ``0..width-1``."""
    out = np.zeros(width)
    s = np.arange(2 * m - 1)
    out[shift + s] = np.minimum(s + 1, 2 * m - 1 - s) / float(m * m)
    return out


@pytest.mark.parametrize("bits, cases", [
    (3, ((1, [1, 1, 1]), (1, [2, 1, 2]), (1, [1, 1, 1, 1, 1]))),
    (4, ((1, [1, 1, 1]), (1, [2, 2]), (2, [1, 1, 2]), (4, [1, 1]))),
    (5, ((2, [1, 1, 1]), (4, [1, 2]))),
])
def test_the_quadrature_bound_holds_for_products_of_shifted_tents(bits: int, cases) -> None:
    """Several ciphertexts of 1-2 coordinates each, every coordinate shifted by up to ``hidden``: the exact
    total-variation distance of the joint distributions (the full product space: at most ~2M points) is
    within ``sqrt(Σ d_c²)``."""
    m = 1 << bits
    for hidden, ciphertexts in cases:
        width = 2 * m - 1 + hidden
        p, q = np.ones(1), np.ones(1)
        for count in ciphertexts:
            for i in range(count):
                shift = hidden if i % 2 == 0 else hidden - 1  # every shift within the bound, not all equal
                p, q = np.multiply.outer(p, _tent_pmf(m, shift, width)).ravel(), \
                    np.multiply.outer(q, _tent_pmf(m, 0, width)).ravel()
        exact = 0.5 * np.abs(p - q).sum()
        per = [flood_distance(v, hidden, bits, 2) for v in ciphertexts]
        bound = math.sqrt(sum(d * d for d in per))
        assert 0 < exact <= bound + 1e-12 and bound < 1  # a statement, not a vacuous one
        assert bound < sum(per)  # quadrature is the tighter statement


@pytest.mark.parametrize("bits", [4, 5])
def test_the_quadrature_bound_holds_for_adaptive_shifts(bits: int) -> None:
    """Three one-coordinate steps whose shifts depend on what the client saw before (any function of the
    history, bounded by ``hidden``): exact total-variation distance of the joint view, computed on the full
    product space, within ``sqrt(Σ d_c²)``."""
    m, hidden = 1 << bits, 2
    width = 2 * m - 1 + hidden
    rules = [
        lambda hist: hidden,
        lambda hist: hidden if hist[-1] % 2 else 0,  # the shift reacts to the previous output
        lambda hist: (sum(hist) * 7) % (hidden + 1),
    ]
    p_steps = [{(): 1.0}]
    q_steps = [{(): 1.0}]
    for rule in rules:
        p_next: dict[tuple[int, ...], float] = {}
        q_next: dict[tuple[int, ...], float] = {}
        zero = _tent_pmf(m, 0, width)
        for hist, prob in p_steps[-1].items():
            pmf = _tent_pmf(m, rule(hist), width)
            for y in np.nonzero(pmf)[0]:
                p_next[hist + (int(y),)] = prob * pmf[y]
        for hist, prob in q_steps[-1].items():
            for y in np.nonzero(zero)[0]:
                q_next[hist + (int(y),)] = prob * zero[y]
        p_steps.append(p_next)
        q_steps.append(q_next)
    keys = set(p_steps[-1]) | set(q_steps[-1])
    exact = 0.5 * sum(abs(p_steps[-1].get(k, 0.0) - q_steps[-1].get(k, 0.0)) for k in keys)
    assert 0 < exact
    per = flood_distance(1, hidden, bits, 2)
    assert exact <= math.sqrt(len(rules)) * per + 1e-12 and math.sqrt(len(rules)) * per < 1
    # the step of the argument: the Bhattacharyya coefficient is at least prod(1 - eta_c), eta_c = d_c^2 / 2
    bc = sum(math.sqrt(p_steps[-1].get(k, 0.0) * q_steps[-1].get(k, 0.0)) for k in keys)
    assert bc >= (1 - per**2 / 2) ** len(rules) - 1e-12
    assert exact <= math.sqrt(1 - bc**2) + 1e-12  # Le Cam


def test_the_check_refuses_a_set_of_results_above_the_budget() -> None:
    plan = _plans()["unpacked"]  # 40 bits per result ciphertext: several results are above 2^-40 together
    assert require_distance([(plan, 1)], target=35) == pytest.approx(security_bits([(plan, 1)]))
    with pytest.raises(InsecureParameters, match=r"result ciphertexts together.*stat_bits >= 40 \+ log2"):
        require_distance([(plan, 1)])
    # planned at 40 + ceil(log2 R) bits per ciphertext, the same calls pass
    r = result_ciphertexts(plan)
    strong = conv_plan(SHAPE, L, weight_bits=4, planner=CheetahPlanner(stat_bits=40 + math.ceil(math.log2(r))))
    assert result_ciphertexts(strong) == r
    assert require_distance([(strong, 1)]) >= 40
