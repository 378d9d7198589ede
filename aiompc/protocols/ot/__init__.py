"""Oblivious transfer: base OTs, IKNP extension, the OT engine and the flavours protocols use.

The flavours (:mod:`aiompc.protocols.ot.flavours`) are the public API of this package; they draw random
correlated OTs from the session's engine (:func:`get_engine`; the engines by kind are :data:`ENGINES`).
"""

from aiompc.protocols.ot.engine import OTEngine, ReceiverCOTs, SenderCOTs
from aiompc.protocols.ot.engines import DEFAULT_ENGINE, ENGINES, engine_kinds, get_engine
from aiompc.protocols.ot.flavours import (
    bit_triples,
    chosen_ot,
    correlated_ot,
    correlated_ot_widths,
    one_of_n_ot,
    random_ot,
)

__all__ = [
    "chosen_ot",
    "correlated_ot",
    "correlated_ot_widths",
    "one_of_n_ot",
    "random_ot",
    "bit_triples",
    "get_engine",
    "ENGINES",
    "DEFAULT_ENGINE",
    "engine_kinds",
    "OTEngine",
    "SenderCOTs",
    "ReceiverCOTs",
]
