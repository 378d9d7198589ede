"""Linear-layer plans and planners: one explicit, swappable object fixes a layer's ciphertexts.

A :class:`LinearPlan` holds everything both parties must agree on, all derived from public information
(the layer's shape, the ring width ``l`` and a public bound on the weights):

* ``layout`` — tiling and packing (:mod:`aiompc.protocols.linear.layouts`): which polynomials are encrypted,
  multiplied, accumulated, and which coefficients carry outputs;
* ``he`` — the BFV parameters (``N``, primes, ``t = 2^l``);
* ``pipeline`` — what the server computes per output ciphertext (weight bound, non-zeros, fan-in, visible
  coefficients), the input of the noise bound;
* ``output`` — flooding width, final modulus and bits dropped, i.e. the bits kept on the wire;
* ``chunk`` — ciphertexts per message (the pipelining granularity);
* ``out_shift`` — low output bits the client does not decrypt (approximate mode, see
  :mod:`aiompc.protocols.linear.engine`): the output shares are ``floor(y / 2^out_shift) + e``, ``e ∈ {-1, 0, 1}``, in
  the ring of ``l - out_shift`` bits, and ``output`` is planned for that precision.

A *planner* (:class:`Planner`) maps ``(shape, l, weight_bits, out_shift=, pack=)`` to a plan.
:class:`CheetahPlanner` is Cheetah's closed-form tiling with one output channel per ciphertext; the quantized
mode's planner (:class:`~aiompc.protocols.linear.quantized.QuantizedPlanner`) searches tile shapes, packings
and parameters without touching the protocol code.  The planners by name are one explicit table,
:data:`aiompc.protocols.linear.planners.PLANNERS`; the protocols take the planner object itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Iterator, Protocol, Self, Union

from aiompc.crypto.he import (
    CHEETAH_RING_DEGREE,
    FAILURE_BITS,
    FLOOD_TERMS,
    STATISTICAL_SECURITY,
    FloodBound,
    HEParams,
    OutputPlan,
    ServerPipeline,
    cheetah_params,
    find_params,
    flood_bound,
    plan_output,
    statistical_security,
)
from aiompc.crypto.he.packing import packing_noise
from aiompc.errors import InputError, InsecureParameters, UndecryptableParameters
from aiompc.protocols.linear.layouts import ConvLayout, Layout, MatmulLayout
from aiompc.protocols.linear.tiling import (
    ConvShape,
    ConvTiling,
    MatmulShape,
    MatmulTiling,
    cheetah_conv_tiling,
    cheetah_matmul_tiling,
    matmul_tilings_by_count,
)

__all__ = [
    "LinearPlan", "Planner", "CheetahPlanner", "CheetahBaselinePlanner", "make_plan", "pipeline_for", "with_out_shift",
    "decryption_params", "plan_for", "STAT_BITS", "FloodLevels", "LevelledFlooding", "require_private", "rounding_fan_in", "CHEETAH_N", "packed_plan", "packed_pipeline", "packed_group_size", "packed_leaves",
]

Shape = Union[ConvShape, MatmulShape]

STAT_BITS = STATISTICAL_SECURITY
"""Statistical security of the flooding that hides the weights, in bits (DESIGN.md: 40)."""
CHEETAH_N = CHEETAH_RING_DEGREE
"""Cheetah's ring degree (its parameters: ``N = 4096``, ``q ~ 2^109``)."""


