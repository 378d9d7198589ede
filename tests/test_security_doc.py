"""SECURITY.md states exactly what the handshake reveals: every field a real handshake sends (hello, reply,
options, model metadata, tensors, nodes) must be on its documented list."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import aiompc
from aiompc import wire
from aiompc.nn.testing import random_qgraph
from aiompc.nn.zoo import digits_fixed_point, digits_model
from aiompc.session import ServerPolicy, connect
from aiompc.transports.base import Direction, Transport

DOC = Path(__file__).resolve().parents[1] / "SECURITY.md"


def documented() -> dict[str, set[str]]:
    block = re.search(r"```handshake-fields\n(.*?)```", DOC.read_text(), re.S)
    assert block, "SECURITY.md has no handshake-fields block"
    out = {}
    for line in block.group(1).strip().splitlines():
        name, keys = line.split(":", 1)
        out[name.strip()] = set(keys.split())
    return out


class Recorder(Transport):
    """Records every message the client sends and receives."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.sent: list[bytes] = []
        self.received: list[bytes] = []

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))
        await self.inner.send(data)

    async def recv(self) -> bytes:
        msg = await self.inner.recv()
        self.received.append(bytes(msg))
        return msg

    async def close(self) -> None:
        await self.inner.close()

    @property
    def closed(self) -> bool:
        return self.inner.closed

    def overhead(self, size: int, direction: Direction) -> int:
        return self.inner.overhead(size, direction)


def handshake_messages(frames: list[bytes]) -> list[Any]:
    out = []
    for f in frames:
        n = int.from_bytes(f[:2], "little")
        if f[2 : 2 + n] == b"handshake":
            out.append(wire.decode(f[2 + n :]))
    return out


def undocumented(hello: dict[str, Any], reply: dict[str, Any], doc: dict[str, set[str]]) -> list[str]:
    bad = [f"hello.{k}" for k in hello if k not in doc["hello"]]
    bad += [f"reply.{k}" for k in reply if k not in doc["reply"]]
    bad += [f"options.{k}" for k in reply.get("options", {}) if k not in doc["options"]]
    meta = reply.get("meta", {})
    bad += [f"meta.{k}" for k in meta if k not in doc["meta"]]
    model = meta.get("model", {})
    bad += [f"model.{k}" for k in model if k not in doc["model"]]
    bad += [f"tensor.{k}" for t in model.get("tensors", []) for k in t if k not in doc["tensor"]]
    bad += [f"node.{k}" for n in model.get("nodes", []) for k in n if k not in doc["node"]]
    return bad


async def capture(graph: Any, mode: str, token: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    policy = ServerPolicy(token=token) if token else None
    recorders: list[Recorder] = []

    def wrap(t: Transport) -> Transport:
        recorders.append(Recorder(t))
        return recorders[-1]

    async with await aiompc.serve(graph, "tcp://127.0.0.1:0", mode=mode, policy=policy) as server:
        async with connect(server.url, transport_wrapper=wrap, token=token, options={"ot": "silent"}):
            pass
    (hello,) = handshake_messages(recorders[0].sent)
    (reply,) = handshake_messages(recorders[0].received)
    return hello, reply


@pytest.mark.parametrize("which", ["digits-quantized", "digits-cheetah", "random-blocks"])
async def test_the_handshake_sends_only_documented_fields(which: str) -> None:
    if which == "digits-quantized":
        graph, mode = digits_model(), "quantized"
    elif which == "digits-cheetah":
        graph, mode = digits_fixed_point(), "cheetah"
    else:
        graph, mode = random_qgraph(1)[0], "quantized"
    hello, reply = await capture(graph, mode, token="t0ken")
    assert reply["ok"] is True and hello["token"] == "t0ken"
    assert "t0ken" not in repr(reply)  # never echoed
    assert undocumented(hello, reply, documented()) == []
    assert not any("weight" == k or k.startswith("weights") for n in reply["meta"]["model"]["nodes"] for k in n)


def test_the_check_catches_an_undocumented_field() -> None:
    doc = documented()
    assert undocumented({"proto": 1}, {"ok": True, "meta": {"model": {"nodes": [{"op": "conv", "secret": 1}]}}},
                        doc) == ["node.secret"]
