"""Sessions: the handshake, running both parties locally, and listening/connecting over URLs.

* :func:`run_local` runs ``server_fn(party)`` and ``client_fn(party)`` in one event loop over the
  in-memory transport (the test harness) and returns both results.
* :func:`listen` serves sessions at a URL of any scheme of :data:`aiompc.transports.registry.SCHEMES`
  (``tcp://host:port``, ``tls://host:port`` given an ``ssl`` context, ``ws://host:port/path``,
  ``wss://host:port/path``); every accepted connection becomes a server
  :class:`Party` after the handshake and is handed to ``handler(party)``.  Sessions are independent: one
  failing session is logged (never with secrets) and closed, and the server keeps serving the others.
* :func:`connect` opens a client :class:`Party` to such a URL (``await connect(url)`` or
  ``async with connect(url) as party``).

Handshake (label ``"handshake"``): the client sends ``{"proto", "version", "role": "client", "options"}``;
the server checks protocol, version and roles, merges the options (a key set to different values on
the two sides is a mismatch) and answers ``{"ok": True, "options": merged, "meta": ...}`` or
``{"ok": False, "error": ...}``.  Any failure raises :class:`HandshakeError` on both sides with a
message saying which value differs.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from typing import Any, Awaitable, Callable, Generator, TypeVar

from aiompc.channel import Channel
from aiompc.errors import AiompcError, HandshakeError, TransportClosed
from aiompc.party import Party
from aiompc.transports.base import DEFAULT_MAX_MESSAGE_SIZE, Transport
from aiompc.transports.base import Server as TransportServer
from aiompc.transports.memory import memory_pair
from aiompc.transports.registry import Endpoint, open_transport, parse_url, serve_transports

__all__ = ["run_local", "listen", "connect", "Server", "PROTOCOL_NAME", "PROTOCOL_VERSION", "parse_url"]

log = logging.getLogger("aiompc.session")

PROTOCOL_NAME = "aiompc"
PROTOCOL_VERSION = 1
HANDSHAKE_TIMEOUT = 30.0
T = TypeVar("T")
U = TypeVar("U")
PartyFn = Callable[[Party], Awaitable[Any]]
TransportWrapper = Callable[[Transport], Transport]
"""Applied to each connection's transport before the party is made (e.g. :func:`aiompc.transports.shaped.shape`)."""


# --------------------------------------------------------------------------- local runs


