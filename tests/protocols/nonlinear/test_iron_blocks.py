"""SIRNN's building blocks on shares (aiompc.protocols.nonlinear.iron_blocks) against their plaintext programs in
aiompc.fxmath: exact mode bit for bit on random and edge inputs, approximate mode within the error its docstring
states, and the shares' rings."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc import fxmath as fx
from aiompc.party import Party
from aiompc.protocols.nonlinear.iron_blocks import (BASELINE_DIGIT_BITS, exp_digits, exp_neg, leading_one_bits, public,
                                                    recip_normalized, rsqrt, trunc_nonneg)
from aiompc.ring import reconstruct

from nonlinear_helpers import Shared, opened, run_both

F, L = 12, 37  # Iron's fraction bits in Cheetah's ring


def _open_u(s: np.ndarray, c: np.ndarray, l: int) -> np.ndarray:
    """The opened unsigned value as int64 (all values here are below 2^62)."""
    return opened(s, c, l, signed=False).astype(np.int64)


def test_baseline_digit_bits_is_cheetahs() -> None:
    assert BASELINE_DIGIT_BITS == 4


# --------------------------------------------------------------------------- public


@pytest.mark.parametrize("L_", [1, 8, 37, 63, 64])
async def test_public_constant_shares_open_to_the_value_mod_2_to_the_L(L_: int) -> None:
    values = [0, 1, -1, (1 << (L_ - 1)), (1 << L_) - 1, 1 << L_, -(1 << 40) - 3, 12345678901234567]

    async def job(p: Party) -> list[np.uint64]:
        return [public(p, v, L_) for v in values]

    s, c = await run_both(job)
    for v, a, b in zip(values, s, c):
        assert isinstance(a, np.uint64) and b == 0  # the client's share of a public constant is 0
        assert int(reconstruct(np.array([a]), np.array([b]), L_)[0]) == v % (1 << L_)


# --------------------------------------------------------------------------- trunc_nonneg


def _trunc_inputs(L_: int, s: int, gen: np.random.Generator) -> np.ndarray:
    top = (1 << (L_ - 1)) - (1 << s)  # the stated domain: 0 <= x < top
    edges = [0, 1, (1 << s) - 1, 1 << s, (1 << s) + 1, 3 << s, top // 2, top - 2, top - 1]
    return np.concatenate([np.array(edges, dtype=np.int64), gen.integers(0, top, 300)]).astype(np.uint64)


async def _trunc_run(x: np.ndarray, *, L_: int, s: int, L_out: int | None, exact: bool) -> tuple[np.ndarray, int]:
    """trunc_nonneg on shares of ``x`` mod ``2^L_``: the opened result and its ring (shares checked reduced)."""
    sx = Shared(x, L_)

    async def job(p: Party) -> np.ndarray:
        return await trunc_nonneg(p, "t", sx.mine(p), L=L_, s=s, exact=exact, L_out=L_out)

    s_, c_ = await run_both(job)
    lo = L_ if L_out is None else L_out
    assert s_.dtype == np.uint64 and s_.shape == x.shape
    assert int(max(s_.max(), c_.max())) < 1 << lo  # shares reduced mod 2^L_out
    return _open_u(s_, c_, lo), lo


@pytest.mark.parametrize("L_,s,L_out", [(37, 12, None), pytest.param(37, 1, None, marks=pytest.mark.slow), (26, 12, 14),
                                        (37, 12, 25), pytest.param(37, 12, 20, marks=pytest.mark.slow), (20, 3, 30),
                                        (20, 0, None), (20, 0, 8), (20, 0, 30)])
async def test_trunc_nonneg_exact_is_the_floor(L_: int, s: int, L_out: int | None, nprng: np.random.Generator) -> None:
    """Smaller and larger output rings; s = 0 into a larger ring extends (fixed on main in ab34eaa)."""
    x = _trunc_inputs(L_, s, nprng)
    got, lo = await _trunc_run(x, L_=L_, s=s, L_out=L_out, exact=True)
    want = (x >> np.uint64(s)) & np.uint64((1 << lo) - 1)
    assert np.array_equal(got, want.astype(np.int64))


@pytest.mark.parametrize("L_,s,L_out", [(37, 12, None), (26, 12, 14), (37, 5, 32)])
async def test_trunc_nonneg_approximate_errs_by_0_or_plus_1(L_: int, s: int, L_out: int | None,
                                                            nprng: np.random.Generator) -> None:
    x = _trunc_inputs(L_, s, nprng)
    got, _ = await _trunc_run(x, L_=L_, s=s, L_out=L_out, exact=False)
    err = got - (x >> np.uint64(s)).astype(np.int64)
    assert set(np.unique(err).tolist()) <= {0, 1}  # e in {0, +1}: never below the floor
    assert err.sum() > 0  # the carry really is dropped on some inputs (the check is not vacuous)


def _online_bits(p: Party, prefix: str) -> int:
    st = p.channel.stats().select(prefix, phase="online")
    return 8 * (st.bytes_sent + st.bytes_recv)


async def test_trunc_nonneg_costs_from_the_channel(nprng: np.random.Generator) -> None:
    """The docstring's costs at L = 37, s = 12, per element, from the bytes handed to the transport: exact about
    150 bits, approximate one COT (1 + s = 13 bits), approximate into a ring of at most L − s bits nothing."""
    n = 4096
    x = nprng.integers(0, 1 << 35, n).astype(np.uint64)
    sx = Shared(x, 37)
    cases = {"e": dict(exact=True), "a": dict(exact=False), "ec": dict(exact=True, L_out=25),
             "a0": dict(exact=False, L_out=25)}

    async def job(p: Party) -> dict[str, float]:
        out = {}
        for tag, kw in cases.items():
            await trunc_nonneg(p, f"c{tag}", sx.mine(p), L=37, s=12, **kw)  # type: ignore[arg-type]
            out[tag] = _online_bits(p, f"c{tag}") / n
        return out

    s_, c_ = await run_both(job)
    assert s_ == c_  # both ends count the same bytes
    assert 150 <= s_["e"] <= 152 and 13 <= s_["a"] <= 13.5 and s_["a0"] == 0
    assert s_["a"] < s_["ec"] < s_["e"]  # into the small ring, exact: only the carry


# --------------------------------------------------------------------------- exp_digits


async def test_exp_digits_exact_on_carry_chains(nprng: np.random.Generator) -> None:
    """The digit decomposition's carry chain (g ⊕ e∧C): runs of 0xFF digits propagate a carry through."""
    widths = fx.exp_digit_widths(36)
    edges = [0, 1, 255, 256, 0xFFFF, 0x10000, 0xFFFFFFFF, 0x100000000, (1 << 36) - 1, 0xFF00FF00F]
    d = np.concatenate([np.asarray(edges), nprng.integers(0, 1 << 36, 200)]).astype(np.uint64)
    sd = Shared(d, 36)

    async def job(p: Party):  # type: ignore[no-untyped-def]
        return await exp_digits(p, "d", sd.mine(p), widths)

    s, c = await run_both(job)
    for i, w in enumerate(widths):
        want = (d >> np.uint64(8 * i)) & np.uint64((1 << w) - 1)
        assert np.array_equal(opened(s[i], c[i], w, signed=False), want), i


