"""Serving a model and asking it for predictions: :func:`serve` and :func:`infer`.

A session: the handshake carries the engine settings in ``options`` (``mode``, ``exact``, ``output``
and ``graph``, the integer program: ``fixed-point`` or ``quantized``, see :mod:`aiompc.nn.modes`; a
client asking for a different value gets a :class:`HandshakeError`) and the model's *metadata* in
``meta`` (:meth:`QGraph.to_dict` without weights): the client needs nothing else to run either program.
The client then sends ``{"samples": n}`` on the label ``"request"`` and both parties run
:func:`~aiompc.nn.secure.run_secure` on chunks of up to :data:`CHUNK` samples under the labels ``"b0"``,
``"b1"``, …  The server never sees an input, an intermediate value or an output.
"""

from __future__ import annotations

import asyncio
import os
import ssl as ssl_module
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from aiompc.errors import InputError, ProtocolError
from aiompc.nn.ir import QGraph
from aiompc.nn.modes import EngineConfig, GraphKind, Mode, Output, mode_named, mode_options
from aiompc.nn.prepare import prepare_model
from aiompc.nn.quant_choices import DATASETS, RANDOM_CALIBRATION_SAMPLES, RandomCalibrationWarning, random_calibration
from aiompc.nn.plan_limits import limits_for, profile_session
from aiompc.nn.secure import LayerRecord, SecureResult, run_secure
from aiompc.party import Party
from aiompc.protocols.linear.weight_cache import STATE_KEY as WEIGHT_CACHE_KEY
from aiompc.protocols.linear.weight_cache import WeightCache
from aiompc.protocols.ot.engines import DEFAULT_ENGINE, ENGINES
from aiompc.session import Server, ServerPolicy, connect, listen

__all__ = ["load_model", "serve", "infer", "serve_session", "client_session", "input_batch", "MAX_SAMPLES"]

MAX_SAMPLES = 100_000
CHUNK = 64  # samples evaluated together (memory stays bounded; non-linear layers vectorise over them)


def load_model(
    source: str | os.PathLike[str] | QGraph,
    *,
    calibration: np.ndarray | None = None,
    config: Any = None,
    graph: GraphKind = "quantized",
) -> QGraph:
    """The integer program ``graph`` of a :class:`QGraph` or an ONNX file (float or QDQ).

    ``graph="quantized"`` quantizes the model (:func:`~aiompc.nn.quantize.quantize` with ``config``): a
    float model is calibrated on ``calibration`` inputs ``(N, *input_shape)``, or without them on random
    normal inputs with a :class:`~aiompc.nn.quant_choices.RandomCalibrationWarning`; the bundled demo model
    (``aiompc/models/digits_cnn.onnx``) brings its own calibration batch and settings.
    ``graph="fixed-point"`` is the float model in Cheetah's 37-bit fixed point
    (:func:`~aiompc.nn.fixed_point.fixed_point`; no calibration, QDQ annotations ignored).
    A :class:`QGraph` is returned as it is, checked by :meth:`QGraph.validate` if quantized; a
    fixed-point graph's widths are declared, not proven, so only its metadata view is checked.
    """
    if graph not in ("quantized", "fixed-point"):
        raise InputError(f"graph must be 'quantized' or 'fixed-point', got {graph!r}")
    if isinstance(source, QGraph):
        if graph == "fixed-point":
            source.without_weights()
            return source
        return source.validate()
    from aiompc.nn import zoo
    from aiompc.nn.fixed_point import fixed_point
    from aiompc.nn.onnx_import import load_onnx
    from aiompc.nn.quantize import MissingCalibration, quantize

    path = Path(source)
    if not path.is_file():
        raise InputError(f"model file {str(path)!r} not found")
    if graph == "fixed-point":
        return fixed_point(load_onnx(path))
    if path.resolve() == zoo.DIGITS_ONNX.resolve() and calibration is None and config is None:
        return zoo.digits_model(path)
    fgraph = load_onnx(path)
    try:
        return quantize(fgraph, calibration, config)
    except MissingCalibration:
        if calibration is not None:
            raise
    warnings.warn(RandomCalibrationWarning(
        f"{path.name}: no calibration inputs were given, so its activation scales were calibrated on "
        f"{RANDOM_CALIBRATION_SAMPLES} random normal inputs; accuracy may suffer. Pass typical inputs "
        f"(CLI: --calibration FILE.npy or --calibration {'|'.join(DATASETS)}; Python: calibration=array)"),
        stacklevel=2)
    return quantize(fgraph, random_calibration(fgraph.input_shape), config)


