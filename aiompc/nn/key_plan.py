"""Network-level key sets: a few prime sets shared by the packed HE layers of a network, so that the client
sends a few sets of Galois keys instead of one per layer's parameters.

Each layer's search (:class:`~aiompc.protocols.linear.quantized.QuantizedPlanner`) picks its own ``q`` to an
eighth of a bit, and with output packing it pays for its own Galois keys (``key_share = 1``: ~0.9 MiB per set
at ``N = 4096``), so ResNet-18 sends ~10 key sets and leaves layers unpacked that would pack if the keys were
shared.  Keys depend on ``(N, primes, σ)`` only (:attr:`~aiompc.crypto.he.HEParams.key_params`), so layers of
any ``l`` can share the keys of one prime set if each decrypts at those primes.  :func:`share_keys`, after the
per-layer search:

1. **candidates** — per ``N``, for every distinct ``q`` of the packed plans, balanced primes with at least that
   ``q`` chosen without regard to ``t`` (:func:`~aiompc.protocols.linear.key_sets.shared_primes`);
2. **estimate** — each packed plan's layout re-planned at each candidate's primes
   (:meth:`~aiompc.protocols.linear.quantized.QuantizedPlanner.evaluate_packed` with ``primes``: the key-switching
   noise of those primes, :func:`~aiompc.crypto.he.plan_output` proving it decryptable with the planner's
   flooding, so its statistical security is what was planned); for every family of at most ``max_sets`` sets per
   ``N`` (exhaustive: a handful of candidates), each packed plan takes the cheapest set it decrypts at (or keeps
   its own primes), and the family's total is the layers' objective (bytes + the planner's ``compute_rate`` ×
   modelled compute, times how often each runs) plus ``key_share`` times the one-time keys (a public key per key
   set, a Galois key per ``(key set, element)``; ``key_share = 1``, the default: one inference per session);
3. **re-plan** — the ``tries`` best families become planners with ``key_sets`` (each set with the Galois
   elements its layers use): every layer's search then also tries its packed layouts at those primes with the
   set's keys already paid, so layers that stayed unpacked may pack; the network is planned again
   (``replan``) and the exact totals are compared;
4. **keep** the cheapest of the plain plans and the re-planned ones — by the objective, and never more bytes
   (layers + ``key_share`` × keys: with the default, the bytes of one inference) than the plain plans, nor more
   than :data:`MAX_COMPUTE_GROWTH` more modelled compute: a re-plan that needs more (paid keys make packing look
   cheap, and packing costs key switches) is tried again at a stricter ``compute_rate`` (:data:`RATE_STEPS`),
   and the planner handed down carries the rate its plans were made at.

Both parties run it on public data (shapes, widths, the planner) and get the same planner; the engine plans
every layer with it (:mod:`aiompc.nn.stat_budget` hands it down in the inference's configuration), and the
plan digest both exchange before the first layer covers the resulting plans.  Planners without key sets (the
Cheetah ones), without output packing, or minimising time (a ``bandwidth``) are left as they are.

Cost: one fixed-primes re-plan per (distinct packed plan, candidate) — milliseconds each — and ``tries``
re-plans of the network (the searches of a planner with key sets are cached like any other).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from aiompc.crypto.he import HEParams
from aiompc.errors import UndecryptableParameters
from aiompc.nn.modes import EngineConfig
from aiompc.protocols.linear.key_sets import KeySet, group_key_bytes, session_key_bytes, shared_primes
from aiompc.protocols.linear.packed import layout_elements
from aiompc.protocols.linear.plan import LinearPlan

if TYPE_CHECKING:
    from aiompc.nn.prepare import LinearCall

__all__ = ["KeyPlan", "Totals", "share_keys", "network_totals", "choose_key_sets", "MAX_COMPUTE_GROWTH", "RATE_STEPS"]

Replan = Callable[[EngineConfig], "list[LinearCall]"]


@dataclass(frozen=True)
class KeyPlan:
    """The outcome of :func:`share_keys`: the configuration (its planner with ``key_sets``, or unchanged), the
    calls planned with it, and the bytes of one inference's layers and the one-time key bytes, with the sets
    (``layer_bytes``, ``key_bytes``) and without (``base_*``).  Bytes under the planner's frame label (within a
    few bytes per message of the engine's)."""

    config: EngineConfig
    calls: tuple[LinearCall, ...]
    key_sets: tuple[KeySet, ...]
    layer_bytes: int
    key_bytes: int
    base_layer_bytes: int
    base_key_bytes: int


