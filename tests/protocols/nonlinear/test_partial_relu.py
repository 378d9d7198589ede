"""Partial ReLU (SNL / SENet masks) against numpy: the plain form on Cheetah's and narrow rings, the form fused
into a requantization, edge masks (all ones, all zeros, one element, per channel, odd shapes), and bytes that
follow the number of kept ReLUs (channel statistics)."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.protocols.nonlinear.partial_relu import kept_indices, partial_relu, partial_relu_requantize
from aiompc.quant import requantize as plain_requantize
from nonlinear_helpers import Shared, opened, run_both, signed_values

SHAPE = (3, 5, 7)  # odd on every axis


def _masks(gen: np.random.Generator) -> dict[str, np.ndarray]:
    one = np.zeros(SHAPE, dtype=bool)
    one[2, 4, 6] = True
    return {
        "element": gen.random(SHAPE) < 0.5,
        "channel": gen.random((3, 1, 1)) < 0.5,
        "ones": np.ones(SHAPE, dtype=bool),
        "zeros": np.zeros((3, 1, 1), dtype=bool),
        "one": one,
    }


def _want(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(np.broadcast_to(mask, x.shape), np.maximum(x, 0), x)


@pytest.mark.parametrize("l", [4, 37])
async def test_partial_relu_matches_numpy(l: int, gen: np.random.Generator) -> None:
    n = int(np.prod(SHAPE))
    x = signed_values(l, 2 * n, gen)[: 2 * n].reshape(2, *SHAPE)  # the range's edges included
    masks = _masks(gen)
    xs = Shared(x, l)

    async def job(p: Party) -> list[np.ndarray]:
        return [await partial_relu(p, f"pr/{k}", xs.mine(p), mask=m, l=l) for k, m in masks.items()]

    s, c = await run_both(job)
    for (name, m), a, b in zip(masks.items(), s, c, strict=True):
        assert a.shape == x.shape
        np.testing.assert_array_equal(opened(a, b, l), _want(x, m), err_msg=name)


@pytest.mark.parametrize("narrow", [True, False])
async def test_partial_relu_requantize_matches_numpy(narrow: bool, gen: np.random.Generator) -> None:
    l_in, shift, lo, hi, l_out = 14, 6, -8, 7, 5
    x = gen.integers(-(1 << 13), 1 << 13, (2, *SHAPE))
    x[0, 0, 0, :4] = [-(1 << 13), (1 << 13) - 1, 0, -1]
    mult = np.array([37, 64, 51]).reshape(1, 3, 1, 1)  # per channel, one a power of two
    masks = _masks(gen)
    xs = Shared(x, l_in)

    async def job(p: Party) -> list[np.ndarray]:
        return [await partial_relu_requantize(
            p, f"prq/{k}", xs.mine(p), mask=m, multiplier=mult, lo=lo, hi=hi, l_in=l_in, shift=shift, l_out=l_out,
            x_range=(-(1 << 13), (1 << 13) - 1), narrow=narrow) for k, m in masks.items()]

    s, c = await run_both(job)
    y = np.stack([plain_requantize(x[:, i], int(mult.reshape(-1)[i]), shift, lo, hi, "nearest") for i in range(3)], 1)
    for (name, m), a, b in zip(masks.items(), s, c, strict=True):
        np.testing.assert_array_equal(opened(a, b, l_out), _want(y, m), err_msg=name)


async def test_bytes_follow_the_kept_relus(gen: np.random.Generator) -> None:
    """Half the mask costs about half the comparison bytes; nothing kept costs nothing (channel statistics)."""
    l, shape = 37, (4, 16, 16)
    x = gen.integers(-(1 << 30), 1 << 30, (1, *shape))
    xs = Shared(x, l)
    half = np.zeros(shape, dtype=bool)
    half.reshape(-1)[gen.permutation(half.size)[: half.size // 2]] = True
    masks = {"full": np.ones(shape, dtype=bool), "half": half, "none": np.zeros(shape, dtype=bool)}

    async def job(p: Party) -> dict[str, int]:
        out = {}
        for k, m in masks.items():
            before = p.channel.stats()
            await partial_relu(p, f"b/{k}", xs.mine(p), mask=m, l=l)
            d = (p.channel.stats() - before).select(f"b/{k}", phase="online")
            out[k] = d.bytes_sent + d.bytes_recv
        return out

    s, _ = await run_both(job)
    assert s["none"] == 0
    assert 0.45 < s["half"] / s["full"] < 0.55, s


def test_kept_indices_and_bad_masks() -> None:
    assert kept_indices(np.array([[[1]], [[0]]]), (2, 2, 2)).tolist() == [0, 1, 2, 3]
    with pytest.raises(InputError, match="broadcast"):
        kept_indices(np.ones((3, 1, 1)), (2, 2, 2))