@dataclass(frozen=True)
class FloodLevels:
    """The levels a planner floods each result ciphertext at, by flood distribution, and the noise bound's
    failure bits — decided once at the top (:mod:`aiompc.nn.stat_budget`) and handed to the planner.

    ``uniform``: a result flooded with one uniform has statistical distance ``<= 2^-uniform`` to its
    simulation (flood distance plus the noise tail, :attr:`LinearPlan.stat_security`); ``tent``: the same
    for a result flooded with the sum of two uniforms; ``fail``: the pipeline's ``fail_bits`` — the noise bound
    holds except with probability ``2^-(fail+2)`` per result and decryption fails with probability
    ``<= 2^-fail``.  The default, every level 40, is the per-ciphertext statement (each result on its own,
    Cheetah's); a per-inference budget raises them by different amounts because the two floods compose
    differently over many results (uniform linearly, two uniforms in quadrature,
    :mod:`aiompc.protocols.linear.stat_sum`)."""

    uniform: int = STAT_BITS
    tent: int = STAT_BITS
    fail: int = FAILURE_BITS

    def __post_init__(self) -> None:
        if not all(1 <= b <= 128 for b in (self.uniform, self.tent, self.fail)):
            raise InputError(f"flood levels must be in 1..128 bits, got {self}")
        if self.fail < max(self.uniform, self.tent) - 1:
            raise InputError(f"{self}: the noise tail 2^-(fail+2) must leave room for every level (fail >= level - 1)")

    @classmethod
    def per_ciphertext(cls, bits: int) -> FloodLevels:
        """Every flood at ``bits`` per result and ``fail = max(40, bits)`` (what ``stat_bits = bits`` always meant)."""
        return cls(bits, bits, max(FAILURE_BITS, bits))

    def level(self, terms: int) -> int:
        """The level of a flood of ``terms`` uniforms."""
        if terms not in FLOOD_TERMS:
            raise InputError(f"flood_terms must be one of {FLOOD_TERMS}, got {terms}")
        return self.uniform if terms == 1 else self.tent

    @property
    def lowest(self) -> int:
        """The lowest per-result level (what a lower bound on ``q`` may assume for any flood)."""
        return min(self.uniform, self.tent)

    @property
    def first_terms(self) -> int:
        """The flood a planner's first pass tries: two uniforms when their level is lower, else one (as
        Cheetah's rule does)."""
        return 2 if self.tent < self.uniform else 1

    @property
    def is_per_ciphertext(self) -> bool:
        """Whether these are :meth:`per_ciphertext` levels (every flood at ``uniform``): what a planner's
        ``stat_bits`` alone says."""
        return self == FloodLevels.per_ciphertext(self.uniform)

    def at_least(self, other: FloodLevels) -> FloodLevels:
        """Componentwise maximum of ``self`` and ``other``."""
        return FloodLevels(max(self.uniform, other.uniform), max(self.tent, other.tent), max(self.fail, other.fail))

    def describe(self) -> str:
        return f"uniform {self.uniform} / two uniforms {self.tent} / fail {self.fail} bits"