async def run_local(
    server_fn: Callable[[Party], Awaitable[T]],
    client_fn: Callable[[Party], Awaitable[U]],
    *,
    options: dict[str, Any] | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> tuple[T, U]:
    """Run both parties over an in-memory transport; return ``(server_result, client_result)``.

    If either side raises, the other side's channel is closed (so it cannot hang on a ``recv``) and the
    first error is re-raised.
    """
    ts, tc = memory_pair(max_message_size)
    server = Party("server", Channel(ts), options=options)
    client = Party("client", Channel(tc), options=options)
    return await run_pair(server, client, server_fn, client_fn)


async def run_pair(
    server: Party,
    client: Party,
    server_fn: Callable[[Party], Awaitable[T]],
    client_fn: Callable[[Party], Awaitable[U]],
) -> tuple[T, U]:
    """Run two connected parties' coroutines to completion, closing both on the first failure."""

    async def guarded(party: Party, fn: Callable[[Party], Awaitable[Any]]) -> Any:
        try:
            return await fn(party)
        except BaseException:
            await server.close()
            await client.close()
            raise

    st = asyncio.ensure_future(guarded(server, server_fn))
    ct = asyncio.ensure_future(guarded(client, client_fn))
    try:
        res = await asyncio.gather(st, ct, return_exceptions=True)
    finally:
        await server.close()
        await client.close()
    errors = [r for r in res if isinstance(r, BaseException)]
    if errors:
        # prefer the root cause over the TransportClosed it provoked on the other side
        primary = next((e for e in errors if not isinstance(e, TransportClosed)), errors[0])
        raise primary
    return res[0], res[1]


# --------------------------------------------------------------------------- handshake


def _merge_options(server: dict[str, Any], client: dict[str, Any]) -> dict[str, Any]:
    merged = dict(server)
    for key, value in client.items():
        if key in merged and merged[key] != value:
            raise HandshakeError(
                f"option {key!r} differs: server uses {merged[key]!r}, client asked for {value!r}; "
                "configure both sides alike"
            )
        merged[key] = value
    return merged


async def client_handshake(party: Party, timeout: float = HANDSHAKE_TIMEOUT) -> dict[str, Any]:
    """Client side of the handshake; sets ``party.options`` and returns the server's metadata."""
    sub = party.sub("handshake")
    await sub.send({"proto": PROTOCOL_NAME, "version": PROTOCOL_VERSION, "role": party.role, "options": party.options})
    try:
        reply = await asyncio.wait_for(sub.recv(), timeout)
    except TimeoutError:
        raise HandshakeError(f"no handshake reply within {timeout} s; is the server an aiompc server?") from None
    if not isinstance(reply, dict) or "ok" not in reply:
        raise HandshakeError("malformed handshake reply; is the server an aiompc server?")
    if not reply["ok"]:
        raise HandshakeError(f"server refused the session: {reply.get('error', 'no reason given')}")
    options = reply.get("options")
    if not isinstance(options, dict):
        raise HandshakeError("malformed handshake reply: no options")
    party.options = options
    return reply.get("meta") or {}


async def server_handshake(party: Party, meta: dict[str, Any] | None = None, timeout: float = HANDSHAKE_TIMEOUT) -> None:
    """Server side of the handshake; sets ``party.options`` to the merged options."""
    sub = party.sub("handshake")
    try:
        hello = await asyncio.wait_for(sub.recv(), timeout)
    except TimeoutError:
        raise HandshakeError(f"no handshake from the client within {timeout} s") from None
    try:
        if not isinstance(hello, dict) or hello.get("proto") != PROTOCOL_NAME:
            raise HandshakeError("peer is not an aiompc client (bad protocol name)")
        if hello.get("version") != PROTOCOL_VERSION:
            raise HandshakeError(
                f"protocol version mismatch: server speaks {PROTOCOL_VERSION}, client {hello.get('version')!r}; "
                "upgrade the older side"
            )
        if hello.get("role") != party.peer_role:
            raise HandshakeError(f"role mismatch: both sides claim to be {hello.get('role')!r}")
        options = hello.get("options")
        if not isinstance(options, dict):
            raise HandshakeError("malformed handshake: options must be a map")
        merged = _merge_options(party.options, options)
    except HandshakeError as exc:
        await sub.send({"ok": False, "error": str(exc)})
        raise
    party.options = merged
    await sub.send({"ok": True, "options": merged, "meta": meta or {}})


# --------------------------------------------------------------------------- serving


class Server:
    """A listening aiompc server; use as an async context manager or call :meth:`close`."""

    def __init__(self, inner: TransportServer, endpoint: Endpoint) -> None:
        self._inner = inner
        self.endpoint = endpoint
        self.sessions_ok = 0
        self.sessions_failed = 0

    @property
    def port(self) -> int:
        return int(self._inner.port)

    @property
    def url(self) -> str:
        return self.endpoint.url(self.port)

    async def close(self) -> None:
        await self._inner.close()

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def listen(
    handler: PartyFn,
    url: str,
    *,
    ssl: ssl_module.SSLContext | None = None,
    options: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    transport_wrapper: TransportWrapper | None = None,
) -> Server:
    """Serve sessions at ``url``; ``handler(party)`` runs once per session after the handshake.

    ``transport_wrapper`` (optional) wraps each accepted transport, e.g. in a link emulation."""
    ep = parse_url(url)
    server: Server

    async def on_transport(transport: Transport) -> None:
        if transport_wrapper is not None:
            transport = transport_wrapper(transport)
        party = Party("server", Channel(transport), options=options)
        try:
            await server_handshake(party, meta)
            await handler(party)
            server.sessions_ok += 1
        except AiompcError as exc:
            server.sessions_failed += 1
            log.warning("session failed: %s: %s", type(exc).__name__, exc)
        except Exception:  # noqa: BLE001 - a broken session must not take the server down
            server.sessions_failed += 1
            log.exception("session failed with an unexpected error")
        finally:
            await party.close()

    inner = await serve_transports(on_transport, ep, ssl=ssl, max_message_size=max_message_size)
    server = Server(inner, ep)
    return server


class _Connect:
    """Awaitable and async context manager returned by :func:`connect`."""

    def __init__(self, url: str, ssl: ssl_module.SSLContext | None, options: dict[str, Any] | None, max_message_size: int,
                 transport_wrapper: TransportWrapper | None = None) -> None:
        self._args = (url, ssl, options, max_message_size)
        self._wrap = transport_wrapper
        self._party: Party | None = None
        self.meta: dict[str, Any] = {}

    async def _open(self) -> Party:
        url, ssl, options, max_message_size = self._args
        transport = await open_transport(parse_url(url), ssl=ssl, max_message_size=max_message_size)
        if self._wrap is not None:
            transport = self._wrap(transport)
        party = Party("client", Channel(transport), options=options)
        try:
            self.meta = await client_handshake(party)
        except BaseException:
            await party.close()
            raise
        party.state["server_meta"] = self.meta
        self._party = party
        return party

    def __await__(self) -> Generator[Any, None, Party]:
        return self._open().__await__()

    async def __aenter__(self) -> Party:
        return await self._open()

    async def __aexit__(self, *exc: object) -> None:
        if self._party is not None:
            await self._party.close()


def connect(
    url: str,
    *,
    ssl: ssl_module.SSLContext | None = None,
    options: dict[str, Any] | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    transport_wrapper: TransportWrapper | None = None,
) -> _Connect:
    """Open a client session to ``url`` (``await connect(url)`` or ``async with connect(url) as party``).

    The server's handshake metadata is in ``party.state["server_meta"]``.  ``transport_wrapper``
    (optional) wraps the connected transport, e.g. in a link emulation.
    """
    return _Connect(url, ssl, options, max_message_size, transport_wrapper)
