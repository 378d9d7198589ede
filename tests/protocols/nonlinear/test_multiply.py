"""Products of shares (multiply, multiply_private, square) against numpy mod 2^l, bit for bit; their cost from the
channel; fresh output shares; typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.protocols.nonlinear.multiply import (
    multiply,
    multiply_bits,
    multiply_private,
    multiply_private_bits,
    product_bits,
    square,
    square_bits,
)
from aiompc.ring import from_signed, mask
from nonlinear_helpers import Shared, opened, run_both, run_over_tcp, signed_values

LS = (1, 8, 16, 37, 62, 64)


def mod(v: np.ndarray, l: int) -> np.ndarray:
    """Signed int64 values (or uint64 ring elements) mod 2^l as uint64."""
    return from_signed(v, 64) & mask(l) if np.asarray(v).dtype.kind == "i" else np.asarray(v, np.uint64) & mask(l)


def product(a: np.ndarray, b: np.ndarray, l: int) -> np.ndarray:
    """numpy's product mod 2^64, reduced mod 2^l (the reference)."""
    return (mod(a, 64) * mod(b, 64)) & mask(l)


def narrow_values(m: int, n: int, gen: np.random.Generator) -> np.ndarray:
    """Edge and random signed m-bit values (int64)."""
    lo, hi = -(1 << (m - 1)), (1 << (m - 1)) - 1
    edges = np.array(sorted(v for v in {0, 1, -1, lo, hi, lo + 1, hi - 1} if lo <= v <= hi), dtype=np.int64)
    return np.concatenate([edges, gen.integers(lo, hi, n, endpoint=True)])


@pytest.mark.parametrize("l", LS)
async def test_multiply_is_exact_mod_2l(l: int, gen: np.random.Generator) -> None:
    x = signed_values(l, 300, gen)
    y = np.concatenate([signed_values(l, 0, gen)[::-1], signed_values(l, 300, gen)])[: x.size]
    edge = signed_values(l, 0, gen)
    ex, ey = np.repeat(edge, edge.size), np.tile(edge, edge.size)  # every pair of edge values (0, ±1, ±2^(l-1), ...)
    cases = [(x, y), (ex, ey)]
    shared = [(Shared(mod(a, l), l), Shared(mod(b, l), l)) for a, b in cases]

    async def job(p: Party):
        return [await multiply(p, f"m{i}", a.mine(p), b.mine(p), l=l) for i, (a, b) in enumerate(shared)]

    s, c = await run_both(job)
    for (a, b), sv, cv in zip(cases, s, c):
        np.testing.assert_array_equal(opened(sv, cv, l, signed=False), product(a, b, l))


@pytest.mark.parametrize("l,m", [(16, 8), (37, 8), (37, 16), (24, 4), (62, 30), (64, 1), (64, 40), (8, 6), (9, 8),
                                 (10, 8), (11, 8)])
async def test_narrow_operand_is_exact(l: int, m: int, gen: np.random.Generator) -> None:
    x = narrow_values(m, 400, gen)
    y = signed_values(l, x.size, gen)[: x.size]
    xs, ys = Shared(mod(x, l), l), Shared(mod(y, l), l)

    async def job(p: Party):
        a = await multiply(p, "xy", xs.mine(p), ys.mine(p), l=l, x_bits=m)
        b = await multiply(p, "yx", ys.mine(p), xs.mine(p), l=l, y_bits=m)  # the narrower operand is decomposed
        c = await square(p, "sq", xs.mine(p), l=l, x_bits=m)
        return a, b, c

    (a, b, c), (a2, b2, c2) = await run_both(job)
    np.testing.assert_array_equal(opened(a, a2, l, signed=False), product(x, y, l))
    np.testing.assert_array_equal(opened(b, b2, l, signed=False), product(x, y, l))
    np.testing.assert_array_equal(opened(c, c2, l, signed=False), product(x, x, l))


@pytest.mark.parametrize("l", LS)
async def test_square_is_exact(l: int, gen: np.random.Generator) -> None:
    x = signed_values(l, 400, gen)
    xs = Shared(mod(x, l), l)

    async def job(p: Party):
        return await square(p, "sq", xs.mine(p), l=l)

    s, c = await run_both(job)
    np.testing.assert_array_equal(opened(s, c, l, signed=False), product(x, x, l))