@pytest.mark.parametrize("widths", [[5], [8, 3], [8, 8, 1]])
async def test_exp_digits_short_inputs_and_shapes(widths: list[int], nprng: np.random.Generator) -> None:
    """One digit (no comparison), two digits (no AND) and a 1-bit top digit; a 2-D input keeps its shape."""
    bw = sum(widths)
    vals = [0, 1, (1 << bw) - 1, (1 << min(bw, 8)) - 1, 1 << min(bw - 1, 8)]
    d = np.concatenate([np.array(vals), nprng.integers(0, 1 << bw, 19)]).astype(np.uint64).reshape(4, 6)
    sd = Shared(d, bw)

    async def job(p: Party):  # type: ignore[no-untyped-def]
        return await exp_digits(p, "d", sd.mine(p), widths)

    s, c = await run_both(job)
    assert len(s) == len(widths)
    for i, w in enumerate(widths):
        assert s[i].shape == d.shape
        want = (d >> np.uint64(8 * i)) & np.uint64((1 << w) - 1)
        assert np.array_equal(opened(s[i], c[i], w, signed=False), want), i


# --------------------------------------------------------------------------- exp_neg


def _exp_inputs(bw: int, gen: np.random.Generator) -> np.ndarray:
    top = (1 << bw) - 1
    edges = {0, 1, 2, 255, 256, 257, (1 << F) - 1, 1 << F, 3 << F, 0xFFFF, 0x10000, top, top - 1, top >> 1}
    small = gen.integers(0, 16 << F, 150)  # where exp(-d) is not yet 0
    return np.concatenate([np.array(sorted(v for v in edges if v <= top)), small % (top + 1),
                           gen.integers(0, top + 1, 50)]).astype(np.uint64)


