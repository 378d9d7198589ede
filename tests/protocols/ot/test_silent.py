"""The silent (Ferret) OT engine behind the engine interface: correlation, reuse, accounting, flavours."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from aiompc import run_local
from aiompc.crypto.ferret import FerretSchedule, toy_params
from aiompc.crypto.ferret.params import BOOTSTRAP
from aiompc.errors import HandshakeError
from aiompc.party import Party, Role
from aiompc.protocols.ot import chosen_ot, correlated_ot
from aiompc.protocols.ot.engine import ReceiverCOTs, SenderCOTs
from aiompc.protocols.ot.engines import ENGINES, get_engine
from aiompc.protocols.ot.silent import SilentEngine

# bootstrap set: n = 1,024, consumes 352, nets 672; main set: n = 8,192, consumes 960, nets 7,232.
# After every extension the schedule keeps max(352, 960) = 960 COTs in reserve.
TOY = FerretSchedule(toy_params("toy-boot", t=16, k=256, log_bin=6), toy_params("toy-main", t=64, k=512, log_bin=7))


class ToySilent(SilentEngine):
    """The silent engine on a forced toy schedule with small batches (tests only)."""

    kind = "silent-toy"
    min_batch = 100
    max_batch = 3000

    def __init__(self, party: Party) -> None:
        super().__init__(party, schedule=TOY)


@pytest.fixture(autouse=True)
def _test_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """This module's engine, selectable by its kind in the sessions of its tests."""
    monkeypatch.setitem(ENGINES, ToySilent.kind, ToySilent)


def check_cots(s: SenderCOTs, r: ReceiverCOTs) -> None:
    """m1 = m0 ⊕ Δ and the receiver's block is the sender's message for its choice bit."""
    assert len(s) == len(r)
    m0, m1 = s.q, s.m1()
    assert np.array_equal(m1 ^ m0, np.broadcast_to(s.delta, m0.shape))
    want = np.where(r.choices[:, None] == 1, m1, m0)
    assert np.array_equal(r.t, want)
    assert np.array_equal(s.tweaks, r.tweaks)
    assert int(s.delta[0]) & 1 == 1


def split(res_s: list[Any], res_c: list[Any], sender: Role) -> tuple[list[Any], list[Any]]:
    return (res_s, res_c) if sender == "server" else (res_c, res_s)


def balanced(bits: np.ndarray) -> None:
    """Choice bits are fair coins: |mean - 1/2| below 6 standard deviations (false alarm < 2e-9)."""
    assert abs(bits.mean() - 0.5) < 6 * 0.5 / np.sqrt(bits.size), bits.mean()


@pytest.mark.parametrize("sender", ["server", "client"])
async def test_cots_across_several_extensions(sender: Role) -> None:
    sizes = [1, 99, 2500, 7, 3000, 3000, 3000, 3000, 3000, 1]  # crosses the bootstrap and several main runs

    async def run(p: Party) -> tuple[list[Any], list[str], dict]:
        e = get_engine(p)
        assert e.kind == "silent-toy"
        out = [await e.cots(f"c{i}", n, sender=sender) for i, n in enumerate(sizes)]
        await asyncio.sleep(0.01)  # let the sender's pump file the last pieces
        iknp = 384  # TOY.initial = 352 rounded up to IKNP's batch unit of 128
        # every extension nets its gain; the reserve held at the end (960) came from the IKNP batch (384)
        produced = sum(TOY.by_name(name).gain for name in e.history(sender)) + iknp - TOY.reserve
        assert e.buffered(sender) == produced - sum(sizes)
        return out, e.history(sender), p.channel.stats().labels

    (res_s, ext_s, st_s), (res_c, ext_c, _) = await run_local(run, run, options={"ot": "silent-toy"})
    snd, rcv = split(res_s, res_c, sender)
    for s, r, n in zip(snd, rcv, sizes):
        assert isinstance(s, SenderCOTs) and isinstance(r, ReceiverCOTs) and len(s) == n
        check_cots(s, r)
    assert ext_s == ext_c and ext_s[0] == "toy-boot" and ext_s.count("toy-main") >= 2  # the reserve reused
    assert len({tuple(s.delta) for s in snd}) == 1
    q = np.concatenate([s.q for s in snd])
    assert np.unique(q, axis=0).shape[0] == q.shape[0]  # no COT handed out twice
    balanced(np.concatenate([r.choices for r in rcv]))
    # all generation traffic is offline, on the engine's labels
    engine_labels = {k: v for k, v in st_s.items() if k.startswith("ot/")}
    assert engine_labels and all(v.phase == "offline" for v in engine_labels.values())
    assert {k.rsplit("/", 1)[-1] for k in engine_labels} >= {"base", "iknp", sender}


