"""What a node's protocol runner is handed and what it is: :class:`Step`, :class:`NodeProtocol` and its :data:`Kind`.

A runner maps this party's shares of a node's inputs (a batch ``(B, *shape)`` each, in the rings the
:class:`~aiompc.nn.rings.RingPlan` gives) to its share of the node's output.  The runners live in
:mod:`aiompc.nn.node_runners` (the CNN layers of :mod:`aiompc.nn.ir`) and
:mod:`aiompc.nn.node_runners_transformer` (those of :mod:`aiompc.nn.ir_transformer`); the table of which runs which
node type is :data:`aiompc.nn.node_protocols.NODE_PROTOCOLS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal

import numpy as np

from aiompc.nn.ir import QGraph
from aiompc.nn.modes import EngineConfig
from aiompc.nn.rings import RingPlan
from aiompc.party import Party

__all__ = ["Kind", "Step", "Runner", "NodeProtocol"]

Kind = Literal["he", "ot", "local"]
"""How the bytes of a node are reported: HE linear layer, OT-based non-linear protocol, or local (none sent)."""


@dataclass(frozen=True)
class Step:
    """What a node's protocol needs besides the node and its inputs: the party, the graph (public view),
    the rings, the node's label and the session's configuration."""

    party: Party
    graph: QGraph
    rings: RingPlan
    label: str
    config: EngineConfig


Runner = Callable[[Step, Any, list[np.ndarray]], Awaitable[np.ndarray]]
"""``run(step, node, xs)``: this party's shares of the node's inputs to its share of the output (module docstring)."""


@dataclass(frozen=True)
class NodeProtocol:
    """How the engine evaluates one node type: its :data:`Kind` and its :data:`Runner`."""

    kind: Kind
    run: Runner
