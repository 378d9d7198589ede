"""The methods of the cross terms of a shared × shared matrix product, by name: one explicit table.

=====  ======================================================================================================
name   runner
=====  ======================================================================================================
he     :func:`aiompc.protocols.linear.matmul.cross_he` — the client's operand encrypted, the server's share as the
       plaintext (split into digits), the fc engine's packing, flooding and byte model
ot     :func:`aiompc.protocols.nonlinear.gilboa.cross_ot` — Gilboa's product, one correlated OT per bit of the
       client's operand
=====  ======================================================================================================

:func:`~aiompc.protocols.linear.matmul.matmul_shared` takes the table as ``methods=`` (the HE linear package
never imports OT, so the table that holds both lives here, above the two families) and ``cot_bits=``
(:func:`cot_bits`); its planner then picks the cheaper method per cross term and never names one that is not
in the table.  A new method is one more row here.
"""

from __future__ import annotations

from aiompc.party import Party
from aiompc.protocols.linear.matmul import CrossRunner, cross_he
from aiompc.protocols.nonlinear.gilboa import cross_ot
from aiompc.protocols.nonlinear.millionaire import COT_BITS
from aiompc.protocols.ot import engines

__all__ = ["CROSS_METHODS", "cot_bits"]

CROSS_METHODS: dict[str, CrossRunner] = {"he": cross_he, "ot": cross_ot}


def cot_bits(party: Party) -> float:
    """Modelled bits per random COT of the session's OT engine (``party.options["ot"]``, agreed in the
    handshake, so both parties price OT alike): :data:`~aiompc.protocols.nonlinear.millionaire.COT_BITS`."""
    kind = party.options.get("ot", engines.DEFAULT_ENGINE)
    return COT_BITS.get(kind, COT_BITS["iknp"])
