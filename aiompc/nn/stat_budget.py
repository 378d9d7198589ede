"""The statistical security of one inference's responses: decided once at the top, handed down as the
planner's per-ciphertext flooding levels (:class:`~aiompc.protocols.linear.plan.FloodLevels`).

The server floods every result ciphertext so that it reveals nothing of the weights except with statistical
distance ``2^-stat_security`` (:attr:`~aiompc.protocols.linear.plan.LinearPlan.stat_security`).  What the
project's 40 bits cover is the mode's :attr:`~aiompc.nn.modes.Mode.stat_scope`:

* ``inference`` (the quantized mode) — every result ciphertext of one inference call (every HE layer, every
  sample of the call's batch) *together* is within ``2^-40``.  The distances compose
  (:mod:`aiompc.protocols.linear.stat_sum`): one-uniform floods and the noise bound's tails add linearly over
  the ``R`` results, two-uniform floods in quadrature (``sqrt(Σ d_c²)``), so :func:`inference_levels` plans a
  two-uniform result at ``40 + log2(R)/2`` bits, a one-uniform one at ``40 + log2 R`` and the tail
  (``fail_bits``, cheap: it enters the noise bound through ``z = sqrt(2·ln(2/δ))``) at ``40 + log2 R``, with
  margins that keep the worst split of ``R`` between the floods within ``2^-40``; the planner then picks two
  uniforms wherever they are cheaper (nearly everywhere).  ``R`` depends on the plans (the planner trades
  output packing against ``q``), so :func:`plan_inference` plans every layer at 40 bits per ciphertext,
  counts ``R``, plans again at :func:`inference_levels` of ``R`` and checks the composed distance; should the
  new plans return so many more results that it is still above ``2^-40``, it raises every level by at least
  one and plans again (``R`` is bounded, so this ends; two passes on the built-in networks).  No a-priori bound
  is as tight: the count of output values bounds ``R`` without planning, but overstates ResNet-18's result
  ciphertexts ~1000-fold.  The first pass is the per-ciphertext plan set, cached by the planner and reused by
  a per-ciphertext run.
* ``ciphertext`` (the Cheetah modes) — each result ciphertext on its own reaches 40 bits, as Cheetah and
  the HE literature state it: Cheetah's ``q ~ 2^109`` at ``N = 4096`` with ``l = 37`` has no room for more
  (ResNet-18 would need ~47 bits per two-uniform result; its widest layers reach 40 only with a two-uniform flood).

Each pass also chooses the network's shared key sets (:mod:`aiompc.nn.key_plan`): the planner handed down in
the returned configuration may carry ``key_sets`` (and the ``compute_rate`` its plans were made at).

Both parties derive the same plans from public data only — the graph's metadata, the session's
:class:`~aiompc.nn.modes.EngineConfig` (agreed in the handshake) and the batch — and :func:`agree_on_plans`
exchanges a digest of them before the first layer, so a mismatch (different code or options) is a
:class:`~aiompc.errors.ProtocolError` on both sides rather than a wait for messages that never come.

Cost: each pass is one :func:`~aiompc.nn.prepare.linear_calls` of the graph; the planner caches its
searches per shape and level for the life of the process, so a model prepared once
(:func:`~aiompc.nn.prepare.prepare_plans` / ``prepare_model``, which plan through here) re-derives its
plans in milliseconds; the secure engine does it in the executor, never on the event loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiompc.errors import InputError, InsecureParameters, ProtocolError, UndecryptableParameters
from aiompc.nn.ir import Linear, MatMul, QGraph
from aiompc.nn.key_plan import share_keys
from aiompc.nn.modes import EngineConfig
from aiompc.nn.node_runners_transformer import DEFAULT_COT_BITS
from aiompc.party import Party
from aiompc.protocols.linear.plan import STAT_BITS, FloodLevels, Planner
from aiompc.protocols.linear.stat_sum import Counted, require_distance, result_ciphertexts, security_bits

if TYPE_CHECKING:
    from aiompc.nn.prepare import LinearCall

__all__ = ["InferencePlan", "plan_inference", "with_stat_bits", "with_levels", "inference_levels", "counted_calls",
           "agree_on_plans", "TARGET", "MAX_STAT_BITS"]

TARGET = STAT_BITS
"""Bits of statistical security the project promises for the responses (DESIGN.md: 40)."""
MAX_STAT_BITS = 100
"""Per-ciphertext levels above this are not tried (the pipeline's bound is 128; no built-in network needs 70)."""


@dataclass(frozen=True)
class InferencePlan:
    """Every HE layer call of one inference and what its flooding achieves together.

    ``config``: the session's configuration with the planner at the per-ciphertext ``levels``;
    ``calls``: the layer calls (:func:`~aiompc.nn.prepare.linear_calls`) and ``counts`` how often each runs
    (a convolution or batch-norm once per sample, a fully connected layer or token MatMul once per batch); ``results``: the
    result ciphertexts the client receives; ``security``: bits of statistical security of all of them
    together; ``weakest``: the lowest per-ciphertext level; ``digest``: a hash of the plans' public
    parameters (:func:`agree_on_plans`)."""

    config: EngineConfig
    calls: tuple[LinearCall, ...]
    counts: tuple[int, ...]
    levels: FloodLevels
    results: int
    security: float
    weakest: float
    digest: bytes

    @property
    def scope(self) -> str:
        return self.config.mode.stat_scope

    @property
    def stat_bits(self) -> int:
        """The lowest per-ciphertext level planned (:attr:`FloodLevels.lowest`)."""
        return self.levels.lowest

    def summary(self) -> dict[str, float | int | str]:
        """For reports: scope, per-ciphertext levels planned (one uniform, two uniforms, fail bits), results by
        flood, and the achieved levels in bits."""
        tents = sum(n * result_ciphertexts(c.plan) for c, n in zip(self.calls, self.counts)
                    if c.plan.output.flood_terms == 2)
        return {"scope": self.scope, "stat_bits": self.stat_bits, "uniform_bits": self.levels.uniform,
                "tent_bits": self.levels.tent, "fail_bits": self.levels.fail, "results": self.results,
                "tent_results": tents, "security": round(self.security, 2), "weakest": round(self.weakest, 2)}


def inference_levels(results: int, target: int = TARGET) -> FloodLevels:
    """The per-ciphertext levels for ``results`` result ciphertexts to be within ``2^-target`` together, however
    the planner splits them between the two floods: with ``k = ceil(log2 R)``, one uniform at ``target + k + 4``
    (at most ``R·2^-(target+k+4) <= 2^-target/16`` in all), the tail at ``fail = target + k + 4`` (``R·2^-(fail+2)
    <= 2^-target/64``) and two uniforms at ``ceil(target + log2(R)/2 + log2(64/59))`` (``sqrt(R)·2^-tent <=
    (59/64)·2^-target``): the three sum to at most ``2^-target`` (:mod:`aiompc.protocols.linear.stat_sum`).
    ResNet-18 (466 results at 40 bits): 53 / 45 / 53 bits, against 49 for every result under the linear sum."""
    if results < 1:
        raise InputError(f"the result count must be positive, got {results}")
    k = math.ceil(math.log2(results))
    tent = math.ceil(target + math.log2(results) / 2 + math.log2(64 / 59))
    return FloodLevels(uniform=target + k + 4, tent=tent, fail=target + k + 4)


def with_levels(config: EngineConfig, levels: FloodLevels) -> EngineConfig:
    """``config`` with its planner flooding at ``levels`` (:meth:`~aiompc.protocols.linear.plan.Planner.flooding_at`:
    a planner with per-flood levels takes them; one with only a single ``stat_bits`` floods every result at the
    highest of them, which is never less secure); ``config`` itself when the planner already does."""
    planner: Planner = config.mode.planner
    flooding = planner.flooding_at(levels)
    if flooding is planner:
        return config
    return dataclasses.replace(config, mode=dataclasses.replace(config.mode, planner=flooding))


def with_stat_bits(config: EngineConfig, bits: int) -> EngineConfig:
    """``config`` with its planner flooding at ``bits`` per result ciphertext, every flood
    (:meth:`FloodLevels.per_ciphertext`)."""
    return with_levels(config, FloodLevels.per_ciphertext(bits))


def counted_calls(graph: QGraph, calls: list[LinearCall], batch: int) -> list[Counted]:
    """Each call's plan and how many times one inference of ``batch`` samples runs it."""
    linear = {n.name for n in graph.nodes if isinstance(n, (Linear, MatMul))}  # once per batch
    return [(c.plan, c.runs if c.runs is not None else 1 if c.node in linear else batch) for c in calls]


def _digest(calls: list[LinearCall], counts: list[int], levels: FloodLevels) -> bytes:
    h = hashlib.sha256(f"stat {levels.uniform} {levels.tent} {levels.fail}".encode())
    for call, count in zip(calls, counts):
        p = call.plan
        h.update(repr((call.node, count, p.describe(), p.he.fingerprint.hex(), p.pipeline, p.output, p.chunk,
                       p.out_shift, p.output_packing)).encode())
    return h.digest()[:16]


def _assess(graph: QGraph, config: EngineConfig, batch: int, levels: FloodLevels, cot_bits: float) -> InferencePlan:
    from aiompc.nn.prepare import linear_calls  # it plans through this module by default

    calls = linear_calls(graph, config, batch=batch, budget=False, cot_bits=cot_bits)
    counts = [count for _, count in counted_calls(graph, calls, batch)]  # per node: the same for any re-plan
    # the network's shared key sets (aiompc.nn.key_plan): config's planner may come back with key_sets
    shared = share_keys(config, calls, counts,
                        lambda cfg: linear_calls(graph, cfg, batch=batch, budget=False, cot_bits=cot_bits))
    config, calls = shared.config, list(shared.calls)
    counted = [(call.plan, count) for call, count in zip(calls, counts)]
    results = sum(count * result_ciphertexts(plan) for plan, count in counted)
    weakest = min((plan.stat_security for plan, _ in counted), default=math.inf)
    return InferencePlan(config, tuple(calls), tuple(counts), levels, results, security_bits(counted), weakest,
                         _digest(calls, counts, levels))


def plan_inference(graph: QGraph, config: EngineConfig, batch: int = 1, *, target: int = TARGET,
                   cot_bits: float = DEFAULT_COT_BITS) -> InferencePlan:
    """The plans of one inference of ``batch`` samples at the flooding level ``config``'s scope needs
    (module docstring), checked: :class:`~aiompc.errors.InsecureParameters` if all results together
    (scope ``inference``) or any one result (``ciphertext``) are below ``target`` bits.

    Synchronous and, the first time per model, a few CPU seconds (the planner's searches): call it before a
    session or in a worker thread.  Deterministic in public data, so both parties get the same plans.
    ``cot_bits``: the session's OT engine's bits per COT, by which a shared matmul chooses HE or OT for its cross
    terms (:func:`~aiompc.nn.node_runners_transformer.shared_matmul_plan`; only HE cross terms have results to
    flood)."""
    if batch < 1:
        raise InputError("batch must be at least 1")
    base = config.mode.planner.flood_levels
    if config.mode.stat_scope == "ciphertext":
        plan = _assess(graph, config, batch, base, cot_bits)
        if plan.weakest < target:
            raise InsecureParameters(
                f"a result ciphertext of this inference has {plan.weakest:.1f} bits of statistical security, "
                f"below the {target} required")
        return plan
    levels = FloodLevels.per_ciphertext(target)
    while True:
        try:
            plan = _assess(graph, with_levels(config, levels), batch, levels, cot_bits)
        except UndecryptableParameters as exc:
            if levels == FloodLevels.per_ciphertext(target):
                raise
            raise InsecureParameters(
                f"{config.mode.name}: one inference of {batch} sample(s) cannot reach {target} bits of statistical "
                f"security: it needs flooding at {levels.describe()} per result ciphertext, which its parameters "
                f"do not decrypt ({exc}); run it with stat_scope='ciphertext'") from None
        if plan.security >= target:
            return plan
        nxt = inference_levels(max(plan.results, 1), target).at_least(
            FloodLevels(levels.uniform + 1, levels.tent + 1, levels.fail + 1))
        if max(nxt.uniform, nxt.tent, nxt.fail) > MAX_STAT_BITS:
            require_distance(counted_calls(graph, list(plan.calls), batch), target)  # raises, naming the layer
        levels = nxt


async def agree_on_plans(party: Party, label: str, plan: InferencePlan) -> None:
    """Both parties: send this party's plan digest and flooding levels on ``label``, receive the peer's and
    raise :class:`~aiompc.errors.ProtocolError` if they differ (one message each way, 16 + a few bytes)."""
    sub = party.sub(label)
    stat = [plan.levels.uniform, plan.levels.tent, plan.levels.fail]
    await sub.send({"plans": plan.digest, "stat": stat})
    peer = await sub.recv()
    if not isinstance(peer, dict) or not isinstance(peer.get("plans"), bytes):
        raise ProtocolError(f"{label}: malformed plan digest from the peer")
    if peer["plans"] != plan.digest:
        raise ProtocolError(
            f"{label}: the parties' HE plans differ (this {party.role}: flooding at {stat} bits (one uniform, two "
            f"uniforms, fail) per result ciphertext, {plan.results} results, digest {plan.digest.hex()}; peer: "
            f"{peer.get('stat')!r}, digest {peer['plans'].hex()}); both must run the same aiompc version and session "
            "options")
