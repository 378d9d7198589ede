"""aiompc: private two-party neural-network inference for low-precision quantized networks.

Importing this package is cheap and has no side effects: it loads the exception hierarchy
(:mod:`aiompc.errors`) and nothing else.  The entry points below import their layer when called.

Layers (each imports only those below it; ``lint-imports`` checks this in CI)::

    aiompc.cli                          the ``aiompc`` command
    aiompc.nn                           model IR, ONNX import, quantization, secure engine, serve/infer
    aiompc.protocols                    two-party protocols: ot/, linear/ (HE), nonlinear/ (OT)
    aiompc.session                      handshake, listen/connect, run_local
    aiompc.pipeline                     overlap of computation and sending
    aiompc.party                        a party: role, labelled channel, CSPRNG, executor
    aiompc.channel                      labelled sub-channels and byte accounting
    aiompc.wire / ring / quant          message encoding, share arithmetic, integer semantics
    aiompc.crypto                       math without I/O: PRG, HE (RLWE/BFV), silent-OT math
    aiompc.kernels                      compiled hot loops
    aiompc.transports                   bytes over memory, TCP, WebSocket (by URL scheme)
    aiompc.errors                       the one exception hierarchy
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine, TypeVar

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

if TYPE_CHECKING:  # pragma: no cover - types only
    import os

    import numpy as np

    from aiompc.nn.ir import QGraph
    from aiompc.party import Party
    from aiompc.session import Server

__version__ = "0.1.0"
__all__ = [
    "run",
    "run_local",
    "serve",
    "infer",
    "evaluate",
    "AiompcError",
    "HandshakeError",
    "InputError",
    "InsecureParameters",
    "MessageTooLarge",
    "ProtocolError",
    "TransportClosed",
    "UndecryptableParameters",
    "UnsupportedModel",
]

T = TypeVar("T")
U = TypeVar("U")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on uvloop where available, plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platform without uvloop
        import asyncio

        return asyncio.run(main)
    return uvloop.run(main)


async def run_local(
    server_fn: Callable[[Party], Awaitable[T]],
    client_fn: Callable[[Party], Awaitable[U]],
    **kwargs: Any,
) -> tuple[T, U]:
    """Run both parties in this event loop over the in-memory transport (:func:`aiompc.session.run_local`)."""
    from aiompc.session import run_local as _run_local

    return await _run_local(server_fn, client_fn, **kwargs)


async def serve(model: str | os.PathLike[str] | QGraph, url: str, **kwargs: Any) -> Server:
    """Serve ``model`` at ``url`` (``tcp://``, ``ws://``, ``tls://``, ``wss://``) until the returned server is
    closed (:func:`aiompc.nn.service.serve`, which documents the keywords)."""
    from aiompc.nn.service import serve as _serve

    return await _serve(model, url, **kwargs)


async def infer(x: np.ndarray, url: str, **kwargs: Any) -> np.ndarray:
    """A private prediction of the float input ``x`` from the server at ``url``
    (:func:`aiompc.nn.service.infer`, which documents the keywords)."""
    from aiompc.nn.service import infer as _infer

    return await _infer(x, url, **kwargs)


def evaluate(model: str | os.PathLike[str], dataset: Any = None, **kwargs: Any) -> Any:
    """Accuracy and cost of ``model`` per mode over a labelled test set (:func:`aiompc.nn.evaluate.evaluate`,
    which documents the keywords); returns its report."""
    from aiompc.nn.evaluate import evaluate as _evaluate

    return _evaluate(model, dataset, **kwargs)