@dataclass(frozen=True)
class LinearPlan:
    """How one linear layer is computed under HE (see the module docstring)."""

    layout: Layout
    he: HEParams
    pipeline: ServerPipeline
    output: OutputPlan
    weight_bits: int
    planner: str = "cheetah"
    chunk: int = 8
    out_shift: int = 0
    output_packing: bool = False
    """Pack every unit's output coefficients into ``ceil(outputs / N)`` ciphertexts before sending them
    (PackLWEs with Galois keys sent once per session, :mod:`aiompc.crypto.he.packing`); ``pipeline.visible``
    is then the largest packed group and ``pipeline.packing_noise`` its key-switching noise bound."""

    def __post_init__(self) -> None:
        if not 0 <= self.out_shift < self.he.plain_bits:
            raise InputError(f"out_shift must be in 0..l - 1 = {self.he.plain_bits - 1}, got {self.out_shift}")
        if self.output_packing and self.pipeline.packing_noise < packing_noise(self.he, packed_leaves(self.layout)):
            raise InputError("an output-packing plan needs the packing noise in its pipeline (use packed_plan)")

    @property
    def stat_security(self) -> float:
        """Statistical security (bits) the flooding gives the weights: computed from the pipeline's noise
        bound and the output plan's flood (:func:`~aiompc.crypto.he.noise.statistical_security`)."""
        return statistical_security(self.he, self.pipeline, self.output)

    @property
    def flood_bound(self) -> FloodBound:
        """The flood distance and the noise tail of one result, separately
        (:func:`~aiompc.crypto.he.noise.flood_bound`): how :mod:`~aiompc.protocols.linear.stat_sum` composes them."""
        return flood_bound(self.he, self.pipeline, self.output)

    @property
    def l(self) -> int:
        """Ring width of the input shares and of the computation (``t = 2^l``)."""
        return self.he.plain_bits

    @property
    def out_bits(self) -> int:
        """Ring width of the output shares: ``l - out_shift`` (the precision the client decrypts)."""
        return self.he.plain_bits - self.out_shift

    @property
    def input_ciphertexts(self) -> int:
        return self.layout.units * self.layout.inputs

    @property
    def output_ciphertexts(self) -> int:
        return self.layout.units * self.layout.outputs

    def describe(self) -> str:
        tile = self.layout.tiling.describe()
        pack = self.layout.pack
        if pack > 1:
            tile = f"{pack} channels per coefficient in {self.layout.slot_bits}-bit slots, " + tile  # type: ignore[attr-defined]
        o = self.output
        shift = f", output >> {self.out_shift} (ring {self.out_bits})" if self.out_shift else ""
        packed = f", outputs packed {self.pipeline.visible} per ciphertext" if self.output_packing else ""
        return (f"[{self.planner}] {tile}; {self.he.describe()}; wire c0 {o.bits0} b, c1 {o.bits1} b, "
                f"flood {o.flood_terms}x{o.flood_bits} b (stat {self.stat_security:.1f}){shift}{packed}")


class Planner(Protocol):
    """Maps a layer's public description to the plan both parties derive.

    ``out_shift``: low output bits the client does not decrypt (approximate truncation); ``pack = k > 1``:
    Kronecker packing of ``k`` input channels per coefficient.  A planner that cannot honour ``pack`` raises
    :class:`~aiompc.errors.InputError`.

    Besides its plans, what the network-level planning (:mod:`aiompc.nn.stat_budget`, :mod:`aiompc.nn.key_plan`)
    decides with and hands back: the flooding it plans at (:attr:`stat_bits`, :attr:`flood_levels`), a copy
    flooding at other levels (:meth:`flooding_at`) and whether shared Galois key sets are to be chosen for it
    (:attr:`shares_key_sets`)."""

    @property
    def name(self) -> str:
        """The planner's name in plans and reports."""
        ...

    @property
    def stat_bits(self) -> int:
        """The statistical security, in bits, of the flooding of each result ciphertext (40 by default)."""
        ...

    @property
    def flood_levels(self) -> FloodLevels:
        """The levels it floods each result ciphertext at, by flood distribution (every flood at least these)."""
        ...

    @property
    def shares_key_sets(self) -> bool:
        """Whether :func:`aiompc.nn.key_plan.share_keys` chooses shared Galois key sets for it (a planner that
        packs outputs, minimises bytes and has no key sets yet); False for one that cannot use them."""
        ...

    def flooding_at(self, levels: FloodLevels) -> Planner:
        """This planner flooding every result ciphertext at ``levels`` (or more, never less secure); itself
        (the same object) when it already does."""
        ...

    def __call__(self, shape: Shape, l: int, weight_bits: int, *, out_shift: int = 0, pack: int = 1) -> LinearPlan:
        ...


def _no_packing(name: str, pack: int) -> None:
    if pack != 1:
        raise InputError(f"the {name!r} planner does not pack channels (pack = {pack}); use the 'quantized' planner")


def weight_count(layout: Layout) -> int:
    """Largest number of non-zero coefficients of one weight polynomial (structural, public)."""
    t = layout.tiling
    if isinstance(t, ConvTiling):
        return t.out_pack * t.channels * t.shape.kernel[0] * t.shape.kernel[1]
    if isinstance(t, MatmulTiling):
        return t.d1 * t.d2
    return layout.n