@dataclass(frozen=True)
class Totals:
    """One inference of a network's HE layers: bytes of the calls, the planner's objective of them (bytes +
    ``compute_rate`` × modelled compute, keys excluded), the one-time key bytes and the modelled compute seconds
    (both parties, :func:`~aiompc.protocols.linear.costs.compute_seconds`)."""

    layer_bytes: int
    objective: float
    key_bytes: int
    seconds: float


def network_totals(planner: object, plans: Sequence[LinearPlan], counts: Sequence[int]) -> Totals:
    """The :class:`Totals` of one inference of ``plans`` (each run ``counts`` times) under ``planner``'s byte and
    compute model (its frame label) and one session's keys."""
    layer_bytes, objective, seconds = 0, 0.0, 0.0
    for plan, count in zip(plans, counts):
        cost = planner.cost(plan)  # type: ignore[attr-defined]
        layer_bytes += count * cost.total
        objective += count * _layer_objective(planner, cost)
        seconds += count * (cost.server_seconds + cost.client_seconds)
    return Totals(layer_bytes, objective, session_key_bytes(plans), seconds)


def _layer_objective(planner: object, cost: object) -> float:
    """The planner's objective of one call without its keys (bytes + compute_rate × compute)."""
    return planner.key(dataclasses.replace(cost, setup=0))[0]  # type: ignore[attr-defined]


def choose_key_sets(planner: object, plans: Sequence[LinearPlan], counts: Sequence[int], *, max_sets: int = 3,
                    tries: int = 2) -> list[tuple[float, tuple[KeySet, ...]]]:
    """The ``tries`` best families of shared key sets for ``plans`` by the estimate of the module docstring
    (step 2), cheapest first, as ``(estimated objective + keys, key sets)``; only families estimated below the
    plans as they are.  The ring degrees are independent (a key set has one ``N``): the ``k``-th family is each
    ``N``'s ``k``-th best.  Deterministic in its inputs."""
    weight: dict[LinearPlan, int] = {}
    for plan, count in zip(plans, counts):
        weight[plan] = weight.get(plan, 0) + count
    share = planner.key_share  # type: ignore[attr-defined]
    own = {p: _layer_objective(planner, planner.cost(p)) for p in weight}  # type: ignore[attr-defined]
    elements = {p: layout_elements(p.layout) if p.output_packing else () for p in weight}
    base = 0.0
    ranked: list[list[tuple[float, tuple[KeySet, ...]]]] = []
    for n in sorted({p.he.n for p in weight}):
        at_n = [p for p in weight if p.he.n == n]
        plain = _part(n, (), at_n, weight, own, elements, {}, share)[0]
        base += plain
        packed = [p for p in at_n if p.output_packing]
        cands: list[tuple[int, ...]] = []
        for log2_q in sorted({p.he.log2_q for p in packed}):
            try:
                primes = shared_primes(n, log2_q)
            except UndecryptableParameters:
                continue
            if primes not in cands:
                cands.append(primes)
        options: dict[tuple[int, ...], dict[LinearPlan, float]] = {}
        for primes in cands:
            options[primes] = {}
            for p in packed:
                cand = planner.evaluate_packed(  # type: ignore[attr-defined]
                    p.layout, p.l, p.weight_bits, out_shift=p.out_shift, flood_terms=p.pipeline.flood_terms,
                    primes=primes)
                if cand is not None:
                    options[primes][p] = _layer_objective(planner, cand.cost)
        scored = [_part(n, family, at_n, weight, own, elements, options, share)
                  for size in range(1, min(max_sets, len(cands)) + 1)
                  for family in itertools.combinations(cands, size)]
        scored = sorted((s for s in scored if s[0] < plain), key=lambda s: (s[0], [ks.primes for ks in s[1]]))
        ranked.append([(total - plain, sets) for total, sets in scored[:tries]])
    out: list[tuple[float, tuple[KeySet, ...]]] = []
    for k in range(tries):
        picks = [r[min(k, len(r) - 1)] for r in ranked if r]
        if picks:
            family = (base + sum(saving for saving, _ in picks), tuple(ks for _, sets in picks for ks in sets))
            if family not in out:
                out.append(family)
    return out