def _chunks(n: int, size: int = CHUNK) -> list[tuple[int, int]]:
    return [(i, min(n, i + size)) for i in range(0, n, size)]


async def serve_session(party: Party, graph: QGraph, config: EngineConfig, max_samples: int = MAX_SAMPLES) -> int:
    """The server's side of one session after the handshake; returns the number of samples served."""
    request = await party.sub("request").recv()
    if not isinstance(request, dict) or not isinstance(request.get("samples"), int):
        raise ProtocolError("malformed request: expected {'samples': n}")
    n = request["samples"]
    if not 1 <= n <= max_samples:
        raise ProtocolError(f"request for {n} samples; this server serves 1..{max_samples} per session")
    for k, (lo, hi) in enumerate(_chunks(n)):
        await run_secure(party, graph, batch=hi - lo, config=config, label=f"b{k}")
    return n


async def client_session(
    party: Party, graph: QGraph, x_int: np.ndarray, config: EngineConfig,
    on_layer: Callable[[LayerRecord], None] | None = None,
) -> SecureResult:
    """The client's side of one session: ``x_int`` is a batch ``(n, *input_shape)`` of quantized inputs.

    Runs in chunks of :data:`CHUNK` samples; returns all outputs and every chunk's layer records."""
    await party.sub("request").send({"samples": int(len(x_int))})
    outputs, records = [], []
    for k, (lo, hi) in enumerate(_chunks(len(x_int))):
        res = await run_secure(party, graph, x_int[lo:hi], config=config, label=f"b{k}", on_layer=on_layer)
        outputs.append(res.output)
        records += res.layers
    return SecureResult(np.concatenate(outputs), records)


async def serve(
    model: str | os.PathLike[str] | QGraph,
    url: str,
    *,
    mode: Mode | str = "quantized",
    output: Output = "logits",
    ssl: ssl_module.SSLContext | None = None,
    calibration: np.ndarray | None = None,
    max_samples: int = MAX_SAMPLES,
    policy: ServerPolicy | None = None,
    max_message_size: int | None = None,
    weight_cache: WeightCache | None = None,
    prepare: bool = True,
    ot: str = DEFAULT_ENGINE,
) -> Server:
    """Serve ``model`` at ``url`` (``tcp://``, ``ws://``, ``tls://``, ``wss://``) until the returned
    :class:`~aiompc.session.Server` is closed.  Sessions are independent and concurrent.

    The server's weight plaintexts depend only on the model and the plan, so one
    :class:`~aiompc.protocols.linear.weight_cache.WeightCache` (bounded in bytes; ``weight_cache``, or a
    new one per call) is shared by every session.  With ``prepare`` (the default) the model is prepared
    before the server listens (:func:`~aiompc.nn.prepare.prepare_model` in a worker thread: every HE layer's
    plan, and its weight plaintexts pinned in the cache while they fit), so no session waits for it;
    otherwise a layer's weights are prepared by the first session that needs them and reused by the others.

    ``mode`` (a name of :data:`~aiompc.nn.modes.MODES` or a :class:`~aiompc.nn.modes.Mode`) decides the
    protocol and, for an ONNX file, the integer program (:func:`load_model` with ``mode.program``); a
    :class:`QGraph` runs as given and must be that program.  ``output``: what the client learns, the
    logits or only the top class.  The mode is announced in the handshake.  ``policy``
    (:class:`~aiompc.session.ServerPolicy`) bounds what one client may cost the server (sessions, timeouts,
    buffering, an access token); ``max_message_size`` bounds one message after the handshake.  Where
    either is left unset (``policy.channel is None``, ``max_message_size=None``) it is derived from the
    served model's plan: an honest session of one and of two samples runs locally first and the limits are
    a small multiple of what it sent (:mod:`aiompc.nn.plan_limits`).  ``ot``: the OT engine the sessions
    use (:data:`~aiompc.protocols.ot.engines.ENGINES`; announced in the handshake, a client asking for
    another is refused)."""
    config = EngineConfig(mode_named(mode), output)
    if ot not in ENGINES:
        raise InputError(f"unknown OT engine {ot!r}; choose one of {', '.join(ENGINES)}")
    qgraph = load_model(model, calibration=calibration, graph=config.mode.program)
    policy = policy or ServerPolicy()
    if policy.channel is None or max_message_size is None:
        profile = await profile_session(qgraph, config, min(CHUNK, max_samples), ot)
        derived, message = limits_for(profile)
        policy = replace(policy, channel=policy.channel or derived)
        max_message_size = message if max_message_size is None else max_message_size

    weights = WeightCache() if weight_cache is None else weight_cache
    if prepare:
        await asyncio.to_thread(prepare_model, qgraph, config, weights)

    async def handler(party: Party) -> None:
        party.state[WEIGHT_CACHE_KEY] = weights
        await serve_session(party, qgraph, EngineConfig.from_options(party.options), max_samples)

    return await listen(handler, url, ssl=ssl, options={**config.to_options(), "ot": ot},
                        meta={"model": qgraph.to_dict(include_weights=False)}, policy=policy,
                        max_message_size=max_message_size)