def max_visible(layout: Layout) -> int:
    """Largest number of output coefficients of one output ciphertext."""
    from aiompc.protocols.linear.costs import output_counts  # closed form for the built-in layouts

    if isinstance(layout, (ConvLayout, MatmulLayout)):  # unit 0 is a full (not an edge) tile
        return int(output_counts(layout, 0).max())
    return max(int(output_counts(layout, u).max()) for u in range(layout.units))


def rounding_fan_in(layout: Layout) -> int | None:
    """Products per output coefficient whose message coefficient may be non-zero, where the layout makes
    it smaller than the fan-in: a matrix block packs ``d0·d1`` inputs against ``d1·d2`` weights, so at most
    ``min(d0·d1, d1·d2)`` encoding roundings meet a weight per input ciphertext.  ``None`` otherwise."""
    t = layout.tiling
    if isinstance(t, MatmulTiling):
        return layout.inputs * min(t.d0 * t.d1, weight_count(layout))
    return None


def pipeline_for(layout: Layout, weight_bits: int, stat_bits: int = STAT_BITS, flood_terms: int = 1,
                 tight_rounding: bool = False, fail_bits: int | None = None) -> ServerPipeline:
    """What the server computes per output ciphertext of ``layout`` (public counts only): weights bounded
    by ``2^(weight_bits - 1)``, the layout's non-zeros per weight polynomial, its inputs accumulated and its
    largest number of output coefficients per ciphertext; flooding of ``stat_bits`` with ``flood_terms``
    uniforms (:func:`~aiompc.crypto.he.noise.flood_distance`).  ``tight_rounding``: count only the
    roundings of possibly non-zero message coefficients (:func:`rounding_fan_in`; the Cheetah planners).
    The noise bound's tail (``2^-(fail_bits + 2)``) is part of the statistical distance: ``fail_bits`` is
    ``max(40, stat_bits)`` unless given (a per-inference budget, :mod:`aiompc.nn.stat_budget`, sets it on its
    own: the tails add linearly over results, the two-uniform floods in quadrature, :class:`FloodLevels`)."""
    return ServerPipeline(
        rounding_fan_in=rounding_fan_in(layout) if tight_rounding else None,
        weight_norm=1 << (weight_bits - 1),
        weight_count=weight_count(layout),
        accumulations=layout.inputs,
        visible=max_visible(layout),
        stat_bits=stat_bits,
        fail_bits=max(FAILURE_BITS, stat_bits) if fail_bits is None else fail_bits,
        flood_terms=flood_terms,
    )


def make_plan(layout: Layout, l: int, weight_bits: int, *, he: HEParams | None = None, stat_bits: int = STAT_BITS,
              planner: str = "custom", chunk: int = 8, flood_terms: int = 1, tight_rounding: bool = False,
              fail_bits: int | None = None) -> LinearPlan:
    """A plan for ``layout``: the pipeline from public counts, HE parameters (given, or the smallest secure
    ones at the layout's ``N``) and the cheapest decryptable output plan.  Raises
    :class:`UndecryptableParameters` (naming what is off) when nothing fits."""
    if not 1 <= weight_bits <= l:
        raise InputError(f"weight_bits must be in 1..l = {l}, got {weight_bits}")
    pipeline = pipeline_for(layout, weight_bits, stat_bits, flood_terms, tight_rounding, fail_bits)
    if he is None:
        he = find_params(l, pipeline, n=layout.n)
    elif he.n != layout.n or he.plain_bits != l:
        raise InputError(f"HE parameters {he.describe()} do not match the layout (N = {layout.n}) and l = {l}")
    return LinearPlan(layout, he, pipeline, plan_output(he, pipeline), weight_bits, planner, chunk)


