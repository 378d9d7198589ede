"""Transports by URL scheme: the one table that ``listen``/``connect`` (and so ``serve``/``infer``) use.

========  ==========================================  ==============
scheme    transport                                    encrypted
========  ==========================================  ==============
tcp       :mod:`aiompc.transports.tcp` (length-prefixed frames)    no
tls       the same over TLS (needs an ``ssl.SSLContext``)          yes
ws        :mod:`aiompc.transports.websocket` (binary frames)       no
wss       the same over TLS                                        yes
========  ==========================================  ==============

A new transport is one more :class:`Scheme` row in :data:`SCHEMES`; nothing else changes.  The
implementations are imported when a scheme is first used (the WebSocket library is not loaded by a TCP
session).
"""

from __future__ import annotations

import ssl as ssl_module
from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import urlsplit

from aiompc.errors import InputError
from aiompc.transports.base import Handler, Server, Transport

__all__ = ["Endpoint", "Scheme", "SCHEMES", "parse_url", "open_transport", "serve_transports"]


@dataclass(frozen=True)
class Endpoint:
    """A parsed ``scheme://host:port[/path]`` (the path is used by WebSocket schemes only)."""

    scheme: str
    host: str
    port: int
    path: str = "/"

    @property
    def secure(self) -> bool:
        return SCHEMES[self.scheme].secure

    def url(self, port: int | None = None) -> str:
        """The URL, with ``port`` in place of the parsed one (a server bound to port 0 knows its real port)."""
        path = self.path if SCHEMES[self.scheme].uses_path else ""
        return f"{self.scheme}://{self.host}:{self.port if port is None else port}{path}"


Connector = Callable[[Endpoint, "ssl_module.SSLContext | None", int], Awaitable[Transport]]
Listener = Callable[[Handler, Endpoint, "ssl_module.SSLContext | None", int], Awaitable[Server]]


@dataclass(frozen=True)
class Scheme:
    """How one URL scheme connects and listens: ``connect(endpoint, ssl, max_message_size)`` and
    ``listen(handler, endpoint, ssl, max_message_size)``; ``secure`` schemes require an SSL context and the
    others refuse one."""

    connect: Connector
    listen: Listener
    secure: bool
    uses_path: bool


async def _tcp_connect(ep: Endpoint, ssl: ssl_module.SSLContext | None, max_message_size: int) -> Transport:
    from aiompc.transports import tcp

    return await tcp.connect(ep.host, ep.port, ssl=ssl, max_message_size=max_message_size)


async def _tcp_listen(handler: Handler, ep: Endpoint, ssl: ssl_module.SSLContext | None,
                      max_message_size: int) -> Server:
    from aiompc.transports import tcp

    return await tcp.serve(handler, ep.host, ep.port, ssl=ssl, max_message_size=max_message_size)


async def _ws_connect(ep: Endpoint, ssl: ssl_module.SSLContext | None, max_message_size: int) -> Transport:
    from aiompc.transports import websocket

    return await websocket.connect(ep.url(), ssl=ssl, max_message_size=max_message_size)


async def _ws_listen(handler: Handler, ep: Endpoint, ssl: ssl_module.SSLContext | None,
                     max_message_size: int) -> Server:
    from aiompc.transports import websocket

    return await websocket.serve(handler, ep.host, ep.port, path=ep.path, ssl=ssl, max_message_size=max_message_size)


SCHEMES: dict[str, Scheme] = {
    "tcp": Scheme(_tcp_connect, _tcp_listen, secure=False, uses_path=False),
    "tls": Scheme(_tcp_connect, _tcp_listen, secure=True, uses_path=False),
    "ws": Scheme(_ws_connect, _ws_listen, secure=False, uses_path=True),
    "wss": Scheme(_ws_connect, _ws_listen, secure=True, uses_path=True),
}
"""Every URL scheme the project speaks."""


def parse_url(url: str) -> Endpoint:
    """Parse a URL of one of the :data:`SCHEMES`; :class:`InputError` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise InputError(f"unsupported URL scheme in {url!r}: use one of {known}")
    if not parts.hostname:
        raise InputError(f"URL {url!r} has no host")
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"URL {url!r} has an invalid port") from None
    if port is None:
        raise InputError(f"URL {url!r} has no port")
    return Endpoint(parts.scheme, parts.hostname, port, parts.path or "/")


def _check_ssl(ep: Endpoint, ssl: ssl_module.SSLContext | None) -> None:
    if ep.secure and ssl is None:
        raise InputError(f"{ep.scheme}:// needs an ssl.SSLContext (ssl=...)")
    if not ep.secure and ssl is not None:
        raise InputError(f"{ep.scheme}:// is not encrypted; use tls:// or wss:// with an ssl context")


async def open_transport(ep: Endpoint, *, ssl: ssl_module.SSLContext | None, max_message_size: int) -> Transport:
    """Connect to ``ep`` with its scheme's transport."""
    _check_ssl(ep, ssl)
    return await SCHEMES[ep.scheme].connect(ep, ssl, max_message_size)


async def serve_transports(handler: Handler, ep: Endpoint, *, ssl: ssl_module.SSLContext | None,
                           max_message_size: int) -> Server:
    """Listen at ``ep`` with its scheme's transport; ``handler(transport)`` runs per connection."""
    _check_ssl(ep, ssl)
    return await SCHEMES[ep.scheme].listen(handler, ep, ssl, max_message_size)
