"""The linear-layer planners by name: one explicit table.

=================  =======================================================================================
name               planner
=================  =======================================================================================
cheetah            Cheetah's tiling and published parameters (``N = 4096``, ``q ~ 2^109``), 40-bit flooding
cheetah-smallest   Cheetah's tiling with the smallest secure ``q`` for the layer (tests at small ``l``)
cheetah-baseline   Cheetah's tiling and parameters with the strongest flooding (≤ 40 bits) that decrypts
quantized          the cost-driven search over ``N``, ``q``, tiles and packing (the quantized mode)
=================  =======================================================================================

The protocols take a planner *object* (:class:`~aiompc.protocols.linear.plan.Planner`); names are for the
command line and reports.  A new planner is one more row here.
"""

from __future__ import annotations

from aiompc.errors import InputError
from aiompc.protocols.linear.plan import CheetahBaselinePlanner, CheetahPlanner, Planner
from aiompc.protocols.linear.quantized import QuantizedPlanner

__all__ = ["PLANNERS", "planner_named"]

PLANNERS: dict[str, Planner] = {
    "cheetah": CheetahPlanner(),
    "cheetah-smallest": CheetahPlanner(he="smallest"),
    "cheetah-baseline": CheetahBaselinePlanner(),
    "quantized": QuantizedPlanner(),
}


def planner_named(name: str) -> Planner:
    """The planner called ``name`` in :data:`PLANNERS`; :class:`InputError` naming the known ones otherwise."""
    try:
        return PLANNERS[name]
    except KeyError:
        raise InputError(f"unknown planner {name!r}; known: {', '.join(PLANNERS)}") from None
