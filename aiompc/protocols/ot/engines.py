"""The OT engines by kind: one explicit table, and the session's engine.

=======  ===============================================================================
kind     engine
=======  ===============================================================================
silent   Ferret silent OT (:mod:`aiompc.protocols.ot.silent`): under a bit per COT; the default
iknp     IKNP OT extension (:mod:`aiompc.protocols.ot.iknp_engine`): 128 bits per COT
=======  ===============================================================================

A session names its engine in its options (``party.options["ot"]``, agreed in the handshake); a new
engine is one more row in :data:`ENGINES`.
"""

from __future__ import annotations

from typing import Callable

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.protocols.ot.engine import OTEngine
from aiompc.protocols.ot.iknp_engine import IKNPEngine
from aiompc.protocols.ot.silent import SilentEngine

__all__ = ["ENGINES", "DEFAULT_ENGINE", "engine_kinds", "get_engine"]

ENGINES: dict[str, Callable[[Party], OTEngine]] = {
    "silent": SilentEngine,
    "iknp": IKNPEngine,
}
"""Engine kind -> factory of the session's engine."""

DEFAULT_ENGINE = "silent"
"""The kind used when a session's options do not name one (tests may switch it, see tests/protocols/conftest.py)."""


def engine_kinds() -> list[str]:
    """The engine kinds that can be selected."""
    return sorted(ENGINES)


def get_engine(party: Party) -> OTEngine:
    """The session's OT engine (created on first use from ``party.options.get("ot", DEFAULT_ENGINE)``)."""
    engine = party.state.get("ot_engine")
    if engine is None:
        kind = party.options.get("ot", DEFAULT_ENGINE)
        if kind not in ENGINES:
            raise InputError(f"unknown OT engine {kind!r}; choose one of {', '.join(engine_kinds())}")
        engine = party.state["ot_engine"] = ENGINES[kind](party)
    return engine
