"""The secure inference engine: both parties walk the same integer graph on secret shares.

Everything runs on a batch of samples at once: the non-linear protocols are vectorised over the batch,
the HE layers run one sample per concurrent sub-label (``f"{label}/b{i}"``) so tiles of different samples
pipeline.  The server holds the full :class:`~aiompc.nn.ir.QGraph` (with weights); the client holds its metadata
view (``QGraph.without_weights()``, received in the session handshake) and the input.  Both call
:func:`run_secure` with the same ``label`` and :class:`~aiompc.nn.modes.EngineConfig`; every node becomes one
protocol call on the sub-channel ``f"{label}/{node.name}"``, looked up in one table
(:data:`aiompc.nn.node_protocols.NODE_PROTOCOLS`):

================  =====================================================================
node              protocol
================  =====================================================================
Conv / Linear     :func:`aiompc.protocols.linear.conv2d` / :func:`aiompc.protocols.linear.fc` (HE)
ChannelAffine     :func:`aiompc.protocols.linear.batchnorm` (HE)
Requantize        :func:`aiompc.protocols.nonlinear.requantize` (OT), output in the consumer's ring
Relu / Clip       :func:`aiompc.protocols.nonlinear.relu` / requantize with ``M = 1, s = 0`` (OT)
PartialRelu(-     :func:`aiompc.protocols.nonlinear.partial_relu` / ``partial_relu_requantize``: the
Requantize)       kept elements only run a ReLU (OT), the identity elements their requantization or nothing
MaxPool           :func:`aiompc.protocols.nonlinear.maxpool2d` (OT)
SumPool / Add /   local on shares (window sums, public rescales, concatenation, reshape)
Concat / Flatten
MatMul            :func:`aiompc.protocols.linear.fc` on the batch's token rows ``(B·S, K)`` (HE)
Transpose /       local on shares (head reshapes and splits, sums); AddConst: the server adds its
Reshape / Slice / constant to its share
ReduceSum /
AddConst
Lookup            :func:`aiompc.protocols.nonlinear.lookup` (OT): a public table of a k-bit value
MatMulShared      :func:`aiompc.protocols.linear.matmul.matmul_shared`: local terms, cross terms by HE
                  or OT (the cost model's choice at the session's OT engine)
SoftmaxQ          :func:`aiompc.protocols.nonlinear.softmax.softmax_q` (OT)
LayerNormQ        :func:`aiompc.protocols.nonlinear.layernorm.layernorm_q` (OT)
FeatureAffine     :func:`aiompc.protocols.nonlinear.multiply.multiply_private` by the server's weights (OT)
SoftmaxFx /       Iron's fixed-point :func:`~aiompc.protocols.nonlinear.iron.softmax_fx` / ``gelu_fx`` /
GeluFx /          ``layernorm_fx`` (OT) on Cheetah's 37-bit ring
LayerNormFx
================  =====================================================================

Each record also names the node's ``category`` (``matmul``, ``softmax``, ``gelu``, ``layernorm``, ``rescale``,
``other``; :data:`aiompc.nn.node_categories.NODE_CATEGORIES`), by which reports split bytes.

The edges' rings come from :func:`aiompc.nn.rings.plan_rings` (public metadata only).

**Input and output.**  The client's input ``x`` is shared as ``(server: 0, client: x)``, which reveals
nothing to the server.  At the end either the server sends its output share to the client (logits), or
the argmax protocol reveals the class index to the client only (``output="argmax"``).  The server learns
nothing; the client learns only the output.

**Flooding.**  Before any layer both parties derive the inference's flooding level from public data
(:func:`aiompc.nn.stat_budget.plan_inference`: 40 bits for all result ciphertexts of the call together — a shared
matmul's HE cross terms included — in the quantized mode, per result ciphertext in the Cheetah modes; :class:`~aiompc.errors.InsecureParameters` if the
plans do not reach it) and exchange a digest of their plans on ``f"{label}/plans"`` (a
:class:`~aiompc.errors.ProtocolError` on both sides if they differ).

**Exactness.**  With ``exact=True`` the client's result equals :func:`aiompc.nn.interpret.run_int` bit
for bit.  With ``exact=False`` requantizations drop the carry of the shift: on the quantized rings each
requantized value may be one LSB off either way (``e ∈ {-1, 0, 1}``, mean ``≈ 0``: the server adds half an
LSB first; still inside the clip range), and so may a requantization folded into its HE layer; on
Cheetah's rings a truncation may be one LSB low (``e ∈ {-1, 0}``, Cheetah's own).  Every other node is
exact on its (possibly approximate) inputs.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from aiompc import ring
from aiompc.errors import InputError
from aiompc.nn.ir import QGraph
from aiompc.nn.modes import EngineConfig
from aiompc.nn.node_categories import category_of, layer_detail
from aiompc.nn.node_protocols import protocol_of, run_node
from aiompc.nn.node_runners import narrow_kwargs
from aiompc.nn.node_step import Step
from aiompc.nn.rings import plan_rings
from aiompc.nn.stat_budget import agree_on_plans, plan_inference
from aiompc.party import Party
from aiompc.protocols.nonlinear import argmax
from aiompc.protocols.ot.engines import get_engine
from aiompc.protocols.products import cot_bits
from aiompc.wire import Packed, expect

__all__ = ["LayerRecord", "SecureResult", "run_secure", "COT_HINT_PER_VALUE"]

COT_HINT_PER_VALUE = 8
"""A floor on the random COTs each value an OT layer outputs draws in either direction (a requantization's
comparisons take 15–40): the demand hint :func:`run_secure` hands the OT engine
(:meth:`~aiompc.protocols.ot.engine.OTEngine.expect`) before the first layer."""


def expected_cots(graph: QGraph, batch: int) -> int:
    """The session's COT demand hint: :data:`COT_HINT_PER_VALUE` per value of every OT layer's output."""
    values = sum(graph.tensors[n.output].size for n in graph.nodes if protocol_of(n).kind == "ot")
    return COT_HINT_PER_VALUE * values * batch


@dataclass
class LayerRecord:
    """One node's evaluation as seen by this party: what ran and how long it took."""

    name: str
    op: str
    label: str
    seconds: float
    ring: int
    kind: str = "local"
    """``he``, ``ot`` or ``local`` (:data:`~aiompc.nn.node_protocols.NODE_PROTOCOLS`), or ``reveal`` for the output."""
    category: str = "local"
    """What the node computes (:data:`~aiompc.nn.node_categories.NODE_CATEGORIES`); ``output`` for the argmax or
    reveal."""
    detail: dict[str, Any] | None = None
    """What the node's protocol chose, where it chooses (:func:`~aiompc.nn.node_categories.layer_detail`: a shared
    matmul's cross-term methods), else None."""


