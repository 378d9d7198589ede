"""correlated_ot_widths: m correlated OTs per instance, each column with its own width, in one round trip."""

from typing import Any

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.party import Party, Role
from aiompc.protocols.ot import correlated_ot_widths
from test_ot_flavours import ROLES, as_roles


@pytest.mark.parametrize("sender", ROLES)
async def test_each_column_is_correlated_at_its_width(sender: Role, nprng: np.random.Generator) -> None:
    cases = [(1, (1,)), (200, (37, 36, 2, 1)), (129, (64, 63, 8)), (0, (5, 4))]
    data = []
    for n, ws in cases:
        corr = np.stack([nprng.integers(0, 2**w - 1, n, dtype=np.uint64, endpoint=True) for w in ws], axis=1)
        data.append((corr.reshape(n, len(ws)), nprng.integers(0, 2, (n, len(ws))).astype(np.uint8)))

    async def send(p: Party) -> list[Any]:
        return [await correlated_ot_widths(p, f"w{i}", sender=sender, widths=ws, correlation=d)
                for i, ((_, ws), (d, _)) in enumerate(zip(cases, data))]

    async def recv(p: Party) -> list[Any]:
        return [await correlated_ot_widths(p, f"w{i}", sender=sender, widths=ws, choices=c)
                for i, ((_, ws), (_, c)) in enumerate(zip(cases, data))]

    s_out, r_out = await as_roles(sender, send, recv)
    for (n, ws), (d, c), x, y in zip(cases, data, s_out, r_out):
        masks = np.array([(1 << w) - 1 for w in ws], dtype=np.uint64)
        assert x.shape == y.shape == (n, len(ws)) and x.dtype == y.dtype == np.uint64
        np.testing.assert_array_equal(y, (x + c.astype(np.uint64) * d) & masks)
        assert not np.any(x > masks)
        if n > 100:
            assert len(np.unique(x[:, 0])) > n // 2  # uniform pads, not a constant


async def test_online_bytes_are_the_sum_of_the_widths() -> None:
    n, ws = 4000, tuple(range(37, 0, -1))

    async def job(p: Party) -> int:
        before = p.channel.stats()
        if p.is_server:
            await correlated_ot_widths(p, "w", sender="server", widths=ws, correlation=np.zeros((n, len(ws)), np.uint64))
        else:
            await correlated_ot_widths(p, "w", sender="server", widths=ws, choices=np.ones((n, len(ws)), np.uint8))
        st = (p.channel.stats() - before).select("w", phase="online")
        return st.bytes_sent + st.bytes_recv

    s, _ = await as_roles("server", job, job)
    ideal = n * (len(ws) + sum(ws)) / 8
    assert ideal <= s <= ideal + 64 * len(ws) + 200  # per-column headers and the allocation message


async def test_bad_arguments_are_typed_errors() -> None:
    async def job(p: Party) -> None:
        if not p.is_server:
            return None
        for kwargs in ({"widths": ()}, {"widths": (0,)}, {"widths": (65,)},
                       {"widths": (3,), "correlation": np.array([[8]], np.uint64)},
                       {"widths": (3, 2), "correlation": np.zeros((2, 3), np.uint64)}):
            with pytest.raises(InputError):
                await correlated_ot_widths(p, "bad", sender="server", **kwargs)
        for kwargs in ({"widths": (3,), "choices": np.array([[2]])}, {"widths": (3,), "choices": np.zeros(4)},
                       {"widths": (3,)}):
            with pytest.raises(InputError):
                await correlated_ot_widths(p, "bad", sender="client", **kwargs)
        return None

    await as_roles("server", job, job)