def input_batch(graph: QGraph, x: np.ndarray) -> tuple[np.ndarray, bool]:
    """Quantized integer batch from float input ``(n, *shape)`` or ``(*shape)``; and whether it was batched."""
    shape = graph.input_spec.shape
    x = np.asarray(x)
    single = x.shape == shape
    if not single and (x.ndim != len(shape) + 1 or x.shape[1:] != shape):
        raise InputError(f"input has shape {x.shape}; the model expects {shape} or (n, {', '.join(map(str, shape))})")
    if x.dtype.kind not in "fiu":
        raise InputError(f"input must be numeric, got dtype {x.dtype}")
    xb = x[None] if single else x
    if len(xb) == 0:
        raise InputError("empty input batch")
    return graph.quantize_input(xb.astype(np.float64)), single


async def infer(
    x: np.ndarray,
    url: str,
    *,
    mode: Mode | str | None = None,
    ssl: ssl_module.SSLContext | None = None,
    token: str | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Ask the server at ``url`` for a private prediction of the float input ``x`` (``(n, *shape)`` or one sample).

    Returns the dequantized float logits ``(n, classes)`` — or the class indices ``(n,)`` when the server
    reveals only the argmax — for a single sample without the leading axis.  ``mode`` insists on the
    server's mode (a mismatch raises :class:`~aiompc.errors.HandshakeError`); ``None`` takes whatever the
    server runs.  ``token``: the server's access token, if it requires one.  ``progress``: a layer progress
    bar on stderr (``None``: when stderr is a terminal), as ``aiompc run`` shows.
    """
    async with connect(url, ssl=ssl, options=mode_options(mode) if mode is not None else None, token=token) as party:
        graph = QGraph.from_dict(party.state["server_meta"]["model"])
        xq, single = input_batch(graph, x)
        config = EngineConfig.from_options(party.options)
        bar = tqdm(total=len(_chunks(len(xq))) * (len(graph.nodes) + 1), desc="layers", unit="layer",
                   file=sys.stderr, leave=False, disable=not sys.stderr.isatty() if progress is None else not progress)
        try:
            result = await client_session(party, graph, xq, config, on_layer=lambda _: bar.update())
        finally:
            bar.close()
    y = result.output if config.output == "argmax" else graph.dequantize_output(result.output)  # type: ignore[arg-type]
    return y[0] if single else y