async def test_both_directions_concurrently_with_flavours(nprng: np.random.Generator) -> None:
    n, bits = 5000, 37
    m0 = nprng.integers(0, 2**bits, size=n, dtype=np.uint64)
    m1 = nprng.integers(0, 2**bits, size=n, dtype=np.uint64)
    c = nprng.integers(0, 2, size=n).astype(np.uint8)
    corr = nprng.integers(0, 2**bits, size=n, dtype=np.uint64)

    async def server(p: Party) -> Any:
        return await asyncio.gather(
            chosen_ot(p, "ch", sender="server", bits=bits, messages=(m0, m1)),
            correlated_ot(p, "co", sender="client", bits=bits, choices=c),
        )

    async def client(p: Party) -> Any:
        return await asyncio.gather(
            chosen_ot(p, "ch", sender="server", bits=bits, choices=c),
            correlated_ot(p, "co", sender="client", bits=bits, correlation=corr),
        )

    (none, x_recv), (got, x_send) = await run_local(server, client, options={"ot": "silent-toy"})
    assert none is None
    assert np.array_equal(got, np.where(c == 1, m1, m0))
    mask = np.uint64((1 << bits) - 1)
    assert np.array_equal((x_recv - x_send) & mask, (c.astype(np.uint64) * corr) & mask)


async def test_offline_bytes_are_the_extension_messages() -> None:
    """The sender's traffic on the extension label is the Ferret messages plus small framing, nothing else."""

    async def run(p: Party) -> Any:
        e = get_engine(p)
        await e.precompute(20_000, sender="server")
        return p.channel.stats().labels["ot/silent-toy/server"], e.history("server")

    (st, history), (_, history_c) = await run_local(run, run, options={"ot": "silent-toy"})
    assert history == history_c and history[0] == "toy-boot" and "toy-main" in history
    payload = sum(16 + TOY.by_name(name).message_bytes for name in history)
    assert payload <= st.bytes_sent <= payload + 64 * st.msgs_sent
    assert st.msgs_sent == st.msgs_recv == len(history)
    assert st.bytes_recv < 40 * len(history)  # the receiver's requests: one set name each


async def test_session_option_selects_the_engine_and_must_agree() -> None:
    async def kind(p: Party) -> str:
        return type(get_engine(p)).__name__

    assert await run_local(kind, kind, options={"ot": "silent"}) == ("SilentEngine", "SilentEngine")

    from aiompc.channel import Channel
    from aiompc.session import client_handshake, run_pair, server_handshake
    from aiompc.transports.memory import memory_pair

    ts, tc = memory_pair()
    server = Party("server", Channel(ts), options={"ot": "silent"})
    client = Party("client", Channel(tc), options={"ot": "iknp"})
    with pytest.raises(HandshakeError, match="'ot' differs"):
        await run_pair(server, client, server_handshake, client_handshake)


async def test_published_bootstrap_set_end_to_end() -> None:
    """The real bootstrap (base OT + IKNP + one bootstrap-set extension): correct and quick."""
    async def run(p: Party) -> Any:
        e = get_engine(p)
        t0 = time.perf_counter()
        out = await e.cots("real", 40_000, sender="client")
        return out, len(e.history("client")), time.perf_counter() - t0

    (r, ext, dt), (s, _, _) = await run_local(run, run, options={"ot": "silent"})
    check_cots(s, r)
    balanced(r.choices)
    assert ext == 1 and BOOTSTRAP.gain > 40_000
    assert dt < 10.0


@pytest.mark.parametrize("kind", ["silent-toy", "silent"])
async def test_relu_runs_unchanged_on_the_silent_engine(kind: str, nprng: np.random.Generator) -> None:
    """A non-linear protocol, untouched, on top of the engine (the full suite: AIOMPC_TEST_OT=silent)."""
    from aiompc.crypto.prg import PRG
    from aiompc.ring import from_signed, reconstruct, share, to_signed
    from aiompc.protocols.nonlinear import relu

    l = 37
    x = np.concatenate([[0, 1, -1, -(1 << (l - 1)), (1 << (l - 1)) - 1], nprng.integers(-(1 << 36), 1 << 36, size=1500)])
    xs, xc = share(from_signed(x, l), l, PRG())

    async def run(p: Party) -> np.ndarray:
        return await relu(p, "relu", xs if p.is_server else xc, l=l)

    ys, yc = await run_local(run, run, options={"ot": kind})
    assert np.array_equal(to_signed(reconstruct(ys, yc, l), l), np.maximum(x, 0))


@pytest.mark.parametrize("hint", [0, 10**6])
async def test_demand_hint_skips_the_bootstrap_rentals(hint: int) -> None:
    """With a large expected demand every extension after the first is main; without, small requests
    rent the bootstrap set first (ski rental).  The COTs are correct either way."""
    sizes = [600] * 4

    async def run(p: Party) -> tuple[list[Any], list[str]]:
        e = get_engine(p)
        e.expect(hint)
        out = [await e.cots(f"h{i}", n, sender="server") for i, n in enumerate(sizes)]
        return out, e.history("server")

    (res_s, hist_s), (res_c, hist_c) = await run_local(run, run, options={"ot": "silent-toy"})
    assert hist_s == hist_c
    assert hist_c[0] == "toy-boot"
    if hint:
        assert set(hist_c[1:]) == {"toy-main"}
    else:
        assert "toy-boot" in hist_c[1:]
    for s, r in zip(res_s, res_c):
        check_cots(s, r)


