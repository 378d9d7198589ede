"""The Party actor: one side of a two-party session.

A :class:`Party` bundles what every protocol coroutine needs: its ``role`` (``"server"`` holds the
model, ``"client"`` holds the input and the HE secret key), the labelled :class:`~aiompc.channel.Channel`
to the peer, a CSPRNG (:class:`~aiompc.crypto.prg.PRG`, seeded from ``os.urandom``), the options both
parties agreed on in the handshake, a ``state`` dict for per-session caches (OT engine, HE keys,
transformed weights), ``parts`` (threads a large step is split over), and an executor for heavy numpy work: ``await party.compute(fn, *args)`` runs
``fn`` in a thread so the event loop keeps moving messages while a tile computes (numpy releases the
GIL in its kernels, so both cores are used).
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Callable, Literal, TypeVar

from aiompc.channel import Channel, Phase, SubChannel
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError
from aiompc.kernels.threads import default_parts

__all__ = ["Party", "Role", "default_executor"]

Role = Literal["server", "client"]
T = TypeVar("T")

_DEFAULT_EXECUTOR: ThreadPoolExecutor | None = None


def default_executor() -> ThreadPoolExecutor:
    """A process-wide thread pool for numpy kernels, created on first use (not at import)."""
    global _DEFAULT_EXECUTOR
    if _DEFAULT_EXECUTOR is None:
        _DEFAULT_EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aiompc-compute")
    return _DEFAULT_EXECUTOR


class Party:
    """One side of a session: role, channel, randomness, agreed options, caches, executor."""

    def __init__(
        self,
        role: Role,
        channel: Channel,
        *,
        rng: PRG | None = None,
        executor: Executor | None = None,
        options: dict[str, Any] | None = None,
        parts: int | None = None,
    ) -> None:
        if role not in ("server", "client"):
            raise InputError(f"role must be 'server' or 'client', got {role!r}")
        self.role: Role = role
        self.channel = channel
        self.rng = rng if rng is not None else PRG()
        self.executor = executor
        self.options: dict[str, Any] = dict(options or {})
        self.state: dict[str, Any] = {}
        if parts is not None and parts < 1:
            raise InputError(f"parts must be at least 1, got {parts}")
        self.parts = default_parts() if parts is None else parts
        """Threads one large step of this party's work (a layer's HE multiply-accumulate, a batch of
        re-randomisations) is split over (:func:`aiompc.kernels.threads.run_parts`; results do not depend on
        it).  Default: every core this process may use — on two machines each party has its own."""

    def __repr__(self) -> str:
        return f"Party(role={self.role!r})"

    @property
    def is_server(self) -> bool:
        return self.role == "server"

    @property
    def is_client(self) -> bool:
        return self.role == "client"

    @property
    def peer_role(self) -> Role:
        return "client" if self.role == "server" else "server"

    def sub(self, label: str, *, phase: Phase = "online") -> SubChannel:
        """Shortcut for ``party.channel.sub(label, phase=phase)``."""
        return self.channel.sub(label, phase=phase)

    async def compute(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in the executor and await its result."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs) if kwargs else (lambda: fn(*args))
        return await loop.run_in_executor(self.executor or default_executor(), call)

    async def close(self) -> None:
        """Close the channel (and so the transport)."""
        await self.channel.close()
