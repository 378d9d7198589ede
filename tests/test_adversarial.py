"""A hostile client against ``aiompc.serve`` over real TCP and WebSocket on 127.0.0.1 (issue 23).

One test per attack.  Each runs the attack while an honest client is served by the same server, and
asserts (1) what the server held unread stayed under its bound (the channel's charged bytes, sampled
during the attack and its recorded peak), (2) the attacker got a typed error or was dropped, and (3) the
honest client got the correct prediction.  The server runs with small limits so that each attack trips
them in well under a second of traffic.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any, Awaitable, Callable

import numpy as np
import pytest

import aiompc
from aiompc import wire
from aiompc.channel import Limits
from aiompc.errors import AccessDenied, MessageTooLarge, ProtocolError, ServerBusy, TransportClosed
from aiompc.nn.interpret import run_int
from aiompc.nn.testing import random_qgraph
from aiompc.session import HANDSHAKE_MAX_BYTES, ServerPolicy, connect
from aiompc.transports.base import Transport
from aiompc.transports.registry import open_transport, parse_url

SCHEMES = ["tcp", "ws"]
MiB = 1 << 20
LIMITS = Limits(max_buffered_bytes=4 * MiB, max_label_bytes=2 * MiB, max_pending_labels=64,
                max_decoded_bytes=8 * MiB, stall_timeout=0.3)
POLICY = ServerPolicy(max_sessions=4, queue_timeout=0.5, handshake_timeout=1.0, idle_timeout=3.0,
                      session_deadline=60.0, channel=LIMITS)
MAX_MESSAGE = 4 * MiB
HOLD = LIMITS.max_buffered_bytes + MAX_MESSAGE + 64 * 1024  # the most one connection's channel may hold


@pytest.fixture(scope="module")
def model() -> tuple[Any, Any]:
    return random_qgraph(1)


def _url(scheme: str) -> str:
    return "ws://127.0.0.1:0/aiompc" if scheme == "ws" else "tcp://127.0.0.1:0"


def _frame(label: str, payload: bytes) -> bytes:
    lab = label.encode()
    return struct.pack("<H", len(lab)) + lab + payload


async def _serve(model: tuple[Any, Any], scheme: str, policy: ServerPolicy = POLICY) -> aiompc.Server:
    graph, _ = model
    return await aiompc.serve(graph, _url(scheme), policy=policy, max_message_size=MAX_MESSAGE)


async def _honest(model: tuple[Any, Any], url: str, **kw: Any) -> None:
    graph, net = model
    x = net.inputs[:2]
    y = await aiompc.infer(x, url, **kw)
    assert np.array_equal(y, graph.dequantize_output(run_int(graph, graph.quantize_input(x))))


class _Watch:
    """Samples the server's unread bytes every few milliseconds while an attack runs."""

    def __init__(self, server: aiompc.Server) -> None:
        self.server = server
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.server.buffered_bytes)
            await asyncio.sleep(0.002)

    async def __aenter__(self) -> "_Watch":
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.peak = max(self.peak, self.server.peak_buffered)


async def _raw(url: str) -> Transport:
    return await open_transport(parse_url(url), ssl=None, max_message_size=1 << 30)