class LevelledFlooding:
    """The flooding members of :class:`Planner` for a frozen dataclass planner with the fields ``stat_bits`` (one
    level for every flood) and ``levels`` (per-flood levels instead, or ``None``)."""

    stat_bits: int
    levels: FloodLevels | None

    @property
    def flood_levels(self) -> FloodLevels:
        """``levels``, or every flood at ``stat_bits`` (:meth:`FloodLevels.per_ciphertext`)."""
        return self.levels or FloodLevels.per_ciphertext(self.stat_bits)

    def flooding_at(self, levels: FloodLevels) -> Self:
        """Itself at ``levels``: per-ciphertext levels as ``stat_bits`` alone, others as ``levels``."""
        if levels == self.flood_levels:
            return self
        if levels.is_per_ciphertext:
            return replace(self, stat_bits=levels.uniform, levels=None)  # type: ignore[type-var]
        return replace(self, levels=levels)  # type: ignore[type-var]


@dataclass(frozen=True)
class CheetahPlanner(LevelledFlooding):
    """Cheetah's closed-form tiling (one output channel per ciphertext) and parameters.

    ``n = 4096`` with ``he="cheetah"`` is the published set: ``q ~ 2^109`` whatever ``l``.  ``he="smallest"``
    asks the HE core for the smallest secure modulus at that ``N`` (what the tests use for small ``l``).
    ``stat_bits`` is the statistical security of the flooding that hides the weights (40 by default);
    ``levels``, when given, replaces it with a level per flood distribution and explicit ``fail_bits``
    (:class:`FloodLevels`; the quantized planner's Cheetah candidate under a per-inference budget).
    """

    n: int = CHEETAH_N
    he: str = "cheetah"
    stat_bits: int = STAT_BITS
    chunk: int = 8
    levels: FloodLevels | None = None

    @property
    def name(self) -> str:
        return "cheetah" if self.he == "cheetah" else f"cheetah-{self.he}"

    @property
    def shares_key_sets(self) -> bool:
        """False: Cheetah's layouts pack no outputs, so they have no Galois keys to share."""
        return False

    def layout(self, shape: Shape) -> Layout:
        if isinstance(shape, ConvShape):
            return ConvLayout(cheetah_conv_tiling(shape, self.n))
        return MatmulLayout(cheetah_matmul_tiling(shape, self.n))

    def fallback_layouts(self, shape: Shape) -> Iterator[Layout]:
        """The layouts tried in order: Cheetah's rule, then — for a matrix product only — every blocking in the
        order of the same key (:func:`~aiompc.protocols.linear.tiling.matmul_tilings_by_count`); the first that
        decrypts is used.  Iron's blocks at ``q ~ 2^109`` cannot flood the products of wide BERT layers (``768 ->
        3072`` at ``l = 37``) with 40 bits — too many outputs per result ciphertext — and the first blocking that
        can is the closest to its packing that keeps the flooding."""
        first = self.layout(shape)
        yield first
        if isinstance(shape, MatmulShape):
            for t in matmul_tilings_by_count(shape, self.n):
                if t != first.tiling:
                    yield MatmulLayout(t)

    def _plan(self, layout: Layout, l: int, weight_bits: int, params: HEParams | None) -> LinearPlan:
        """``layout``'s plan with one uniform flood where it fits (Cheetah's bytes), else the triangle; the last
        :class:`UndecryptableParameters` if neither decrypts."""
        levels = self.flood_levels
        last: UndecryptableParameters | None = None
        for terms in FLOOD_TERMS:
            try:
                return make_plan(layout, l, weight_bits, he=params, stat_bits=levels.level(terms), planner="cheetah",
                                 chunk=self.chunk, flood_terms=terms, tight_rounding=True, fail_bits=levels.fail)
            except UndecryptableParameters as exc:
                last = exc
        assert last is not None
        raise last

    def _decrypts(self, layout: Layout, l: int, weight_bits: int, params: HEParams | None) -> bool:
        try:
            self._plan(layout, l, weight_bits, params)
            return True
        except UndecryptableParameters:
            return False

    def __call__(self, shape: Shape, l: int, weight_bits: int, *, out_shift: int = 0, pack: int = 1) -> LinearPlan:
        _no_packing(self.name, pack)
        params = cheetah_params(l) if self.he == "cheetah" and self.n == CHEETAH_N else None
        last: UndecryptableParameters | None = None
        for i, layout in enumerate(self.fallback_layouts(shape)):
            if i == 1 and isinstance(shape, MatmulShape) and not self._decrypts(
                    MatmulLayout(MatmulTiling(shape, self.n, 1, 1, 1)), l, weight_bits, params):
                break  # the blocking of least noise does not decrypt: none will
            try:
                return with_out_shift(self._plan(layout, l, weight_bits, params), out_shift)
            except UndecryptableParameters as exc:
                last = exc
        assert last is not None
        raise UndecryptableParameters(
            f"{shape}: {last} (Cheetah's q ~ 2^109 at N = {CHEETAH_N} holds l = {l} with {weight_bits}-bit weights "
            f"only with less flooding: lower weight_bits, or pass CheetahPlanner(stat_bits=...) knowingly)"
        ) from None


