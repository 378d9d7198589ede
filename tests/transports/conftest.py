"""Fixtures for the transport tests: connected pairs of every kind, TLS material, a counting TCP proxy.

All sockets are on 127.0.0.1.  ``make_pair`` is parametrised over every transport, so one test body in
``test_conformance.py`` runs against all of them.  Every async test here runs on both event loops the
runtime may use: plain asyncio and uvloop (where installed).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import numpy as np
import pytest

from aiompc.transports import tcp, websocket
from aiompc.transports.base import DEFAULT_MAX_MESSAGE_SIZE, Server, Transport
from aiompc.transports.memory import memory_pair
from aiompc.transports.shaped import LinkProfile, ShapedTransport

try:
    import uvloop
except ImportError:  # pragma: no cover - platform without uvloop
    uvloop = None  # type: ignore[assignment]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run each async transport test on asyncio's own loop and on uvloop (their transports differ)."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    if uvloop is not None:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


KINDS = ["memory", "tcp", "websocket", "shaped-memory", "shaped-tcp"]
FAST_LINK = LinkProfile(bandwidth_bytes_per_s=20e9, one_way_latency_s=50e-6)
"""Fast enough that the 64 MiB case stays quick, slow enough that shaping really happens."""

MakePair = Callable[..., Awaitable[tuple[Transport, Transport]]]


async def _park(transport: Transport) -> None:
    """A server handler that leaves the accepted transport to the test (cancelled at server close)."""
    await asyncio.get_running_loop().create_future()


async def network_pair(
    kind: str,
    max_a: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_b: int = DEFAULT_MAX_MESSAGE_SIZE,
    *,
    server_ssl: ssl.SSLContext | None = None,
    client_ssl: ssl.SSLContext | None = None,
    relay: Callable[[int], Awaitable[int]] | None = None,
) -> tuple[Transport, Transport, Server]:
    """``(client, accepted server-side transport, server)`` over real loopback sockets; with ``relay`` the
    client connects to the port ``await relay(server_port)`` returns (e.g. a :class:`CountingProxy`'s)."""
    accepted: asyncio.Queue[Transport] = asyncio.Queue()

    async def handler(transport: Transport) -> None:
        accepted.put_nowait(transport)
        await _park(transport)

    server: Server
    client: Transport
    if kind == "tcp":
        server = await tcp.serve(handler, "127.0.0.1", 0, ssl=server_ssl, max_message_size=max_b)
    elif kind == "websocket":
        server = await websocket.serve(handler, "127.0.0.1", 0, path="/mpc", ssl=server_ssl, max_message_size=max_b)
    else:
        raise ValueError(kind)
    port = server.port if relay is None else await relay(server.port)
    if kind == "tcp":
        client = await tcp.connect("127.0.0.1", port, ssl=client_ssl, max_message_size=max_a)
    else:
        scheme = "wss" if client_ssl is not None else "ws"
        client = await websocket.connect(f"{scheme}://127.0.0.1:{port}/mpc", ssl=client_ssl, max_message_size=max_a)
    return client, await accepted.get(), server


@pytest.fixture(params=KINDS)
async def make_pair(request: pytest.FixtureRequest) -> AsyncIterator[MakePair]:
    """``await make_pair(max_a=..., max_b=...)`` gives two connected endpoints ``(a, b)`` of one kind.

    For network kinds ``a`` is the connecting side and ``b`` the accepted one.  Everything made is
    closed at teardown.
    """
    kind: str = request.param
    transports: list[Transport] = []
    servers: list[Server] = []

    async def make(max_a: int = DEFAULT_MAX_MESSAGE_SIZE, max_b: int = DEFAULT_MAX_MESSAGE_SIZE) -> tuple[Transport, Transport]:
        base = kind.removeprefix("shaped-")
        a: Transport
        b: Transport
        if base == "memory":
            a, b = memory_pair(max_a)
            b.max_message_size = max_b
        else:
            a, b, server = await network_pair(base, max_a, max_b)
            servers.append(server)
        if kind.startswith("shaped-"):
            a = ShapedTransport(a, FAST_LINK.bandwidth_bytes_per_s, FAST_LINK.one_way_latency_s)
            b = ShapedTransport(b, FAST_LINK.bandwidth_bytes_per_s, FAST_LINK.one_way_latency_s)
        transports.extend((a, b))
        return a, b

    make.kind = kind  # type: ignore[attr-defined]
    yield make
    for transport in transports:
        await transport.close()
    for server in servers:
        await server.close()


@pytest.fixture(scope="session")
def big_payload() -> bytes:
    """64 MiB + 3 bytes of test data (numpy's generator: test data only, never secrets)."""
    return np.random.default_rng(2024).bytes(64 * 1024 * 1024 + 3)


# ------------------------------------------------------------------------------------------ TLS


@pytest.fixture(scope="session")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """``(server_context, client_context)`` for a throw-away self-signed certificate of 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder: Path = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    return server_ctx, client_ctx


# ------------------------------------------------------------------------------ counting proxy


class CountingProxy:
    """A TCP relay on 127.0.0.1 that counts the bytes it forwards in each direction.

    ``upstream`` counts client→server bytes, ``downstream`` server→client bytes, both as read from
    the sockets.  A byte is counted before it is forwarded, so once an endpoint has received a
    message every byte of it has been counted.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.upstream = 0
        self.downstream = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> "CountingProxy":
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def _relay(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        up = asyncio.ensure_future(self._pump(c_reader, s_writer, upstream=True))
        down = asyncio.ensure_future(self._pump(s_reader, c_writer, upstream=False))
        self._tasks.update((up, down))
        await asyncio.gather(up, down, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool) -> None:
        try:
            while chunk := await reader.read(1 << 16):
                if upstream:
                    self.upstream += len(chunk)
                else:
                    self.downstream += len(chunk)
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def check_exchange(
        self, client: Transport, peer: Transport, up_sizes: list[int], down_sizes: list[int]
    ) -> None:
        """Send messages of ``up_sizes`` bytes from ``client`` (connected through this proxy) to ``peer`` and of
        ``down_sizes`` back; assert they arrive whole and that the bytes counted meanwhile each way equal the
        payloads plus the overhead as each end computes it."""
        up0, down0 = self.upstream, self.downstream
        for n in up_sizes:
            await client.send(bytes(n))
        for n in down_sizes:
            await peer.send(bytes(n))
        assert [len(await peer.recv()) for _ in up_sizes] == up_sizes
        assert [len(await client.recv()) for _ in down_sizes] == down_sizes
        up, down = self.upstream - up0, self.downstream - down0
        assert up == sum(n + client.overhead(n, "send") for n in up_sizes)
        assert up == sum(n + peer.overhead(n, "recv") for n in up_sizes)
        assert down == sum(n + peer.overhead(n, "send") for n in down_sizes)
        assert down == sum(n + client.overhead(n, "recv") for n in down_sizes)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()


@pytest.fixture
async def counting_proxy() -> AsyncIterator[Callable[[int], Awaitable[CountingProxy]]]:
    """``await counting_proxy(target_port)`` starts a :class:`CountingProxy` (closed at teardown)."""
    proxies: list[CountingProxy] = []

    async def start(target_port: int) -> CountingProxy:
        proxy = await CountingProxy(target_port).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        await proxy.close()


@pytest.fixture
async def open_network_pair() -> AsyncIterator[Callable[..., Awaitable[tuple[Transport, Transport, Server]]]]:
    """``await open_network_pair("tcp"|"websocket", max_a, max_b, server_ssl=..., client_ssl=..., relay=...)``.

    Returns ``(client, accepted, server)``; all three are closed at teardown.
    """
    made: list[tuple[Transport, Transport, Server]] = []

    async def open_(*args: Any, **kwargs: Any) -> tuple[Transport, Transport, Server]:
        """:func:`network_pair` with these arguments."""
        made.append(await network_pair(*args, **kwargs))
        return made[-1]

    yield open_
    for client, accepted, server in made:
        await client.close()
        await accepted.close()
        await server.close()


@pytest.fixture
def proxied_pair(
    counting_proxy: Callable[[int], Awaitable[CountingProxy]],
    open_network_pair: Callable[..., Awaitable[tuple[Transport, Transport, Server]]],
) -> Callable[[str], Awaitable[tuple[Transport, Transport, CountingProxy]]]:
    """``await proxied_pair("tcp"|"websocket")``: ``(client, accepted, proxy)``, the client connected through a
    :class:`CountingProxy` (everything closed at teardown)."""

    async def open_(kind: str) -> tuple[Transport, Transport, CountingProxy]:
        proxies: list[CountingProxy] = []

        async def relay(port: int) -> int:
            proxies.append(await counting_proxy(port))
            return proxies[-1].port

        client, accepted, _ = await open_network_pair(kind, relay=relay)
        return client, accepted, proxies[0]

    return open_