@pytest.mark.parametrize("bw,L_out,saturate", [(36, 37, False), (fx.gelu_consts(F).exp_bits, 2 * F + 2, True),
                                               (10, F + 2, False), (8, F + 2, False), (9, 20, False)])
async def test_exp_neg_exact_bit_for_bit(bw: int, L_out: int, saturate: bool, nprng: np.random.Generator) -> None:
    d = _exp_inputs(bw, nprng)
    sd = Shared(d, L)  # shared in a wider ring: only the low bw bits are read

    async def job(p: Party) -> np.ndarray:
        return await exp_neg(p, "e", sd.mine(p), f=F, bw=bw, L_out=L_out, exact=True, saturate=saturate)

    s, c = await run_both(job)
    got = _open_u(s, c, L_out)
    want = fx.exp_neg_fixed(d.astype(np.int64), f=F, bw=bw, saturate=saturate)
    assert np.array_equal(got, want)
    assert got[0] == ((1 << F) - 1 if saturate else 1 << F)  # exp(0) = 1 (saturated: just below)
    # the plaintext program itself against float exp: 0 <= 2^f·exp(−d/2^f) − e < 2·(#digits − 1) + 1
    gap = (2.0**F) * np.exp(-d.astype(np.float64) / 2.0**F) - got
    if not saturate:
        assert gap.min() >= 0 and gap.max() < 2 * (len(fx.exp_digit_widths(bw)) - 1) + 1


async def test_exp_neg_approximate_stays_close(nprng: np.random.Generator) -> None:
    """Approximate truncations after the tree's products: each adds e in {0, 1} to a value <= 2^f, and a product
    by a factor <= 2^f (scale f) does not grow an earlier error, so the result is within #products of the
    exact one, above it or equal."""
    bw = 36
    d = _exp_inputs(bw, nprng)
    sd = Shared(d, bw)

    async def job(p: Party) -> np.ndarray:
        return await exp_neg(p, "e", sd.mine(p), f=F, bw=bw, L_out=L, exact=False)

    s, c = await run_both(job)
    err = _open_u(s, c, L) - fx.exp_neg_fixed(d.astype(np.int64), f=F, bw=bw)
    products = len(fx.exp_digit_widths(bw)) - 1
    assert err.min() >= 0 and err.max() <= products
    assert err.max() > 0


# --------------------------------------------------------------------------- recip_normalized


