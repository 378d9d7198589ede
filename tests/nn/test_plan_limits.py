"""Limits derived from the served model's plan (issue 23, Build 1 and 4): every shipped model in both modes
is served over TCP with the limits ``serve`` derives by default, and an honest client of a full chunk of
samples never meets them (the server's recorded peaks stay below them); a message above the derived size is
refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import aiompc
from aiompc.errors import MessageTooLarge, TransportClosed
from aiompc.nn.modes import mode_named
from aiompc.nn.plan_limits import MARGIN, SessionProfile, generation_message, limits_for
from aiompc.nn.service import CHUNK, load_model
from aiompc.nn.zoo import SHIPPED_MODELS, digits_data, shipped_model
from aiompc.session import ServerPolicy, connect


def test_limits_follow_the_profile_with_a_margin() -> None:
    profile = SessionProfile(64, 3 << 20, 5 << 20, 10)
    limits, message = limits_for(profile)
    assert message >= MARGIN * profile.largest_message and message < MARGIN * profile.largest_message + (2 << 20)
    assert limits.max_buffered_bytes >= MARGIN * profile.buffered and limits.max_pending_labels >= MARGIN * 10
    assert limits.max_decoded_bytes == 8 * message
    assert generation_message("silent") < generation_message("iknp") == 16 << 20


def _x(n: int) -> np.ndarray:
    d = digits_data()
    return d.x_test[:n]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["quantized", "cheetah"])
@pytest.mark.parametrize("name", SHIPPED_MODELS)
async def test_every_shipped_model_passes_under_the_derived_limits(name: str, mode: str) -> None:
    from tests.nn.test_shipped_models import _not_yet_quantizable

    if _not_yet_quantizable(shipped_model(name)):
        pytest.skip(f"{name}: aiompc cannot quantize it yet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = load_model(shipped_model(name), graph=mode_named(mode).program)
    async with await aiompc.serve(graph, "tcp://127.0.0.1:0", mode=mode, policy=ServerPolicy(max_sessions=2)) as server:
        limits = server.channel_limits
        n = CHUNK if name == "digits_cnn" else 2  # a full chunk once per mode (the limits are per chunk)
        y = await aiompc.infer(_x(n), server.url)
        assert y.shape == (n, 10) and server.sessions_ok == 1 and server.sessions_failed == 0
        assert server.peak_message <= server.max_message_size / MARGIN  # honest use stays below half the limit
        assert server.peak_buffered <= limits.max_buffered_bytes
        assert server.peak_pending_labels <= limits.max_pending_labels
        assert server.max_message_size < 64 << 20  # tighter than the old fixed 64 MiB


async def test_a_message_above_the_derived_size_is_refused() -> None:
    graph = load_model(shipped_model("digits_cnn"))
    async with await aiompc.serve(graph, "tcp://127.0.0.1:0", policy=ServerPolicy(max_sessions=2)) as server:
        async with connect(server.url) as party:
            with pytest.raises((TransportClosed, MessageTooLarge)):
                await party.sub("request").send_bytes(bytes(server.max_message_size + 1))
                await party.sub("x").recv()
        assert {r.error for r in server.recent} == {"MessageTooLarge"}
        y = await aiompc.infer(_x(2), server.url)  # the server keeps serving
        assert y.shape == (2, 10)