@dataclass(frozen=True)
class CheetahBaselinePlanner:
    """Cheetah's published parameters exactly (``N = 4096``, ``q ~ 2^109``, Cheetah's tiling) with flooding of
    ``stat_bits`` (40) statistical security.

    This is the baseline the quantized mode is measured against: its bytes are Cheetah's.  One uniform
    flood of ``2^f`` integers hides the noise where it fits ``q ~ 2^109`` (most layers); for wide layers at
    ``l = 37`` (many visible coefficients, 12-14-bit weights) it does not, and the flood is the sum of two
    uniforms, whose statistical distance grows only with the square root of the visible count
    (:func:`~aiompc.crypto.he.noise.flood_distance`) — same parameters, same tiling — kept as large as
    decryption allows (the largest ``stat_bits`` that decrypts), as this baseline's single flood was before,
    so its wire size is unchanged.  (OpenCheetah itself floods nothing; it only switches modulus and truncates.)  The achieved level
    is recorded in the plan (:attr:`LinearPlan.stat_security`) and the engine refuses a plan below 40 bits.
    """

    stat_bits: int = STAT_BITS
    chunk: int = 8
    name = "cheetah-baseline"

    @property
    def flood_levels(self) -> FloodLevels:
        """Every flood at ``stat_bits`` (:meth:`FloodLevels.per_ciphertext`; a two-uniform flood may be stronger)."""
        return FloodLevels.per_ciphertext(self.stat_bits)

    @property
    def shares_key_sets(self) -> bool:
        """False: Cheetah's layouts pack no outputs, so they have no Galois keys to share."""
        return False

    def flooding_at(self, levels: FloodLevels) -> CheetahBaselinePlanner:
        """Itself with one ``stat_bits``, the highest of ``levels`` (every result at that, never less secure)."""
        bits = max(levels.uniform, levels.tent, levels.fail)
        return self if bits == self.stat_bits else replace(self, stat_bits=bits)

    def __call__(self, shape: Shape, l: int, weight_bits: int, *, out_shift: int = 0, pack: int = 1) -> LinearPlan:
        _no_packing(self.name, pack)
        plan = CheetahPlanner(stat_bits=self.stat_bits, chunk=self.chunk)(shape, l, weight_bits, out_shift=out_shift)
        if plan.output.flood_terms == 1:
            return plan
        # one uniform does not fit: keep the flood as large as decryption allows (as this baseline always did,
        # so its wire size is what it was), now two uniforms: more than the required statistical security
        params = decryption_params(plan.he, plan.out_shift)
        for bits in range(plan.output.flood_bits + 1, plan.he.log2_q.__ceil__()):
            try:
                plan = replace(plan, output=plan_output(params, plan.pipeline, flood_bits=bits))
            except UndecryptableParameters:
                break
        return plan


def plan_for(planner: Planner, shape: Shape, l: int, weight_bits: int, out_shift: int = 0,
             pack: int = 1) -> LinearPlan:
    """The plan both parties derive: ``planner(shape, l, weight_bits)`` with the output truncated by
    ``out_shift`` bits and ``pack`` input channels per coefficient."""
    return planner(shape, l, weight_bits, out_shift=out_shift, pack=pack)


