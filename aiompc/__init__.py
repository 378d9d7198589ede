"""aiompc: private two-party neural-network inference for low-precision quantized networks.

The runtime (this package): :class:`Party`, :class:`~aiompc.channel.Channel`, sessions
(:func:`run_local`, :func:`aiompc.session.listen`, :func:`aiompc.session.connect`), wire format,
ring shares and the cryptographic core (:mod:`aiompc.crypto`).  Protocols live in the top-level
``protocols`` package, transports in ``transports``.
"""

from __future__ import annotations

from typing import Any, Coroutine, TypeVar

from aiompc.errors import (
    AiompcError,
    HandshakeError,
    InputError,
    InsecureParameters,
    MessageTooLarge,
    ProtocolError,
    TransportClosed,
    UndecryptableParameters,
    UnsupportedModel,
)
from aiompc.party import Party
from aiompc.session import run_local

__version__ = "0.1.0"
__all__ = [
    "Party",
    "run_local",
    "run",
    "AiompcError",
    "HandshakeError",
    "InputError",
    "InsecureParameters",
    "MessageTooLarge",
    "ProtocolError",
    "TransportClosed",
    "UndecryptableParameters",
    "UnsupportedModel",
    "serve",
    "infer",
]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on uvloop where available, plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platform without uvloop
        import asyncio

        return asyncio.run(main)
    return uvloop.run(main)


def __getattr__(name: str) -> Any:
    # aiompc.serve / aiompc.infer live in aiompc.nn (above the protocols in the layering): import on use
    if name in ("serve", "infer"):
        from aiompc.nn import service

        return getattr(service, name)
    raise AttributeError(f"module 'aiompc' has no attribute {name!r}")