@dataclass
class SecureResult:
    """A party's outcome: the output (client only), the per-layer records and, if asked for
    (``run_secure(..., keep_shares=True)``), this party's share of every edge (ring per edge from
    :func:`plan_rings`) for tests and debugging."""

    output: np.ndarray | None
    layers: list[LayerRecord] = field(default_factory=list)
    shares: dict[str, np.ndarray] | None = None


def _input_share(party: Party, graph: QGraph, x: np.ndarray | None, batch: int, l: int) -> np.ndarray:
    spec = graph.input_spec
    if party.is_server:
        return np.zeros((batch, *spec.shape), dtype=np.uint64)
    if x is None:
        raise InputError("the client must pass its input")
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise InputError(f"secure inference takes the quantized integer input, got dtype {x.dtype}")
    if x.shape != (batch, *spec.shape):
        raise InputError(f"input has shape {x.shape}; the model expects ({batch}, {', '.join(map(str, spec.shape))})")
    lo, hi = (-(1 << (spec.bits - 1)), (1 << (spec.bits - 1)) - 1) if spec.signed else (0, (1 << spec.bits) - 1)
    if x.size and (int(x.min()) < lo or int(x.max()) > hi):
        raise InputError(f"input values must lie in [{lo}, {hi}] ({spec.bits}-bit {'signed' if spec.signed else 'unsigned'})")
    return ring.from_signed(x.astype(np.int64), l)


