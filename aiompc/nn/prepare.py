"""One-time preparation of a model, before any session: every HE layer's plan and the server's weight plaintexts.

Both depend only on the model (its public shapes, rings and widths, and the server's weights), never on a
client's data, so a server does them once per model and shares the result across sessions and clients:

* **plans** — each HE layer's :class:`~aiompc.protocols.linear.plan.LinearPlan`, the planner's search
  (cached per shape for the life of the process, so doing it here means no session waits for it);
* **weight plaintexts** (server only) — :func:`~aiompc.protocols.linear.prepared.prepare_weights` of each
  layer, *pinned* in a :class:`~aiompc.protocols.linear.weight_cache.WeightCache` (bounded: the layers that
  do not fit its ``max_bytes`` are prepared by each inference that needs them, and :class:`Preparation`
  says how many).

The layer calls are derived from the graph exactly as the runners of :mod:`aiompc.nn.node_protocols` make them (same
shapes, rings, folds, planner and weight arrays), so a session finds every prepared layer in the cache
(``tests/nn/test_prepare.py`` checks: no miss).  A fully connected layer's plan depends on the number of
samples evaluated together (``batch``); convolutions and batch-norms run one sample at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from aiompc.errors import InputError
from aiompc.nn.ir import ChannelAffine, Conv, Linear, MatMul, MatMulShared, QGraph
from aiompc.nn.modes import EngineConfig
from aiompc.nn.node_runners import pads_tblr  # the engine's own conversion of the IR's pads
from aiompc.nn.node_runners_transformer import DEFAULT_COT_BITS, matmul_fc_weight, shared_matmul_plan
from aiompc.nn.rings import plan_rings
from aiompc.nn.stat_budget import plan_inference
from aiompc.protocols.linear.conv import conv_plan
from aiompc.protocols.linear.fc import fc_plan
from aiompc.protocols.linear.plan import LinearPlan
from aiompc.protocols.linear.prepared import prepare_weights, prepared_nbytes, weight_key
from aiompc.protocols.linear.tiling import ConvShape, MatmulShape
from aiompc.protocols.linear.weight_cache import WeightCache

__all__ = ["LinearCall", "Preparation", "linear_calls", "prepare_model", "prepare_plans", "WEIGHT_MEMORY"]

WEIGHT_MEMORY = 1 << 30
"""Bytes of weight plaintexts ``aiompc bench``'s server keeps prepared (the rest is prepared per inference).