@pytest.mark.parametrize("l,x_bits,w_bits", [(1, None, None), (8, None, None), (37, None, None), (64, None, None),
                                             (37, 8, None), (37, None, 8), (16, 8, 4), (16, 4, 8), (62, None, 1)])
async def test_multiply_private_is_exact(l: int, x_bits: int | None, w_bits: int | None, gen: np.random.Generator) -> None:
    shape = (2, 5, 12)
    x = (narrow_values(x_bits, 120, gen) if x_bits else signed_values(l, 120, gen))[:120].reshape(shape)
    wb = w_bits or min(l, 63)
    w = narrow_values(wb, 12, gen)[-12:]  # one weight per feature, broadcast over the leading axes
    if w_bits:
        w[:2] = [-(1 << (wb - 1)), (1 << (wb - 1)) - 1]
    xs = Shared(mod(x, l), l)

    async def job(p: Party):
        return await multiply_private(p, "mp", xs.mine(p), w if p.is_server else None, l=l, x_bits=x_bits,
                                      w_bits=w_bits)

    s, c = await run_both(job)
    assert s.shape == c.shape == shape
    np.testing.assert_array_equal(opened(s, c, l, signed=False), product(x, np.broadcast_to(w, shape), l))


@pytest.mark.parametrize("xshape,yshape", [((3, 1, 4), (5, 1)), ((6,), (1,)), ((2, 3), (2, 3)), ((0, 4), (1, 4)),
                                           ((0,), (0,)), ((4, 1), (0,))])
async def test_broadcasting_and_empty_arrays(xshape: tuple, yshape: tuple, gen: np.random.Generator) -> None:
    l = 37
    x = gen.integers(-(1 << 36), 1 << 36, xshape)
    y = gen.integers(-(1 << 36), 1 << 36, yshape)
    xs, ys = Shared(mod(x, l), l), Shared(mod(y, l), l)
    want_shape = np.broadcast_shapes(xshape, yshape)

    async def job(p: Party):
        return await multiply(p, "b", xs.mine(p), ys.mine(p), l=l)

    s, c = await run_both(job)
    assert s.shape == c.shape == want_shape
    np.testing.assert_array_equal(opened(s, c, l, signed=False), product(np.broadcast_to(x, want_shape),
                                                                         np.broadcast_to(y, want_shape), l))


async def test_over_tcp_and_fresh_shares(gen: np.random.Generator) -> None:
    l = 37
    x, y = gen.integers(-1000, 1000, 256), gen.integers(-1000, 1000, 256)
    xs, ys = Shared(mod(x, l), l), Shared(mod(y, l), l)

    async def job(p: Party):
        a = await multiply(p, "t1", xs.mine(p), ys.mine(p), l=l)
        b = await multiply(p, "t2", xs.mine(p), ys.mine(p), l=l)  # the same inputs again
        c = await square(p, "t3", xs.mine(p), l=l)
        d = await square(p, "t4", xs.mine(p), l=l)
        return a, b, c, d

    (a, b, c, d), (a2, b2, c2, d2) = await run_over_tcp(job)
    np.testing.assert_array_equal(opened(a, a2, l, signed=False), product(x, y, l))
    np.testing.assert_array_equal(opened(b, b2, l, signed=False), product(x, y, l))
    np.testing.assert_array_equal(opened(c, c2, l, signed=False), product(x, x, l))
    np.testing.assert_array_equal(opened(d, d2, l, signed=False), product(x, x, l))
    for one, two in ((a, b), (a2, b2), (c, d), (c2, d2)):
        assert not np.any(one == two)  # fresh masks: no share repeats between two calls on the same inputs


