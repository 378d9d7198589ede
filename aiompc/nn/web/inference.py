"""One private classification as the client party, reporting each step as a JSON event.

:func:`classify` connects to the model server (``ws://``, :func:`aiompc.session.connect`), runs
:func:`aiompc.nn.service.client_session` on the quantized image and calls ``emit`` with the events of
:mod:`aiompc.nn.web.events`: ``started``, one ``layer`` per step (bytes from the channel statistics at
that moment), then ``result``.  Errors are raised (typed, from :mod:`aiompc.errors`) to the caller, which
turns them into ``error`` events; nothing about the input or the logits is logged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiompc.errors import ProtocolError
from aiompc.nn.ir import QGraph
from aiompc.nn.modes import EngineConfig
from aiompc.nn.secure import LayerRecord
from aiompc.nn.service import client_session
from aiompc.nn.web import events
from aiompc.nn.web.reference import PlaintextReference, softmax
from aiompc.session import connect

__all__ = ["Progress", "classify"]


@dataclass
class Progress:
    """Where an inference is: whether the session is open and the step that is running (for error messages)."""

    connected: bool = False
    step: str | None = None
    done: list[str] = field(default_factory=list)


async def classify(
    url: str,
    x: np.ndarray,
    emit: events.Emit,
    *,
    reference: PlaintextReference | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Classify the float image batch ``x`` ``(1, 1, 8, 8)`` privately with the model server at ``url``.

    Emits ``started`` and ``layer`` events as the inference runs and returns the ``result`` event (also
    emitted).  ``reference`` (the bundled model) adds the plaintext comparison when the server's model is
    the same.  ``progress`` is updated as it goes, so a caller can say where a failure happened.
    Raises :class:`~aiompc.errors.TransportError` / :class:`~aiompc.errors.TransportClosed` when the
    server is unreachable or goes away, :class:`~aiompc.errors.InputError` for an input the model rejects.
    """
    progress = progress if progress is not None else Progress()
    async with connect(url) as party:
        progress.connected = True
        meta = party.state["server_meta"].get("model")
        if not isinstance(meta, dict):
            raise ProtocolError("the server announced no model metadata; is it an aiompc model server?")
        graph = QGraph.from_dict(meta)
        config = EngineConfig.from_options(party.options)
        plan = events.steps(graph, config.output)
        progress.step = plan[0]["name"]
        xq = graph.quantize_input(x)
        emit({"type": "started", "steps": plan, "count": len(plan), "server": url, "options": dict(party.options)})
        start = time.perf_counter()

        def on_layer(record: LayerRecord) -> None:
            index = len(progress.done)
            progress.done.append(record.name)
            progress.step = plan[index + 1]["name"] if index + 1 < len(plan) else None
            emit(events.layer_event(index, len(plan), record, party.channel.stats(),
                                    time.perf_counter() - start))

        result = await client_session(party, graph, xq, config, on_layer=on_layer)
        seconds = time.perf_counter() - start
        stats = party.channel.stats()
    out = np.asarray(result.output)
    if config.output == "argmax":
        prediction, logits, probabilities = int(out.reshape(-1)[0]), None, None
    else:
        flat = graph.dequantize_output(out).reshape(len(out), -1)[0]
        prediction, logits = int(np.argmax(flat)), [float(v) for v in flat]
        probabilities = [float(p) for p in softmax(flat)]
    plaintext = None
    if reference is not None and reference.matches(meta):
        plaintext = reference.evaluate(x)
        if logits is not None:
            plaintext["bit_exact"] = bool(np.array_equal(np.asarray(plaintext["int_logits"]), out.reshape(-1)))
    event = {
        "type": "result",
        "prediction": prediction,
        "logits": logits,
        "probabilities": probabilities,
        "pixels": [float(v) for v in x.reshape(-1)],
        "input_int": [int(v) for v in xq.reshape(-1)],
        "plaintext": plaintext,
        "server_saw": events.server_saw(stats, seconds, len(x)),
        "steps": len(progress.done),
        "options": dict(party.options),
    }
    emit(event)
    return event
