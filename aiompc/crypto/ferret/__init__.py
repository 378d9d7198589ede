"""Ferret silent correlated-OT extension: the pure math (no I/O).

* :mod:`~aiompc.crypto.ferret.params` — the published 128-bit parameter sets and forced test sets;
* :mod:`~aiompc.crypto.ferret.blocks` — 128-bit blocks as ``(n, 2)`` uint64 arrays, fixed-key AES;
* :mod:`~aiompc.crypto.ferret.ggm` — GGM tree expansion (full and punctured) over many trees at once;
* :mod:`~aiompc.crypto.ferret.spcot` — ``t`` single-point COTs from GGM trees (multi-point COT);
* :mod:`~aiompc.crypto.ferret.lpn` — the local linear code and the streamed LPN encoder;
* :mod:`~aiompc.crypto.ferret.extension` — one direction's sender and receiver state machines.

The two-party protocol that moves the messages is :mod:`aiompc.protocols.ot.silent`.
"""

from aiompc.crypto.ferret.blocks import FixedKeyAES, lsb, public_key
from aiompc.crypto.ferret.extension import PUBLISHED_SCHEDULE, FerretReceiver, FerretSchedule, FerretSender
from aiompc.crypto.ferret.ggm import GGMTrees, expand, expand_punctured
from aiompc.crypto.ferret.lpn import LocalLinearCode
from aiompc.crypto.ferret.params import BOOTSTRAP, MAIN, PUBLISHED, FerretParams, toy_params
from aiompc.crypto.ferret.spcot import MpcotMessage, mpcot_receive, mpcot_send, punctured_positions

__all__ = [
    "BOOTSTRAP",
    "MAIN",
    "PUBLISHED",
    "FerretParams",
    "FerretReceiver",
    "FerretSchedule",
    "FerretSender",
    "PUBLISHED_SCHEDULE",
    "FixedKeyAES",
    "GGMTrees",
    "LocalLinearCode",
    "MpcotMessage",
    "expand",
    "expand_punctured",
    "lsb",
    "mpcot_receive",
    "mpcot_send",
    "public_key",
    "punctured_positions",
    "toy_params",
]
