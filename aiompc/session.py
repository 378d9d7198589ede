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
``{"ok": False, "error": ...}`` (with ``"busy": True`` when the server is at its session limit, or
``"denied": True`` for a missing or wrong token).  Any failure raises :class:`HandshakeError` (or its
subclasses :class:`~aiompc.errors.ServerBusy`, :class:`~aiompc.errors.AccessDenied`) on both sides with
a message saying which value differs.  The fields are exactly :data:`HELLO_FIELDS` and
:data:`REPLY_FIELDS` (``SECURITY.md`` lists what each reveals); the client may add ``"token"``, a
shared secret the server compares in constant time and never echoes.

A server does not trust its clients (:class:`ServerPolicy`): before the handshake a connection may send
only a small message on the label ``"handshake"`` within :attr:`ServerPolicy.handshake_timeout`; after
it, the channel's :class:`~aiompc.channel.Limits` bound what the client can make the server buffer, an
idle timeout and a session deadline bound how long it can hold a session, and at most
:attr:`ServerPolicy.max_sessions` sessions run at once (more wait briefly in FIFO order, then get a
"server busy" answer); at most :attr:`ServerPolicy.max_connections` connections are open at all.
Logs carry a timestamp (configured by the CLI), the session id and the peer's address; peer-supplied
strings are escaped and truncated (:func:`aiompc.channel.show`).
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import math
import os
import secrets
import ssl as ssl_module
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Generator, TypeVar

from aiompc import heap
from aiompc.channel import Channel, Gate, Limits, show
from aiompc.errors import (AccessDenied, AiompcError, HandshakeError, InputError, PeerTimeout, ServerBusy,
                           TransportClosed)
from aiompc.party import Party
from aiompc.transports.base import DEFAULT_MAX_MESSAGE_SIZE, Transport
from aiompc.transports.base import Server as TransportServer
from aiompc.transports.memory import memory_pair
from aiompc.transports.registry import Endpoint, open_transport, parse_url, serve_transports

__all__ = ["run_local", "listen", "connect", "Server", "ServerPolicy", "PROTOCOL_NAME", "PROTOCOL_VERSION",
           "parse_url", "HELLO_FIELDS", "REPLY_FIELDS", "TOKEN_ENV", "TRUSTED_POLICY", "check_hello", "check_options",
           "merge_options"]

log = logging.getLogger("aiompc.session")

PROTOCOL_NAME = "aiompc"
PROTOCOL_VERSION = 1
HANDSHAKE_TIMEOUT = 30.0
HANDSHAKE_MAX_BYTES = 64 * 1024
"""The largest message a connection may send before its handshake succeeded."""
HELLO_FIELDS = frozenset({"proto", "version", "role", "options", "token"})
"""Every field a client's hello may carry (anything else is refused)."""
REPLY_FIELDS = frozenset({"ok", "options", "meta", "error", "busy", "denied"})
"""Every field a server's reply may carry."""
MAX_OPTIONS = 32
MAX_OPTION_TEXT = 256
TOKEN_ENV = "AIOMPC_TOKEN"
"""Environment variable the CLI reads a shared access token from (``--token`` overrides it)."""


def default_max_sessions() -> int:
    """Concurrent sessions a server runs by default: two per CPU (sessions wait on the network half the time)."""
    return max(2, 2 * (os.cpu_count() or 1))


