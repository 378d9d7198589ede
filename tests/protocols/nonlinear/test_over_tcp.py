"""The non-linear protocols over a real TCP connection on 127.0.0.1 (handshake, framing, two sockets)."""

from __future__ import annotations

import numpy as np

from aiompc import quant
from aiompc.party import Party
from nonlinear_helpers import Shared, opened, run_over_tcp, signed_values
from aiompc.protocols.nonlinear import maxpool2d, relu, requantize, truncate


async def test_relu_truncation_requantize_maxpool_over_tcp(gen: np.random.Generator) -> None:
    l = 16
    x = signed_values(l, 500, gen)
    pos = np.abs(x[x > -(1 << (l - 1))])
    img = gen.integers(-(1 << (l - 2)), 1 << (l - 2), size=(2, 6, 6))
    sx, sp, si = Shared(x, l), Shared(pos, l), Shared(img, l)

    async def job(p: Party):
        return (
            await relu(p, "relu", sx.mine(p), l=l),
            await truncate(p, "trunc", sx.mine(p), l=l, f=5),
            await truncate(p, "trunc0", sp.mine(p), l=l, f=5, msb_known_zero=True, exact=False),
            await requantize(p, "rq", sx.mine(p), l_in=l, multiplier=181, shift=12, lo=0, hi=15, l_out=4),
            await maxpool2d(p, "mp", si.mine(p), l=l, kernel=3, stride=2, padding=1),
            p.channel.stats().total(),
        )

    s, c = await run_over_tcp(job)
    np.testing.assert_array_equal(opened(s[0], c[0], l), np.maximum(x, 0))
    np.testing.assert_array_equal(opened(s[1], c[1], l), quant.truncate(x, 5))
    err = opened(s[2], c[2], l) - quant.truncate(pos, 5)
    assert set(np.unique(err)) <= {-1, 0}
    np.testing.assert_array_equal(opened(s[3], c[3], 4, signed=False), quant.requantize(x, 181, 12, 0, 15))
    padded = np.pad(img, ((0, 0), (1, 1), (1, 1)), constant_values=-(1 << 40))
    want = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))[:, ::2, ::2].max(axis=(-2, -1))
    np.testing.assert_array_equal(opened(s[4], c[4], l), want)
    # both ends account the same traffic, TCP framing included
    assert s[5]["bytes_sent"] == c[5]["bytes_recv"] and s[5]["bytes_recv"] == c[5]["bytes_sent"]
