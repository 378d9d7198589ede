import asyncio
from typing import Any

import numpy as np
import pytest

from aiompc import run_local
from aiompc.errors import InputError, ProtocolError
from aiompc.party import Party, Role
from aiompc.protocols.ot.engine import ReceiverCOTs, SenderCOTs
from aiompc.protocols.ot.engines import ENGINES, get_engine
from aiompc.protocols.ot.iknp_engine import IKNPEngine


class SmallBatchIKNP(IKNPEngine):
    """IKNP with tiny batches, so that tests exercise multi-batch ranges cheaply."""

    kind = "iknp-small"
    min_batch = 128
    max_batch = 384


@pytest.fixture(autouse=True)
def _test_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """This module's engine, selectable by its kind in the sessions of its tests."""
    monkeypatch.setitem(ENGINES, SmallBatchIKNP.kind, SmallBatchIKNP)


def check_cots(s: SenderCOTs, r: ReceiverCOTs) -> None:
    assert len(s) == len(r)
    assert s.q.dtype == r.t.dtype == np.uint64 and r.choices.dtype == np.uint8
    np.testing.assert_array_equal(s.tweaks, r.tweaks)
    np.testing.assert_array_equal(r.t ^ s.q, r.choices.astype(np.uint64)[:, None] * s.delta)
    assert not (s.q == s.m1()).all(axis=1).any()


def both(fn: Any) -> tuple[Any, Any]:
    return fn, fn


@pytest.mark.parametrize("kind", ["iknp", "iknp-small"])
@pytest.mark.parametrize("sender", ["server", "client"])
async def test_cots_in_both_directions(kind: str, sender: Role) -> None:
    sizes = [1, 127, 128, 129, 1000]

    async def run(p: Party) -> list[Any]:
        e = get_engine(p)
        assert e.kind == kind
        return [await e.cots(f"c{i}", n, sender=sender) for i, n in enumerate(sizes)]

    res_s, res_c = await run_local(run, run, options={"ot": kind})
    snd, rcv = (res_s, res_c) if sender == "server" else (res_c, res_s)
    for s, r, n in zip(snd, rcv, sizes):
        assert isinstance(s, SenderCOTs) and isinstance(r, ReceiverCOTs) and len(s) == n
        check_cots(s, r)
    assert len({tuple(s.delta) for s in snd}) == 1  # one global Δ per direction
    tweaks = np.concatenate([s.tweaks for s in snd])
    assert len(np.unique(tweaks)) == tweaks.size
    choices = np.concatenate([r.choices for r in rcv])
    assert 0.4 < choices.mean() < 0.6


async def test_directions_are_independent_and_concurrent() -> None:
    async def run(p: Party) -> tuple[Any, Any]:
        e = get_engine(p)
        return await asyncio.gather(e.cots("a", 300, sender="server"), e.cots("b", 300, sender="client"))

    (s_a, s_b), (c_a, c_b) = await run_local(run, run)
    check_cots(s_a, c_a)
    check_cots(c_b, s_b)
    assert tuple(s_a.delta) != tuple(c_b.delta)
    assert not np.isin(s_a.tweaks, c_b.tweaks).any()


@pytest.mark.parametrize("kind", ["iknp", "iknp-small"])
async def test_concurrent_calls_in_different_orders_stay_aligned(kind: str) -> None:
    sizes = [5, 700, 129, 64, 1, 333]

    async def server(p: Party) -> list[Any]:
        e = get_engine(p)
        return list(await asyncio.gather(*(e.cots(f"t{i}", n, sender="server") for i, n in enumerate(sizes))))

    async def client(p: Party) -> list[Any]:
        e = get_engine(p)
        order = list(reversed(range(len(sizes))))
        got = await asyncio.gather(*(e.cots(f"t{i}", sizes[i], sender="server") for i in order))
        return [got[order.index(i)] for i in range(len(sizes))]

    snd, rcv = await run_local(server, client, options={"ot": kind})
    for s, r in zip(snd, rcv):
        check_cots(s, r)


