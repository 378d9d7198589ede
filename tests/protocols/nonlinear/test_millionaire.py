"""Millionaire over a real OT: every relation, both senders, all widths, edges, and batched tasks."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.party import Party
from nonlinear_helpers import run_both
from aiompc.protocols.nonlinear.millionaire import CompareTask, compare_batch, millionaire

OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


def operands(bits: int, n: int, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    top = (1 << bits) - 1
    full = gen.integers(0, 2**63, size=(2, n), dtype=np.uint64) * np.uint64(2) + gen.integers(0, 2, size=(2, n), dtype=np.uint64)
    a, b = full & np.uint64(top)
    # equal operands, operands equal except in one digit, extremes
    a[:30] = b[:30]
    flip = np.uint64(1) << (np.arange(30, 60, dtype=np.uint64) % np.uint64(bits))
    a[30:60] = b[30:60] ^ flip
    ea = np.array([0, 0, top, top, 1, 0, top - 1 if top else 0], dtype=np.uint64)
    eb = np.array([0, top, 0, top, 0, 1, top], dtype=np.uint64)
    return np.concatenate([a, ea]), np.concatenate([b, eb])


@pytest.mark.parametrize("bits", [1, 4, 8, 16, 37, 64])
async def test_all_relations_and_senders(bits: int, gen: np.random.Generator) -> None:
    a, b = operands(bits, 200, gen)

    async def job(p: Party):
        mine = a if p.is_server else b
        out = {}
        for op in OPS:
            for sender in ("server", "client"):
                out[op, sender] = await millionaire(p, f"m{op}{sender}", mine, bits=bits, op=op, sender=sender)
        out["m2"] = await millionaire(p, "m2", mine.reshape(-1, 1), bits=bits, digit_bits=2 if bits > 1 else 1)
        return out

    s, c = await run_both(job)
    for op in OPS:
        for sender in ("server", "client"):
            got = s[op, sender] ^ c[op, sender]
            np.testing.assert_array_equal(got, OPS[op](a, b).astype(np.uint8), err_msg=f"{op} {sender}")
    np.testing.assert_array_equal((s["m2"] ^ c["m2"]).reshape(-1), (a < b).astype(np.uint8))


async def test_batch_with_fanout_split_and_empty_task(gen: np.random.Generator) -> None:
    n = 300
    tasks = [CompareTask(37, split=12), CompareTask(8, fanout=3), CompareTask(0)]
    srv = [gen.integers(0, 1 << t.bits, size=(t.fanout, n), dtype=np.uint64) for t in tasks]
    cli = [gen.integers(0, 1 << t.bits, size=n, dtype=np.uint64) for t in tasks]
    cli[0][:50] = srv[0][0, :50]  # equal high and low parts

    async def job(p: Party):
        vals = srv if p.is_server else cli
        return await compare_batch(p, "batch", tasks, vals, sender="server")

    s, c = await run_both(job)
    (f0s, l0s), (f1s, _), (f2s, low2) = s
    (f0c, l0c), (f1c, _), (f2c, _) = c
    np.testing.assert_array_equal(f0s ^ f0c, (srv[0] < cli[0]).astype(np.uint8))
    m = np.uint64(0xFFF)
    np.testing.assert_array_equal(l0s ^ l0c, ((srv[0] & m) < (cli[0] & m)).astype(np.uint8))
    np.testing.assert_array_equal(f1s ^ f1c, (srv[1] < cli[1][None, :]).astype(np.uint8))
    assert low2 is None and not np.any(f2s ^ f2c)


async def test_operands_out_of_range_are_rejected() -> None:
    async def job(p: Party):
        with pytest.raises(InputError):
            await millionaire(p, "m", np.array([16], np.uint64), bits=4)
        with pytest.raises(InputError):
            await millionaire(p, "m", np.array([1], np.uint64), bits=4, op="!=")  # type: ignore[arg-type]
        return True

    assert await run_both(job) == (True, True)


async def test_large_batches_run_in_chunks(gen: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    mil = importlib.import_module("aiompc.protocols.nonlinear.millionaire")  # the package attribute is the function
    monkeypatch.setattr(mil, "CHUNK_ELEMENTS", 64)
    a, b = operands(20, 300, gen)  # 307 elements: 5 chunks, at most 4 in flight
    tasks = [CompareTask(20, split=8), CompareTask(20, fanout=2)]

    async def job(p: Party):
        vals = [a[None, :], np.stack([a, b])] if p.is_server else [b, b]
        out = await compare_batch(p, "chunked", tasks, vals)
        labels = p.channel.stats().select("chunked").labels
        return out, sorted({k.split("/")[1] for k in labels})

    (s, chunks), (c, _) = await run_both(job)
    assert chunks == [f"c{i}" for i in range(-(-a.size // 64))]
    np.testing.assert_array_equal(s[0][0] ^ c[0][0], (a < b)[None, :].astype(np.uint8))
    m = np.uint64(0xFF)
    np.testing.assert_array_equal(s[0][1] ^ c[0][1], ((a & m) < (b & m))[None, :].astype(np.uint8))
    np.testing.assert_array_equal(s[1][0] ^ c[1][0], np.stack([a < b, b < b]).astype(np.uint8))


@pytest.mark.parametrize("task", [CompareTask(7), CompareTask(36), CompareTask(37, split=12), CompareTask(8, fanout=2)])
async def test_stated_cost_matches_the_channel(task: CompareTask, gen: np.random.Generator) -> None:
    """The plan's online_bits/cots are what goes over the wire (payload; framing adds a little per message)."""
    from aiompc.protocols.nonlinear.millionaire import plan_comparisons

    n = 4000
    srv = gen.integers(0, 1 << task.bits, size=(task.fanout, n), dtype=np.uint64)
    cli = gen.integers(0, 1 << task.bits, size=n, dtype=np.uint64)

    async def job(p: Party):
        await compare_batch(p, "warm", [CompareTask(4)], [srv[:1, :4] & np.uint64(15) if p.is_server else cli[:4] & np.uint64(15)])
        before = p.channel.stats()
        await compare_batch(p, "cost", [task], [srv if p.is_server else cli])
        return (p.channel.stats() - before).select("cost", phase="online")

    st, _ = await run_both(job)
    plan = plan_comparisons([task])
    payload = plan.online_bits * n / 8
    measured = st.bytes_sent + st.bytes_recv
    assert payload <= measured <= payload + 120 * st.messages