async def test_a_failed_extension_closes_the_session_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    """The COT sender's background pump fails (here: its Ferret extension raises) while its party waits for
    the receiver's allocation message, which the receiver only sends once the extension it asked for has
    arrived: without closing the channel both parties would wait for each other for ever.  Both must
    fail promptly with typed errors, the root cause visible."""
    from aiompc.crypto.ferret.extension import FerretSender
    from aiompc.errors import AiompcError, ProtocolError

    calls = {"n": 0}
    respond = FerretSender.respond

    def failing(self: FerretSender, p: Any) -> bytes:
        calls["n"] += 1
        if calls["n"] > 1:
            raise ProtocolError("injected extension failure")
        return respond(self, p)

    monkeypatch.setattr(FerretSender, "respond", failing)

    async def run(p: Party) -> None:
        e = get_engine(p)
        for i in range(6):  # several extensions in direction "server"
            await e.cots(f"f{i}", 3000, sender="server")

    t0 = time.perf_counter()
    with pytest.raises(AiompcError, match="injected extension failure"):
        await asyncio.wait_for(run_local(run, run, options={"ot": "silent-toy"}), 20)
    assert time.perf_counter() - t0 < 10


async def _warm_then_big(server_sleep: float, client_sleep: float, server_n: int, big: int = 3000) -> Any:
    """Both sides take 500 COTs (bootstrap-set extensions), then the client (COT receiver) asks for ``big``
    (a main-set request: more than the bootstrap gain of 672) while the server (COT sender) asks for
    ``server_n`` on the same label after ``server_sleep`` seconds."""

    async def server(p: Party) -> Any:
        e = get_engine(p)
        await e.sender_cots("warm", 500, sender="server")
        await asyncio.sleep(server_sleep)
        return await e.sender_cots("big", server_n, sender="server"), e.history("server")

    async def client(p: Party) -> Any:
        e = get_engine(p)
        await e.receiver_cots("warm", 500, sender="server")
        await asyncio.sleep(client_sleep)
        return await e.receiver_cots("big", big, sender="server"), e.history("server")

    return await run_local(server, client, options={"ot": "silent-toy"})


@pytest.mark.parametrize("who_waits", ["sender", "receiver"])
async def test_a_main_set_request_waits_for_a_slower_honest_sender(who_waits: str) -> None:
    """The receiver may ask for the main set before the sender's own matching call has registered its
    demand (the sender is a step behind): the sender waits for its demand instead of calling the
    receiver a cheat.  Either order gives correct COTs and the same extension history."""
    lag = 0.3
    (s, hist_s), (r, hist_r) = await _warm_then_big(lag if who_waits == "sender" else 0,
                                                    lag if who_waits == "receiver" else 0, 3000)
    check_cots(s, r)
    assert hist_s == hist_r and "toy-main" in hist_r


async def test_a_main_set_request_beyond_the_senders_demand_is_refused_after_the_grace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A receiver asking for a main-set extension that the sender's own demand never calls for (here its
    call asks for 100 COTs, the receiver's for 3000) is refused with LimitExceeded once the budget's
    grace has passed, before the sender computes the extension."""
    from aiompc.crypto.ferret.extension import FerretSender
    from aiompc.errors import LimitExceeded
    from aiompc.protocols.ot.engine import WorkBudget

    monkeypatch.setattr(WorkBudget, "grace", 0.3)
    computed: list[str] = []
    respond = FerretSender.respond

    def spy(self: FerretSender, p: Any) -> bytes:
        computed.append(p.name)
        return respond(self, p)

    monkeypatch.setattr(FerretSender, "respond", spy)
    t0 = time.perf_counter()
    with pytest.raises(LimitExceeded, match="toy-main"):
        await asyncio.wait_for(_warm_then_big(0, 0, 100), 20)
    assert time.perf_counter() - t0 >= 0.3
    assert "toy-main" not in computed


async def test_a_receiver_with_a_larger_demand_hint_than_the_sender_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """expect() must get the same value on both sides: a receiver whose hint makes it ask for the main set
    while the sender's own hint (0) and demand (small calls) never call for it is refused (LimitExceeded
    after the grace); with the same hint on both sides the same calls run."""
    from aiompc.errors import LimitExceeded
    from aiompc.protocols.ot.engine import WorkBudget

    monkeypatch.setattr(WorkBudget, "grace", 0.3)

    def run(hint_server: int, hint_client: int) -> Any:
        async def job(p: Party) -> list[str]:
            e = get_engine(p)
            e.expect(hint_server if p.is_server else hint_client)
            for i in range(20):
                await e.cots(f"s{i}", 100, sender="server")
            return e.history("server")

        return run_local(job, job, options={"ot": "silent-toy"})

    hist_s, hist_c = await run(10**6, 10**6)
    assert hist_s == hist_c and "toy-main" in hist_c
    with pytest.raises(LimitExceeded, match="toy-main"):
        await asyncio.wait_for(run(0, 10**6), 20)