@dataclass(frozen=True)
class ServerPolicy:
    """How much a server gives one untrusted client, and how many it serves at once.

    ``max_sessions`` sessions run concurrently; up to ``max_waiting`` more wait (FIFO) at most
    ``queue_timeout`` seconds for a slot, after which (or when the queue is full) the client gets a
    :class:`~aiompc.errors.ServerBusy` answer.  ``max_connections`` bounds open connections of any kind
    (beyond it a new connection is closed at once).  Before its handshake a connection may send one
    message of at most :data:`HANDSHAKE_MAX_BYTES` within ``handshake_timeout`` seconds; after it,
    ``channel`` bounds buffering and decoding, ``idle_timeout`` ends a session whose peer is silent, and
    ``session_deadline`` ends any session.  ``token``: if set, clients must present it."""

    max_sessions: int = field(default_factory=default_max_sessions)
    max_waiting: int | None = None
    max_connections: int | None = None
    queue_timeout: float = 5.0
    handshake_timeout: float = 10.0
    idle_timeout: float | None = 120.0
    session_deadline: float | None = 3600.0
    release_memory: float | None = 2.0
    """After a session ends, return freed heap memory to the OS (:func:`aiompc.heap.release`), at most once
    per this many seconds (``None``: never); keeps a long-running server's RSS near its live memory
    (glibc otherwise keeps what sessions freed: see :mod:`aiompc.heap`)."""
    channel: Limits | None = None
    """Buffering and decoding bounds after the handshake; ``None``: :class:`~aiompc.channel.Limits`' defaults
    (``aiompc.serve`` derives them from the served model's plan instead, :mod:`aiompc.nn.plan_limits`)."""
    token: str | None = None

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise InputError("max_sessions must be at least 1")
        if self.token is not None and (not isinstance(self.token, str) or not self.token):
            raise InputError("the access token must be a non-empty string")
        for name in ("queue_timeout", "handshake_timeout", "idle_timeout", "session_deadline", "release_memory"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise InputError(f"{name} must be positive")

    @property
    def waiting_cap(self) -> int:
        return self.max_waiting if self.max_waiting is not None else 2 * self.max_sessions

    @property
    def connection_cap(self) -> int:
        return self.max_connections if self.max_connections is not None else 4 * self.max_sessions + 64

    def __repr__(self) -> str:  # never show the token
        return f"ServerPolicy(max_sessions={self.max_sessions}, token={'set' if self.token else None})"


_HUGE = 1 << 40
TRUSTED_POLICY = ServerPolicy(max_sessions=64, idle_timeout=None, session_deadline=None, channel=Limits(
    max_buffered_bytes=_HUGE, max_label_bytes=_HUGE, max_pending_labels=1 << 24, max_decoded_bytes=_HUGE))
"""For a peer this process trusts (both parties here, e.g. ``run``/``demo``/``bench`` over loopback): no
timeouts and no buffering limits, so a big network on a slow machine never trips the defaults meant for
untrusted clients."""


class _Admission:
    """At most ``n`` sessions at once; a bounded FIFO of waiters, each waiting at most ``timeout``."""

    def __init__(self, policy: ServerPolicy) -> None:
        self._policy = policy
        self._sem = asyncio.Semaphore(policy.max_sessions)
        self.waiting = 0

    async def acquire(self) -> None:
        busy = (f"server busy: {self._policy.max_sessions} sessions are running and {self.waiting} waiting; "
                "try again in a few seconds")
        if self._sem.locked() and self.waiting >= self._policy.waiting_cap:
            raise ServerBusy(busy)
        self.waiting += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), self._policy.queue_timeout)
        except TimeoutError:
            raise ServerBusy(busy) from None
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self._sem.release()
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


def _check_scalar(key: str, value: Any) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -(1 << 63) <= value < 1 << 63:
            raise HandshakeError(f"option {show(key)} is out of range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise HandshakeError(f"option {show(key)} must be a finite number")
        return
    if isinstance(value, str):
        if len(value) > MAX_OPTION_TEXT:
            raise HandshakeError(f"option {show(key)} is longer than {MAX_OPTION_TEXT} characters")
        return
    raise HandshakeError(
        f"option {show(key)} has a value of type {type(value).__name__}; options are null, booleans, numbers or "
        "short strings"
    )


def check_options(options: Any) -> dict[str, Any]:
    """Handshake options from a peer: a map of at most :data:`MAX_OPTIONS` short string keys to scalars;
    :class:`HandshakeError` otherwise."""
    if not isinstance(options, dict):
        raise HandshakeError("malformed handshake: options must be a map")
    if len(options) > MAX_OPTIONS:
        raise HandshakeError(f"malformed handshake: {len(options)} options (at most {MAX_OPTIONS})")
    for key, value in options.items():
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            raise HandshakeError(f"malformed handshake: option name {show(key)} is not a short string")
        _check_scalar(key, value)
    return options


def merge_options(server: dict[str, Any], client: dict[str, Any]) -> dict[str, Any]:
    """The server's options with the client's added; :class:`HandshakeError` for a key both set differently."""
    merged = dict(server)
    for key, value in client.items():
        if key in merged and (type(merged[key]) is not type(value) or merged[key] != value):
            raise HandshakeError(
                f"option {show(key)} differs: server uses {show(merged[key])}, client asked for {show(value)}; "
                "configure both sides alike"
            )
        merged[key] = value
    return merged


async def client_handshake(party: Party, timeout: float = HANDSHAKE_TIMEOUT, *, token: str | None = None) -> dict[str, Any]:
    """Client side of the handshake; sets ``party.options`` and returns the server's metadata.

    ``token``: the shared access token, if the server requires one."""
    sub = party.sub("handshake")
    hello: dict[str, Any] = {"proto": PROTOCOL_NAME, "version": PROTOCOL_VERSION, "role": party.role,
                             "options": party.options}
    if token is not None:
        hello["token"] = token
    await sub.send(hello)
    try:
        reply = await asyncio.wait_for(sub.recv(), timeout)
    except TimeoutError:
        raise HandshakeError(f"no handshake reply within {timeout} s; is the server an aiompc server?") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool) or not set(reply) <= REPLY_FIELDS:
        raise HandshakeError("malformed handshake reply; is the server an aiompc server?")
    if not reply["ok"]:
        reason = show(reply.get("error", "no reason given"), 300)
        if reply.get("busy") is True:
            raise ServerBusy(f"server refused the session: {reason}")
        if reply.get("denied") is True:
            raise AccessDenied(f"server refused the session: {reason}")
        raise HandshakeError(f"server refused the session: {reason}")
    options = check_options(reply.get("options"))
    meta = reply.get("meta") or {}
    if not isinstance(meta, dict):
        raise HandshakeError("malformed handshake reply: meta must be a map")
    party.options = options
    return meta