def _recip_inputs(s_dn: int, m: int, gen: np.random.Generator) -> np.ndarray:
    lo, hi = 1 << s_dn, 1 << (s_dn + 1)
    step = 1 << (s_dn - m)  # one table bucket
    edges = [lo, lo + 1, hi - 1, hi - 2, lo + step - 1, lo + step, hi - step, hi - step - 1, (lo + hi) // 2]
    return np.concatenate([np.array(edges), gen.integers(lo, hi, 200)]).astype(np.uint64)


def _recip_cases() -> list[tuple[int, int, int, int]]:
    sp = fx.softmax_plan(32, f=F, l=L)
    gk = fx.gelu_consts(F)
    return [(sp.s_dn, F, sp.m, L), (F, F, gk.m, 2 * F + 2), (20, 8, fx.recip_lut_bits(8), 32)]


async def _recip_run(dn: np.ndarray, *, s_dn: int, s_out: int, m: int, L_: int,
                     exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """recip_normalized on shares of ``dn`` mod ``2^L_``: the opened result and fxmath's."""
    sd = Shared(dn, L_)

    async def job(p: Party) -> np.ndarray:
        return await recip_normalized(p, "r", sd.mine(p), s_dn=s_dn, s_out=s_out, m=m, L=L_, exact=exact)

    s, c = await run_both(job)
    return _open_u(s, c, L_), fx.recip_normalized_fixed(dn.astype(np.int64), s_dn=s_dn, s_out=s_out, m=m)


@pytest.mark.parametrize("s_dn,s_out,m,L_", _recip_cases())
async def test_recip_normalized_exact_bit_for_bit(s_dn: int, s_out: int, m: int, L_: int,
                                                  nprng: np.random.Generator) -> None:
    dn = _recip_inputs(s_dn, m, nprng)
    got, ref = await _recip_run(dn, s_dn=s_dn, s_out=s_out, m=m, L_=L_, exact=True)
    assert np.array_equal(got, ref)
    # and the program approximates 2^s_out·2^s_dn/dn: relative 2^-(2m+1) plus one output LSB (+1 for floors)
    want = 2.0 ** (s_out + s_dn) / dn.astype(np.float64)
    assert np.all(np.abs(got - want) <= want * 2.0 ** -(2 * m + 1) + 2)


@pytest.mark.parametrize("s_dn,s_out,m,L_", _recip_cases()[:2])
async def test_recip_normalized_approximate_errs_by_0_or_plus_1(s_dn: int, s_out: int, m: int, L_: int,
                                                                nprng: np.random.Generator) -> None:
    """Only the final scale truncation is approximate (the table index is a decomposition, exact): +{0, 1}."""
    got, ref = await _recip_run(_recip_inputs(s_dn, m, nprng), s_dn=s_dn, s_out=s_out, m=m, L_=L_, exact=False)
    err = got - ref
    assert set(np.unique(err).tolist()) <= {0, 1} and err.sum() > 0


# --------------------------------------------------------------------------- leading_one_bits


@pytest.mark.parametrize("L_,lo,hi", [pytest.param(37, 1, 35, marks=pytest.mark.slow), (37, F + 1, F + 6), (16, 3, 4),
                                      pytest.param(64, 0, 63, marks=pytest.mark.slow)])
async def test_leading_one_bits_are_the_threshold_comparisons(L_: int, lo: int, hi: int,
                                                              nprng: np.random.Generator) -> None:
    """b_t = [v >= 2^t]; (1, 35) needs two millionaires (more than 32 thresholds), (0, 63) the whole 64-bit range."""
    top = (1 << (L_ - 1)) - 1
    edges = {0, 1, top, top - 1} | {(1 << t) + e for t in range(lo, hi) for e in (-1, 0)}
    rand = nprng.integers(0, top + 1, 60, dtype=np.uint64) >> nprng.integers(0, L_ - 1, 60, dtype=np.uint64)
    v = np.concatenate([np.array(sorted(x for x in edges if 0 <= x <= top), dtype=np.uint64), rand])
    v = v.reshape(1, -1) if v.size % 2 else v.reshape(2, -1)  # a 2-D input keeps its shape behind the threshold axis
    sv = Shared(v, L_)

    async def job(p: Party) -> np.ndarray:
        return await leading_one_bits(p, "b", sv.mine(p), L=L_, lo=lo, hi=hi)

    s, c = await run_both(job)
    assert s.dtype == np.uint8 and s.shape == (hi - lo, *v.shape)
    got = s ^ c
    want = np.stack([(v >= np.uint64(1 << t)).astype(np.uint8) for t in range(lo, hi)])
    assert np.array_equal(got, want)
    assert np.array_equal(got.sum(axis=0), fx.leading_one_counts(v.astype(np.int64), range(lo, hi)))


# --------------------------------------------------------------------------- rsqrt


def _rsqrt_inputs(W: int, gen: np.random.Generator) -> np.ndarray:
    edges = {1, 2, 3, (1 << W) - 1, (1 << W) - 2} | {(1 << t) + e for t in range(1, W) for e in (-1, 0, 1)}
    logs = gen.uniform(0, W, 100)
    rand = np.minimum(np.floor(2.0**logs), (1 << W) - 1).astype(np.int64)
    return np.concatenate([np.array(sorted(e for e in edges if 1 <= e < 1 << W)), rand]).astype(np.uint64)


async def _rsqrt_run(v: np.ndarray, *, f: int, l: int, H: int, exact: bool) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray, np.ndarray]:
    """rsqrt on shares of ``v`` mod ``2^l`` with the LayerNorm plan's ``W``, ``s_y``, ``E`` for rows of ``H``:
    the opened ``(x1, a)`` and fxmath's ``(x1, a)``."""
    p = fx.layernorm_plan(H, f=f, l=l)
    sv = Shared(v, l)

    async def job(party: Party) -> tuple[np.ndarray, np.ndarray]:
        return await rsqrt(party, "q", sv.mine(party), f=f, W=p.W, s_y=p.s_y, E=p.E, L=l, exact=exact)

    (xs, as_), (xc, ac) = await run_both(job)
    wx1, wa = fx.rsqrt_fixed(v.astype(np.int64), f=f, W=p.W, s_y=p.s_y, E=p.E)
    return _open_u(xs, xc, l), _open_u(as_, ac, l), wx1, wa


@pytest.mark.parametrize("H", [768, 2])
async def test_rsqrt_exact_bit_for_bit(H: int, nprng: np.random.Generator) -> None:
    """With the LayerNorm plan's W, s_y and E (every leading-one position 1..W−1, both exponent parities)."""
    p = fx.layernorm_plan(H, f=F, l=L)
    v = _rsqrt_inputs(p.W, nprng)
    x1, a, wx1, wa = await _rsqrt_run(v, f=F, l=L, H=H, exact=True)
    assert np.array_equal(x1, wx1) and np.array_equal(a, wa)
    # the plaintext program: x1·a ≈ 2^(s_y+E)/sqrt(v/2^f), a few percent at most after one Newton step
    want = 2.0 ** (p.s_y + p.E) / np.sqrt(v.astype(np.float64) / 2.0**F)
    assert np.all(np.abs(x1 * a.astype(np.float64) / want - 1) < 2.0**-6)


@pytest.mark.slow
@pytest.mark.parametrize("f,l,H", [(12, 28, 4), (12, 26, 2), (8, 20, 2), (12, 32, 4), (8, 24, 2)])
async def test_rsqrt_at_every_ring_the_layernorm_plan_accepts(f: int, l: int, H: int,
                                                              nprng: np.random.Generator) -> None:
    """The plan refuses a ring below ``2f + LAYERNORM_RING_MARGIN`` (where rsqrt's products would wrap); at the
    least ring it accepts, rsqrt with its W, s_y, E is bit for bit."""
    if l < 2 * f + fx.LAYERNORM_RING_MARGIN:
        with pytest.raises(InputError, match="rsqrt's Newton products must fit the ring"):
            fx.layernorm_plan(H, f=f, l=l)
        return
    p = fx.layernorm_plan(H, f=f, l=l)
    x1, _, wx1, _ = await _rsqrt_run(_rsqrt_inputs(p.W, nprng), f=f, l=l, H=H, exact=True)
    assert np.array_equal(x1, wx1)


async def test_rsqrt_approximate_stays_close(nprng: np.random.Generator) -> None:
    """Approximate: the power ``a`` is exact (comparisons only); ``x1`` moves by a few LSB of ``s_y`` (the
    truncations of b, b1 and x1 each add +{0, 1}; b's error is scaled by Y0²/2^(2m+4) <= 2, and enters x1
    times Y0/2^(m+3) <= 1/2)."""
    v = _rsqrt_inputs(fx.layernorm_plan(768, f=F, l=L).W, nprng)
    x1, a, wx1, wa = await _rsqrt_run(v, f=F, l=L, H=768, exact=False)
    assert np.array_equal(a, wa)
    assert np.abs(x1 - wx1).max() <= 4
