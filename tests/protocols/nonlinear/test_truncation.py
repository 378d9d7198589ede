"""Truncation (exact / approximate, signed / unsigned / known MSB, any output ring) and ring extension."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from aiompc import quant
from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.ring import to_signed
from nonlinear_helpers import WIDTHS, Shared, opened, run_both, signed_values
from aiompc.protocols.nonlinear.extension import change_ring, extend, reduce_ring
from aiompc.protocols.nonlinear.truncation import truncate


def uniform_u64(gen: np.random.Generator, n: int) -> np.ndarray:
    return gen.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + gen.integers(0, 2, n, dtype=np.uint64)


def shifts(l: int) -> list[int]:
    return sorted({1, l // 2, l - 1, min(12, l - 1)})


def near_boundaries(l: int, f: int) -> np.ndarray:
    """Values on both sides of multiples of 2^f (where the carry flips), within the signed range."""
    k = np.array([-(1 << (l - 1 - f)), -1, 0, 1, (1 << (l - 1 - f)) - 1], dtype=object)
    vals = np.concatenate([k * (1 << f) + d for d in (-1, 0, 1)]).astype(object)
    lo, hi = -(1 << (l - 1)), (1 << (l - 1)) - 1
    return np.array([int(v) for v in vals if lo <= v <= hi], dtype=np.int64)


@pytest.mark.parametrize("l", WIDTHS)
async def test_signed_truncation_exact_and_approximate(l: int, gen: np.random.Generator) -> None:
    cases = []
    for f in shifts(l):
        x = np.concatenate([signed_values(l, 300, gen), near_boundaries(l, f)])
        # output rings: same width, truncate-and-reduce (l - f), and a wider one
        for l_out in sorted({l, l - f, min(64, l + 3)}):
            cases.append((f, l_out, Shared(x, l), x))

    async def job(p: Party):
        out = []
        for i, (f, l_out, xs, _) in enumerate(cases):
            ex = await truncate(p, f"t{i}", xs.mine(p), l=l, f=f, l_out=l_out)
            ap = await truncate(p, f"a{i}", xs.mine(p), l=l, f=f, l_out=l_out, exact=False)
            out.append((ex, ap))
        return out

    s, c = await run_both(job)
    approx_errors = 0
    for (f, l_out, _, x), (es, ap_s), (ec, ap_c) in zip(cases, s, c):
        want = to_signed(quant.truncate(x, f), l_out) if l_out < l - f else quant.truncate(x, f)
        np.testing.assert_array_equal(opened(es, ec, l_out), want, err_msg=f"exact l={l} f={f} l_out={l_out}")
        err = to_signed(opened(ap_s, ap_c, l_out, signed=False) - opened(es, ec, l_out, signed=False), l_out)
        assert set(np.unique(err)) <= {-1, 0}, f"approx error outside {{-1, 0}}: l={l} f={f} l_out={l_out}"
        approx_errors += int(np.count_nonzero(err))
    assert approx_errors > 0  # the approximate variant really drops the carry


@pytest.mark.parametrize("l", WIDTHS)
async def test_known_msb_and_unsigned(l: int, gen: np.random.Generator) -> None:
    half = 1 << (l - 1)
    top = np.uint64((1 << l) - 1)
    pos = np.concatenate([np.array([0, 1, 2, half - 1, half - 2, half // 2], np.uint64), gen.integers(0, half, 300, dtype=np.uint64)])
    uns = np.concatenate([np.array([0, 1, top, half, half - 1], np.uint64), uniform_u64(gen, 300) & top])
    cases = list(itertools.product(shifts(l), sorted({l, l - 1, min(64, l + 5)})))
    sp, su = Shared(pos, l), Shared(uns, l)

    async def job(p: Party):
        out = []
        for i, (f, l_out) in enumerate(cases):
            kz = await truncate(p, f"k{i}", sp.mine(p), l=l, f=f, l_out=l_out, msb_known_zero=True)
            ka = await truncate(p, f"ka{i}", sp.mine(p), l=l, f=f, l_out=l_out, msb_known_zero=True, exact=False)
            un = await truncate(p, f"u{i}", su.mine(p), l=l, f=f, l_out=l_out, signed=False)
            out.append((kz, ka, un))
        return out

    s, c = await run_both(job)
    errors = 0
    for (f, l_out), sv, cv in zip(cases, s, c):
        m = np.uint64((1 << l_out) - 1) if l_out < 64 else np.uint64(2**64 - 1)
        np.testing.assert_array_equal(opened(sv[0], cv[0], l_out, signed=False), (pos >> np.uint64(f)) & m)
        err = to_signed(opened(sv[1], cv[1], l_out, signed=False) - opened(sv[0], cv[0], l_out, signed=False), l_out)
        assert set(np.unique(err)) <= {-1, 0}
        errors += int(np.count_nonzero(err))
        np.testing.assert_array_equal(opened(sv[2], cv[2], l_out, signed=False), (uns >> np.uint64(f)) & m)
    assert errors > 0


@pytest.mark.parametrize("l,l_out", [(4, 8), (8, 16), (16, 37), (37, 64), (8, 64), (63, 64)])
async def test_extension_and_reduction(l: int, l_out: int, gen: np.random.Generator) -> None:
    x = signed_values(l, 300, gen)
    half = 1 << (l - 1)
    pos = np.concatenate([np.array([0, 1, half - 1], np.int64), gen.integers(0, half, 200)])
    top = np.uint64(2 * half - 1)
    uns = np.concatenate([np.array([0, 1, top, half], np.uint64), uniform_u64(gen, 200) & top])
    sx, sp, su = Shared(x, l), Shared(pos, l), Shared(uns, l)

    async def job(p: Party):
        return (
            await extend(p, "sx", sx.mine(p), l=l, l_out=l_out),
            await extend(p, "sp", sp.mine(p), l=l, l_out=l_out, msb_known_zero=True),
            await change_ring(p, "su", su.mine(p), l=l, l_out=l_out, signed=False),
            await change_ring(p, "down", sx.mine(p), l=l, l_out=l - 1),
        )

    s, c = await run_both(job)
    np.testing.assert_array_equal(opened(s[0], c[0], l_out), x)
    np.testing.assert_array_equal(opened(s[1], c[1], l_out), pos)
    np.testing.assert_array_equal(opened(s[2], c[2], l_out, signed=False), uns)
    np.testing.assert_array_equal(opened(s[3], c[3], l - 1, signed=False), opened(reduce_ring(sx.s, l_out=l - 1), reduce_ring(sx.c, l_out=l - 1), l - 1, signed=False))
    np.testing.assert_array_equal(opened(s[3], c[3], l - 1), to_signed(x.astype(np.uint64), l - 1))


async def test_bad_arguments() -> None:
    async def job(p: Party):
        with pytest.raises(InputError):
            await truncate(p, "t", np.zeros(3, np.uint64), l=8, f=8)
        with pytest.raises(InputError):
            await extend(p, "e", np.zeros(3, np.uint64), l=8, l_out=4)
        return True

    assert await run_both(job) == (True, True)