def check_hello(hello: Any, party: Party, token: str | None) -> dict[str, Any]:
    """The client's options from its hello; :class:`HandshakeError` for anything malformed."""
    if not isinstance(hello, dict) or hello.get("proto") != PROTOCOL_NAME:
        raise HandshakeError("peer is not an aiompc client (bad protocol name)")
    extra = [k for k in hello if k not in HELLO_FIELDS]
    if extra:
        raise HandshakeError(f"malformed handshake: unknown field {show(extra[0])}")
    version = hello.get("version")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise HandshakeError(
            f"protocol version mismatch: server speaks {PROTOCOL_VERSION}, client {show(version)}; "
            "upgrade the older side"
        )
    role = hello.get("role")
    if not isinstance(role, str) or role != party.peer_role:
        raise HandshakeError(f"role mismatch: the client claims to be {show(role)}")
    options = check_options(hello.get("options"))
    if token is not None:
        given = hello.get("token")
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
            raise AccessDenied("this server requires an access token and the client sent "
                               + ("none" if given is None else "a wrong one") + " (--token or $" + TOKEN_ENV + ")")
    return options


async def server_handshake(
    party: Party,
    meta: dict[str, Any] | None = None,
    timeout: float = HANDSHAKE_TIMEOUT,
    *,
    token: str | None = None,
    admit: Callable[[], Awaitable[None]] | None = None,
    limits: Limits | None = None,
    max_message_size: int | None = None,
) -> None:
    """Server side of the handshake; sets ``party.options`` to the merged options.

    ``token``: required of the client if set.  ``admit()`` (optional) waits for a session slot or raises
    :class:`ServerBusy`.  On success the channel's gate opens (with ``limits``, if given) before the
    reply goes out, so the client's next message is already admitted; so does the transport's
    ``max_message_size`` (if given), lowered for the handshake by :func:`listen`."""
    sub = party.sub("handshake")
    try:
        hello = await asyncio.wait_for(sub.recv(), timeout)
    except TimeoutError:
        raise PeerTimeout(f"no handshake from the client within {timeout} s") from None
    try:
        options = check_hello(hello, party, token)
        merged = merge_options(party.options, options)
        if admit is not None:
            await admit()
    except HandshakeError as exc:
        refusal: dict[str, Any] = {"ok": False, "error": str(exc)}
        if isinstance(exc, ServerBusy):
            refusal["busy"] = True
        if isinstance(exc, AccessDenied):
            refusal["denied"] = True
        await sub.send(refusal)
        raise
    party.options = merged
    party.channel.configure(limits, gate=None)
    if max_message_size is not None:
        _set_max_message(party.channel.transport, max_message_size)
    await sub.send({"ok": True, "options": merged, "meta": meta or {}})


# --------------------------------------------------------------------------- serving


@dataclass(frozen=True)
class SessionRecord:
    """One finished connection: ``outcome`` is ``ok``, ``failed``, ``refused`` or ``closed`` (before the handshake)."""

    sid: str
    peer: str
    outcome: str
    error: str
    peak_buffered: int
    peak_pending_labels: int


