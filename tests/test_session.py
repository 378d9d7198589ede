import asyncio

import numpy as np
import pytest

import aiompc
from aiompc.errors import HandshakeError, InputError, TransportClosed
from aiompc.party import Party
from aiompc.session import connect, listen, parse_url, run_local


async def test_run_local_returns_both_results_and_options() -> None:
    async def s(p: Party) -> str:
        assert p.is_server and p.peer_role == "client"
        return p.options["k"]

    async def c(p: Party) -> str:
        return p.role

    assert await run_local(s, c, options={"k": 1}) == (1, "client")


async def test_run_local_failure_on_one_side_does_not_hang_the_other() -> None:
    async def s(p: Party) -> None:
        raise ValueError("boom")

    async def c(p: Party) -> None:
        await p.sub("never").recv()

    with pytest.raises(ValueError, match="boom"):
        await asyncio.wait_for(run_local(s, c), 5)


async def test_compute_runs_in_executor() -> None:
    import threading

    async def s(p: Party) -> bool:
        return await p.compute(lambda: threading.current_thread() is not threading.main_thread())

    async def c(p: Party) -> None:
        return None

    assert (await run_local(s, c))[0] is True


def test_parse_url() -> None:
    ep = parse_url("ws://127.0.0.1:8765/x")
    assert (ep.scheme, ep.host, ep.port, ep.path) == ("ws", "127.0.0.1", 8765, "/x")
    for bad in ("http://a:1", "tcp://a", "tcp://:1", "tcp://a:notaport"):
        with pytest.raises(InputError):
            parse_url(bad)


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
async def test_listen_connect_handshake_and_concurrent_sessions(scheme: str) -> None:
    path = "/mpc" if scheme == "ws" else ""

    async def handler(p: Party) -> None:
        sub = p.sub("echo")
        x = await sub.recv()
        await sub.send(x * 2)

    async with await listen(handler, f"{scheme}://127.0.0.1:0{path}", meta={"model": "m"}, options={"ot": "iknp"}) as server:

        async def client(i: int) -> np.ndarray:
            async with connect(server.url) as p:
                assert p.options["ot"] == "iknp" and p.state["server_meta"] == {"model": "m"}
                await p.sub("echo").send(np.arange(i + 1))
                return await p.sub("echo").recv()

        results = await asyncio.gather(*(client(i) for i in range(4)))
        assert [r.tolist() for r in results] == [list(range(0, 2 * (i + 1), 2)) for i in range(4)]


async def test_handshake_option_mismatch_fails_clearly_and_server_keeps_serving() -> None:
    async def handler(p: Party) -> None:
        await p.sub("x").send(p.options)

    async with await listen(handler, "tcp://127.0.0.1:0", options={"ot": "iknp"}) as server:
        with pytest.raises(HandshakeError, match="option 'ot' differs"):
            async with connect(server.url, options={"ot": "silent"}):
                pass
        async with connect(server.url) as p:  # a good client still gets served
            assert (await p.sub("x").recv())["ot"] == "iknp"
        await asyncio.sleep(0.05)
        assert server.sessions_failed == 1 and server.sessions_ok == 1


async def test_handler_crash_isolated_and_peer_sees_closed() -> None:
    async def handler(p: Party) -> None:
        if (await p.sub("x").recv()) == "crash":
            raise RuntimeError("handler bug")
        await p.sub("x").send("fine")

    async with await listen(handler, "tcp://127.0.0.1:0") as server:
        async with connect(server.url) as bad:
            await bad.sub("x").send("crash")
            with pytest.raises(TransportClosed):
                await asyncio.wait_for(bad.sub("x").recv(), 5)
        async with connect(server.url) as good:
            await good.sub("x").send("hello")
            assert await good.sub("x").recv() == "fine"


async def test_plain_url_with_ssl_context_refused() -> None:
    import ssl

    with pytest.raises(InputError):
        await connect("tcp://127.0.0.1:1", ssl=ssl.create_default_context())
    with pytest.raises(InputError):
        await connect("tls://127.0.0.1:1")


def test_run_helper_uses_an_event_loop() -> None:
    async def f() -> int:
        await asyncio.sleep(0)
        return 3

    assert aiompc.run(f()) == 3
