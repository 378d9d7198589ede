"""The ``quantized`` planner: a cost-driven search over ring degree, modulus, tile shape and packing.

For a layer's actual ring width ``l`` (the accumulator width of a low-precision layer, not Cheetah's 37)
and its public weight bound, the planner enumerates

* ``N`` in the HE core's secure set (:data:`~aiompc.crypto.he.SECURITY_TABLE`);
* for a convolution, the spatial tile ``H_w x W_w`` (every distinct split of the output rows / columns into
  tiles, the largest tile of each split count that fits ``N``, plus Cheetah's tile; *compact* when the tile
  spans the padded width, so the right / bottom zero padding takes no coefficients), the input channels per
  ciphertext ``C_w`` and the output channels per output ciphertext ``out_pack`` (several output channels in
  disjoint coefficient ranges, ``out_pack·C_w·H_w·W_w <= N``: fewer output ciphertexts, whose ``c1`` is
  sent whole, for smaller input tiles); a strided convolution is also tried in its stride-1 polyphase form
  (:mod:`aiompc.protocols.linear.polyphase`: dense outputs, and a ``1x1`` stride-2 layer reads a quarter of
  its input);  for a matrix product, the blocks ``d0 x d1 x d2``;
  each block count is tried once, with the smallest block giving it (least noise);
* ``q``: the smallest set of NTT primes (``q ≡ 1 mod t`` where it helps) above the noise need of that
  layout at ``N`` (:func:`~aiompc.crypto.he.min_modulus_bits`, with a margin that is itself searched: a
  larger ``q`` leaves more room to drop low bits of the result), the output plan
  (:func:`~aiompc.crypto.he.plan_output`) proving it decryptable with 40-bit statistical flooding;

and minimises the exact bytes of the call (:mod:`aiompc.protocols.linear.costs`; with ``bandwidth`` given, the
modelled time).  Cheetah's closed-form tiling with the smallest secure ``q`` at the same ``l``
(``CheetahPlanner(he="smallest")``) is always one of the candidates, so the choice is never worse than
Cheetah's rule at the same ``l`` (in the model, which equals the measured bytes).

Two approximate-mode options change what is computed, so the caller asks for them:

* ``out_shift = s``: the client decrypts only the top ``l - s`` bits (a fused truncation, one unit of error,
  :mod:`aiompc.protocols.linear.engine`); ``q`` and the output plan are searched for that precision — about ``s``
  bits fewer per uploaded and per returned coefficient;
* ``pack = k``: Kronecker packing of ``k`` input channels per coefficient in ``l / k``-bit slots
  (:mod:`aiompc.protocols.linear.kronecker`); the candidates are the packed layouts.  :func:`choose_packing`
  compares ``k = 1, 2, 3`` for a layer, counting the wider input rings the packing needs.

With output packing, the packed candidates are the refined ones, the channel-interleaved layouts (compact
tiles, one or several output channels per ciphertext, :mod:`aiompc.protocols.linear.interleaved`) and, for a
convolution with ``groups = 1``, its im2col matrix products with power-of-two inner blocks
(:mod:`aiompc.protocols.linear.im2col`): outputs on a lattice, so packing costs about one key switch per result
ciphertext.  They are evaluated in the order of a lower bound of their key (upload at ``l + 41`` bits per
coefficient, every output and its share of ``c1`` at ``l + 1`` bits, the modelled compute at the fewest primes,
then the key switches and Galois keys), while that bound is below the best key found.

Key sets (``key_sets``, chosen for a whole network by :mod:`aiompc.nn.key_plan`): packed layouts are also
planned at the primes of a shared key set of their ``N`` (primes that do not depend on ``l``; keys do not depend
on ``t``), where the Galois keys of the set's elements are already paid; the unpacked pass does not depend on
them and is cached apart.

Search cost: a first pass with the default margin over every candidate (flooded with one uniform, or with two
under a per-inference budget whose two-uniform level is lower: :class:`~aiompc.protocols.linear.plan.FloodLevels`;
pruned by a lower bound of each
candidate's bytes against the best found), then the best ``refine`` candidates (and Cheetah's) with every
margin and with one or two flooding uniforms, then the packed candidates; 0.1 to 0.3 s for a ResNet-18 layer.  Results are cached per ``(planner, shape, l, weight_bits,
out_shift, pack)``; both parties run the same deterministic search (no measured quantity enters it).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import ClassVar, Iterator, Union

import numpy as np

from aiompc.crypto.he import FLOOD_TERMS, MAX_PLAIN_BITS, SECURITY_TABLE, HEParams, OutputPlan, ServerPipeline, params_for_modulus, plan_output
from aiompc.crypto.he import min_modulus_bits
from aiompc.crypto.he.primes import MAX_PRIME_BITS
from aiompc.errors import InputError, ParameterError, UndecryptableParameters
from aiompc.crypto.he.packing import packing_noise
from aiompc.protocols.linear.costs import COMPUTE, LayerCost, compute_seconds, galois_key_bytes, packing_switches, wire_cost
from aiompc.protocols.linear.im2col import Im2colLayout, im2col_shape
from aiompc.protocols.linear.interleaved import interleaved_tilings
from aiompc.protocols.linear.key_sets import KeySet, uncovered
from aiompc.protocols.linear.packed import layout_elements
from aiompc.protocols.linear.kronecker import KroneckerConvLayout, packed_shape, packed_weight_bits
from aiompc.protocols.linear.layouts import ConvLayout, Layout, MatmulLayout
from aiompc.protocols.linear.polyphase import PolyphaseConvLayout, PolyphaseInterleavedLayout, phase_shape
from aiompc.protocols.linear.plan import (
    CHEETAH_N,
    STAT_BITS,
    CheetahPlanner,
    FloodLevels,
    LevelledFlooding,
    LinearPlan,
    packed_group_size,
    packed_leaves,
    pipeline_for,
    with_out_shift,
)
from aiompc.protocols.linear.tiling import ConvShape, ConvTiling, MatmulShape, MatmulTiling, block_sizes, cheetah_conv_tiling

__all__ = [
    "QuantizedPlanner", "SearchResult", "Candidate", "PackingOption", "choose_packing", "block_sizes", "axis_tiles",
    "conv_tilings", "matmul_tilings", "im2col_tilings",
]

Shape = Union[ConvShape, MatmulShape]
_DEFAULT_MARGIN = 2.0


def axis_tiles(padded: int, kernel: int, stride: int, outputs: int) -> list[int]:
    """Tile sizes along one conv axis, one per distinct tile count (largest first): ``(r - 1)·stride + kernel``
    for ``r`` outputs per tile."""
    return [min((r - 1) * stride + kernel, padded) for r in block_sizes(outputs, outputs)]


@dataclass(frozen=True)
class Candidate:
    """One evaluated point of the search: the plan and its modelled cost."""

    plan: LinearPlan
    cost: LayerCost
    margin: float


@dataclass(frozen=True)
class SearchResult:
    """The search's choice, Cheetah's rule at the same ``l`` (if it decrypts) and the size of the search."""

    best: Candidate
    cheetah: Candidate | None
    evaluated: int
    considered: int = 0


@functools.lru_cache(maxsize=4096)
def _params(n: int, need_eighths: int, l: int) -> HEParams:
    """Balanced primes (``q ≡ 1 mod 2^l`` where possible) with ``log2 q >= need_eighths / 8``."""
    return params_for_modulus(n, need_eighths / 8, l)


@functools.lru_cache(maxsize=4096)
def _params_with(n: int, primes: tuple[int, ...], l: int) -> HEParams:
    """Given primes (a key set's) with ``t = 2^l``."""
    return HEParams(n, primes, l)


@functools.lru_cache(maxsize=4096)
def _params_at(params: HEParams, plain_bits: int) -> HEParams:
    """The same ring and primes with ``t = 2^plain_bits`` (the client's decryption precision)."""
    return params.with_plain_bits(plain_bits)


@functools.lru_cache(maxsize=65536)
def _output(params: HEParams, pipeline: ServerPipeline) -> OutputPlan | None:
    try:
        return plan_output(params, pipeline)
    except UndecryptableParameters:
        return None


@dataclass(frozen=True)
class QuantizedPlanner(LevelledFlooding):
    """Cost-driven planner (see the module docstring).

    ``ns``: ring degrees tried; ``stat_bits``: statistical security of the flooding per result ciphertext;
    ``levels``: instead, a level per flood distribution and the noise bound's ``fail_bits``
    (:class:`~aiompc.protocols.linear.plan.FloodLevels`, set by a per-inference budget,
    :mod:`aiompc.nn.stat_budget`; the first pass then tries the flood whose level is lower); ``chunk``: ciphertexts
    per message; ``bandwidth``: bytes/s to minimise modelled time instead of bytes (``rtt`` seconds per
    round trip); ``margins``: noise margins (bits of ``q`` above the flooded noise) tried in the refinement;
    ``refine``: candidates of the first pass refined; ``label``: the label length assumed for the frames
    (bytes only; the choice does not depend on it in practice).

    Output packing (:mod:`aiompc.protocols.linear.packed`): with ``output_packing`` the refined candidates are
    also evaluated with their results packed (``q`` searched again for the packed pipeline).  A packed plan
    is charged ``key_share`` times its one-time Galois key bytes (1: the keys serve this one call — the
    one-inference view; a session serving many inferences may set less).

    Key sets (:mod:`aiompc.protocols.linear.key_sets`; chosen for a whole network by
    :mod:`aiompc.nn.key_plan`): every packed layout is also tried at the primes of each ``key_sets`` entry at its
    ``N`` whose ``q`` is above the layout's need, where the Galois keys of the set's elements are already paid
    (not charged); the cheaper plan is kept.

    Compute: every candidate is charged ``compute_rate`` bytes per modelled CPU second of both parties
    (:func:`~aiompc.protocols.linear.costs.compute_seconds`: weight preparation, absorbing, products,
    finishing, and output packing's re-randomisation and key switches), so a layout must save at least that
    many bytes per second of compute it adds.  The default, 0.8 MB/s, was set when packing cost a
    re-randomisation and an uncompiled key switch per result (``benchmarks/linear_costs.py`` calibrates the
    model; BENCHMARKS.md has the side-by-side runs); since both are compiled (2026-12-05) packing adds little
    modelled compute, and at this rate ResNet-18 packs 15 of its 21 HE layers (all but the first layer, the four
    64-channel 32×32 layers and the classifier; 17.59 MiB linear with the im2col and interleaved candidates);
    ``compute_rate = 0`` is the fewest bytes whatever the compute.  The choice is never more bytes than
    Cheetah's rule (the same ``l``, smallest ``q``) when that decrypts.
    """

    ns: tuple[int, ...] = (2048, 4096, 8192, 16384)
    stat_bits: int = STAT_BITS
    chunk: int = 8
    bandwidth: float | None = None
    rtt: float = 0.0
    margins: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0)
    refine: int = 8
    label: str = "layer"
    output_packing: bool = True
    key_share: float = 1.0
    compute_rate: float = 0.8e6
    levels: FloodLevels | None = None
    key_sets: tuple[KeySet, ...] = ()
    name: ClassVar[str] = "quantized"

    @property
    def shares_key_sets(self) -> bool:
        """Whether a network's shared key sets are to be chosen for it (:func:`aiompc.nn.key_plan.share_keys`): none
        yet (a planner that has them was decided on already: its plans are kept as they are), output packing, and
        bytes minimised (no ``bandwidth``)."""
        return self.key_sets == () and self.output_packing and self.bandwidth is None

    def __call__(self, shape: Shape, l: int, weight_bits: int, *, out_shift: int = 0, pack: int = 1) -> LinearPlan:
        return self.search(shape, l, weight_bits, out_shift, pack).best.plan

    def search(self, shape: Shape, l: int, weight_bits: int, out_shift: int = 0, pack: int = 1) -> SearchResult:
        """Run (or fetch from the cache) the search for one layer.

        ``out_shift``: output bits the client does not decrypt (approximate truncation, see
        :mod:`aiompc.protocols.linear.engine`).  ``pack = k > 1``: Kronecker packing of ``k`` input channels in slots of
        ``l / k`` bits (:mod:`aiompc.protocols.linear.kronecker`; convolutions, approximate mode, ``out_shift >=
        (k-1)·l/k``); Cheetah's rule has no packed counterpart, so ``cheetah`` is ``None`` then."""
        if not 1 <= weight_bits <= l:
            raise InputError(f"weight_bits must be in 1..l = {l}, got {weight_bits}")
        if not 0 <= out_shift < l:
            raise InputError(f"out_shift must be in 0..l - 1 = {l - 1}, got {out_shift}")
        if pack != 1:
            if not isinstance(shape, ConvShape) or shape.groups != 1 or pack < 2 or l % pack:
                raise InputError(f"packing {pack} channels needs a convolution with groups = 1 and l = {l} a "
                                 "multiple of the slot count")
            if out_shift < (pack - 1) * (l // pack) or weight_bits >= l // pack:
                raise InputError(f"packing {pack} channels in {l // pack}-bit slots needs out_shift >= "
                                 f"{(pack - 1) * (l // pack)} (the lower slots are dropped) and weight_bits < {l // pack}")
        return _search(self, shape, l, weight_bits, out_shift, pack)

    # ------------------------------------------------------------------ candidates

    def layouts(self, shape: Shape, pack: int = 1, slot_bits: int = 0, weight_bits: int = 0) -> Iterator[Layout]:
        """Every candidate layout, over all ``N`` (Cheetah's tiling among them when ``pack = 1``)."""
        for n in self.ns:
            if isinstance(shape, ConvShape) and pack > 1:
                for t in conv_tilings(packed_shape(shape, pack), n):
                    yield KroneckerConvLayout(t, shape, pack, slot_bits, weight_bits)
            elif isinstance(shape, ConvShape):
                for t in conv_tilings(shape, n):
                    yield ConvLayout(t)
                phased = phase_shape(shape)
                if phased is not None:  # a strided convolution, also as its stride-1 polyphase form
                    for t in conv_tilings(phased, n):
                        yield PolyphaseConvLayout(t, shape)
            else:
                for m in matmul_tilings(shape, n):
                    yield MatmulLayout(m)

    # ------------------------------------------------------------------ evaluation

    def key(self, cost: LayerCost) -> tuple[float, float]:
        """What the search minimises (bytes, or modelled time when a bandwidth is given), then a tie-break.
        Output packing's one-time keys (``key_share``) and the modelled compute (``compute_rate``) are charged."""
        if self.bandwidth is None:
            compute = cost.server_seconds + cost.client_seconds
            return (cost.total + self.key_share * cost.setup + self.compute_rate * compute, cost.seconds())
        return (cost.seconds(self.bandwidth, self.rtt) + self.key_share * cost.setup / self.bandwidth, cost.total)

    def evaluate_packed(self, layout: Layout, l: int, weight_bits: int, margin: float = _DEFAULT_MARGIN,
                        out_shift: int = 0, flood_terms: int | None = None, primes: tuple[int, ...] | None = None
                        ) -> Candidate | None:
        """The plan of ``layout`` with its results packed: the smallest ``q`` above the packed pipeline's need
        (visible = the largest packed group, plus the key-switching noise, which depends on ``q``'s primes:
        re-derived until stable) and its cost, or the plan at a key set's primes (:attr:`key_sets`) when that
        is cheaper; with ``primes``, the plan at exactly those primes (``margin`` unused).  ``None`` when nothing
        decrypts at that ``N``.  ``flood_terms``: the flood's uniforms (``None``: :attr:`FloodLevels.first_terms`),
        at their level."""
        n = layout.n
        if n not in SECURITY_TABLE:
            return None
        dec = l - out_shift
        try:
            count = packed_group_size(layout)
            pipeline = replace(self._pipeline(layout, weight_bits, flood_terms), visible=count)
        except InputError:
            return None
        if primes is not None:
            return self._packed_at(layout, l, weight_bits, out_shift, pipeline, primes)
        best = None
        for ks in self.key_sets:
            if ks.n == n:
                cand = self._packed_at(layout, l, weight_bits, out_shift, pipeline, ks.primes)
                if cand is not None and (best is None or self.key(cand.cost) < self.key(best.cost)):
                    best = cand
        own = self._packed_own(layout, l, weight_bits, margin, out_shift, pipeline)
        if own is not None and (best is None or self.key(own.cost) < self.key(best.cost)):
            best = own
        return best

    def _packed_at(self, layout: Layout, l: int, weight_bits: int, out_shift: int, pipeline: ServerPipeline,
                   primes: tuple[int, ...]) -> Candidate | None:
        """``layout`` packed at exactly ``primes`` (the key-switching noise of those primes), if it decrypts."""
        try:
            params = _params_with(layout.n, primes, l)
        except ParameterError:
            return None
        pipeline = replace(pipeline, packing_noise=packing_noise(params, packed_leaves(layout)))
        output = _output(_params_at(params, l - out_shift), pipeline)
        if output is None:
            return None
        plan = LinearPlan(layout, params, pipeline, output, weight_bits, "quantized", self.chunk, out_shift, True)
        return Candidate(plan, self.cost(plan), _DEFAULT_MARGIN)

    def _packed_own(self, layout: Layout, l: int, weight_bits: int, margin: float, out_shift: int,
                    pipeline: ServerPipeline) -> Candidate | None:
        """``layout`` packed at the smallest ``q`` of its own above the need plus ``margin`` bits."""
        n, dec = layout.n, l - out_shift
        for _ in range(4):
            try:
                need = min_modulus_bits(n, dec, pipeline, margin)
                if need > SECURITY_TABLE[n]:
                    return None
                params = _params(n, math.ceil(need * 8), l)
            except (UndecryptableParameters, InputError):
                return None
            noise = packing_noise(params, packed_leaves(layout))
            if noise <= pipeline.packing_noise:
                break
            pipeline = replace(pipeline, packing_noise=noise)
        else:
            return None
        output = _output(_params_at(params, dec), pipeline)
        if output is None:
            return None
        plan = LinearPlan(layout, params, pipeline, output, weight_bits, "quantized", self.chunk, out_shift, True)
        return Candidate(plan, self.cost(plan), margin)

    def evaluate(self, layout: Layout, l: int, weight_bits: int, margin: float = _DEFAULT_MARGIN,
                 bound: tuple[float, float] | None = None, out_shift: int = 0,
                 flood_terms: int | None = None) -> Candidate | None:
        """The plan of ``layout`` with the smallest ``q`` above the noise need plus ``margin`` bits (for
        decryption at ``l - out_shift`` bits), and its cost; ``None`` when nothing decrypts at that ``N`` or
        when a lower bound of its cost is not below ``bound`` (a :meth:`key`).  ``flood_terms``: as in
        :meth:`evaluate_packed`."""
        n = layout.n
        if n not in SECURITY_TABLE:
            return None
        dec = l - out_shift
        # cheap first cut: log2 q >= dec + stat_bits + 1 for any pipeline (the flooding alone is 2^stat_bits)
        if bound is not None and self._lower_bound(layout, dec, dec + self.flood_levels.lowest + 1) >= bound[0]:
            return None
        try:
            pipeline = self._pipeline(layout, weight_bits, flood_terms)
            need = min_modulus_bits(n, dec, pipeline, margin)
        except InputError:
            return None
        if need > SECURITY_TABLE[n]:
            return None
        if bound is not None and self._lower_bound(layout, dec, need) >= bound[0]:
            return None
        try:
            params = _params(n, math.ceil(need * 8), l)
        except UndecryptableParameters:
            return None
        output = _output(_params_at(params, dec), pipeline)
        if output is None:
            return None
        plan = LinearPlan(layout, params, pipeline, output, weight_bits, "quantized", self.chunk, out_shift)
        return Candidate(plan, self.cost(plan), margin)

    def _pipeline(self, layout: Layout, weight_bits: int, flood_terms: int | None) -> ServerPipeline:
        """:func:`~aiompc.protocols.linear.plan.pipeline_for` with ``flood_terms`` uniforms (``None``: the first
        pass's) at their level of :attr:`flood_levels` and its ``fail_bits``."""
        levels = self.flood_levels
        terms = levels.first_terms if flood_terms is None else flood_terms
        return pipeline_for(layout, weight_bits, levels.level(terms), terms, fail_bits=levels.fail)

    def _lower_bound(self, layout: Layout, l: int, need: float) -> float:
        """A lower bound of the first component of :meth:`key`: ``c0`` uploads of at least ``ceil(need)`` bits
        per coefficient, results of at least ``l + 1`` bits per ``c1`` and carried ``c0`` coefficient."""
        n = layout.n
        cts_in, cts_out = layout.units * layout.inputs, layout.units * layout.outputs
        outputs = int(np.prod(layout.out_shape))
        low = (cts_in * n * math.ceil(need) + (cts_out * n + outputs) * (l + 1)) / 8
        return low if self.bandwidth is None else low / self.bandwidth + self.rtt

    def packed_lower_bound(self, layout: Layout, l: int, switches: bool = True) -> float:
        """A lower bound of the first component of :meth:`key` for ``layout`` with its results packed, whatever
        ``q`` (``log2 q >= l + stat_bits + 1``, primes below ``2^30``): ``c0`` uploads of that many bits per
        coefficient, every output value and a whole ``c1`` per ``N`` of them at ``l + 1`` bits, the Galois keys
        (``key_share``) and (with a ``compute_rate``) the modelled compute at the fewest primes
        (:func:`~aiompc.protocols.linear.costs.compute_seconds`, without the finishing of packed ciphertexts);
        ``switches=False``: without the key switches and Galois keys (a weaker bound, cheaper to compute).  ``0`` when a bandwidth is
        given (the search then evaluates every candidate)."""
        if self.bandwidth is not None:
            return 0.0
        n = layout.n
        paid = any(ks.n == n for ks in self.key_sets)  # keys may be free at a key set's primes
        need = l + self.flood_levels.lowest + 1
        levels = -(-need // MAX_PRIME_BITS)
        cts_in, cts_out = layout.units * layout.inputs, layout.units * layout.outputs
        outputs = int(np.prod(layout.out_shape))
        low = (cts_in * n * need + (outputs + -(-outputs // n) * n) * (l + 1)) / 8
        server = n * levels * (cts_in * COMPUTE["absorb"] + cts_out * layout.inputs * (COMPUTE["mac"] + COMPUTE["prepare"])
                               + cts_out * COMPUTE["refresh"])
        keys = 0.0
        if switches:  # the key switches and Galois keys (dearer to count)
            server += n * levels * levels * packing_switches(layout)[0] * COMPUTE["keyswitch"]
            if not paid:
                keys = len(layout_elements(layout)) * levels * n * need / 8  # L polynomials of log2 q bits each
        return low + self.key_share * keys + self.compute_rate * (server + cts_in * n * levels * COMPUTE["encrypt"])

    def cost(self, plan: LinearPlan) -> LayerCost:
        packing = plan.output_packing
        up, down, m_up, m_down = wire_cost(plan.layout, plan.he, plan.output, plan.chunk, self.label,
                                           packing=packing)
        server, client = compute_seconds(plan.layout, plan.he, packing=packing)
        if not packing:
            return LayerCost(up, down, m_up, m_down, server, client)
        plain, _ = compute_seconds(plan.layout, plan.he)
        setup = galois_key_bytes(plan.he, uncovered(self.key_sets, plan.he, layout_elements(plan.layout)))
        return LayerCost(up, down, m_up, m_down, server, client, setup, server - plain)


def _cheetah(planner: QuantizedPlanner, shape: Shape, l: int, weight_bits: int, out_shift: int) -> Candidate | None:
    """Cheetah's rule at ``N = 4096`` with the smallest secure ``q`` for ``l`` (exactly ``cheetah-smallest``),
    its output truncated by ``out_shift`` bits."""
    try:
        plan = CheetahPlanner(n=CHEETAH_N, he="smallest", stat_bits=planner.stat_bits, chunk=planner.chunk,
                              levels=planner.levels)(
            shape, l, weight_bits)
        plan = with_out_shift(plan, out_shift)
    except (UndecryptableParameters, ParameterError):
        return None
    return Candidate(plan, planner.cost(plan), _DEFAULT_MARGIN)


@functools.lru_cache(maxsize=1024)
def _unpacked_pass(planner: QuantizedPlanner, shape: Shape, l: int, weight_bits: int, out_shift: int, pack: int
                   ) -> tuple[tuple[Candidate, ...], Candidate | None, tuple[Candidate, ...], int, int, int]:
    """The first pass and its refinements (unpacked plans): ``(best first-pass candidates, Cheetah's rule,
    every refined candidate, evaluated, considered, the plaintext weight bits)``."""
    first: list[Candidate] = []  # kept sorted, at most planner.refine long
    considered = evaluated = 0
    slot = l // pack
    layouts = planner.layouts(shape, pack, slot, weight_bits)
    if pack > 1:  # the server's plaintexts are the packed weights
        weight_bits = packed_weight_bits(weight_bits, pack, slot)
    for layout in layouts:
        considered += 1
        bound = planner.key(first[-1].cost) if len(first) >= max(1, planner.refine) else None
        cand = planner.evaluate(layout, l, weight_bits, bound=bound, out_shift=out_shift)
        if cand is not None:
            evaluated += 1
            first.append(cand)
            first.sort(key=lambda c: planner.key(c.cost))
            del first[max(1, planner.refine):]
    cheetah = _cheetah(planner, shape, l, weight_bits, out_shift) if pack == 1 else None
    if not first and cheetah is None:
        raise UndecryptableParameters(
            f"{shape}: no layout decrypts with flooding at {planner.flood_levels.describe()} at N in {planner.ns} for l = {l} "
            f"and {weight_bits}-bit (plaintext) weights{f', {pack} channels packed' if pack > 1 else ''}: lower "
            "weight_bits, l or the packing, or allow a larger N"
        )
    pool = [c.plan.layout for c in first]
    if cheetah is not None:
        pool.append(cheetah.plan.layout)
    refined = list(first)
    for layout in pool:
        for margin, terms in _refinements(planner):
            cand = planner.evaluate(layout, l, weight_bits, margin, out_shift=out_shift, flood_terms=terms)
            if cand is not None:
                evaluated += 1
                refined.append(cand)
    if cheetah is not None:
        refined.append(cheetah)
    return tuple(first), cheetah, tuple(refined), evaluated, considered, weight_bits


@functools.lru_cache(maxsize=1024)
def _search(planner: QuantizedPlanner, shape: Shape, l: int, weight_bits: int, out_shift: int,
            pack: int = 1) -> SearchResult:
    # the unpacked candidates do not depend on the key sets: searched (and cached) once without them
    plain = replace(planner, key_sets=()) if planner.key_sets else planner
    first, cheetah, done, evaluated, considered, weight_bits = _unpacked_pass(plain, shape, l, weight_bits, out_shift, pack)
    pool = [c.plan.layout for c in first]
    if cheetah is not None:
        pool.append(cheetah.plan.layout)
    refined = list(done)
    if planner.output_packing and pack == 1:
        # branch and bound: candidates in the order of a lower bound of their key, evaluated while that bound
        # is below the best key found (among the plans within Cheetah's bytes, the only ones that can be chosen)
        limit = math.inf if cheetah is None else cheetah.cost.total
        best_key = min((planner.key(c.cost)[0] for c in refined if c.cost.total <= limit), default=math.inf)
        variants = _strided_variants(pool) + _interleaved_variants(planner, shape) + _im2col_variants(planner, shape)
        bounded = sorted(((planner.packed_lower_bound(lay, l - out_shift, switches=False), i, lay)
                          for i, lay in enumerate(dict.fromkeys([*pool, *variants]))), key=lambda v: v[:2])
        packed = []
        for low, _, layout in bounded:
            if low >= best_key:
                break
            if planner.packed_lower_bound(layout, l - out_shift) >= best_key:
                continue
            cand = planner.evaluate_packed(layout, l, weight_bits, out_shift=out_shift)
            if cand is not None:
                packed.append(cand)
                if cand.cost.total <= limit:
                    best_key = min(best_key, planner.key(cand.cost)[0])
        evaluated += len(packed)
        packed.sort(key=lambda c: planner.key(c.cost))
        for cand in packed[:2]:  # the best packed layouts, with every margin and flood
            refined.append(cand)
            for margin, terms in _refinements(planner):
                again = planner.evaluate_packed(cand.plan.layout, l, weight_bits, margin, out_shift, terms)
                if again is not None:
                    evaluated += 1
                    refined.append(again)
    if cheetah is not None:  # never more bytes than Cheetah's rule, whatever the compute saved
        refined = [c for c in refined if c.cost.total <= cheetah.cost.total] or [cheetah]
    best = min(refined, key=lambda c: planner.key(c.cost))
    return SearchResult(best, cheetah, evaluated, considered)


def _refinements(planner: QuantizedPlanner) -> list[tuple[float, int]]:
    """``(margin, flood terms)`` tried on the best candidates beyond the first pass's ``(default margin,
    first_terms)`` (one uniform per ciphertext; two under a per-inference budget, where their level is lower):
    every margin, with one uniform and with the sum of two (whose statistical distance grows with the square root
    of the visible coefficients, :func:`~aiompc.crypto.he.noise.flood_distance`: 2-3 bits less ``q`` and flood
    for a ciphertext of a thousand outputs)."""
    first = (_DEFAULT_MARGIN, planner.flood_levels.first_terms)
    return [(m, t) for t in FLOOD_TERMS for m in planner.margins if (m, t) != first]


def _interleaved_variants(planner: QuantizedPlanner, shape: Shape) -> list[Layout]:
    """Channel-interleaved conv layouts (outputs on a lattice: cheap to pack) for every ``N`` and tile shape
    (compact where the tile allows it), with one or several output channels per ciphertext."""
    if not isinstance(shape, ConvShape):
        return []
    out: list[Layout] = []
    phased = phase_shape(shape)
    for n in planner.ns:
        for inner in (shape, phased):
            if inner is None:
                continue
            tiles = _tile_shapes(inner, n)
            tiles += [(th, tw, False) for th, tw, compact in tiles if compact]  # also as plain tiles
            found = interleaved_tilings(inner, n, list(dict.fromkeys(tiles)))
            out.extend(found if inner is shape else [PolyphaseInterleavedLayout(f.tiling, shape) for f in found])
    return out


def _strided_variants(pool: list[Layout]) -> list[Layout]:
    """Matrix-product layouts of ``pool`` with ``d1`` rounded up to a power of two (when the shape allows): their
    outputs then sit on a ``2^m`` lattice and pack whole ciphertexts per key switch."""
    out: list[Layout] = []
    for layout in pool:
        if isinstance(layout, MatmulLayout):
            t = layout.tiling
            d1 = 1 << (t.d1 - 1).bit_length()
            if d1 != t.d1 and d1 <= t.shape.in_features and t.d0 * d1 * t.d2 <= t.n:
                out.append(replace(layout, tiling=MatmulTiling(t.shape, t.n, t.d0, d1, t.d2)))
    return out


def _im2col_variants(planner: QuantizedPlanner, shape: Shape) -> list[Layout]:
    """A convolution (``groups = 1``) as a matrix product (:mod:`aiompc.protocols.linear.im2col`), for output
    packing: for every ``N``, ``d1`` a power of two (outputs on the ``d1`` lattice: ``d1 − 1`` key switches per
    packed ciphertext), ``d2`` a power of two (or all output channels), ``d0`` the most output pixels that fit.
    Upload grows with ``d2``, key switches with ``d1`` (``H_o·W_o·M·d1/N`` result ciphertexts)."""
    if not isinstance(shape, ConvShape):
        return []
    mshape = im2col_shape(shape)
    if mshape is None:
        return []
    return [Im2colLayout(t, source=shape) for n in planner.ns for t in im2col_tilings(mshape, n)]


def im2col_tilings(shape: MatmulShape, n: int) -> list[MatmulTiling]:
    """The matrix-product blocks :func:`_im2col_variants` tries at ring degree ``n`` (see there)."""
    out: list[MatmulTiling] = []
    d1 = 2
    while d1 <= min(shape.in_features, n):
        d2s = [1 << k for k in range((n // d1).bit_length()) if (1 << k) <= shape.out_features]
        if shape.out_features * d1 <= n:
            d2s.append(shape.out_features)
        for d2 in dict.fromkeys(d2s):
            d0 = min(shape.batch, n // (d1 * d2))
            if d0 < 1:
                continue
            d0 = -(-shape.batch // -(-shape.batch // d0))  # the smallest block giving that row-block count
            out.append(MatmulTiling(shape, n, d0, d1, d2))
        d1 *= 2
    return out


# --------------------------------------------------------------------------- packing choice


@dataclass(frozen=True)
class PackingOption:
    """One packing factor for a layer: its plan (ring ``k·B``, ``out_shift = (k-1)B + shift``), the HE bytes of
    the call, and the modelled extra bytes its wider input rings cost the producer of the input."""

    pack: int
    plan: LinearPlan
    cost: LayerCost
    widening: float

    @property
    def total(self) -> float:
        return self.cost.total + self.widening


def choose_packing(planner: QuantizedPlanner, shape: ConvShape, slot_bits: int, weight_bits: int, shift: int,
                   *, input_bit_cost: float = 5.0, max_pack: int = 3) -> list[PackingOption]:
    """Packing factors ``1..max_pack`` for a convolution whose accumulator fits ``slot_bits`` (signed) and
    whose output is wanted truncated by ``shift`` bits, cheapest first (HE bytes + input widening).

    Slot ``i`` of ``k`` needs its input channels shared in ``(k - i)·B`` bits instead of ``B``; the producer
    (a requantization writing directly in that ring) pays ``input_bit_cost`` bits per extra ring bit and
    element (its output multiplexers and B2A scale with the output ring: 5.0 bits measured by
    ``benchmarks/quantized_layers.py`` for ``aiompc.protocols.nonlinear.requantize``).  Factors that do not decrypt
    (``q`` over budget) are left out.
    ``k = 1`` is the unpacked plan at ring ``B``; it is always there when ``shift < slot_bits``.
    """
    out: list[PackingOption] = []
    elements = shape.height * shape.width
    for k in range(1, max_pack + 1):
        if k > 1 and (shape.groups != 1 or shape.in_channels < k or k * slot_bits > MAX_PLAIN_BITS):
            break
        try:
            res = planner.search(shape, k * slot_bits, weight_bits, (k - 1) * slot_bits + shift, k)
        except (UndecryptableParameters, InputError):
            continue
        extra_bits = sum((k - 1 - c % k) * slot_bits for c in range(shape.in_channels))
        out.append(PackingOption(k, res.best.plan, res.best.cost, input_bit_cost * extra_bits * elements / 8))
    return sorted(out, key=lambda o: (o.total, o.pack))


# --------------------------------------------------------------------------- candidate tilings


def _compact_ok(shape: ConvShape, tile_w: int) -> bool:
    top, bottom, left, right = shape.padding
    return tile_w == shape.padded_width and 0 < right <= left


def _tile_shapes(shape: ConvShape, n: int) -> list[tuple[int, int, bool]]:
    """Spatial tiles ``(H_w, W_w, compact)``: per distinct row-tile count, the two widest tiles that fit ``N``
    (compact when the tile spans the padded width), and Cheetah's tile."""
    kh, kw = shape.kernel
    sh, sw = shape.stride
    rows = axis_tiles(shape.padded_height, kh, sh, shape.out_height)
    cols = axis_tiles(shape.padded_width, kw, sw, shape.out_width)
    out: list[tuple[int, int, bool]] = []
    for th in rows:
        fitting = []
        for tw in cols:
            compact = _compact_ok(shape, tw)
            if ConvTiling(shape, 1 << 30, 1, th, tw, 1, compact).channel_size <= n:
                fitting.append((th, tw, compact))
        out.extend(fitting[:2])
    try:
        c = cheetah_conv_tiling(shape, n)
        out.append((c.tile_h, c.tile_w, False))
    except ParameterError:
        pass
    return list(dict.fromkeys(out))


def conv_tilings(shape: ConvShape, n: int, out_packs: int = 6) -> Iterator[ConvTiling]:
    """Candidate conv tilings at ring degree ``n`` (see the module docstring).  For each ``C_w``, the
    ``out_packs`` largest output packings (each output-group count once)."""
    for th, tw, compact in _tile_shapes(shape, n):
        size = ConvTiling(shape, 1 << 30, 1, th, tw, 1, compact).channel_size
        for cw in block_sizes(shape.in_channels, n // size):
            for op in block_sizes(shape.out_channels, n // (cw * size))[:out_packs]:
                try:
                    yield ConvTiling(shape, n, cw, th, tw, op, compact)
                except ParameterError:
                    continue


def matmul_tilings(shape: MatmulShape, n: int, col_blocks: int = 4) -> Iterator[MatmulTiling]:
    """Candidate matrix-product blocks at ring degree ``n``: every distinct row- and inner-block count, and
    the ``col_blocks`` largest output blocks that fit."""
    for d0 in block_sizes(shape.batch, n):
        for d1 in block_sizes(shape.in_features, n // d0):
            for d2 in block_sizes(shape.out_features, n // (d0 * d1))[:col_blocks]:
                yield MatmulTiling(shape, n, d0, d1, d2)


