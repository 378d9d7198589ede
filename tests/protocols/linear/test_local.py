"""Local operations on shares: applying them to both shares gives shares of the plaintext result."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.crypto.prg import PRG
from aiompc.errors import InputError
from aiompc.ring import reconstruct, share
from aiompc.protocols.linear import local


def pool_loops(x: np.ndarray, k: int, s: int, p: int) -> np.ndarray:
    """Window sums with explicit loops over outputs, Python integers (independent of the vectorised code)."""
    c, h, w = x.shape
    xp = np.zeros((c, h + 2 * p, w + 2 * p), dtype=object)
    xp[:, p : p + h, p : p + w] = x.astype(object)
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.zeros((c, ho, wo), dtype=object)
    for i in range(ho):
        for j in range(wo):
            out[:, i, j] = xp[:, i * s : i * s + k, j * s : j * s + k].sum(axis=(1, 2))
    return out


@pytest.mark.parametrize("l", [8, 16, 37, 60])
@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (3, 1, 1), (3, 2, 1), (4, 4, 0)])
def test_avg_pool_on_shares(l: int, k: int, s: int, p: int, nprng) -> None:
    x = nprng.integers(0, 1 << l, (3, 8, 9), dtype=np.uint64)
    xs, xc = share(x, l, PRG())
    mult = 5
    ys = local.avg_pool2d(xs, k, l, stride=s, padding=p, multiplier=mult)
    yc = local.avg_pool2d(xc, k, l, stride=s, padding=p, multiplier=mult)
    expect = (pool_loops(x, k, s, p) * mult) % (1 << l)
    assert np.array_equal(reconstruct(ys, yc, l), expect.astype(np.uint64))


@pytest.mark.parametrize("l", [8, 37])
def test_global_avg_pool_and_flatten(l: int, nprng) -> None:
    x = nprng.integers(0, 1 << l, (4, 5, 6), dtype=np.uint64)
    xs, xc = share(x, l, PRG())
    g = reconstruct(local.global_avg_pool(xs, l, multiplier=3), local.global_avg_pool(xc, l, multiplier=3), l)
    expect = np.array([(int(v) * 3) % (1 << l) for v in x.astype(object).sum(axis=(1, 2))], dtype=np.uint64)
    assert np.array_equal(g, expect)
    f = reconstruct(local.flatten(xs), local.flatten(xc), l)
    assert np.array_equal(f, x.reshape(-1))
    r = reconstruct(local.reshape(xs, (20, 6)), local.reshape(xc, (20, 6)), l)
    assert np.array_equal(r, x.reshape(20, 6))
    with pytest.raises(InputError):
        local.reshape(xs, (7, 7))


@pytest.mark.parametrize("l", [8, 37, 64])
def test_residual_add_bias_and_scale(l: int, nprng) -> None:
    x = nprng.integers(0, 1 << min(l, 63), (3, 4, 4), dtype=np.uint64)
    y = nprng.integers(0, 1 << min(l, 63), (3, 4, 4), dtype=np.uint64)
    bias = np.array([-5, 7, 1 << 20], dtype=np.int64)
    prg = PRG()
    (xs, xc), (ys, yc) = share(x, l, prg), share(y, l, prg)
    zs = local.add_public("server", local.add_shares(xs, ys, l), bias, l, axis=0)
    zc = local.add_public("client", local.add_shares(xc, yc, l), bias, l, axis=0)
    mod = 1 << l
    expect = (x.astype(object) + y.astype(object) + bias.astype(object)[:, None, None]) % mod
    assert np.array_equal(reconstruct(zs, zc, l), expect.astype(np.uint64))
    ms = local.mul_public(local.sub_shares(xs, ys, l), -3, l)
    mc = local.mul_public(local.sub_shares(xc, yc, l), -3, l)
    expect = ((x.astype(object) - y.astype(object)) * -3) % mod
    assert np.array_equal(reconstruct(ms, mc, l), expect.astype(np.uint64))


def test_local_errors() -> None:
    a = np.zeros((2, 3), dtype=np.uint64)
    with pytest.raises(InputError):
        local.add_shares(a, np.zeros((3, 2), dtype=np.uint64), 8)
    with pytest.raises(InputError):
        local.add_public("server", a, np.zeros(3), 8, axis=0)
    with pytest.raises(InputError):
        local.sum_pool2d(np.zeros((2, 2), dtype=np.uint64), 3, 8)
    with pytest.raises(InputError):
        local.add_shares(a.astype(float), a, 8)
