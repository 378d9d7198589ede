"""The flooding of several linear-layer calls taken together: result ciphertexts and summed statistical distance.

Pure (no I/O, no HE): everything is read from public plans.

One call of a :class:`~aiompc.protocols.linear.plan.LinearPlan` returns :func:`result_ciphertexts` result
ciphertexts; each is within statistical distance ``2^-plan.stat_security`` of a simulation that does not
depend on the weights (:attr:`~aiompc.protocols.linear.plan.LinearPlan.stat_security` is computed for the
plan's worst result: the most visible coefficients, and includes the noise bound's tail).  Given the client's
view (its key, its errors, its shares) the weight-dependent part of every result is fixed and each result
gets fresh flooding and re-randomisation, so by the hybrid argument the distance of all results of a set of
calls together is at most the sum of their distances (:func:`distance`).  :func:`require_distance` turns a
sum above ``2^-target`` into :class:`~aiompc.errors.InsecureParameters`.
"""

from __future__ import annotations

import math
from typing import Iterable

from aiompc.errors import InputError, InsecureParameters
from aiompc.protocols.linear.costs import packing_switches
from aiompc.protocols.linear.plan import STAT_BITS, LinearPlan

__all__ = ["result_ciphertexts", "distance", "security_bits", "require_distance", "Counted"]

Counted = tuple[LinearPlan, int]
"""A plan and how many times it is called (a convolution runs once per sample)."""


def result_ciphertexts(plan: LinearPlan) -> int:
    """Result ciphertexts one call of ``plan`` returns: one per output polynomial of every unit, or with output
    packing one per packed group (:func:`~aiompc.protocols.linear.costs.packing_switches`, the byte model's
    count of result messages)."""
    if plan.output_packing:
        return packing_switches(plan.layout)[1]
    return plan.layout.units * plan.layout.outputs


def distance(calls: Iterable[Counted]) -> float:
    """Bound on the statistical distance of every result of ``calls`` together:
    ``Σ calls · results · 2^-stat_security`` (module docstring)."""
    total = 0.0
    for plan, count in calls:
        if count < 0:
            raise InputError(f"a call count must be non-negative, got {count}")
        total += count * result_ciphertexts(plan) * 2.0 ** -plan.stat_security
    return total


def security_bits(calls: Iterable[Counted]) -> float:
    """``-log2`` of :func:`distance` (``inf`` for no results)."""
    d = distance(calls)
    return math.inf if d == 0 else -math.log2(d)


def require_distance(calls: Iterable[Counted], target: int = STAT_BITS, label: str = "inference") -> float:
    """The statistical security in bits of all results of ``calls`` together (:func:`security_bits`), or
    :class:`~aiompc.errors.InsecureParameters` if it is below ``target`` bits, naming the result count and
    the weakest plan."""
    calls = list(calls)
    bits = security_bits(calls)
    if bits < target:
        results = sum(count * result_ciphertexts(plan) for plan, count in calls)
        weakest = min(calls, key=lambda c: c[0].stat_security)[0]
        raise InsecureParameters(
            f"{label}: its {results} result ciphertexts together are within statistical distance 2^-{bits:.1f} "
            f"of a weight-independent simulation, above the 2^-{target} required (weakest layer: "
            f"{weakest.stat_security:.1f} bits per ciphertext, {weakest.describe()}); plan every layer with "
            f"stat_bits >= {target} + log2({results}) (aiompc.nn.stat_budget does)")
    return bits
