"""Noise bounds for the server pipeline, output plans, and the smallest secure parameters for a layer.

The pipeline (one output ciphertext; :class:`ServerPipeline` describes it)::

    fresh encryption → add server plaintext → multiply by weights (‖w‖∞ = W, ≤ c non-zeros)
      → accumulate K products → add mask → re-randomise (u·pk + e) → flood (f bits)
      → switch to Q → drop d0/d1 low bits of c0/c1 → client decrypts

Noise is ``c0 + c1·s − Q·M/t`` (at the current modulus).  Bounds, with fan-in ``F = K·c``,
``s_e = σ + 1/2`` (a rounded, 6σ-clipped Gaussian is sub-Gaussian with this parameter; its absolute
value is at most ``e_max = round(6σ)``), and ``z = sqrt(2·ln(2/δ))`` for a per-coefficient tail
probability ``δ = 2**-(fail_bits+2)/N``:

* encoding roundings (deterministic, worst case): ``|round(q·m/t) − q·m/t| <= 1/2`` per plaintext
  coefficient (0 for a zero coefficient), so ``A = F_r·W/2·(1 + [plaintext added before multiplying]) +
  (plaintexts added after)/2`` with ``F_r <= F`` the products whose message coefficient may be non-zero
  (``ServerPipeline.rounding_fan_in``);
* client errors times weights: sub-Gaussian with variance proxy ``s_e²·F·W²`` (never more than
  ``e_max·F·W``);
* re-randomisation ``e_pk·u + e1·s + e0``: proxy ``s_e²·(2N + 1)``;
* ``hidden = A + z·sqrt(proxies)`` bounds everything the flood must hide, except with probability
  ``2**-(fail_bits+2)`` overall;
* flooding (``flood_terms = 1``): uniform on ``2**f`` integers with ``f = ⌈stat_bits + 1 +
  log2(visible·hidden)⌉`` — the statistical distance to a weight-independent phase is
  ``<= visible·hidden/2**f + 2**-(fail_bits+2) <= 2**-stat_bits`` (argument in :mod:`~.result`);
* flooding with ``flood_terms = 2``: the sum of two independent uniforms on ``M = 2**f`` integers each (a
  discrete triangle).  Its distance grows with the *square root* of the visible count
  (:func:`flood_distance`: Hellinger distances add over coordinates), so for many visible coefficients it
  hides the same noise with a smaller flood: ``<= sqrt(visible·(5 + ln(M/hidden)/2))·hidden/M``;
* switching to ``Q``: ``noise·Q/q + r0 + r1·s`` with ``|r| <= a = 1/2 + 2**-10`` (float slack of the RNS
  rounding); dropping ``d`` bits adds ``δ0 ∈ [−2**(d0−1), 2**(d0−1))`` to ``c0`` and ``δ1·s`` from ``c1``.
  The ``c1`` terms are bounded with Hoeffding's inequality under the standard heuristic that the
  rounding residues of a (pseudo-)uniform ``c1`` are independent and centred (``δ1`` has mean ``−1/2``:
  that bias, at most ``N/2``, is added separately).

Decryption of one ciphertext fails with probability at most ``2**-fail_bits`` if the final bound is
below ``Q/(2t)`` (exact integer rounding for ``Q = 2**k``; ``× (1 − 2**-10)`` for RNS decryption).

Why ``q ≡ 1 (mod t)`` is only a preference here: with ``q = Δ·t + ρ`` and the encoding ``Δ·m``, a
product with ``w`` carries an error ``−ρ·k`` (``k = (m·w − [m·w]_t)/t``, up to ``F·W``), fatal for large
``ρ``; ``ρ = 1`` tames it.  This package always encodes ``round(q·m/t)``, whose error against the ideal
``q·m/t`` is ``ε(m) = round(ρ·m/t) − ρ·m/t``, at most ``1/2`` per coefficient whatever ``ρ`` is — the
``A`` term above, the same worst case as ``ρ = 1`` gives.  With ``ρ = 1``, ``ε(m) = −m_c/t`` (``m_c`` the
centered lift) is moreover tiny for small-magnitude plaintexts, so :func:`find_params` picks primes
with ``q ≡ 1 (mod t)`` when that costs nothing (automatic for ``t <= 2N``; for larger ``t`` by choosing
the last prime in the right residue class, when one exists below ``2**30``), and the worst-case bound
stays valid either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from aiompc.errors import InputError, UndecryptableParameters

from .params import FAILURE_BITS, SIGMA, STATISTICAL_SECURITY, HEParams, _log2
from .primes import MAX_PRIME_BITS, is_prime, ntt_primes_above

__all__ = [
    "ServerPipeline",
    "OutputPlan",
    "NoiseEstimate",
    "estimate",
    "check",
    "plan_output",
    "min_modulus_bits",
    "choose_primes",
    "RESULT_MODULUS_BITS",
    "flood_distance",
    "flood_security",
    "statistical_security",
    "FloodBound",
    "flood_bound",
    "FLOOD_TERMS",
]

#: Results are switched to ``Q = 2**62``: for fixed wire widths a larger ``Q`` only shrinks rounding noise.
RESULT_MODULUS_BITS = 62
_A = 0.5 + 2.0**-10  # rounding bound of a modulus switch
_RNS_SLACK = 1 - 2.0**-10  # float-assisted RNS decryption tolerance
FLOOD_TERMS = (1, 2)
"""Flooding distributions: the sum of this many independent uniforms on ``2**flood_bits`` integers."""


def flood_distance(visible: int, hidden: float, flood_bits: int, terms: int) -> float:
    """Bound on the statistical distance between ``X + U`` and ``U`` over ``visible`` coordinates, where
    ``|X_i| <= hidden`` (integers) and ``U`` is the flooding: per coordinate the sum of ``terms``
    independent uniforms on ``M = 2**flood_bits`` integers.

    * ``terms = 1``: ``Σ_i |X_i|/M <= visible·hidden/M`` (exact for a box).
    * ``terms = 2``: the tent ``a(s) = M²·P(s) = min(s+1, 2M−1−s)``.  For an integer shift ``x``,
      ``Σ_s (√a(s) − √a(s−x))²`` is at most ``x²`` on each of the two ends where one side is zero, ``x²``
      around the peak, and on each slope ``Σ_j (√(j+x) − √j)² <= x² + x²·ln(M/x)/4`` (each term is at most
      ``x`` and at most ``x²/(4j)``) — in all ``x²·(5 + ln(M/x)/2)``, so the squared Hellinger distance of
      one coordinate is ``h_i <= (x/M)²·(5 + ln(M/x)/2)/2``.  Bhattacharyya coefficients multiply over
      independent coordinates, so ``1 − BC <= Σ h_i`` and the total-variation distance is
      ``<= sqrt(1 − BC²) <= sqrt(2·Σ h_i) = sqrt(visible·(5 + ln(M/x)/2))·x/M`` (Le Cam).  The bound grows
      with ``|x|`` for ``|x| <= M/2``, so ``x = hidden`` bounds every coordinate.
    """
    if terms not in FLOOD_TERMS:
        raise InputError(f"flood_terms must be one of {FLOOD_TERMS}, got {terms}")
    if flood_bits < 1:
        return 1.0
    m = 2.0**flood_bits
    h = max(hidden, 1.0)
    if terms == 1:
        return min(1.0, visible * h / m)
    if h > m / 2:
        return 1.0
    return min(1.0, math.sqrt(visible * (5 + math.log(m / h) / 2)) * h / m)


def flood_security(visible: int, hidden: float, flood_bits: int, terms: int, fail_bits: int) -> float:
    """Statistical security in bits, ``−log2(distance)``, of flooding ``hidden`` noise over ``visible``
    coordinates: :func:`flood_distance` plus the probability ``2**-(fail_bits+2)`` that the noise exceeds
    its bound."""
    return -math.log2(min(1.0, flood_distance(visible, hidden, flood_bits, terms) + 2.0 ** -(fail_bits + 2)))


def _flood_bits_for(visible: int, hidden: float, stat_bits: int, terms: int, fail_bits: int) -> int:
    """The least ``f`` whose flooding reaches ``stat_bits`` of statistical security."""
    f = max(1, math.ceil(stat_bits + math.log2(max(hidden, 1.0)) + math.log2(visible) / terms))
    while flood_security(visible, hidden, f, terms, fail_bits) < stat_bits:
        f += 1
    while f > 1 and flood_security(visible, hidden, f - 1, terms, fail_bits) >= stat_bits:
        f -= 1
    return f


@dataclass(frozen=True)
class ServerPipeline:
    """What the server does to produce one output ciphertext (inputs of the noise bound).

    Attributes:
        weight_norm: ``‖w‖∞`` of the centered weight plaintexts (``W``).
        weight_count: non-zero coefficients per weight plaintext (``c``, ``<= N``).
        accumulations: products summed into one output (``K``).
        plain_before_multiply: the server adds its share as a plaintext before multiplying (its
            rounding error is then multiplied by the weights).
        plain_after_multiply: plaintexts added after accumulation (the output mask: 1).
        visible: ``c0`` coefficients sent per output ciphertext (``None`` = all ``N``).
        rerandomize: add ``u·pk + e`` (hides ``c1``); counted in the noise when true.
        flood: add uniform flooding noise to ``c0`` (hides the noise); ``stat_bits`` of security.
        stat_bits: statistical security of the flooding (40): flood distance plus noise tail ``<= 2**-stat_bits``.
        fail_bits: decryption failure probability at most ``2**-fail_bits`` per ciphertext (40); the noise bound's
            tail is ``2**-(fail_bits+2)``, so it must be at least ``stat_bits - 1`` (a per-inference budget sets
            it higher than ``stat_bits``: the tails add linearly over results, :mod:`~aiompc.protocols.linear.stat_sum`).
        packing_noise: bound on noise added after flooding that needs no hiding (the key switching of
            output packing, :func:`~aiompc.crypto.he.packing.packing_noise`); 0 without packing.
        flood_terms: the flooding is the sum of this many independent uniforms (1 or 2, see
            :func:`flood_distance`).
        rounding_fan_in: products per output coefficient whose *message* coefficient may be non-zero (the
            encoding rounding of a zero coefficient is zero); ``None`` = ``fan_in``.  A matrix product packs
            ``d0·d1`` inputs into a polynomial whose weight polynomial has ``d1·d2`` non-zeros, so its
            rounding term is far below ``fan_in·W``.
    """

    weight_norm: int
    weight_count: int
    accumulations: int = 1
    plain_before_multiply: bool = True
    plain_after_multiply: int = 1
    visible: int | None = None
    rerandomize: bool = True
    flood: bool = True
    stat_bits: int = STATISTICAL_SECURITY
    fail_bits: int = FAILURE_BITS
    packing_noise: float = 0.0
    flood_terms: int = 1
    rounding_fan_in: int | None = None

    def __post_init__(self) -> None:
        if self.rounding_fan_in is not None and not 1 <= self.rounding_fan_in <= self.fan_in:
            raise InputError(f"rounding_fan_in must be in 1..fan_in = {self.fan_in}, got {self.rounding_fan_in}")
        if self.flood_terms not in FLOOD_TERMS:
            raise InputError(f"flood_terms must be one of {FLOOD_TERMS}, got {self.flood_terms}")
        if self.packing_noise < 0:
            raise InputError("packing_noise must be non-negative")
        if self.weight_norm < 0 or self.weight_count < 1 or self.accumulations < 1 or self.plain_after_multiply < 0:
            raise InputError(f"invalid pipeline {self}: norms and counts must be positive")
        if self.visible is not None and self.visible < 1:
            raise InputError("visible must be at least 1")
        if not 1 <= self.stat_bits <= 128 or not 1 <= self.fail_bits <= 128:
            raise InputError("stat_bits and fail_bits must be in 1..128")
        if self.flood and self.fail_bits < self.stat_bits - 1:
            raise InputError(f"fail_bits = {self.fail_bits} leaves the noise tail 2^-(fail_bits+2) above what "
                             f"stat_bits = {self.stat_bits} allows: it must be at least stat_bits - 1")

    @property
    def fan_in(self) -> int:
        """Terms ``w_j·e_j`` summed into one output coefficient: ``accumulations·weight_count``."""
        return self.accumulations * self.weight_count

    @property
    def rounding_terms(self) -> int:
        """Encoding roundings (``|ε| <= 1/2``) times weights summed into one output coefficient."""
        return self.fan_in if self.rounding_fan_in is None else self.rounding_fan_in


@dataclass(frozen=True)
class OutputPlan:
    """How the server finishes a result: flooding width, final modulus ``Q`` and bits dropped."""

    modulus: int
    drop0: int
    drop1: int
    flood_bits: int
    flood_terms: int = 1
    """The flooding is the sum of ``flood_terms`` uniforms on ``2**flood_bits`` integers (each centred)."""

    @property
    def bits0(self) -> int:
        """Wire bits per ``c0`` coefficient."""
        return ((self.modulus - 1) >> self.drop0).bit_length()

    @property
    def bits1(self) -> int:
        """Wire bits per ``c1`` coefficient."""
        return ((self.modulus - 1) >> self.drop1).bit_length()

    def wire_bits(self, n: int, visible: int, batch: int = 1) -> int:
        """Payload bits of ``batch`` results with ``visible`` ``c0`` coefficients each."""
        return batch * (visible * self.bits0 + n * self.bits1)


@dataclass(frozen=True)
class NoiseEstimate:
    """Bounds on ``|noise|`` after each stage (absolute values at that stage's modulus).

    ``fresh``/``product``/``rerandomized``/``flooded`` are at modulus ``q``; ``switched`` (rounding only)
    and ``final`` (after dropping bits) at ``plan.modulus``.  ``limit`` is what decryption tolerates at
    the last stage computed (``Q/(2t)``, or ``q/(2t)·(1 − 2**-10)`` without a plan).
    """

    params: HEParams
    pipeline: ServerPipeline
    plan: OutputPlan | None
    fresh: float
    product: float
    rerandomized: float
    flood_bits: int
    flooded: float
    switched: float | None
    final: float
    limit: float

    @property
    def margin_bits(self) -> float:
        """``log2(limit/final)``: positive when decryption succeeds (w.p. ``>= 1 − 2**-fail_bits``)."""
        return math.log2(self.limit / self.final)

    @property
    def decryptable(self) -> bool:
        return self.final < self.limit

    def require(self) -> NoiseEstimate:
        """Return ``self`` or raise :class:`UndecryptableParameters` naming the number that is off."""
        if self.decryptable:
            return self
        p, pl = self.params, self.pipeline
        need = self.flooded_need_bits()
        where = "at the top modulus" if self.plan is None else f"after switching to 2^{_log2(self.plan.modulus):.0f}"
        raise UndecryptableParameters(
            f"noise bound 2^{_log2f(self.final):.1f} {where} exceeds the decryption limit 2^{_log2f(self.limit):.1f} "
            f"(l = {p.plain_bits}; flooding {self.flood_bits} bits for {self._visible} visible coefficients, "
            f"hidden noise 2^{_log2f(self.rerandomized):.1f} from weight norm {pl.weight_norm} × fan-in {pl.fan_in}): "
            f"need log2 q >= {need:.1f}, have {p.log2_q:.1f} — use find_params(), a smaller weight norm, "
            f"fan-in or visible count, or drop fewer bits"
        )

    @property
    def _visible(self) -> int:
        return self.pipeline.visible or self.params.n

    def flooded_need_bits(self) -> float:
        """``log2 q`` at which the flooded noise would sit exactly at ``q/(2t)``."""
        return _log2f(self.flooded) + self.params.plain_bits + 1


def _log2f(x: float) -> float:
    return math.log2(x) if x > 0 else float("-inf")


def _tail(n: int, fail_bits: int) -> float:
    """``z`` with ``P(|X| > z·s) <= 2**-(fail_bits+2)/n`` for ``X`` sub-Gaussian with parameter ``s``."""
    log_inv_delta = (fail_bits + 2) * math.log(2) + math.log(n) + math.log(2)
    return math.sqrt(2 * log_inv_delta)


def _pre_switch(n: int, sigma: float, pl: ServerPipeline) -> tuple[float, float, float, float, int, float]:
    """(fresh, product, rerandomized, z, flood_bits, flooded) for ring degree ``n``."""
    visible = pl.visible or n
    if pl.weight_count > n or visible > n:
        raise InputError(f"weight_count ({pl.weight_count}) and visible ({visible}) cannot exceed N = {n}")
    e_max = math.floor(6 * sigma + 0.5)
    s_e = sigma + 0.5
    z = _tail(n, pl.fail_bits)
    f_in, w = pl.fan_in, pl.weight_norm
    rounding = pl.rounding_terms * w / 2 * (1 + pl.plain_before_multiply) + pl.plain_after_multiply / 2
    v_prod = s_e**2 * f_in * w**2
    product = rounding + min(z * math.sqrt(v_prod), e_max * f_in * w)
    if pl.rerandomize:
        v_rr = s_e**2 * (2 * n + 1)
        rerandomized = rounding + min(z * math.sqrt(v_prod + v_rr), e_max * (f_in * w + 2 * n + 1))
    else:
        rerandomized = product
    flood_bits = 0
    if pl.flood and pl.flood_terms == 1:
        flood_bits = math.ceil(pl.stat_bits + 1 + math.log2(visible * max(rerandomized, 1.0)))
    elif pl.flood:
        flood_bits = _flood_bits_for(visible, rerandomized, pl.stat_bits, pl.flood_terms, pl.fail_bits)
    flooded = rerandomized + (pl.flood_terms * 2.0 ** (flood_bits - 1) if flood_bits else 0.0) + pl.packing_noise
    return float(e_max), product, rerandomized, z, flood_bits, flooded


def _switch_terms(n: int, z: float, drop0: int, drop1: int) -> tuple[float, float]:
    """(rounding-only bound, rounding + dropping bound) added by switching and dropping."""
    sq = z * math.sqrt(n)
    switched = _A + sq * _A
    half1 = (2**drop1 - 1) / 2 if drop1 else 0.0
    final = _A + (2.0 ** (drop0 - 1) if drop0 else 0.0) + (n / 2 if drop1 else 0.0) + sq * (_A + half1)
    return switched, final


def estimate(params: HEParams, pipeline: ServerPipeline, plan: OutputPlan | None = None) -> NoiseEstimate:
    """Noise bounds for ``pipeline`` under ``params`` (and ``plan``, if given).  Never raises for noise:
    call :meth:`NoiseEstimate.require` to turn an undecryptable result into an error."""
    fresh, product, rerand, z, fbits, flooded = _pre_switch(params.n, params.sigma, pipeline)
    if plan is not None and (plan.flood_terms, plan.flood_bits) != (pipeline.flood_terms, fbits):
        visible = pipeline.visible or params.n
        same = plan.flood_terms == pipeline.flood_terms
        if pipeline.flood and (plan.flood_bits < fbits if same else flood_security(
                visible, rerand, plan.flood_bits, plan.flood_terms, pipeline.fail_bits) < pipeline.stat_bits):
            raise UndecryptableParameters(
                f"plan floods with {plan.flood_terms} x {plan.flood_bits} bits but privacy needs "
                f"{pipeline.flood_terms} x {fbits} (2^-{pipeline.stat_bits} for {visible} visible coefficients)"
            )
        # the plan's flood is what the server adds (also over a pipeline that asked for none): count it
        flood = plan.flood_terms * 2.0 ** (plan.flood_bits - 1) if plan.flood_bits > 0 else 0.0
        flooded = rerand + flood + pipeline.packing_noise
        fbits = plan.flood_bits
    if plan is None:
        return NoiseEstimate(params, pipeline, None, fresh, product, rerand, fbits, flooded, None, flooded,
                             params.q / (2 * params.t) * _RNS_SLACK)
    ratio = plan.modulus / params.q
    sw, fin = _switch_terms(params.n, z, plan.drop0, plan.drop1)
    return NoiseEstimate(params, pipeline, plan, fresh, product, rerand, fbits, flooded,
                         flooded * ratio + sw, flooded * ratio + fin, plan.modulus / (2 * params.t))


def check(params: HEParams, pipeline: ServerPipeline, plan: OutputPlan | None = None) -> NoiseEstimate:
    """:func:`estimate`, raising :class:`UndecryptableParameters` if decryption could fail with
    probability above ``2**-pipeline.fail_bits`` (or if ``plan`` floods too little for privacy)."""
    return estimate(params, pipeline, plan).require()


def plan_output(params: HEParams, pipeline: ServerPipeline, flood_bits: int | None = None) -> OutputPlan:
    """The cheapest decryptable :class:`OutputPlan`: ``Q = 2**62``, flooding as privacy requires (or the
    larger ``flood_bits``, if given), and the ``(drop0, drop1)`` minimising ``visible·bits0 + N·bits1``.
    Raises :class:`UndecryptableParameters`."""
    n, l = params.n, params.plain_bits
    est = estimate(params, pipeline)
    if flood_bits is not None and flood_bits != est.flood_bits:
        if flood_bits < est.flood_bits or not pipeline.flood:
            raise InputError(f"flood_bits {flood_bits} is below the {est.flood_bits} privacy needs (or no flooding)")
        est = estimate(params, pipeline, OutputPlan(1 << RESULT_MODULUS_BITS, 0, 0, flood_bits, pipeline.flood_terms))
    visible = pipeline.visible or n
    modulus = 1 << RESULT_MODULUS_BITS
    limit = modulus / (2 * params.t)
    carried = est.flooded * modulus / params.q
    best: tuple[int, int, int] | None = None
    for d1 in range(RESULT_MODULUS_BITS):
        _, fin = _switch_terms(n, _tail(n, pipeline.fail_bits), 0, d1)
        room = limit - carried - fin
        if room <= 0:
            break
        d0 = max(0, min(RESULT_MODULUS_BITS - 1, math.ceil(math.log2(room)) if room > 1 else 0))
        while d0 and 2.0 ** (d0 - 1) >= room:
            d0 -= 1
        cost = visible * (RESULT_MODULUS_BITS - d0) + n * (RESULT_MODULUS_BITS - d1)
        if best is None or cost < best[0]:
            best = (cost, d0, d1)
    if best is None or est.flooded >= params.q / (2 * params.t):
        est.require()  # raises with the pre-switch numbers
        raise UndecryptableParameters(
            f"l = {l} leaves no room in a 2^{RESULT_MODULUS_BITS} result modulus for the switching noise"
        )
    plan = OutputPlan(modulus, best[1], best[2], est.flood_bits, pipeline.flood_terms)
    estimate(params, pipeline, plan).require()
    return plan


@dataclass(frozen=True)
class FloodBound:
    """The two parts of one result ciphertext's statistical distance to a weight-independent simulation.

    ``distance``: :func:`flood_distance` of the noise the flood must hide (one uniform: a total-variation
    bound that adds linearly over ciphertexts; two uniforms: ``d = sqrt(2·Σ_i h_i)`` from the squared
    Hellinger distances ``h_i`` of the visible coordinates, which compose in quadrature over ciphertexts,
    :mod:`aiompc.protocols.linear.stat_sum`); ``tail``: the probability ``2**-(fail_bits+2)`` that the hidden
    noise exceeds its bound (adds linearly: a union bound); ``terms``: the flood's uniforms (1 or 2)."""

    distance: float
    tail: float
    terms: int

    @property
    def total(self) -> float:
        """The ciphertext's own distance bound, ``distance + tail`` (at most 1)."""
        return min(1.0, self.distance + self.tail)


def flood_bound(params: HEParams, pipeline: ServerPipeline, plan: OutputPlan) -> FloodBound:
    """The flood distance and the noise tail of ``plan``'s flooding of ``pipeline`` under ``params``, separately
    (:class:`FloodBound`); both 0 without flooding requested (nothing weight-dependent to hide), distance 1
    if the pipeline needs flooding and the plan has none."""
    if not pipeline.flood:
        return FloodBound(0.0, 0.0, plan.flood_terms)
    rerand = _pre_switch(params.n, params.sigma, replace(pipeline, flood=False))[2]
    distance = flood_distance(pipeline.visible or params.n, rerand, plan.flood_bits, plan.flood_terms)
    return FloodBound(distance, 2.0 ** -(pipeline.fail_bits + 2), plan.flood_terms)


def statistical_security(params: HEParams, pipeline: ServerPipeline, plan: OutputPlan) -> float:
    """The statistical security in bits that ``plan``'s flooding gives the weights of ``pipeline`` under
    ``params`` (:func:`flood_security` of the noise the flood must hide: ``−log2`` of
    :attr:`FloodBound.total`); ``inf`` without flooding requested, 0 if the pipeline needs flooding and the
    plan has none."""
    if not pipeline.flood:
        return math.inf
    return -math.log2(flood_bound(params, pipeline, plan).total)


def min_modulus_bits(n: int, plain_bits: int, pipeline: ServerPipeline, margin_bits: float = 2.0,
                     sigma: float = SIGMA) -> float:
    """Smallest ``log2 q`` at ring degree ``n`` for which the flooded noise is ``2**margin_bits`` below
    ``q/(2t)`` (the margin leaves room for cheap switching and bit dropping)."""
    *_, flooded = _pre_switch(n, sigma, pipeline)
    return _log2f(flooded) + plain_bits + 1 + margin_bits


def choose_primes(n: int, need_bits: float, max_bits: int, plain_bits: int | None = None) -> tuple[int, ...]:
    """Balanced NTT primes (``< 2**30``, ``≡ 1 mod 2n``) with ``log2 q >= need_bits`` and ``q < 2**max_bits``.

    With ``plain_bits`` the primes also give ``q ≡ 1 (mod 2**plain_bits)`` when possible (always when
    ``2**plain_bits <= 2n``; otherwise the last prime is searched in the right residue class).
    Raises :class:`UndecryptableParameters` if no such set exists.
    """
    if need_bits > max_bits:
        raise UndecryptableParameters(f"need log2 q >= {need_bits:.1f} but N = {n} allows at most {max_bits}")
    count = max(1, math.ceil(need_bits / MAX_PRIME_BITS))
    while count <= 64:
        target = 2.0 ** (need_bits / count)
        picked = _primes_from(n, math.ceil(target), count)
        if picked is not None:
            if plain_bits is not None and (1 << plain_bits) > 2 * n and count > 1:
                unit = _unit_rho(n, picked, need_bits, plain_bits)
                if unit is not None and math.prod(unit).bit_length() <= max_bits:
                    return unit
            if math.prod(picked).bit_length() <= max_bits:
                return picked
        count += 1
    raise UndecryptableParameters(f"no set of NTT primes gives {need_bits:.1f} <= log2 q < {max_bits} at N = {n}")


def _primes_from(n: int, start: int, count: int) -> tuple[int, ...] | None:
    out = []
    for p in ntt_primes_above(n, max(start, 2 * n + 1)):
        out.append(p)
        if len(out) == count:
            return tuple(out)
    return None


def _unit_rho(n: int, picked: tuple[int, ...], need_bits: float, plain_bits: int) -> tuple[int, ...] | None:
    """Replace the last prime by one making ``q ≡ 1 (mod 2**plain_bits)``, if one exists below ``2**30``."""
    t = 1 << plain_bits
    head = picked[:-1]
    c = pow(math.prod(head), -1, t)  # ≡ 1 (mod 2n) automatically
    gap = need_bits - _log2(math.prod(head))  # log2 of the smallest last prime (in log space: no overflow)
    if gap > MAX_PRIME_BITS:
        return None
    lower = max(2.0**gap, 2 * n)
    cand = c + math.ceil(max(lower - c, 0) / t) * t
    while cand < 1 << MAX_PRIME_BITS:
        if cand not in head and is_prime(cand):
            return head + (cand,)
        cand += t
    return None
