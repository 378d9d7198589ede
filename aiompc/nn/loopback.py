"""Both parties of a model session in this process, over a real loopback connection.

Used by ``aiompc run``, ``aiompc demo`` and ``aiompc bench``: a server (:func:`serve_session`) and a
client (:func:`client_session`) connected through ``tcp://127.0.0.1`` (or ``ws://``), optionally with
both ends wrapped (the shaped LAN/WAN link), so every byte reported crossed a socket.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from aiompc.channel import Stats
from aiompc.nn.ir import QGraph
from aiompc.nn.modes import EngineConfig
from aiompc.nn.secure import LayerRecord, SecureResult
from aiompc.nn.service import CHUNK, client_session, serve_session
from aiompc.party import Party
from aiompc.session import TRUSTED_POLICY, connect, listen
from aiompc.errors import InputError, TransportClosed
from aiompc.transports.base import Transport
from aiompc.transports.shaped import PROFILES, shape

__all__ = ["LoopbackRun", "run_two_parties", "LOOPBACK_POLICY", "LINKS", "link_wrapper"]

LINKS = ("none", *PROFILES)
"""The ``--network`` settings: no shaping, or an emulated link of :mod:`aiompc.transports.shaped`."""


def link_wrapper(link: str) -> Callable[[Transport], Transport]:
    """The transport wrapper of a ``--network`` setting: identity for ``none``, else the shaped link;
    :class:`InputError` for an unknown setting."""
    if link not in LINKS:
        raise InputError(f"unknown network setting {link!r}; use {', '.join(LINKS)}")
    profile = None if link == "none" else link

    def wrap(transport: Transport) -> Transport:
        return shape(transport, profile)  # type: ignore[arg-type]

    return wrap

LOOPBACK_POLICY = TRUSTED_POLICY
"""Both parties are this process: :data:`aiompc.session.TRUSTED_POLICY` (no timeouts, no buffering limits)."""


@dataclass
class LoopbackRun:
    """The client's view of one loopback session."""

    result: SecureResult
    stats: Stats
    seconds: float
    options: dict[str, Any]


async def run_two_parties(
    graph: QGraph,
    x_int: np.ndarray,
    config: EngineConfig,
    *,
    transport: str = "tcp",
    options: dict[str, Any] | None = None,
    transport_wrapper: Callable[[Transport], Transport] | None = None,
    progress: bool | None = None,
    progress_label: str = "layers",
) -> LoopbackRun:
    """Serve ``graph`` and query it with the quantized batch ``x_int`` over loopback; the client's view.

    ``options`` go to both sides' handshake (the engine settings of ``config`` are always included);
    ``transport_wrapper`` wraps both ends' transports (e.g. :func:`aiompc.transports.shaped.shape`)."""
    options = {**config.to_options(), **(options or {})}
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    # when the client fails first, nobody awaits ``done``: mark its exception retrieved (no asyncio warning)
    done.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def handler(party: Party) -> None:
        try:
            done.set_result(await serve_session(party, graph, EngineConfig.from_options(party.options)))
        except BaseException as exc:
            if not done.done():
                done.set_exception(exc)
            raise

    url = "ws://127.0.0.1:0/aiompc" if transport == "ws" else "tcp://127.0.0.1:0"
    chunks = -(-len(x_int) // CHUNK)  # the session evaluates CHUNK samples at a time
    bar = tqdm(total=chunks * (len(graph.nodes) + 1), desc=progress_label, unit="layer", file=sys.stderr,
               leave=False, disable=not sys.stderr.isatty() if progress is None else not progress)

    def tick(rec: LayerRecord) -> None:
        bar.set_postfix_str(rec.name, refresh=False)
        bar.update()

    async with await listen(handler, url, options=options, transport_wrapper=transport_wrapper,
                            policy=LOOPBACK_POLICY) as server:
        try:
            async with connect(server.url, options=options, transport_wrapper=transport_wrapper) as party:
                start = time.perf_counter()
                with bar:
                    result = await client_session(party, graph.without_weights(), x_int, config, on_layer=tick)
                seconds = time.perf_counter() - start
                stats = party.channel.stats()
                agreed = dict(party.options)
        except TransportClosed:  # the server hung up: its own error is the root cause, if it failed
            await asyncio.wait([done], timeout=5)
            if done.done() and not done.cancelled() and done.exception() is not None:
                raise done.exception() from None  # type: ignore[misc]
            raise
        await done
    return LoopbackRun(result, stats, seconds, agreed)