class Server:
    """A listening aiompc server; use as an async context manager or call :meth:`close`."""

    def __init__(self, inner: TransportServer, endpoint: Endpoint, policy: ServerPolicy | None = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._inner = inner
        self.endpoint = endpoint
        self.policy = policy or ServerPolicy()
        self.max_message_size = max_message_size
        """The largest message a client may send after the handshake."""
        self.memory_releases = 0
        """How often freed heap memory was returned to the OS (:meth:`release_memory`)."""
        self._released_at = -math.inf
        self._release_task: asyncio.Task[None] | None = None
        self._release_again = False
        self.sessions_ok = 0
        self.sessions_failed = 0
        self.sessions_refused = 0
        self.connections = 0
        """Connections open right now (any stage)."""
        self.channels: set[Channel] = set()
        """The channels of open connections (tests read their buffered bytes)."""
        self.peak_buffered = 0
        """The most bytes one finished connection ever held unread (:attr:`Channel.peak_buffered`)."""
        self.peak_message = 0
        self.peak_pending_labels = 0
        self.recent: collections.deque[SessionRecord] = collections.deque(maxlen=256)
        """The last finished connections: outcome and peak unread bytes of each (for tests and monitoring)."""

    def peak_of(self, outcome: str) -> int:
        """The most bytes a recent connection with ``outcome`` (``ok``, ``failed``, ``refused``, ``closed``) held unread."""
        return max((r.peak_buffered for r in self.recent if r.outcome == outcome), default=0)

    def schedule_release(self) -> None:
        """Return freed heap memory to the OS soon (:func:`aiompc.heap.release`, in a thread): at once, or
        ``policy.release_memory`` s after the previous release, whichever is later.  Sessions that end
        while a release is pending or running get one more release after it (so the last session of a burst
        is always covered), never more than one at a time."""
        every = self.policy.release_memory
        if every is None:
            return
        if self._release_task is not None and not self._release_task.done():
            self._release_again = True
            return

        async def run() -> None:
            loop = asyncio.get_running_loop()
            while True:
                self._release_again = False
                await asyncio.sleep(max(0.0, self._released_at + every - loop.time()))
                self._released_at = loop.time()
                await loop.run_in_executor(None, heap.release)
                self.memory_releases += 1
                if not self._release_again:
                    return

        self._release_task = asyncio.get_running_loop().create_task(run(), name="aiompc-release-memory")

    @property
    def channel_limits(self) -> Limits:
        """What one session may make this server buffer and decode (:class:`~aiompc.channel.Limits`)."""
        return self.policy.channel or Limits()

    @property
    def port(self) -> int:
        return int(self._inner.port)

    @property
    def url(self) -> str:
        return self.endpoint.url(self.port)

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and not yet read, over every open connection."""
        return sum(ch.buffered_bytes for ch in self.channels)

    async def close(self) -> None:
        if self._release_task is not None:
            self._release_task.cancel()
            await asyncio.gather(self._release_task, return_exceptions=True)
        await self._inner.close()

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_ABORT_ON = frozenset({"LimitExceeded", "ProtocolError", "PeerTimeout", "MessageTooLarge", "TransportClosed"})


def _set_max_message(transport: Transport, size: int) -> None:
    try:
        transport.max_message_size = size
    except (AttributeError, InputError):  # a wrapper without a settable limit keeps its own
        pass


def _peer_name(transport: Transport) -> str:
    peer = getattr(transport, "peer", None)
    if peer is None:
        inner = getattr(transport, "inner", None)
        peer = getattr(inner, "peer", None) if inner is not None else None
    return f"{peer[0]}:{peer[1]}" if peer else "?"


async def listen(
    handler: PartyFn,
    url: str,
    *,
    ssl: ssl_module.SSLContext | None = None,
    options: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    transport_wrapper: TransportWrapper | None = None,
    policy: ServerPolicy | None = None,
) -> Server:
    """Serve sessions at ``url``; ``handler(party)`` runs once per session after the handshake.

    ``transport_wrapper`` (optional) wraps each accepted transport, e.g. in a link emulation.
    ``policy`` bounds what each client may cost (:class:`ServerPolicy`; the defaults suit an untrusted
    network); ``max_message_size`` applies after the handshake (before it, :data:`HANDSHAKE_MAX_BYTES`)."""
    ep = parse_url(url)
    policy = policy or ServerPolicy()
    admission = _Admission(policy)
    channel_limits = policy.channel or Limits()
    session_limits = replace(channel_limits, idle_timeout=policy.idle_timeout)
    server: Server

    async def on_transport(transport: Transport) -> None:
        sid = secrets.token_hex(4)
        peer = _peer_name(transport)
        if server.connections >= policy.connection_cap:
            server.sessions_refused += 1
            log.warning("session %s from %s refused: %d connections open (max %d)", sid, peer,
                        server.connections, policy.connection_cap)
            # answer without reading anything: the client reads this as its handshake reply
            try:
                await asyncio.wait_for(Channel(transport).sub("handshake").send(
                    {"ok": False, "busy": True, "error": "server busy: too many open connections; try again in a "
                     "few seconds"}), 1.0)
            except (AiompcError, TimeoutError):
                pass
            return  # the transport server closes the connection
        server.connections += 1
        if transport_wrapper is not None:
            transport = transport_wrapper(transport)
        _set_max_message(transport, min(HANDSHAKE_MAX_BYTES, max_message_size))
        channel = Channel(transport, limits=channel_limits, gate=Gate(frozenset({"handshake"}), HANDSHAKE_MAX_BYTES))
        server.channels.add(channel)
        party = Party("server", channel, options=options)
        admitted = False

        async def admit() -> None:
            nonlocal admitted
            await admission.acquire()
            admitted = True

        stage, outcome, error = "handshake", "failed", ""
        try:
            await server_handshake(party, meta, policy.handshake_timeout, token=policy.token, admit=admit,
                                   limits=session_limits, max_message_size=max_message_size)
            stage = "session"
            log.info("session %s from %s started", sid, peer)
            deadline = asyncio.timeout(policy.session_deadline)
            try:
                async with deadline:
                    await handler(party)
            except TimeoutError:
                if not deadline.expired():
                    raise
                raise PeerTimeout(f"the session ran past its deadline of {policy.session_deadline:g} s") from None
            server.sessions_ok += 1
            outcome = "ok"
            log.info("session %s from %s done", sid, peer)
        except TransportClosed as closed:
            cause = channel.error  # this side closed the channel for a reason (e.g. a work budget): report it
            exc = cause if isinstance(cause, AiompcError) and not isinstance(cause, TransportClosed) else closed
            error = type(exc).__name__
            if stage == "handshake" and not isinstance(exc, PeerTimeout) and exc is closed:
                outcome = "closed"
                log.debug("session %s from %s: connection closed before the handshake", sid, peer)
            else:
                server.sessions_failed += 1
                log.warning("session %s from %s failed: %s: %s", sid, peer, type(exc).__name__, show(str(exc), 300))
        except ServerBusy as exc:
            outcome, error = "refused", type(exc).__name__
            server.sessions_refused += 1
            log.warning("session %s from %s refused: %s", sid, peer, exc)
        except AiompcError as exc:
            error = type(exc).__name__
            server.sessions_failed += 1
            log.warning("session %s from %s failed: %s: %s", sid, peer, type(exc).__name__, show(str(exc), 300))
        except Exception as exc:  # noqa: BLE001 - a broken session must not take the server down
            error = type(exc).__name__
            server.sessions_failed += 1
            log.exception("session %s from %s failed with an unexpected error", sid, peer)
        finally:
            if admitted:
                admission.release()
            server.connections -= 1
            server.channels.discard(channel)
            server.peak_buffered = max(server.peak_buffered, channel.peak_buffered)
            server.peak_message = max(server.peak_message, channel.peak_message)
            server.peak_pending_labels = max(server.peak_pending_labels, channel.peak_pending_labels)
            server.recent.append(SessionRecord(sid, peer, outcome, error, channel.peak_buffered,
                                               channel.peak_pending_labels))
            # a peer that broke the protocol or went silent may not be reading: drop it without a closing
            # handshake (a refusal it was sent, e.g. a HandshakeError, is flushed by a normal close)
            await channel.close(abort=error in _ABORT_ON)
            if stage == "session":
                server.schedule_release()

    inner = await serve_transports(on_transport, ep, ssl=ssl, max_message_size=max_message_size)
    server = Server(inner, ep, policy, max_message_size)
    return server


class _Connect:
    """Awaitable and async context manager returned by :func:`connect`."""

    def __init__(self, url: str, ssl: ssl_module.SSLContext | None, options: dict[str, Any] | None, max_message_size: int,
                 transport_wrapper: TransportWrapper | None = None, token: str | None = None) -> None:
        self._args = (url, ssl, options, max_message_size)
        self._token = token
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
            self.meta = await client_handshake(party, token=self._token)
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
    token: str | None = None,
) -> _Connect:
    """Open a client session to ``url`` (``await connect(url)`` or ``async with connect(url) as party``).

    The server's handshake metadata is in ``party.state["server_meta"]``.  ``transport_wrapper``
    (optional) wraps the connected transport, e.g. in a link emulation.  ``token``: the server's shared
    access token, if it requires one.
    """
    return _Connect(url, ssl, options, max_message_size, transport_wrapper, token)
