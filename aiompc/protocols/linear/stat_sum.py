"""The flooding of several linear-layer calls taken together: result ciphertexts and their composed
statistical distance.

Pure (no I/O, no HE): everything is read from public plans.

One call of a :class:`~aiompc.protocols.linear.plan.LinearPlan` returns :func:`result_ciphertexts` result
ciphertexts.  For each, :attr:`~aiompc.protocols.linear.plan.LinearPlan.flood_bound` gives (for the plan's
worst result: the most visible coefficients) the flood distance ``d`` and the probability ``τ = 2^-(fail+2)``
that the weight-dependent noise exceeds the bound ``B`` the flood was sized for
(:func:`~aiompc.crypto.he.noise.flood_bound`).  :func:`distance` composes them over every result ``c`` of a set
of calls::

    TV(real view, simulated view) <= Σ_{c: one uniform} d_c + sqrt(Σ_{c: two uniforms} d_c²) + Σ_c τ_c

The argument (the client's view over the whole inference, results in the order they are sent; the plans,
hence ``d_c``, ``τ_c`` and ``B_c``, are fixed in advance from public data, only the contents are adaptive):

1. *Clipping.*  Let the clipped world be the real one with every weight-dependent shift ``X_c`` of a result's
   phase (:mod:`aiompc.crypto.he.result`: ``Σ w·e``, encoding roundings, re-randomisation noise) clipped to
   ``[−B_c, B_c]`` per coordinate.  The two worlds differ only if some ``|X_c| > B_c``, which has probability
   ``<= τ_c`` for each ``c`` (the noise bound), so by the union bound — no independence needed — their views
   are within ``Σ_c τ_c``.
2. *One-uniform results: hybrid.*  In the clipped world replace the phases of the one-uniform results one by
   one by their simulation (the decrypted value plus the flood alone).  Whatever happened before, the step's
   conditional distributions differ by at most ``d_c`` (:func:`~aiompc.crypto.he.noise.flood_distance`:
   ``|S|·B/M``), so each replacement costs ``<= d_c`` and together ``Σ d_c``.  After it these steps have the
   same conditional distribution in both worlds.
3. *Two-uniform results: Hellinger.*  Let ``P`` (clipped) and ``Q`` (simulated) be the joint distributions of
   the view.  Condition a two-uniform step on the history ``y_<n`` and on its own non-flood randomness
   (re-randomisation ``u, e0, e1``: same distribution in both worlds, independent of the history): its phase
   is the same value plus a shift ``|x_i| <= B_c`` per visible coordinate ``i`` in ``P``, no shift in ``Q``,
   plus fresh tents, so the Bhattacharyya coefficient of the two conditional distributions is
   ``>= Π_i (1 − h_i) >= 1 − η_c`` with ``η_c = Σ_i h_i`` and ``h_i <= (B/M)²(5 + ln(M/B)/2)/2``
   (:func:`~aiompc.crypto.he.noise.flood_distance`), ``d_c = sqrt(2·η_c)`` — for every history.  Mixing over
   ``u, e0, e1`` (``sqrt(p·q)`` is jointly concave) and mapping to the observed ``(c0, c1)`` (processing)
   can only raise it.  Other steps (step 2's, non-HE messages) have the same conditional distribution in
   both worlds: coefficient 1.  So ``BC(P_1..n, Q_1..n) = Σ_{y_<n} sqrt(p(y_<n)·q(y_<n))·BC_n(y_<n) >=
   (1 − η_n)·BC(P_<n, Q_<n)``, by induction ``BC >= Π_c (1 − η_c) >= 1 − Σ_c η_c``, and (Le Cam)
   ``TV <= sqrt(1 − BC²) <= sqrt(2·(1 − BC)) <= sqrt(2·Σ η_c) = sqrt(Σ_c d_c²)``.

   The same bound without the chaining: fix every coin except the floods (both parties' randomness, the
   server's masks and re-randomisations, hence every ``c1``).  In the clipped world the client decrypts the
   same values in both worlds, so the semi-honest client's messages, the server's replies and every shift
   ``x`` are then fixed, and the view is a fixed part plus ``x + U`` (real) or ``U`` (simulated) over all
   visible coordinates of all results: one product of independent shifted tents, to which Le Cam applies
   directly; averaging over the fixed coins (the same distribution in both worlds) cannot increase the
   distance.  The chained form above also covers a client whose next message depends on the floods it saw.

The three add by the triangle inequality.  A per-result level ``s`` (``d_c + τ_c <= 2^-s``) therefore covers
``R`` two-uniform results together at ``sqrt(R)·2^-s`` plus ``R·τ``, not ``R·2^-s``: a per-inference budget
(:mod:`aiompc.nn.stat_budget`) plans them at ``40 + log2(R)/2`` bits and only the cheap tail (``fail_bits``,
which enters the noise bound through ``z = sqrt(2·ln(2/δ))``) at ``40 + log2 R``.  :func:`require_distance`
turns a composed distance above ``2^-target`` into :class:`~aiompc.errors.InsecureParameters`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from aiompc.errors import InputError, InsecureParameters
from aiompc.protocols.linear.costs import packing_switches
from aiompc.protocols.linear.plan import STAT_BITS, LinearPlan

__all__ = ["result_ciphertexts", "distance", "composition", "Composition", "security_bits", "require_distance",
           "Counted"]

Counted = tuple[LinearPlan, int]
"""A plan and how many times it is called (a convolution runs once per sample)."""


def result_ciphertexts(plan: LinearPlan) -> int:
    """Result ciphertexts one call of ``plan`` returns: one per output polynomial of every unit, or with output
    packing one per packed group (:func:`~aiompc.protocols.linear.costs.packing_switches`, the byte model's
    count of result messages)."""
    if plan.output_packing:
        return packing_switches(plan.layout)[1]
    return plan.layout.units * plan.layout.outputs


@dataclass(frozen=True)
class Composition:
    """The parts of :func:`distance`: ``uniform`` = ``Σ d_c`` over one-uniform results, ``tent_squares`` =
    ``Σ d_c²`` over two-uniform results, ``tails`` = ``Σ τ_c`` over all results."""

    uniform: float
    tent_squares: float
    tails: float

    @property
    def total(self) -> float:
        """``uniform + sqrt(tent_squares) + tails`` (module docstring)."""
        return self.uniform + math.sqrt(self.tent_squares) + self.tails


def composition(calls: Iterable[Counted]) -> Composition:
    """The flood distances and tails of every result of ``calls``, gathered as :func:`distance` composes them."""
    uniform = squares = tails = 0.0
    for plan, count in calls:
        if count < 0:
            raise InputError(f"a call count must be non-negative, got {count}")
        results = count * result_ciphertexts(plan)
        bound = plan.flood_bound
        if bound.terms == 1:
            uniform += results * bound.distance
        else:
            squares += results * bound.distance**2
        tails += results * bound.tail
    return Composition(uniform, squares, tails)


def distance(calls: Iterable[Counted]) -> float:
    """Bound on the statistical distance of every result of ``calls`` together to a weight-independent
    simulation: ``Σ_{one uniform} d_c + sqrt(Σ_{two uniforms} d_c²) + Σ τ_c`` (module docstring)."""
    return composition(calls).total


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
            f"stat_bits >= {target} + log2({results}) (one uniform) or {target} + log2({results})/2 (two uniforms) "
            f"and fail_bits >= {target} + log2({results}) (aiompc.nn.stat_budget does)")
    return bits