async def test_precompute_is_offline_and_later_calls_are_online_only() -> None:
    n = 20_000

    async def run(p: Party) -> tuple[Any, ...]:
        e = get_engine(p)
        await e.precompute(n, sender="client")
        before = p.channel.stats()
        cots = await e.cots("use", 5000, sender="client")
        after = p.channel.stats()
        return cots, before, after, e.buffered("client")

    (c_s, before, after, left_s), (c_c, _, _, left_c) = await run_local(run, run, options={"ot": "iknp"})
    check_cots(c_c, c_s)
    # stats are the server's: with the client as OT sender the server is the COT receiver and sends U
    gen = before.select("ot/iknp/client", phase="offline").labels
    assert gen["ot/iknp/client"].bytes_recv == 0
    u_bytes = gen["ot/iknp/client"].bytes_sent
    assert 16 * n <= u_bytes <= 16 * (n + 128) + 256  # 16 bytes per COT (plus framing)
    assert gen["ot/iknp/client/base"].bytes_sent < 64 < gen["ot/iknp/client/base"].bytes_recv  # A vs 128 B_i
    delta = after - before
    assert not delta.select(phase="offline").labels  # nothing generated on use
    assert set(delta.labels) == {"use"} and delta.labels["use"].phase == "online"
    assert delta.bytes_sent + delta.bytes_recv < 64  # just the allocation message
    assert left_s == left_c == n - 5000 + (-n % 128)


async def test_generation_and_use_land_in_separate_phases() -> None:
    async def run(p: Party) -> Any:
        await get_engine(p).cots("flavour/x", 1000, sender="server")
        return p.channel.stats()

    stats, _ = await run_local(run, run, options={"ot": "iknp"})
    assert stats.labels["flavour/x"].phase == "online"
    assert {lab for lab in stats.labels if lab.startswith("ot/")} == {"ot/iknp/server", "ot/iknp/server/base"}
    assert all(stats.labels[lab].phase == "offline" for lab in stats.labels if lab.startswith("ot/"))


async def test_errors_are_typed() -> None:
    async def bad_kind(p: Party) -> None:
        get_engine(p)

    with pytest.raises(InputError, match="unknown OT engine"):
        await run_local(bad_kind, bad_kind, options={"ot": "nope"})

    async def misuse(p: Party) -> None:
        e = get_engine(p)
        with pytest.raises(InputError):
            await e.cots("ot/mine", 3, sender="server")
        with pytest.raises(InputError):
            await e.cots("x", -1, sender="server")
        with pytest.raises(InputError):
            await e.cots("x", 3, sender="both")  # type: ignore[arg-type]
        with pytest.raises(InputError):
            await (e.receiver_cots if p.is_server else e.sender_cots)("x", 3, sender="server")

    await run_local(misuse, misuse)

    async def server(p: Party) -> None:
        await get_engine(p).cots("m", 10, sender="server")

    async def client(p: Party) -> None:
        await get_engine(p).cots("m", 11, sender="server")

    with pytest.raises(ProtocolError, match="count mismatch"):
        await run_local(server, client)


async def test_empty_requests_send_nothing() -> None:
    async def run(p: Party) -> Any:
        out = await get_engine(p).cots("empty", 0, sender="server")
        return len(out), p.channel.stats().select("empty").messages

    assert await run_local(run, run) == ((0, 0), (0, 0))


async def test_sender_pool_hands_out_each_cot_once() -> None:
    from aiompc.protocols.ot.engine import COTSenderSource, WorkBudget, _SenderPool

    class Batches(COTSenderSource):
        def __init__(self) -> None:
            self.delta = np.array([1, 2], dtype=np.uint64)
            self.count = 0

        async def generate(self, budget: WorkBudget) -> np.ndarray:
            if self.count == 2:
                await asyncio.Event().wait()  # no more batches
            self.count += 1
            return np.arange(200, dtype=np.uint64).reshape(100, 2) + np.uint64(1000 * self.count)

    pool = _SenderPool(Batches(), WorkBudget(1 << 20))
    both = await pool.take(90, 20)  # spans the two batches
    np.testing.assert_array_equal(both[:10, 0], 1000 + np.arange(180, 200, 2))
    np.testing.assert_array_equal(both[10:, 0], 2000 + np.arange(0, 20, 2))
    for start, n in [(95, 1), (80, 20), (109, 5)]:
        with pytest.raises(ProtocolError):
            await pool.take(start, n)
    await pool.take(0, 90)
    assert len(pool._batches) == 1  # the first batch is fully used and dropped
    with pytest.raises(ProtocolError):
        await pool.take(50, 1)
    pool._task.cancel()
