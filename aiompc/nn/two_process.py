"""A model session between two processes, as between two machines: the server party runs in a child process.

``aiompc bench`` measures with it by default: the two parties then compete for the cores only as two
machines' parties would not, each has its own interpreter (its own GIL and event loop), and each party's CPU
seconds are measured by its own process (``time.process_time``, every thread of the process).  The
connection is loopback TCP with both ends wrapped by the shaped link (:mod:`aiompc.transports.shaped`), so
every byte reported crossed a socket; bytes are counted on the client's channel as in
:mod:`aiompc.nn.loopback`.

The child is started with the ``spawn`` method (no state inherited from the parent), is handed the
server's graph and the session options, prepares the model (:func:`~aiompc.nn.prepare.prepare_model`: the
plans and the weight plaintexts, pinned in a :class:`~aiompc.protocols.linear.weight_cache.WeightCache` of
``weight_memory`` bytes — what a server does once per model, not per inference), listens on an OS-chosen
port, serves exactly one session and sends back its CPU seconds and peak memory, or its error.  The client
plans its layers (:func:`~aiompc.nn.prepare.prepare_plans`) before it connects.  Each party's one-time
preparation is reported apart (:attr:`TwoProcessRun.prepare_server` / ``prepare_client``); the session's wall
and CPU seconds do not include it.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

import numpy as np

import aiompc
from aiompc import heap
from aiompc.errors import AiompcError, ProtocolError, TransportClosed
from aiompc.nn.ir import QGraph
from aiompc.nn.loopback import LoopbackRun, link_wrapper
from aiompc.nn.modes import EngineConfig
from aiompc.nn.prepare import WEIGHT_MEMORY, prepare_model, prepare_plans
from aiompc.nn.service import CHUNK, client_session, serve_session
from aiompc.party import Party
from aiompc.protocols.linear.weight_cache import STATE_KEY as WEIGHT_CACHE_KEY
from aiompc.protocols.linear.weight_cache import WeightCache
from aiompc.session import TRUSTED_POLICY, connect, listen

__all__ = ["TwoProcessRun", "run_two_processes", "peak_rss"]

Link = Literal["none", "lan", "wan"]
_START_TIMEOUT = 120.0  # seconds for the child to import, listen and report its port
_PREPARE_TIMEOUT = 3600.0  # seconds for the child to prepare the model (ResNet-50: a minute or two)


def peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes (``getrusage``: KiB on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@dataclass
class TwoProcessRun:
    """The client's view of the session (:class:`~aiompc.nn.loopback.LoopbackRun`), each party's CPU seconds in
    the session, each party's one-time model preparation (:meth:`~aiompc.nn.prepare.Preparation.to_dict`, not
    in the session's figures) and each process's peak resident memory in bytes (the client's: of this process
    so far, which may have run other sessions before)."""

    run: LoopbackRun
    cpu_server: float
    cpu_client: float
    prepare_server: dict[str, Any]
    prepare_client: dict[str, Any]
    rss_server: int
    rss_client: int


def _serve_one(graph: QGraph, options: dict[str, Any], link: Link, conn: Connection, batch: int,
               weight_memory: int) -> None:
    """The child: prepare the model, serve one session of ``graph``; report ``("prepared", dict)``,
    ``("port", p)``, then ``("done", (cpu, peak rss))``, or ``("error", text)`` at any point."""
    heap.bound_growth()  # a serving process: resident size near live memory during the session
    cache = WeightCache(weight_memory)

    async def main() -> None:
        import asyncio

        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def handler(party: Party) -> None:
            party.state[WEIGHT_CACHE_KEY] = cache  # the model's prepared weights, as serve() shares them
            try:
                await serve_session(party, graph, EngineConfig.from_options(party.options))
                try:  # the emulated link may still hold our last messages: wait for the client to hang up
                    await party.sub("session/end").recv()
                except TransportClosed:
                    pass
                done.set_result(None)
            except BaseException as exc:
                if not done.done():
                    done.set_exception(exc)
                raise

        server = await listen(handler, "tcp://127.0.0.1:0", options=options, transport_wrapper=link_wrapper(link),
                              policy=TRUSTED_POLICY)  # our own child process: no timeouts or buffering limits
        conn.send(("port", server.port))
        try:
            await done
        finally:
            await server.close()

    try:
        prepared = prepare_model(graph, EngineConfig.from_options(options), cache, batch=batch)
        conn.send(("prepared", {**prepared.to_dict(), "rss": peak_rss()}))
        start = time.process_time()
        aiompc.run(main())
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises a typed error
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("done", (time.process_time() - start, peak_rss())))


def _receive(conn: Connection, want: str, timeout: float) -> Any:
    if not conn.poll(timeout):
        raise ProtocolError(f"the server process sent nothing within {timeout:.0f} s")
    kind, value = conn.recv()
    if kind == "error":
        raise ProtocolError(f"the server process failed: {value}")
    if kind != want:
        raise ProtocolError(f"the server process sent {kind!r}, expected {want!r}")
    return value


def run_two_processes(
    graph: QGraph, x_int: np.ndarray, config: EngineConfig, *, options: dict[str, Any] | None = None,
    link: Link = "none", weight_memory: int = WEIGHT_MEMORY,
) -> TwoProcessRun:
    """Serve ``graph`` from a child process and query it with the quantized batch ``x_int`` from this one.

    ``options`` go to both sides' handshake (the configuration's are always included); ``weight_memory``: the
    server's budget of prepared weight plaintexts in bytes.  Raises :class:`~aiompc.errors.ProtocolError` if the
    server process fails or does not start."""
    options = {**config.to_options(), **(options or {})}
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    batch = min(len(x_int), CHUNK)  # the session evaluates up to CHUNK samples together (fc plans depend on it)
    proc = ctx.Process(target=_serve_one, args=(graph, options, link, child, batch, weight_memory),
                       name="aiompc-bench-server", daemon=True)
    proc.start()
    child.close()
    try:
        prepare_client = prepare_plans(graph.without_weights(), config, batch=batch).to_dict()  # meanwhile
        prepare_server = _receive(parent, "prepared", _PREPARE_TIMEOUT)
        port = _receive(parent, "port", _START_TIMEOUT)

        async def client() -> LoopbackRun:
            async with connect(f"tcp://127.0.0.1:{port}", options=options, transport_wrapper=link_wrapper(link)) as party:
                start = time.perf_counter()
                result = await client_session(party, graph.without_weights(), x_int, config)
                seconds = time.perf_counter() - start
                return LoopbackRun(result, party.channel.stats(), seconds, dict(party.options))

        cpu_start = time.process_time()
        try:
            run = aiompc.run(client())
        except AiompcError as exc:
            if parent.poll(5):  # the server's own error explains the client's
                _receive(parent, "done", 0)
            raise exc
        cpu_client = time.process_time() - cpu_start
        cpu_server, rss_server = _receive(parent, "done", _START_TIMEOUT)
        return TwoProcessRun(run, float(cpu_server), cpu_client, prepare_server, prepare_client, int(rss_server),
                             peak_rss())
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()