def _part(n: int, family: tuple[tuple[int, ...], ...], at_n: list[LinearPlan], weight: dict[LinearPlan, int],
          own: dict[LinearPlan, float], elements: dict[LinearPlan, tuple[int, ...]],
          options: dict[tuple[int, ...], dict[LinearPlan, float]], share: float) -> tuple[float, tuple[KeySet, ...]]:
    """The plans at ``N = n`` with each packed plan on the cheapest set of ``family`` it decrypts at (else its
    own primes): their objective plus ``share`` times their keys, and the key sets with the elements their
    layers use."""
    total = 0.0
    used: dict[tuple[int, ...], set[int]] = {}
    keys: list[tuple[HEParams, tuple[int, ...]]] = []
    for p in at_n:
        choices = [(options[s][p], i, s) for i, s in enumerate(family) if p in options[s]]
        if choices:
            obj, _, primes = min(choices)
            total += weight[p] * obj
            used.setdefault(primes, set()).update(elements[p])
        else:
            total += weight[p] * own[p]
            keys.append((p.he.key_params, elements[p]))
    sets = tuple(KeySet(n, primes, tuple(sorted(used[primes]))) for primes in family if primes in used)
    keys += [(ks.key_params, ks.elements) for ks in sets]
    return total + share * group_key_bytes(keys), sets


MAX_COMPUTE_GROWTH = 0.25
"""How much more modelled HE compute (both parties) the shared plans may need than the plain ones: issue 19's
time rule (ResNet-18's wall may grow by at most 25 %) applied to the HE layers alone, whose share of the wall is
what grows (the non-linear layers are unchanged)."""
RATE_STEPS = (1.0, 1.5, 2.0, 4.0)
"""Multiples of the planner's ``compute_rate`` a re-plan tries, in order, until it meets
:data:`MAX_COMPUTE_GROWTH`: with keys paid, packing looks cheaper, and a stricter rate keeps the compute-hungry
packings out."""


def share_keys(config: EngineConfig, calls: Sequence[LinearCall], counts: Sequence[int], replan: Replan, *,
               max_sets: int = 3, tries: int = 2, max_compute_growth: float = MAX_COMPUTE_GROWTH,
               rate_steps: Sequence[float] = RATE_STEPS) -> KeyPlan:
    """Shared key sets for the network whose HE layer ``calls`` (each run ``counts`` times per inference) were
    planned with ``config``'s planner; ``replan(config')`` plans the network again with another configuration
    (:func:`aiompc.nn.prepare.linear_calls`).  Returns the cheapest of the plain plans and the re-planned ones
    (module docstring; by the planner's objective at its own ``compute_rate``), never with more bytes (layers +
    ``key_share`` × keys) than the plain plans nor more than ``1 + max_compute_growth`` times their modelled
    compute.  Each family is re-planned at the ``compute_rate`` multiples of ``rate_steps`` in turn until one
    meets the compute bound (the returned planner carries that rate)."""
    planner = config.mode.planner
    if not planner.shares_key_sets:
        return KeyPlan(config, tuple(calls), (), 0, 0, 0, 0)
    plans = [c.plan for c in calls]
    base = network_totals(planner, plans, counts)
    plain = KeyPlan(config, tuple(calls), (), base.layer_bytes, base.key_bytes, base.layer_bytes, base.key_bytes)
    share, rate = planner.key_share, planner.compute_rate  # type: ignore[attr-defined]
    best, best_obj = plain, base.objective + share * base.key_bytes
    limit, slowest = base.layer_bytes + share * base.key_bytes, base.seconds * (1 + max_compute_growth)
    for _, sets in choose_key_sets(planner, plans, counts, max_sets=max_sets, tries=tries):
        for step in rate_steps:
            shared = dataclasses.replace(planner, key_sets=sets, compute_rate=rate * step)
            cfg = dataclasses.replace(config, mode=dataclasses.replace(config.mode, planner=shared))
            again = replan(cfg)
            got = network_totals(dataclasses.replace(shared, compute_rate=rate), [c.plan for c in again], counts)
            if got.seconds > slowest:
                continue  # too much compute: try a stricter rate
            obj = got.objective + share * got.key_bytes
            if got.layer_bytes + share * got.key_bytes <= limit and obj < best_obj - 1e-9 * abs(best_obj):
                best = KeyPlan(cfg, tuple(again), sets, got.layer_bytes, got.key_bytes, base.layer_bytes, base.key_bytes)
                best_obj = obj
            break
    return best
