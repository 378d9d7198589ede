"""Empty inputs: every non-linear protocol returns an empty result of the input's shape (no error, no
message), whichever axis is empty — as the OT flavours and the Boolean gates do."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import numpy as np
import pytest

from aiompc.party import Party
from aiompc.protocols.nonlinear.partial_relu import partial_relu, partial_relu_requantize
from aiompc.protocols.nonlinear.pooling import max_reduce
from aiompc.protocols.nonlinear.relu import drelu, relu
from aiompc.protocols.nonlinear.requantize import requantize
from aiompc.protocols.nonlinear.truncation import truncate
from nonlinear_helpers import run_both

Call = Callable[[Party, str, np.ndarray], Awaitable[np.ndarray]]

CALLS: dict[str, Call] = {  # each keeps the shape of x
    "relu": lambda p, lab, x: relu(p, lab, x, l=16),
    "drelu": lambda p, lab, x: drelu(p, lab, x, l=16),
    "truncate": lambda p, lab, x: truncate(p, lab, x, l=16, f=3),
    "requantize": lambda p, lab, x: requantize(p, lab, x, multiplier=3, lo=-8, hi=7, l_in=16, shift=2, l_out=5),
    "max_reduce": lambda p, lab, x: max_reduce(p, lab, x.reshape(*x.shape, 1).repeat(3, -1), l=16),
    "partial_relu": lambda p, lab, x: partial_relu(p, lab, x, mask=np.ones(x.shape[1:], bool), l=16),
    "partial_relu_requantize": lambda p, lab, x: partial_relu_requantize(
        p, lab, x, mask=np.ones(x.shape[1:], bool), multiplier=3, lo=-8, hi=7, l_in=16, shift=2, l_out=5),
}
SHAPES = [(0,), (2, 0), (2, 3, 0), (0, 3, 4)]


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_an_empty_input_gives_an_empty_output(name: str) -> None:
    call = CALLS[name]

    async def job(p: Party) -> tuple[list[Any], dict]:
        out = [await call(p, f"{name}/{i}", np.zeros(shape, np.uint64)) for i, shape in enumerate(SHAPES)]
        return out, p.channel.stats().labels

    (s, sent_s), (c, sent_c) = await run_both(job)
    assert sent_s == sent_c == {}  # nothing to compare: no message at all (not even OT setup)
    for shape, a, b in zip(SHAPES, s, c, strict=True):
        assert isinstance(a, np.ndarray) and a.shape == b.shape == shape and a.size == 0, (shape, a.shape)


async def test_partial_relu_with_an_empty_mask_region() -> None:
    """The mask's trailing axes may be empty (the case that used to reshape to (-1, 0))."""

    async def job(p: Party) -> list[np.ndarray]:
        x = np.zeros((2, 3, 0), np.uint64)
        return [await partial_relu(p, "a", x, mask=np.ones((3, 0), bool), l=16),
                await partial_relu(p, "b", x, mask=np.ones((0,), bool), l=16),
                await partial_relu_requantize(p, "c", x, mask=np.ones((3, 0), bool), multiplier=3, lo=-8, hi=7,
                                              l_in=16, shift=2, l_out=5)]

    s, c = await run_both(job)
    assert all(a.shape == b.shape == (2, 3, 0) for a, b in zip(s, c))