async def run_secure(
    party: Party,
    graph: QGraph,
    x: np.ndarray | None = None,
    *,
    batch: int | None = None,
    config: EngineConfig = EngineConfig(),
    label: str = "infer",
    on_layer: Callable[[LayerRecord], None] | None = None,
    keep_shares: bool = False,
) -> SecureResult:
    """Evaluate ``graph`` on the client's integer inputs ``x``, a batch ``(B, *graph.input_spec.shape)``.

    Server: pass the full graph and ``batch=B`` (no ``x``); gets ``SecureResult(None, layers)``.  Client:
    pass the metadata graph and ``x``; gets the int64 logits ``(B, *output_shape)`` (``output="logits"``)
    or the class indices ``(B,)`` (``"argmax"``).  Per-layer bytes and rounds are in the channel
    statistics under ``f"{label}/{node.name}"``; ``on_layer`` is called with each layer's record as it
    completes (progress display; its ``ring`` is the ring the node computes in).  ``keep_shares``: also
    return this party's share of every edge (``SecureResult.shares``, rings from :func:`plan_rings`).
    """
    if party.is_server and not graph.has_weights:
        raise InputError("the server needs the full graph (with weights)")
    if batch is None:
        if x is None:
            raise InputError("the server must pass batch=B (the number of samples the client announced)")
        batch = len(x)
    if batch < 1:
        raise InputError("batch must be at least 1")
    # the flooding level of this inference (public: graph, options, batch), checked and agreed on by both
    # parties before any layer; the HE layers then plan with config's planner at that level
    inference = await party.compute(functools.partial(plan_inference, cot_bits=cot_bits(party)), graph, config, batch)
    config = inference.config
    await agree_on_plans(party, f"{label}/plans", inference)
    plan = plan_rings(graph, config.mode)
    rings = plan.edges
    get_engine(party).expect(expected_cots(graph, batch))  # public: the graph's shapes and the batch
    env: dict[str, np.ndarray] = {graph.input: _input_share(party, graph, x, batch, rings[graph.input])}
    records: list[LayerRecord] = []

    def record(name: str, op: str, node_label: str, start: float, l: int, kind: str, category: str = "output",
               detail: dict[str, Any] | None = None) -> None:
        records.append(LayerRecord(name, op, node_label, time.perf_counter() - start, l, kind, category, detail))
        if on_layer is not None:
            on_layer(records[-1])

    last_use = {e: i for i, node in enumerate(graph.nodes) for e in node.inputs}  # an edge's last consumer
    for i, node in enumerate(graph.nodes):
        start = time.perf_counter()
        node_label = f"{label}/{node.name}"
        step = Step(party, graph, plan, node_label, config)
        env[node.output] = await run_node(step, node, [env[e] for e in node.inputs])
        if not keep_shares:  # shares no later node reads are dropped (ResNet-50: ~200 MB of activations)
            for e in set(node.inputs):
                if last_use[e] == i and e != graph.output:
                    del env[e]
        record(node.name, node.op, node_label, start, plan.compute_ring(node), protocol_of(node).kind,
               category_of(node), layer_detail(party, node, node_label))
    shares = env if keep_shares else None
    out = env[graph.output]
    l = rings[graph.output]
    start = time.perf_counter()
    if config.output == "argmax":
        narrow = narrow_kwargs(Step(party, graph, plan, f"{label}/argmax", config), graph.output)
        cls = await argmax(party, f"{label}/argmax", out.reshape(batch, -1), l=l, reveal_to="client", **narrow)
        record("argmax", "argmax", f"{label}/argmax", start, l, "ot")
        return SecureResult(None if party.is_server else np.asarray(cls), records, shares)
    sub = party.sub(f"{label}/output")
    if party.is_server:
        await sub.send(Packed(out.reshape(-1), l))
        record("output", "reveal", sub.label, start, l, "reveal")
        return SecureResult(None, records, shares)
    peer = expect(await sub.recv(), out.size, l, "the server's output share")
    y = ring.to_signed(ring.reconstruct(out.reshape(-1), peer, l), l).reshape(out.shape)
    record("output", "reveal", sub.label, start, l, "reveal")
    return SecureResult(y, records, shares)
