"""Max-pool (kernel, stride, padding) and argmax (shares or revealed) against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.party import Party
from nonlinear_helpers import Shared, opened, run_both
from aiompc.protocols.nonlinear.pooling import argmax, max_reduce, maxpool2d, pool_windows


def maxpool_reference(x: np.ndarray, k: int, s: int, p: int) -> np.ndarray:
    """Max-pool with -inf padding, by explicit loops over output positions (test only)."""
    H, W = x.shape[-2:]
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    out = np.empty(x.shape[:-2] + (Ho, Wo), dtype=np.int64)
    for i in range(Ho):
        for j in range(Wo):
            r0, c0 = i * s - p, j * s - p
            rows = slice(max(r0, 0), min(r0 + k, H))
            cols = slice(max(c0, 0), min(c0 + k, W))
            out[..., i, j] = x[..., rows, cols].max(axis=(-2, -1))
    return out


@pytest.mark.parametrize("l", [4, 8, 16, 37, 64])
async def test_maxpool(l: int, gen: np.random.Generator) -> None:
    q = 1 << (l - 2)  # inputs in [-2^(l-2), 2^(l-2)): pairwise differences do not overflow
    x = gen.integers(-q, q, size=(2, 3, 7, 7))
    x[0, 0, 0, :3] = [-q, q - 1, 0]  # range extremes inside one window
    x[0, 1] = -q  # a whole channel at the minimum: padding must not win
    configs = [(2, 2, 0), (3, 3, 0), (3, 2, 1), (2, 1, 1)]
    sx = Shared(x, l)

    async def job(p: Party):
        return [await maxpool2d(p, f"mp{i}", sx.mine(p), l=l, kernel=k, stride=s, padding=pad) for i, (k, s, pad) in enumerate(configs)]

    s, c = await run_both(job)
    for (k, st, pad), ys, yc in zip(configs, s, c):
        np.testing.assert_array_equal(opened(ys, yc, l), maxpool_reference(x, k, st, pad), err_msg=f"k={k} s={st} p={pad}")


@pytest.mark.parametrize("l", [4, 16, 37])
async def test_argmax_and_max(l: int, gen: np.random.Generator) -> None:
    q = 1 << (l - 2)
    x = gen.integers(-q, q, size=(40, 10))
    x[0] = 0  # all tied: first index
    x[1, [3, 7]] = q - 1  # two maxima: the first one
    x[2] = np.clip(np.arange(10)[::-1] - 5, -q, q - 1)  # decreasing: the first element
    sx = Shared(x, l)

    async def job(p: Party):
        shares = await argmax(p, "am", sx.mine(p), l=l)
        shown = await argmax(p, "am2", sx.mine(p), l=l, reveal_to="client")
        mx = await max_reduce(p, "mx", sx.mine(p), l=l)
        one = await argmax(p, "am3", sx.mine(p)[:, :1], l=l, reveal_to="server")
        return shares, shown, mx, one

    s, c = await run_both(job)
    np.testing.assert_array_equal(opened(s[0], c[0], 4, signed=False), np.argmax(x, axis=-1))
    assert s[1] is None
    np.testing.assert_array_equal(c[1], np.argmax(x, axis=-1))
    np.testing.assert_array_equal(opened(s[2], c[2], l), x.max(axis=-1))
    assert c[3] is None and not np.any(s[3])


def test_windows_are_local_and_checked() -> None:
    x = np.arange(16, dtype=np.uint64).reshape(1, 4, 4)
    w = pool_windows(x, 2, None, 0)
    assert w.shape == (1, 2, 2, 4) and w[0, 1, 1].tolist() == [10, 11, 14, 15]
    with pytest.raises(InputError):
        pool_windows(x, 2, 2, 2)  # padding >= kernel
    with pytest.raises(InputError):
        pool_windows(x, 5, 1, 0)


@pytest.mark.parametrize("value_range", [(0, 15), (-8, 7), (-300, 1000), (5, 5)])
async def test_maxpool_and_argmax_on_the_narrow_ring(value_range, gen: np.random.Generator) -> None:
    """Inputs with public bounds (4-bit activations in a 16-bit ring, signed, wide, a single value): the
    tree runs on bitlen(hi - lo) + 1 bits, the max-pool comes back in the 16-bit ring; every digit size
    choice (None) and the ends of the range inside windows."""
    l = 16
    lo, hi = value_range
    x = gen.integers(lo, hi + 1, size=(2, 3, 7, 7))
    x[0, 0, 0, :3] = [lo, hi, lo]
    x[0, 1] = lo  # a whole channel at the minimum
    x[1, 2] = hi
    sx = Shared(x, l)
    logits = gen.integers(lo, hi + 1, size=(30, 10))
    logits[0] = lo
    logits[1, [2, 8]] = hi
    sl = Shared(logits, l)
    configs = [(2, 2, 0), (3, 2, 1)]

    async def job(p: Party):
        pools = [await maxpool2d(p, f"mp{i}", sx.mine(p), l=l, kernel=k, stride=s, padding=pad,
                                 value_range=value_range, digit_bits=None) for i, (k, s, pad) in enumerate(configs)]
        idx = await argmax(p, "am", sl.mine(p), l=l, reveal_to="client", value_range=value_range, digit_bits=None)
        return pools, idx

    (ps, _), (pc, idx) = await run_both(job)
    for (k, st, pad), ys, yc in zip(configs, ps, pc):
        np.testing.assert_array_equal(opened(ys, yc, l), maxpool_reference(x, k, st, pad), err_msg=f"k={k} p={pad}")
    np.testing.assert_array_equal(idx, np.argmax(logits, axis=1))
