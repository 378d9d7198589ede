"""A served model's receive limits, derived from what an honest session of its plan sends the server.

:func:`profile_session` runs the served program twice over the in-memory transport — both parties in this
process, one sample, then two — and reads the server's channel: the largest message on every label
(:attr:`~aiompc.channel.LabelStats.max_recv`), the most bytes held unread and the most labels with unread
messages.  Message sizes are affine in the batch (a protocol's messages are either per sample or
vectorised over the samples), so two batch sizes extrapolate each label exactly to a full chunk of
:data:`~aiompc.nn.service.CHUNK` samples (sessions run chunk after chunk, so a chunk is the most one
session's messages ever carry).  One exception: the quantized mode floods for the whole inference
(:mod:`aiompc.nn.stat_budget`), so its per-sample HE messages grow by about half a bit of ``q`` (≈ 0.5 %) per
doubling of the batch (two-uniform floods compose in quadrature), and the plans may change with the level: from
1 to 64 samples about 3 bits (≈ 4 %), which :data:`MARGIN` covers (the line through batches 1 and 2 usually overstates it).
The OT engine's generation messages are not affine in the batch (a
set or a batch size is chosen by demand): they count with their largest size (:func:`generation_message`).
:func:`limits_for` turns the profile into the server's bounds with a
margin (:data:`MARGIN` × the honest figure plus a fixed allowance), so an honest session never meets them
and a hostile one is stopped at a few times what the model needs.

Cost: one inference of one and one of two samples at server start (about a second for the shipped models;
a large network takes as long as its inference — pass explicit limits to skip it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from aiompc.channel import Limits
from aiompc.crypto.prg import PRG
from aiompc.nn.ir import QGraph
from aiompc.nn.modes import EngineConfig
from aiompc.party import Party
from aiompc.protocols.ot.engines import DEFAULT_ENGINE
from aiompc.session import run_local

__all__ = ["SessionProfile", "profile_session", "limits_for", "generation_message", "MARGIN"]

MARGIN = 2
"""Honest figures are multiplied by this (plus :data:`_SLACK_BYTES` / :data:`_SLACK_LABELS`)."""
_SLACK_BYTES = 1 << 20
_SLACK_LABELS = 64
_UNPACK_FACTOR = 8
"""A bit-packed message decodes to at most 8 × its size (1-bit values into ``uint8``, see :mod:`aiompc.wire`)."""


@dataclass(frozen=True)
class SessionProfile:
    """What the server received in an honest session of ``batch`` samples (extrapolated per label)."""

    batch: int
    largest_message: int
    buffered: int
    pending_labels: int


async def _run(graph: QGraph, config: EngineConfig, batch: int, ot: str) -> tuple[dict[str, int], int, int]:
    from aiompc.nn.service import client_session, serve_session

    rng = np.random.default_rng(int(PRG().integers(32, (1,))[0]))  # public dummy inputs: sizes only
    x = graph.quantize_input(rng.normal(0.0, 1.0, (batch, *graph.input_spec.shape)))
    peaks: dict[str, tuple[dict[str, int], int, int]] = {}

    async def server(party: Party) -> None:
        try:
            await serve_session(party, graph, config, max_samples=batch)
        finally:
            ch = party.channel
            peaks["s"] = ({k: v.max_recv for k, v in ch.stats().labels.items() if v.max_recv},
                          ch.peak_buffered, ch.peak_pending_labels)

    async def client(party: Party) -> None:
        await client_session(party, graph, x, config)

    await run_local(server, client, options={**config.to_options(), "ot": ot})
    return peaks["s"]


def _affine(one: int, two: int, batch: int) -> int:
    return max(one, two, one + (batch - 1) * (two - one))


_PROFILES: dict[str, SessionProfile] = {}
_MAX_PROFILES = 64


def _key(graph: QGraph, config: EngineConfig, batch: int, ot: str) -> str:
    """Message sizes depend on the architecture and the plan, not on the weights: the metadata view is the key."""
    return json.dumps([graph.to_dict(include_weights=False), config.to_options(), batch, ot], sort_keys=True,
                      default=str)


async def profile_session(graph: QGraph, config: EngineConfig, batch: int, ot: str = DEFAULT_ENGINE) -> SessionProfile:
    """The server's receive profile of an honest session of ``batch`` samples with the OT engine ``ot``
    (see the module docstring); remembered per architecture, configuration, batch and engine (at most
    :data:`_MAX_PROFILES` of them) within the process."""
    key = _key(graph, config, batch, ot)
    known = _PROFILES.get(key)
    if known is None:
        known = await _profile(graph, config, batch, ot)
        if len(_PROFILES) >= _MAX_PROFILES:
            _PROFILES.pop(next(iter(_PROFILES)))
        _PROFILES[key] = known
    return known


async def _profile(graph: QGraph, config: EngineConfig, batch: int, ot: str) -> SessionProfile:
    m1, b1, p1 = await _run(graph, config, 1, ot)
    m2, b2, p2 = await _run(graph, config, 2, ot) if batch > 1 else (m1, b1, p1)
    largest = max((_affine(m1.get(k, 0), m2.get(k, 0), batch) for k in {*m1, *m2} if not k.startswith("ot/")),
                  default=0)
    return SessionProfile(batch, max(largest, generation_message(ot)),
                          _affine(b1, b2, batch), _affine(p1, p2, batch))


def generation_message(engine: str) -> int:
    """The largest message the OT engine's generation protocol sends (not affine in the batch: a small
    session uses the bootstrap set or one minimum batch, a large one the main set or the largest batch):
    Ferret's main-set answer, or IKNP's largest batch (16 bytes per COT)."""
    from aiompc.crypto.ferret.extension import PUBLISHED_SCHEDULE, SEED_BYTES
    from aiompc.protocols.ot.engine import PooledEngine

    if engine == "silent":
        return SEED_BYTES + max(PUBLISHED_SCHEDULE.main.message_bytes, PUBLISHED_SCHEDULE.bootstrap.message_bytes)
    return 16 * PooledEngine.max_batch


def limits_for(profile: SessionProfile, base: Limits | None = None) -> tuple[Limits, int]:
    """``(channel limits, max message size)`` for a server whose honest sessions look like ``profile``:
    each figure × :data:`MARGIN` plus a fixed allowance; decoding at most 8 × the message limit.  Other
    fields (timeouts, message cost) come from ``base``."""
    base = base or Limits()
    message = MARGIN * profile.largest_message + _SLACK_BYTES
    buffered = MARGIN * max(profile.buffered, message) + _SLACK_BYTES
    limits = Limits(
        max_buffered_bytes=buffered,
        max_label_bytes=buffered,
        max_pending_labels=MARGIN * profile.pending_labels + _SLACK_LABELS,
        max_decoded_bytes=_UNPACK_FACTOR * message,
        idle_timeout=base.idle_timeout,
        stall_timeout=base.stall_timeout,
        message_cost=base.message_cost,
    )
    return limits, message
