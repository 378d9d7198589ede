"""The statistical security of one inference's responses: decided once at the top, handed down as the
planner's per-ciphertext flooding level (``stat_bits``).

The server floods every result ciphertext so that it reveals nothing of the weights except with statistical
distance ``2^-stat_security`` (:attr:`~aiompc.protocols.linear.plan.LinearPlan.stat_security`).  What the
project's 40 bits cover is the mode's :attr:`~aiompc.nn.modes.Mode.stat_scope`:

* ``inference`` (the quantized mode) — every result ciphertext of one inference call (every HE layer, every
  sample of the call's batch) *together* is within ``2^-40`` (the distances add,
  :mod:`aiompc.protocols.linear.stat_sum`).  The per-ciphertext level this needs depends on the number of
  results ``R``, which depends on the plans (the planner trades output packing against ``q``), so
  :func:`plan_inference` plans every layer at 40 bits, counts ``R``, plans again at ``40 + ceil(log2 R)``
  and checks the sum; should the new plans return so many more results that the sum is still above
  ``2^-40``, it raises the level to ``max(level + 1, 40 + ceil(log2 R'))`` and plans again (``R`` is bounded,
  so this ends; two passes on the built-in networks).  No a-priori bound is as tight: the count of output
  values bounds ``R`` without planning, but overstates ResNet-18's result ciphertexts ~1000-fold (10 bits
  of flooding, hence of ``q``, in every layer).  The first pass is the per-ciphertext plan set, cached by
  the planner and reused by a per-ciphertext run.
* ``ciphertext`` (the Cheetah modes) — each result ciphertext on its own reaches 40 bits, as Cheetah and
  the HE literature state it: Cheetah's ``q ~ 2^109`` at ``N = 4096`` with ``l = 37`` has no room for more
  (ResNet-18 would need ~53 bits per ciphertext; its widest layers reach 40 only with a two-uniform flood).

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
from aiompc.nn.ir import Linear, QGraph
from aiompc.nn.key_plan import share_keys
from aiompc.nn.modes import EngineConfig
from aiompc.party import Party
from aiompc.protocols.linear.plan import STAT_BITS, Planner
from aiompc.protocols.linear.stat_sum import Counted, require_distance, result_ciphertexts, security_bits

if TYPE_CHECKING:
    from aiompc.nn.prepare import LinearCall

__all__ = ["InferencePlan", "plan_inference", "with_stat_bits", "counted_calls", "agree_on_plans", "TARGET",
           "MAX_STAT_BITS"]

TARGET = STAT_BITS
"""Bits of statistical security the project promises for the responses (DESIGN.md: 40)."""
MAX_STAT_BITS = 100
"""Per-ciphertext levels above this are not tried (the pipeline's bound is 128; no built-in network needs 70)."""


@dataclass(frozen=True)
class InferencePlan:
    """Every HE layer call of one inference and what its flooding achieves together.

    ``config``: the session's configuration with the planner at the per-ciphertext level ``stat_bits``;
    ``calls``: the layer calls (:func:`~aiompc.nn.prepare.linear_calls`) and ``counts`` how often each runs
    (a convolution or batch-norm once per sample, a fully connected layer once per batch); ``results``: the
    result ciphertexts the client receives; ``security``: bits of statistical security of all of them
    together; ``weakest``: the lowest per-ciphertext level; ``digest``: a hash of the plans' public
    parameters (:func:`agree_on_plans`)."""

    config: EngineConfig
    calls: tuple[LinearCall, ...]
    counts: tuple[int, ...]
    stat_bits: int
    results: int
    security: float
    weakest: float
    digest: bytes

    @property
    def scope(self) -> str:
        return self.config.mode.stat_scope

    def summary(self) -> dict[str, float | int | str]:
        """For reports: scope, per-ciphertext level planned, results, and the achieved levels in bits."""
        return {"scope": self.scope, "stat_bits": self.stat_bits, "results": self.results,
                "security": round(self.security, 2), "weakest": round(self.weakest, 2)}


def with_stat_bits(config: EngineConfig, bits: int) -> EngineConfig:
    """``config`` with its planner flooding at ``bits`` per result ciphertext (a planner's ``stat_bits``)."""
    planner: Planner = config.mode.planner
    if getattr(planner, "stat_bits", None) == bits:
        return config
    if not dataclasses.is_dataclass(planner) or not hasattr(planner, "stat_bits"):
        raise InputError(f"the {planner.name!r} planner has no stat_bits: it cannot flood per inference")
    mode = dataclasses.replace(config.mode, planner=dataclasses.replace(planner, stat_bits=bits))  # type: ignore[type-var]
    return dataclasses.replace(config, mode=mode)


def counted_calls(graph: QGraph, calls: list[LinearCall], batch: int) -> list[Counted]:
    """Each call's plan and how many times one inference of ``batch`` samples runs it."""
    linear = {n.name for n in graph.nodes if isinstance(n, Linear)}
    return [(c.plan, 1 if c.node in linear else batch) for c in calls]


def _digest(calls: list[LinearCall], counts: list[int], bits: int) -> bytes:
    h = hashlib.sha256(f"stat {bits}".encode())
    for call, count in zip(calls, counts):
        p = call.plan
        h.update(repr((call.node, count, p.describe(), p.he.fingerprint.hex(), p.pipeline, p.output, p.chunk,
                       p.out_shift, p.output_packing)).encode())
    return h.digest()[:16]


def _assess(graph: QGraph, config: EngineConfig, batch: int, bits: int) -> InferencePlan:
    from aiompc.nn.prepare import linear_calls  # it plans through this module by default

    calls = linear_calls(graph, config, batch=batch, budget=False)
    counted = counted_calls(graph, calls, batch)
    # the network's shared key sets (aiompc.nn.key_plan): config's planner may come back with key_sets
    shared = share_keys(config, calls, [count for _, count in counted],
                        lambda cfg: linear_calls(graph, cfg, batch=batch, budget=False))
    config, calls = shared.config, list(shared.calls)
    counted = counted_calls(graph, calls, batch)
    results = sum(count * result_ciphertexts(plan) for plan, count in counted)
    weakest = min((plan.stat_security for plan, _ in counted), default=math.inf)
    counts = [count for _, count in counted]
    return InferencePlan(config, tuple(calls), tuple(counts), bits, results, security_bits(counted), weakest,
                         _digest(calls, counts, bits))


def plan_inference(graph: QGraph, config: EngineConfig, batch: int = 1, *, target: int = TARGET) -> InferencePlan:
    """The plans of one inference of ``batch`` samples at the flooding level ``config``'s scope needs
    (module docstring), checked: :class:`~aiompc.errors.InsecureParameters` if all results together
    (scope ``inference``) or any one result (``ciphertext``) are below ``target`` bits.

    Synchronous and, the first time per model, a few CPU seconds (the planner's searches): call it before a
    session or in a worker thread.  Deterministic in public data, so both parties get the same plans."""
    if batch < 1:
        raise InputError("batch must be at least 1")
    base = getattr(config.mode.planner, "stat_bits", target)
    if config.mode.stat_scope == "ciphertext":
        plan = _assess(graph, config, batch, base)
        if plan.weakest < target:
            raise InsecureParameters(
                f"a result ciphertext of this inference has {plan.weakest:.1f} bits of statistical security, "
                f"below the {target} required")
        return plan
    bits = target
    while True:
        try:
            plan = _assess(graph, with_stat_bits(config, bits), batch, bits)
        except UndecryptableParameters as exc:
            if bits == target:
                raise
            raise InsecureParameters(
                f"{config.mode.name}: one inference of {batch} sample(s) cannot reach {target} bits of statistical "
                f"security: it needs {bits} bits per result ciphertext, which its parameters do not decrypt "
                f"({exc}); run it with stat_scope='ciphertext'") from None
        if plan.security >= target:
            return plan
        nxt = max(bits + 1, target + math.ceil(math.log2(max(plan.results, 1))))
        if nxt > MAX_STAT_BITS:
            require_distance(counted_calls(graph, list(plan.calls), batch), target)  # raises, naming the layer
        bits = nxt


async def agree_on_plans(party: Party, label: str, plan: InferencePlan) -> None:
    """Both parties: send this party's plan digest and flooding level on ``label``, receive the peer's and
    raise :class:`~aiompc.errors.ProtocolError` if they differ (one message each way, 16 + a few bytes)."""
    sub = party.sub(label)
    await sub.send({"plans": plan.digest, "stat": plan.stat_bits})
    peer = await sub.recv()
    if not isinstance(peer, dict) or not isinstance(peer.get("plans"), bytes):
        raise ProtocolError(f"{label}: malformed plan digest from the peer")
    if peer["plans"] != plan.digest:
        raise ProtocolError(
            f"{label}: the parties' HE plans differ (this {party.role}: {plan.stat_bits}-bit flooding per result "
            f"ciphertext, {plan.results} results, digest {plan.digest.hex()}; peer: {peer.get('stat')!r}-bit, digest "
            f"{peer['plans'].hex()}); both must run the same aiompc version and session options")