async def _until_dropped(t: Transport, timeout: float = 10.0) -> BaseException:
    """Keep receiving until the server drops us; the error we saw (a dropped attacker sees TransportClosed)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await t.recv()
    except (TransportClosed, ProtocolError, MessageTooLarge) as exc:
        return exc
    finally:
        await t.close()


async def _raw_dropped_after(url: str, send: Callable[[Transport], Awaitable[Any]]) -> BaseException:
    """Connect without a handshake, run ``send`` on the raw transport (the server may close it meanwhile), then
    wait for the server to drop us; the error we saw."""
    t = await _raw(url)
    try:
        await send(t)
    except TransportClosed:
        pass
    return await _until_dropped(t)


async def _attack_with_honest(server: aiompc.Server, model: tuple[Any, Any],
                              attack: Callable[[], Awaitable[Any]], **honest: Any) -> Any:
    async with _Watch(server) as watch:
        got, _ = await asyncio.gather(attack(), _honest(model, server.url, **honest))
        await _settle(server)
    assert watch.peak <= HOLD, f"the server held {watch.peak} unread bytes (bound {HOLD})"
    assert server.peak_of("failed") <= HOLD
    assert server.peak_of("ok") > 0  # the honest session ran on this server
    return got


def _failures(server: aiompc.Server) -> set[str]:
    return {r.error for r in server.recent if r.outcome == "failed"}


async def _settle(server: aiompc.Server, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while server.connections and time.monotonic() < end:
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- before the handshake


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_flood_on_a_junk_label_before_the_handshake_is_dropped(model, scheme: str) -> None:
    async with await _serve(model, scheme) as server:
        async def junk(t: Transport) -> None:
            for _ in range(64):  # 64 x 60 KiB: would be 3.75 MiB if the server buffered it
                await t.send(_frame("junk", bytes(60 * 1024)))

        err = await _attack_with_honest(server, model, lambda: _raw_dropped_after(server.url, junk))
        assert isinstance(err, TransportClosed)
        assert server.sessions_failed >= 1 and server.sessions_ok >= 1
        assert _failures(server) == {"LimitExceeded"}
        assert server.peak_of("failed") <= HANDSHAKE_MAX_BYTES + LIMITS.message_cost


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_oversized_message_before_the_handshake_is_refused_from_its_header(model, scheme: str) -> None:
    async with await _serve(model, scheme) as server:
        err = await _attack_with_honest(server, model, lambda: _raw_dropped_after(
            server.url, lambda t: t.send(_frame("handshake", bytes(2 * HANDSHAKE_MAX_BYTES)))))
        assert isinstance(err, (TransportClosed, MessageTooLarge))
        assert server.peak_of("failed") < HANDSHAKE_MAX_BYTES
        assert _failures(server) == {"MessageTooLarge"}


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_silent_connections_are_dropped_by_the_handshake_timeout(model, scheme: str) -> None:
    async with await _serve(model, scheme) as server:
        async def attack() -> list[BaseException]:
            ts = [await _raw(server.url) for _ in range(8)]
            start = time.monotonic()
            errs = await asyncio.gather(*(_until_dropped(t) for t in ts))
            assert time.monotonic() - start < POLICY.handshake_timeout + 3
            return errs

        errs = await _attack_with_honest(server, model, attack)
        assert all(isinstance(e, TransportClosed) for e in errs)
        assert _failures(server) == {"PeerTimeout"} and server.sessions_failed == 8


@pytest.mark.parametrize(("hello", "match"), [
    ({"proto": "aiompc", "version": 1, "role": "client", "options": {"mode": wire.Packed(np.zeros(4, np.uint64), 3)}},
     "type ndarray"),
    ({"proto": "aiompc", "version": 1, "role": "client", "options": {"mode": "x" * 5000}}, "longer than"),
    ({"proto": "aiompc", "version": 1, "role": "client", "options": {f"k{i}": i for i in range(100)}}, "100 options"),
    ({"proto": "aiompc", "version": 1, "role": "client", "options": {"a": float("nan")}}, "finite"),
    ({"proto": "aiompc", "version": [1], "role": "client", "options": {}}, "version mismatch"),
    ({"proto": "aiompc", "version": 1, "role": {"x": 1}, "options": {}}, "role mismatch"),
    ({"proto": "aiompc", "version": 1, "role": "client", "options": [1, 2]}, "options must be a map"),
    ({"proto": "aiompc", "version": 1, "role": "client", "options": {}, "extra": 1}, "unknown field"),
    ({"proto": "aiompc", "version": 1, "role": "client", "options": {}, "token": 5}, "token"),
    ([1, 2, 3], "not an aiompc client"),
])
async def test_malformed_handshake_fields_get_a_typed_refusal(model, hello: Any, match: str) -> None:
    token = "s3cret" if match == "token" else None
    policy = ServerPolicy(max_sessions=4, handshake_timeout=2.0, channel=LIMITS, token=token)
    async with await _serve(model, "tcp", policy) as server:
        async def attack() -> dict[str, Any]:
            t = await _raw(server.url)
            await t.send(_frame("handshake", wire.encode(hello)))
            reply = wire.decode((await t.recv())[2 + len("handshake"):])
            await _until_dropped(t)
            return reply

        reply = await _attack_with_honest(server, model, attack, token=token)
        assert reply["ok"] is False and match in reply["error"]
        assert server.sessions_failed == 1


# --------------------------------------------------------------------------- after the handshake


async def _handshaken(url: str) -> aiompc.Party:
    return await connect(url)


async def _dropped_after(url: str, send: Callable[[aiompc.Party], Awaitable[Any]],
                         errors: tuple[type[BaseException], ...] = (TransportClosed,)) -> BaseException:
    """Handshake, run ``send`` on the session, then wait (10 s at most) for the server to drop us; the error we
    saw (one of ``errors``)."""
    party = await _handshaken(url)
    try:
        await send(party)
        async with asyncio.timeout(10):
            await party.sub("never").recv()  # the server must drop us
    except errors as exc:
        return exc
    finally:
        await party.close()
    raise AssertionError("the server did not drop us")


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_flood_on_a_label_nobody_reads_after_the_handshake_is_bounded_then_dropped(model, scheme: str) -> None:
    async with await _serve(model, scheme) as server:
        async def attack() -> BaseException | None:
            party = await _handshaken(server.url)
            junk = party.sub("junk")
            try:
                for _ in range(256):  # 256 MiB offered; the server may hold 4 MiB (+ transport buffers)
                    await junk.send_bytes(bytes(MiB))
            except TransportClosed as exc:
                return exc
            finally:
                await party.close()
            return None

        err = await _attack_with_honest(server, model, attack)
        assert isinstance(err, TransportClosed)  # back-pressure, then the server closed the session
        assert server.sessions_failed >= 1
        assert _failures(server) == {"LimitExceeded"}


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_flood_of_distinct_labels_is_refused(model, scheme: str) -> None:
    async with await _serve(model, scheme) as server:
        async def labels(party: aiompc.Party) -> None:
            for i in range(10_000):
                await party.sub(f"l{i}").send_bytes(b"x")

        err = await _attack_with_honest(server, model, lambda: _dropped_after(server.url, labels))
        assert isinstance(err, TransportClosed)
        assert max(r.peak_pending_labels for r in server.recent) <= LIMITS.max_pending_labels
        assert _failures(server) == {"LimitExceeded"}


_BOMBS = {
    # 2 MiB on the wire, 16 MiB even as uint8 (the narrowest dtype): over the 8 MiB decode budget
    "bit-packed": lambda: wire.Packed(np.zeros(16 * MiB, np.uint8), 1),
    # 1 MiB on the wire, 2^20 empty lists (64 MiB as Python lists), in lists short enough for the per-list cap
    "containers": lambda: [[[]] * 256] * 4096,
}


@pytest.mark.parametrize("bomb", sorted(_BOMBS))
@pytest.mark.parametrize("scheme", SCHEMES)
async def test_decode_bomb_is_refused_before_it_expands(model, scheme: str, bomb: str) -> None:
    async with await _serve(model, scheme) as server:
        err = await _attack_with_honest(
            server, model, lambda: _dropped_after(server.url, lambda party: party.sub("request").send(_BOMBS[bomb]())))
        assert isinstance(err, TransportClosed)
        assert _failures(server) == {"LimitExceeded"}


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_oversized_message_after_the_handshake_closes_the_session(model, scheme: str) -> None:
    async with await _serve(model, scheme) as server:
        def oversized(party: aiompc.Party) -> Awaitable[None]:
            return party.channel.transport.send(_frame("request", bytes(MAX_MESSAGE + 1)))

        err = await _attack_with_honest(
            server, model, lambda: _dropped_after(server.url, oversized, (TransportClosed, MessageTooLarge)))
        assert isinstance(err, (TransportClosed, MessageTooLarge))


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_silent_client_after_the_handshake_is_dropped_by_the_idle_timeout(model, scheme: str) -> None:
    async with await _serve(model, scheme) as server:
        async def attack() -> float:
            party = await _handshaken(server.url)
            start = time.monotonic()
            try:
                async with asyncio.timeout(POLICY.idle_timeout + 5):
                    await party.sub("never").recv()  # the server must drop us
            except TransportClosed:
                pass
            finally:
                await party.close()
            return time.monotonic() - start

        waited = await _attack_with_honest(server, model, attack)
        assert POLICY.idle_timeout - 0.5 <= waited <= POLICY.idle_timeout + 3
        assert _failures(server) == {"PeerTimeout"}


# --------------------------------------------------------------------------- admission and access


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_sessions_beyond_the_cap_get_server_busy_not_a_hang(model, scheme: str) -> None:
    policy = ServerPolicy(max_sessions=2, max_waiting=1, queue_timeout=0.3, handshake_timeout=1.0,
                          idle_timeout=4.0, channel=LIMITS)
    async with await _serve(model, scheme, policy) as server:
        hogs = [await _handshaken(server.url) for _ in range(2)]  # hold both slots, say nothing
        try:
            start = time.monotonic()
            with pytest.raises(ServerBusy, match="try again"):
                await _honest(model, server.url)
            assert time.monotonic() - start < 4.0  # queue_timeout 0.3 s: an answer, not a hang
        finally:
            for p in hogs:
                await p.close()
        await asyncio.sleep(0.1)
        await _honest(model, server.url)  # the slots are free again
        assert server.sessions_refused >= 1


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_a_server_with_a_token_refuses_a_missing_or_wrong_one(model, scheme: str) -> None:
    policy = ServerPolicy(max_sessions=4, handshake_timeout=1.0, channel=LIMITS, token="correct horse")
    async with await _serve(model, scheme, policy) as server:
        with pytest.raises(AccessDenied, match="none"):
            await _honest(model, server.url)
        with pytest.raises(AccessDenied, match="wrong"):
            await _honest(model, server.url, token="battery staple")
        await _honest(model, server.url, token="correct horse")



# --------------------------------------------------------------------------- logs


async def test_logs_name_the_session_and_peer_escape_peer_strings_and_keep_probes_at_debug(
        model, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="aiompc.session")
    async with await _serve(model, "tcp") as server:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)  # a port probe
        writer.close()
        await writer.wait_closed()
        evil = "\x1b[2J\nFAKE LOG LINE " + "A" * 5000
        t = await _raw(server.url)
        await t.send(_frame("handshake", wire.encode({"proto": "aiompc", "version": 1, "role": evil, "options": {}})))
        await _until_dropped(t)
        await _settle(server)
    probe = [r for r in caplog.records if "before the handshake" in r.getMessage()]
    assert probe and all(r.levelname == "DEBUG" for r in probe)
    (failed,) = [r for r in caplog.records if r.levelname == "WARNING" and "role mismatch" in r.getMessage()]
    line = failed.getMessage()
    assert "\x1b" not in line and "\n" not in line and "FAKE LOG LINE" in line  # escaped, one line
    assert len(line) < 600  # truncated, not 5000 characters
    assert "from 127.0.0.1:" in line and line.startswith("session ")


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_connections_beyond_the_cap_are_answered_busy_and_closed(model, scheme: str) -> None:
    policy = ServerPolicy(max_sessions=1, max_connections=4, handshake_timeout=2.0, channel=LIMITS)
    async with await _serve(model, scheme, policy) as server:
        silent = [await _raw(server.url) for _ in range(4)]  # fill the connection cap, say nothing
        await asyncio.sleep(0.2)
        try:
            with pytest.raises(ServerBusy, match="too many open connections"):
                await _honest(model, server.url)
        finally:
            for t in silent:
                await t.close()
        await _settle(server)
        await _honest(model, server.url)  # served once the silent ones are gone


# --------------------------------------------------------------------------- work amplification


class _GreedyReceiver:
    """Wraps the silent engine's honest receiver source: on its first extension it asks for ``times``
    extensions in a row (a few bytes each), absorbs only the first and waits for the other answers — the
    "four 31-byte requests" attack, made by a client that otherwise follows the protocol."""

    def __init__(self, inner: Any, times: int) -> None:
        self.inner, self.times, self.unit = inner, times, inner.unit

    async def generate(self, n: int) -> Any:
        src = self.inner
        if self.times > 1:
            p = src.ferret.choose(n)
            for name in [p.name] + [src.ferret.schedule.main.name] * (self.times - 1):
                await src.sub.send(name)
            pieces = await src.party.compute(src.ferret.absorb, p, await src.sub.recv_bytes())
            src.pieces.extend(pieces)
            src.available += sum(piece.shape[0] for piece in pieces)
            for _ in range(self.times - 1):  # collect (and drop) the answers: the server did the work
                await src.sub.recv_bytes()
            self.times = 0
        return await src.generate(n)


async def _greedy_client(model: tuple[Any, Any], url: str, times: int) -> BaseException | None:
    from aiompc.nn.modes import EngineConfig
    from aiompc.nn.service import client_session, input_batch
    from aiompc.protocols.ot.silent import SilentEngine

    class Greedy(SilentEngine):
        async def open_receiver(self, sender: Any) -> Any:
            return _GreedyReceiver(await super().open_receiver(sender), times if sender == "server" else 1)

    graph, net = model
    try:
        async with connect(url) as party:
            party.state["ot_engine"] = Greedy(party)
            xq, _ = input_batch(graph, net.inputs[:2])
            await client_session(party, graph, xq, EngineConfig.from_options(party.options))
    except (TransportClosed, ProtocolError) as exc:
        return exc
    return None


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_repeated_ot_extension_requests_are_refused_by_the_work_budget(model, scheme: str,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from aiompc.protocols.ot.engine import WorkBudget

    monkeypatch.setattr(WorkBudget, "grace", 0.5)
    async with await _serve(model, scheme) as server:
        cpu = time.process_time()
        err = await _attack_with_honest(server, model, lambda: _greedy_client(model, server.url, 4))
        spent = time.process_time() - cpu
    assert isinstance(err, (TransportClosed, ProtocolError))  # the attacker was dropped
    assert _failures(server) == {"LimitExceeded"}  # refused by the budget, not by a timeout
    # four main-set extensions cost ~17.7 CPU-s before the budget; now at most one bootstrap-set extension
    # runs for the attacker (plus both honest sessions and the attacker's own client side, same process)
    assert spent < 12.0, f"{spent:.1f} CPU-s"
