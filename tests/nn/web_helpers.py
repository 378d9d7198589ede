"""Helpers of the web demo's tests: the bundled model's parts, servers that fail, an event loop in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Coroutine, TypeVar

from aiompc.nn.ir import QGraph
from aiompc.nn.modes import EngineConfig
from aiompc.nn.secure import LayerRecord, run_secure
from aiompc.party import Party
from aiompc.session import Server, listen

T = TypeVar("T")


def closed_port_url() -> str:
    """A ws:// URL on 127.0.0.1 where nothing listens (a port the OS gave out and that was closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}/aiompc"


async def dying_server(graph: QGraph) -> Server:
    """A model server that runs the first layer of the secure inference, then dies (its session raises)."""

    async def handler(party: Party) -> None:
        await party.sub("request").recv()

        def die(record: LayerRecord) -> None:
            raise RuntimeError(f"the test server dies after {record.name}")

        await run_secure(party, graph, batch=1, config=EngineConfig(), label="b0", on_layer=die)

    return await listen(handler, "ws://127.0.0.1:0/aiompc", options=EngineConfig().to_options(),
                        meta={"model": graph.to_dict(include_weights=False)})


class LoopThread:
    """An asyncio event loop in a daemon thread, for async servers beside a synchronous browser driver."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