@pytest.mark.parametrize("l", [16, 24, 37])
async def test_online_bits_per_product_match_the_docstring(l: int) -> None:
    """Bytes counted on the channel (both directions, online phase) against the stated cost per element."""
    n = 2048
    z = np.zeros(n, dtype=np.uint64)
    w = np.ones(n, dtype=np.int64)
    calls = {
        "mul": (lambda p: multiply(p, "mul", z, z, l=l), 2 * product_bits(l, l)),
        "mul8": (lambda p: multiply(p, "mul8", z, z, l=l, x_bits=8), 2 * product_bits(l, 9)),
        "priv": (lambda p: multiply_private(p, "priv", z, w if p.is_server else None, l=l), product_bits(l, l)),
        "privw": (lambda p: multiply_private(p, "privw", z, w if p.is_server else None, l=l, w_bits=8),
                  product_bits(l, 8)),
        "sq": (lambda p: square(p, "sq", z, l=l), product_bits(l - 1, l - 1)),
        "sq8": (lambda p: square(p, "sq8", z, l=l, x_bits=8), product_bits(l - 1, 9) + (l - 9)),
    }

    async def job(p: Party):
        for call, _ in calls.values():
            await call(p)
        stats = p.channel.stats()  # each call has its own labels; this party saw all of their messages
        return {name: stats.select(name, phase="online").bytes_sent + stats.select(name, phase="online").bytes_recv
                for name in calls}

    s, c = await run_both(job)
    assert s == c
    models = {"mul": multiply_bits(l), "mul8": multiply_bits(l, y_bits=8), "priv": multiply_private_bits(l),
              "privw": multiply_private_bits(l, x_bits=l, w_bits=8), "sq": square_bits(l), "sq8": square_bits(l, x_bits=8)}
    assert models == {name: bits for name, (_, bits) in calls.items()}  # the cost functions say the same
    for name, (_, bits) in calls.items():
        ideal = bits * n / 8
        assert ideal <= s[name] <= ideal + 60 * l + 400, (name, s[name] * 8 / n, bits)
    assert s["mul8"] < s["mul"] and s["privw"] < s["priv"] and s["sq8"] < s["sq"]


@pytest.mark.parametrize("call,match", [
    (lambda p: multiply(p, "e", np.array([1], np.uint64), np.array([1], np.uint64), l=0), "ring width"),
    (lambda p: multiply(p, "e", np.array([256], np.uint64), np.array([1], np.uint64), l=8), "2\\^8"),
    (lambda p: multiply(p, "e", np.array([-1]), np.array([1], np.uint64), l=8), "unsigned"),
    (lambda p: multiply(p, "e", np.zeros(3, np.uint64), np.zeros(4, np.uint64), l=8), "broadcast"),
    (lambda p: multiply(p, "e", np.zeros(3, np.uint64), np.zeros(3, np.uint64), l=8, x_bits=0), "x_bits"),
    (lambda p: square(p, "e", np.array([0.5]), l=8), "unsigned"),
    (lambda p: square(p, "e", np.zeros(3, np.uint64), l=8, x_bits=70), "x_bits"),
    (lambda p: multiply_private(p, "e", np.zeros(3, np.uint64), None, l=8), "server passes w"),
    (lambda p: multiply_private(p, "e", np.zeros(3, np.uint64), np.zeros(4, np.int64), l=8), "broadcast"),
    (lambda p: multiply_private(p, "e", np.zeros(3, np.uint64), np.array([8, 0, 0]), l=8, w_bits=4), "width"),
    (lambda p: multiply_private(p, "e", np.zeros(3, np.uint64), np.array([0.5]), l=8), "signed integer"),
])
async def test_bad_inputs_are_typed_errors(call, match: str) -> None:
    async def job(p: Party):
        if p.is_server:  # refused before any message
            await call(p)

    with pytest.raises(InputError, match=match):
        await run_both(job)


async def test_client_passing_weights_is_an_error() -> None:
    async def job(p: Party):
        if not p.is_server:
            await multiply_private(p, "e", np.zeros(3, np.uint64), np.zeros(3, np.int64), l=8)

    with pytest.raises(InputError, match="only the server"):
        await run_both(job)


@pytest.mark.parametrize("w_bits", [None, 8])
async def test_client_view_of_private_weights_looks_uniform(w_bits: int | None) -> None:
    """The client's output shares of x·w for one fixed w and x look uniform (its only output from the protocol)."""
    l, n = 16, 512
    xs = Shared(np.full(n, 3, dtype=np.uint64), l)
    w = np.full(n, 77, dtype=np.int64)

    async def job(p: Party):
        return await multiply_private(p, "v", xs.mine(p), w if p.is_server else None, l=l, w_bits=w_bits)

    s, c = await run_both(job)
    np.testing.assert_array_equal(opened(s, c, l, signed=False), np.full(n, 231, dtype=np.uint64))
    assert len(np.unique(c)) > n - 16  # fresh 16-bit masks: about n distinct values, not a function of w
    assert abs(float(np.mean(c)) / (1 << l) - 0.5) < 0.1
