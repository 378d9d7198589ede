"""Oblivious transfer: base OTs, IKNP extension, the OT engine and the flavours protocols use.

The flavours (:mod:`aiompc.protocols.ot.flavours`) are the public API of this package; they draw random
correlated OTs from the session's engine (:func:`get_engine`, :mod:`aiompc.protocols.ot.engine`).
"""

from aiompc.protocols.ot.engine import OTEngine, ReceiverCOTs, SenderCOTs, get_engine, register_engine
from aiompc.protocols.ot.flavours import bit_triples, chosen_ot, correlated_ot, one_of_n_ot, random_ot

__all__ = [
    "chosen_ot",
    "correlated_ot",
    "one_of_n_ot",
    "random_ot",
    "bit_triples",
    "get_engine",
    "register_engine",
    "OTEngine",
    "SenderCOTs",
    "ReceiverCOTs",
]