1 GiB: what keeps a ResNet-50 server (ImageNet shapes) within 4 GiB at its peak — about 1 GiB of process,
model and OT engine, the pinned weights, up to ~1.5 GiB more during the session (OT extension buffers, the
widest layer's accumulator, 400 MB at 2048 outputs), measured 2026-12-05.  Per inference each GiB not kept
costs about one CPU second of weight transforms (≈ 3–5 ns per residue, on the server's threads), so the
smaller models (ResNet-18, CIFAR shapes: 1.8 GiB quantized, 2.3 GiB under Cheetah's parameters, about half
kept) pay ~1 s of CPU for it; ``--weight-memory`` raises it where memory allows."""


@dataclass(frozen=True)
class LinearCall:
    """One HE layer as the engine calls it: the node's name, its plan and the weight array the server passes."""

    node: str
    plan: LinearPlan
    weight: np.ndarray | None
    runs: int | None = None
    """How often one inference runs the call when that is not its node's usual count (a shared matmul's cross
    term: once per product, batch × heads); ``None``: a convolution or batch-norm once per sample, a fully connected
    layer or token MatMul once per batch."""
    shares: bool = False
    """The server's operand is its share of an activation (a shared matmul's cross term, node
    ``f"{name}/ac_bs"`` or ``f"{name}/bc_as"``): no weights to prepare, but results to flood like any layer's."""


@dataclass(frozen=True)
class Preparation:
    """What a one-time preparation did and cost (this process: wall and CPU seconds of every thread).

    ``layers``: HE layers planned; ``kept``: layers whose weight plaintexts are now held (pinned); ``nbytes``:
    the bytes they hold; ``per_inference``: layers that did not fit the budget (prepared per inference);
    ``streamed``: kept layers too wide to hold in NTT form (:mod:`aiompc.protocols.linear.prepared`: their
    compact coefficients are held, their NTTs are redone per chunk of every inference)."""

    layers: int
    kept: int
    nbytes: int
    per_inference: int
    streamed: int
    seconds: float
    cpu_seconds: float

    def to_dict(self) -> dict[str, float | int]:
        return {"layers": self.layers, "kept": self.kept, "bytes": self.nbytes, "per_inference": self.per_inference,
                "streamed": self.streamed, "seconds": round(self.seconds, 3), "cpu": round(self.cpu_seconds, 3)}


def linear_calls(graph: QGraph, config: EngineConfig, *, batch: int = 1, budget: bool = True,
                 cot_bits: float = DEFAULT_COT_BITS) -> list[LinearCall]:
    """Every HE layer call of one run of ``graph`` on ``batch`` samples (weights ``None`` in a metadata graph).

    Mirrors the runners of :mod:`aiompc.nn.node_runners` (``run_conv``, ``run_linear``, ``run_channel_affine``) and
    :func:`~aiompc.nn.node_runners_transformer.run_matmul` (one plan per node: a conv or
    batch-norm runs per sample with the same plan; a fully connected layer or token MatMul once per batch).  ``budget``: flood at the level the mode's scope needs
    for this graph and batch (:func:`aiompc.nn.stat_budget.plan_inference`, what the engine runs);
    ``False``: with ``config``'s planner as it is.  A :class:`~aiompc.nn.ir.MatMulShared` gives the HE cross terms
    of :func:`~aiompc.nn.node_runners_transformer.shared_matmul_plan` (OT priced at ``cot_bits`` per COT, the
    session's OT engine), each with its ``runs`` and ``shares=True``."""
    if budget:
        return list(plan_inference(graph, config, batch, cot_bits=cot_bits).calls)
    rings = plan_rings(graph, config.mode)
    planner = config.mode.planner
    calls: list[LinearCall] = []
    for node in graph.nodes:
        if isinstance(node, MatMulShared):
            a, b = (graph.tensors[e] for e in node.inputs)
            shared = shared_matmul_plan(a, b, batch, rings.compute_ring(node), planner, cot_bits)
            for term, cross in (("ac_bs", shared.ac_bs), ("bc_as", shared.bc_as)):
                if cross.method == "he" and cross.fc is not None:
                    calls.append(LinearCall(f"{node.name}/{term}", cross.fc, None, runs=cross.shape.groups,
                                            shares=True))
            continue
        if not isinstance(node, (Conv, Linear, ChannelAffine, MatMul)):
            continue
        x_shape = graph.tensors[node.inputs[0]].shape
        l = rings.compute_ring(node)
        fold = rings.folds.get(node.name)
        out_shift = 0 if fold is None else fold.shift
        weight = None if node.weight is None else np.asarray(node.weight)
        if isinstance(node, Conv):
            c, h, w = x_shape
            shape = ConvShape.make(c, h, w, node.out_channels, node.kernel, stride=node.stride,
                                   padding=pads_tblr(node.pads), groups=node.groups)
            plan = conv_plan(shape, l, weight_bits=node.weight_bits, planner=planner, out_shift=out_shift)
        elif isinstance(node, Linear):
            shape_m = MatmulShape(batch, node.in_features, node.out_features)
            plan = fc_plan(shape_m, l, weight_bits=node.weight_bits, planner=planner, out_shift=out_shift)
        elif isinstance(node, MatMul):  # the batch's token rows (B·S, K) by W^T, one call
            rows = batch * int(np.prod(x_shape[:-1], dtype=np.int64))
            shape_m = MatmulShape(rows, node.in_features, node.out_features)
            plan = fc_plan(shape_m, l, weight_bits=node.weight_bits, planner=planner, out_shift=out_shift)
            weight = None if weight is None else matmul_fc_weight(weight)
        else:
            if len(x_shape) != 3:
                continue  # batchnorm runs on C x H x W shares only (it raises at run time otherwise)
            c, h, w = x_shape
            plan = conv_plan(ConvShape.make(c, h, w, c, 1, groups=c), l, weight_bits=node.weight_bits, planner=planner)
            weight = None if weight is None else weight.reshape(c, 1, 1, 1)
        calls.append(LinearCall(node.name, plan, weight))
    return calls


def prepare_plans(graph: QGraph, config: EngineConfig, *, batch: int = 1) -> Preparation:
    """Plan every HE layer now (the planner caches its search per shape for the life of the process): what a
    client does once per model, so that no inference waits for the planner."""
    start, cpu = time.perf_counter(), time.process_time()
    calls = linear_calls(graph, config, batch=batch)
    return Preparation(len(calls), 0, 0, 0, 0, time.perf_counter() - start, time.process_time() - cpu)


def prepare_model(graph: QGraph, config: EngineConfig, cache: WeightCache, *, batch: int = 1) -> Preparation:
    """Server: plan every HE layer and pin its weight plaintexts in ``cache`` while they fit its budget, in
    the graph's order (later layers that do not fit are prepared per inference).  Synchronous and heavy
    (the weight NTTs): call it before serving, or in a worker thread."""
    start, cpu = time.perf_counter(), time.process_time()
    calls = linear_calls(graph, config, batch=batch)
    kept = per_inference = streamed = 0
    for call in calls:
        if call.shares:
            continue  # a shared matmul's cross term: the server's operand is a share, known only in the session
        if call.weight is None:
            raise InputError(f"{call.node}: the graph has no weights; the server prepares its full graph")
        key = weight_key(call.plan, call.weight)
        if key in cache:
            kept += 1
            continue
        if cache.pinned_bytes + prepared_nbytes(call.plan) > cache.max_bytes:
            per_inference += 1  # would not fit: not transformed now, only to be dropped
            continue
        prepared = prepare_weights(call.plan, call.weight)
        if cache.put(key, prepared):
            kept += 1
            streamed += prepared.streamed
        else:
            per_inference += 1
    return Preparation(len(calls), kept, cache.pinned_bytes, per_inference, streamed, time.perf_counter() - start,
                       time.process_time() - cpu)