def decryption_params(he: HEParams, out_shift: int) -> HEParams:
    """``he`` with ``t = 2^(l - out_shift)``: the precision a truncating client decrypts at (same ``N`` and
    primes; used to plan the output's noise budget, never to encrypt)."""
    return he.with_plain_bits(he.plain_bits - out_shift)


def with_out_shift(plan: LinearPlan, out_shift: int) -> LinearPlan:
    """``plan`` with the output truncated by ``out_shift`` bits at decryption: same layout and ``q``, output
    plan re-derived for the coarser precision (the quantized planner instead re-optimises ``q`` as well)."""
    if out_shift == plan.out_shift:
        return plan
    if not 0 <= out_shift < plan.l:
        raise InputError(f"out_shift must be in 0..l - 1 = {plan.l - 1}, got {out_shift}")
    output = plan_output(decryption_params(plan.he, out_shift), plan.pipeline)
    return replace(plan, output=output, out_shift=out_shift)


@functools.lru_cache(maxsize=4096)
def packed_group_size(layout: Layout) -> int:
    """Output values of the largest packed result message (:mod:`aiompc.protocols.linear.packed`)."""
    from aiompc.protocols.linear.costs import packed_shapes, unit_kinds

    return max(values for u, _ in unit_kinds(layout) for values, _ in packed_shapes(layout, u))


@functools.lru_cache(maxsize=4096)
def packed_leaves(layout: Layout) -> int:
    """Leaves of the largest packing tree of ``layout``: its depth ``ℓ`` sets the key-switching noise
    (:func:`~aiompc.crypto.he.packing.packing_noise`).  A strided group of ``2^ℓ`` whole ciphertexts carries up to
    ``N`` values but has only ``ℓ`` levels; bounding it by its value count would overstate the depth."""
    from aiompc.protocols.linear.costs import packed_shapes, unit_kinds

    return max(leaves for u, _ in unit_kinds(layout) for _, leaves in packed_shapes(layout, u))


def packed_pipeline(layout: Layout, weight_bits: int, he: HEParams, stat_bits: int = STAT_BITS) -> ServerPipeline:
    """:func:`pipeline_for` with the outputs packed: ``visible`` = the largest group, plus the key-switching
    noise of its tree under ``he`` (not hidden by the flooding: it depends only on fresh ``c1``'s and key errors)."""
    count = packed_group_size(layout)
    return replace(pipeline_for(layout, weight_bits, stat_bits), visible=count,
                   packing_noise=packing_noise(he, packed_leaves(layout)))


def packed_plan(plan: LinearPlan) -> LinearPlan:
    """``plan`` with output packing at the same ``q`` (raises :class:`UndecryptableParameters` if the packed
    pipeline does not decrypt there; the quantized planner searches ``q`` for it instead)."""
    count = packed_group_size(plan.layout)
    pipeline = replace(plan.pipeline, visible=count, packing_noise=packing_noise(plan.he, packed_leaves(plan.layout)))
    output = plan_output(decryption_params(plan.he, plan.out_shift), pipeline)
    return replace(plan, pipeline=pipeline, output=output, output_packing=True)


def require_private(plan: LinearPlan, label: str = "layer", stat_bits: int = STAT_BITS) -> float:
    """The plan's statistical security (:attr:`LinearPlan.stat_security`), or
    :class:`~aiompc.errors.InsecureParameters` if it is below ``stat_bits`` (40): the engine runs no layer
    whose flooding would hide the weights less well than the project promises."""
    achieved = plan.stat_security
    if achieved < stat_bits:
        raise InsecureParameters(
            f"{label}: the plan's flooding gives {achieved:.1f} bits of statistical security, below the "
            f"{stat_bits} required ({plan.describe()}); plan it with stat_bits={stat_bits} (every built-in planner does)")
    return achieved


def with_chunk(plan: LinearPlan, chunk: int) -> LinearPlan:
    """The same plan with another message granularity."""
    return replace(plan, chunk=chunk)
