"""The JSON events the page receives on ``/events`` (one text frame each, a ``"type"`` field first).

``hello``
    on connecting: the sample digits and where the model server is.
``started``
    an inference began: the layers the server's model has (from its handshake metadata), each with the
    protocol that evaluates it, and the number of steps (the layers and the output reveal).
``layer``
    one step finished: its bytes each way and rounds (from the channel statistics of its label), its
    time, and the channel's totals so far (which include the OT extension's offline bytes).
``result``
    the secure prediction, the exact pixels that were classified and their quantized integers, the
    plaintext model's result for comparison, what the server saw and what the client learned.
``error``
    ``{"kind", "message"}``: ``input`` (bad or empty input), ``busy`` (an inference is running),
    ``unreachable`` (no model server), ``server-died`` (it went away mid-inference), ``handshake``,
    ``internal``.

Bytes are always counted on the client's channel (``party.channel.stats()``): ``c2s`` is what the
client sent to the server, ``s2c`` what it received; never a formula.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

from aiompc.channel import Stats
from aiompc.errors import AiompcError, HandshakeError, InputError, TransportClosed, TransportError
from aiompc.nn.ir import QGraph
from aiompc.nn.node_protocols import protocol_of as node_protocol
from aiompc.nn.secure import LayerRecord

Emit = Callable[[dict[str, Any]], None]
"""Where events go (the app queues them for the page)."""

__all__ = ["Emit", "FAMILIES", "protocol_of", "steps", "layer_event", "totals", "server_saw", "error_event", "describe_error"]

FAMILIES: dict[str, tuple[str, str]] = {
    "he": ("HE", "homomorphic encryption (BFV, coefficient encoding): the client's encrypted shares, multiplied "
                 "by the server's weights, come back masked"),
    "ot": ("OT", "oblivious-transfer protocols on secret shares (millionaire comparisons)"),
    "local": ("local", "each party on its own shares, no communication"),
    "reveal": ("output", "the server sends its share of the logits; only the client can add the two"),
}
"""A protocol family (a :class:`~aiompc.nn.node_step.NodeProtocol`'s ``kind``, or ``reveal``) in words:
its short name in the page and a sentence for the tooltip."""


def protocol_of(kind: str, op: str) -> str:
    """``HE conv``, ``OT requantize``, ``local flatten``, ``output share``: the family, then the op."""
    if kind == "reveal":
        return "output share"
    return f"{FAMILIES.get(kind, (kind, ''))[0]} {op}"


def steps(graph: QGraph, output: str) -> list[dict[str, str]]:
    """The steps of a secure inference of ``graph``: every node (its family from
    :data:`~aiompc.nn.node_protocols.NODE_PROTOCOLS`), then the output reveal (or the argmax protocol)."""
    names = [(n.name, n.op, node_protocol(n).kind) for n in graph.nodes]
    names.append(("argmax", "argmax", "ot") if output == "argmax" else ("output", "reveal", "reveal"))
    return [{"name": name, "op": op, "kind": kind, "protocol": protocol_of(kind, op),
             "detail": FAMILIES.get(kind, ("", ""))[1]} for name, op, kind in names]


_CHUNK_LABEL = re.compile(r"b\d+(/(?!plans$)|$)")
"""The labels of the inference's steps (:func:`aiompc.nn.service.client_session` runs chunk ``k`` on ``b{k}``);
``b{k}/plans``, the digest both parties exchange before the first layer (:mod:`aiompc.nn.stat_budget`), is setup."""


def totals(stats: Stats) -> dict[str, int]:
    """The channel's totals: bytes and messages each way, rounds, the OT extension's offline bytes, and the
    session setup's bytes (everything else outside the layers: handshake, request, the client's HE keys, the plan
    digests)."""
    offline = stats.select(phase="offline")
    offline_bytes = offline.bytes_sent + offline.bytes_recv
    layers = sum(s.bytes_sent + s.bytes_recv for label, s in stats.labels.items()
                 if _CHUNK_LABEL.match(label) and s.phase != "offline")
    return {
        "bytes_c2s": stats.bytes_sent,
        "bytes_s2c": stats.bytes_recv,
        "messages_c2s": sum(s.msgs_sent for s in stats.labels.values()),
        "messages_s2c": sum(s.msgs_recv for s in stats.labels.values()),
        "rounds": stats.rounds,
        "offline_bytes": offline_bytes,
        "setup_bytes": stats.bytes_sent + stats.bytes_recv - offline_bytes - layers,
    }


def layer_event(index: int, count: int, record: LayerRecord, stats: Stats, elapsed: float) -> dict[str, Any]:
    """The ``layer`` event of step ``index`` (0-based) of ``count``; ``stats`` is the channel's snapshot
    just after the step, ``elapsed`` the seconds since the inference started."""
    own = stats.select(record.label)
    return {
        "type": "layer",
        "index": index,
        "count": count,
        "name": record.name,
        "op": record.op,
        "kind": record.kind,
        "protocol": protocol_of(record.kind, record.op),
        "ring": record.ring,
        "bytes_c2s": own.bytes_sent,
        "bytes_s2c": own.bytes_recv,
        "rounds": own.rounds,
        "seconds": round(record.seconds, 6),
        "elapsed": round(elapsed, 6),
        "total": totals(stats),
    }


def server_saw(stats: Stats, seconds: float, samples: int) -> dict[str, Any]:
    """What the server saw of one inference: sizes and timings only (the client's channel statistics)."""
    t = totals(stats)
    return {
        "samples": samples,
        "bytes_received": t["bytes_c2s"],
        "bytes_sent": t["bytes_s2c"],
        "messages_received": t["messages_c2s"],
        "messages_sent": t["messages_s2c"],
        "rounds": t["rounds"],
        "offline_bytes": t["offline_bytes"],
        "seconds": round(seconds, 6),
    }


def error_event(kind: str, message: str) -> dict[str, str]:
    """An ``error`` event."""
    return {"type": "error", "kind": kind, "message": message}


def _reason(exc: BaseException) -> str:
    """The operating system's words for a failed connection (``connection refused``), else the error's."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno).lower()
    if isinstance(cause, TimeoutError):
        return "timed out"
    return str(exc)


def describe_error(exc: BaseException, *, connected: bool, step: str | None, url: str) -> dict[str, str]:
    """The ``error`` event for an exception of one inference, in plain words.

    ``connected``: whether the session with the model server was open (a transport error before is an
    unreachable server, after it a server that went away); ``step``: the step that was running."""
    if isinstance(exc, InputError):
        return error_event("input", str(exc))
    if isinstance(exc, HandshakeError):
        return error_event("handshake", f"the model server at {url} refused the session: {exc}")
    if isinstance(exc, (TransportError, TransportClosed, OSError)):
        if not connected:
            return error_event("unreachable", f"cannot reach the model server at {url} ({_reason(exc)}). Is it "
                               "running? Start one with: aiompc serve MODEL.onnx --listen ws://HOST:PORT/aiompc")
        where = f" during step {step!r}" if step else ""
        return error_event("server-died", f"the model server at {url} closed the connection{where}; the "
                           "inference was abandoned and nothing was learned")
    if isinstance(exc, AiompcError):
        return error_event("protocol", f"{type(exc).__name__}: {exc}")
    return error_event("internal", f"unexpected error: {type(exc).__name__}")
