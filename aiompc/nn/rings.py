"""The rings of a graph's edges and the folded truncations of approximate mode, from public metadata only.

**Rings.**  Each edge's shares live in ``Z_{2^l}`` with ``l`` chosen by :func:`plan_rings` from public
metadata only: at least the edge's width, and whatever its consumers work in (an HE layer works in the
ring of its accumulator, a local node in the ring of its output).  Requantization writes its output
directly in the ring its consumers want, so no ring extension protocol is ever needed; an edge whose ring
is wider than a consumer's is reduced locally (reduction mod ``2^k`` is a ring homomorphism).  In
``cheetah`` mode every edge uses ``l = 37`` and the HE layers use Cheetah's parameters and tiling; the
engine evaluates whatever integer graph it is given.  The baseline the quantized mode is measured against
gives it Cheetah's own program, the float model in 12-bit fixed point (:mod:`aiompc.nn.fixed_point`:
ReLU, then truncation with the MSB known); given a quantized graph it evaluates that graph on 37-bit
rings (``cheetah-int`` in the benchmarks).

**Transformer layers** (:mod:`aiompc.nn.ir_transformer`).  A token MatMul and a MatMulShared are HE layers
working in the ring of their output (the accumulator): their inputs are raised to it, so the requantization
producing an attention operand writes it there directly.  The reshaping nodes (Transpose, Reshape, Slice),
ReduceSum, AddConst and FeatureAffine (a product by the server's private weights mod ``2^l``) work in their output's
ring like every local node.  Look-up, SoftmaxQ and LayerNormQ are like a requantization (:data:`READS_ANY_RING`):
they read their input in its own ring (a look-up at least in ``k`` bits, the width of its table's index; a SoftmaxQ
one bit above its logits' width, which spares it an extension protocol) and write their output directly in the
ring their consumers want.  Iron's fixed-point nodes (SoftmaxFx, GeluFx,
LayerNormFx) compute on their own ring ``l`` (37 bits, Cheetah's); in ``cheetah`` mode every edge is on it anyway.

**Folded truncation** (quantized mode, ``exact=False``).  When an HE layer (Conv / Linear / MatMul) feeds a single
Requantize ``(M, s)``, the layer takes over the low ``s'`` bits of the shift (:class:`Fold`): the client
decrypts only the top bits of each output (``out_shift = s'`` of :mod:`aiompc.protocols.linear.engine`, smaller
ciphertexts), the server adds the public *lift* ``2`` to its share, and the requantization runs with shift
``s - s'`` on the narrow result ``y = floor(acc / 2^s') + e + 2`` (``e ∈ {-1, 0, 1}``), in a ring of about
``l - s' + 1`` bits instead of ``l``.  ``s'`` is the largest shift with ``3·max(M) < 2^(s - s')``; see
:class:`Fold` for why that keeps every requantized value within one LSB of the exact one.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiompc.crypto.he import MAX_PLAIN_BITS
from aiompc.errors import UnsupportedModel
from aiompc.nn.bounds import range_of_width, width_for_range
from aiompc.nn.ir import (Conv, GeluFx, LayerNormFx, LayerNormQ, Linear, Lookup, MatMul, Node, QGraph, ReluMasked,
                          Requantize, SoftmaxFx, SoftmaxQ, TensorSpec)
from aiompc.nn.modes import CHEETAH_RING, Mode
from aiompc.protocols.nonlinear.narrow import narrow_plan

__all__ = ["Fold", "RingPlan", "fold_for", "plan_rings", "ring_widths", "FOLD_LIFT", "READS_ANY_RING", "HE_FOLDABLE",
           "reads_any_ring", "input_floor", "signed_width"]

READS_ANY_RING: tuple[type[Node], ...] = (Requantize, Lookup, SoftmaxQ, LayerNormQ)
"""Nodes whose protocol takes its input in whatever ring the input edge has (``l_in``) and writes its output
directly in the ring its consumers want (``l_out``): no ring of theirs is imposed on their inputs but
:func:`input_floor`, and the engine never reduces their inputs (module docstring)."""

HE_FOLDABLE: tuple[type[Node], ...] = (Conv, Linear, MatMul)
"""HE layers that can take over the low bits of their sole consumer's requantization (:class:`Fold`)."""

_FIXED_POINT_NODES = (SoftmaxFx, GeluFx, LayerNormFx)


def reads_any_ring(node: Node) -> bool:
    """Whether ``node`` reads its inputs in their own rings (:data:`READS_ANY_RING`)."""
    return isinstance(node, READS_ANY_RING)


def input_floor(node: Node, x: TensorSpec) -> int:
    """The narrowest ring a :data:`READS_ANY_RING` node takes its input ``x`` in: a look-up's table index width
    ``k`` (it reduces its input shares mod ``2^k``; a signed input narrower than ``k`` must be held in ``k`` bits to
    be reduced there); a SoftmaxQ's one bit above the logits' signed width (its max tree and differences
    ``max − z`` need that bit: held there already, the logits need no extension protocol, and the requantization
    or HE layer producing them writes the one bit more for next to nothing); else 0 (the input's own ring)."""
    if isinstance(node, Lookup):
        return node.k
    if isinstance(node, SoftmaxQ):
        return signed_width(x) + 1
    return 0


def _min_ring(bits: int, signed: bool) -> int:
    # an unsigned b-bit value needs b+1 bits to be read as a non-negative two's-complement number
    return bits if signed else bits + 1


def signed_width(spec: TensorSpec) -> int:
    """The signed two's-complement width that holds every value of ``spec``'s public width (the narrowest ring
    its shares can live in)."""
    return _min_ring(spec.bits, spec.signed)


FOLD_LIFT = 2
"""What the server adds to its share of a folded HE layer's output (see :class:`Fold`)."""


@dataclass(frozen=True)
class Fold:
    """An HE layer that takes over the low ``shift`` bits of its sole consumer's requantization.

    The HE layer computes in ``Z_{2^he_ring}`` (its input shares' ring, ``t = 2^he_ring``) and returns
    shares mod ``2^out_ring`` (``out_ring = he_ring - shift``) of ::

        y = floor(acc / 2^shift) + e + FOLD_LIFT,    e ∈ {-1, 0, 1}

    (``acc`` the exact output, bias included; ``e`` the error of the truncated decryption,
    :mod:`aiompc.protocols.linear.engine`).  The requantization ``(M, s, lo, hi, rounding)`` then runs on ``y``
    with shift ``rest = s - shift``; ``y_lo..y_hi`` is the public range of ``y`` (``out_ring`` holds it).

    **Error bound.**  Let ``r = 2^(s-1)`` (nearest) or ``0`` (floor), so the remaining requantization's
    rounding term is ``r / 2^shift``, and ``ρ = acc mod 2^shift``.  Then, per channel with multiplier ``M``::

        (y·M + r / 2^shift) / 2^rest = (acc·M + r) / 2^s + d,   d = (M / 2^rest)·(e + 2 - ρ / 2^shift)

    with ``e + 2 - ρ/2^shift ∈ (0, 3]``.  Since ``3·max(M) < 2^rest``, ``d ∈ [0, 1)``: before clipping the
    remaining requantization gives the exact ``floor((acc·M + r) / 2^s)`` or one more, minus its own dropped
    carry (``{0, 1}``, approximate mode).  Clipping is monotone and moves nothing further apart, so the
    output is within one LSB of the exact requantization either way (``e_out ∈ {-1, 0, 1}``).  (Without the
    lift the error of the truncation and the dropped carry could add up to -2.)
    """

    shift: int  # s': the HE layer's out_shift
    rest: int  # s - s': the requantization's remaining shift
    he_ring: int
    y_lo: int
    y_hi: int

    @property
    def out_ring(self) -> int:
        """Ring of ``y``: the HE layer's output shares and the requantization's input."""
        return self.he_ring - self.shift


def fold_for(acc: TensorSpec, node: Requantize) -> Fold | None:
    """The fold of requantization ``node`` into the HE layer writing ``acc`` (public metadata only), or
    ``None`` when it would not narrow the requantization's input ring.

    ``rest = s - shift`` is the smallest shift with ``3·max(M) < 2^rest`` (the error bound of
    :class:`Fold`); ``shift`` is the largest value ``<= s - rest`` whose ``y`` (over the whole range of the
    accumulator's width, plus the lift and the two-sided error) fits a ring at most one bit wider than the
    accumulator's, and that leaves the requantization an input ring narrower than the accumulator's.
    """
    m = max(node.multiplier)
    if m == 0:
        return None  # the requantization is a constant: nothing to save
    rest = (3 * m).bit_length()  # smallest T with 3·m < 2^T (3·m is never a power of two)
    l_acc = _min_ring(acc.bits, acc.signed)
    lo, hi = range_of_width(acc.bits, acc.signed)
    for shift in range(node.shift - rest, 1, -1):
        y_lo, y_hi = (lo >> shift) + FOLD_LIFT - 1, (hi >> shift) + FOLD_LIFT + 1
        he_ring = max(l_acc, shift + _min_ring(*width_for_range(y_lo, y_hi)))
        if he_ring <= l_acc + 1 and he_ring - shift < l_acc:
            return Fold(shift, node.shift - shift, he_ring, y_lo, y_hi)
    return None


@dataclass(frozen=True)
class RingPlan:
    """Rings of a graph's edges and the folds of approximate mode, from public metadata only.

    ``edges[e]``: the ring of edge ``e``'s shares.  ``folds[n]``: the :class:`Fold` of HE node ``n``
    (``folded[r]`` the same, keyed by the requantization ``r`` it serves).
    """

    edges: dict[str, int]
    folds: dict[str, Fold]
    folded: dict[str, Fold]

    def compute_ring(self, node: Node) -> int:
        """The ring ``node`` works in: its fold's ``he_ring`` for a folded HE layer, else its output's ring
        (a Requantize reads any ring and writes this one)."""
        fold = self.folds.get(node.name)
        return fold.he_ring if fold is not None else self.edges[node.output]


def _folds(graph: QGraph) -> dict[str, tuple[str, Fold]]:
    """HE node name -> (requantize name, fold) for every Conv / Linear / MatMul with a single Requantize consumer."""
    out: dict[str, tuple[str, Fold]] = {}
    for node in graph.nodes:
        if not isinstance(node, HE_FOLDABLE) or node.output == graph.output:
            continue
        consumers = graph.consumers(node.output)
        if len(consumers) != 1 or not isinstance(consumers[0], Requantize):
            continue
        fold = fold_for(graph.tensors[node.output], consumers[0])
        if fold is not None:
            out[node.name] = (consumers[0].name, fold)
    return out


def _narrow_fits(spec: TensorSpec, node: Requantize, l: int, exact: bool) -> bool:
    """Whether ``node`` requantizes its input ``spec`` shared mod ``2^l`` on the narrow ring
    (:func:`aiompc.protocols.nonlinear.narrow.narrow_plan` on the input's public width)."""
    lo, hi = range_of_width(spec.bits, spec.signed)
    lows = {node.lo, max(node.lo, 0)} if isinstance(node, ReluMasked) else {node.lo}  # both halves of a partial ReLU
    return all(narrow_plan(l=l, multipliers=sorted(set(node.multiplier)), index=None, shape=(), shift=node.shift,
                           rounding=node.rounding, lo=low, hi=node.hi, l_out=l, x_lo=lo, x_hi=hi,
                           exact=exact) is not None for low in lows)


def plan_rings(graph: QGraph, mode: Mode) -> RingPlan:
    """Every edge's ring and, in approximate mode on tight rings, the folds (see the module docstring).

    Exact mode and Cheetah's rings fold nothing (every edge on the 37-bit ring is the baseline).  On tight
    rings the input of an unfolded requantization gets one bit more than its width where that lets the
    requantization run on the narrow ring (nearest rounding over a whole signed range has one output too
    many for it): the HE layer pays a bit of plaintext, the requantization saves the wrap comparison."""
    if mode.rings == "cheetah":
        widest = max(_min_ring(t.bits, t.signed) for t in graph.tensors.values())
        if widest > CHEETAH_RING:
            raise UnsupportedModel(f"an edge needs {widest} bits, more than Cheetah's {CHEETAH_RING}-bit ring")
        return RingPlan({name: CHEETAH_RING for name in graph.tensors}, {}, {})
    found = {} if mode.exact else _folds(graph)
    folds = {name: fold for name, (_, fold) in found.items()}
    rings = {name: _min_ring(t.bits, t.signed) for name, t in graph.tensors.items()}
    folded_rq = {rq for rq, _ in found.values()}
    for node in graph.nodes:  # one more bit where it lets a requantization run on the narrow ring
        if isinstance(node, Requantize) and node.name not in folded_rq:
            e = node.inputs[0]
            if not _narrow_fits(graph.tensors[e], node, rings[e], mode.exact) and _narrow_fits(
                    graph.tensors[e], node, rings[e] + 1, mode.exact):
                rings[e] += 1
    for node in graph.nodes:  # Iron's fixed-point programs are defined on their own ring
        if isinstance(node, _FIXED_POINT_NODES):
            rings[node.output] = max(rings[node.output], node.l)
    for node in reversed(graph.nodes):
        if reads_any_ring(node):  # reads its own ring (at least its floor), writes into its consumers' ring
            for edge in node.inputs:
                rings[edge] = max(rings[edge], input_floor(node, graph.tensors[edge]))
            continue
        fold = folds.get(node.name)
        if fold is not None:  # the HE layer's sole consumer reads y in out_ring; its input needs he_ring
            rings[node.output] = fold.out_ring
        work = fold.he_ring if fold is not None else rings[node.output]
        for edge in node.inputs:
            rings[edge] = max(rings[edge], work)
    for name, l in rings.items():
        if l > MAX_PLAIN_BITS:
            raise UnsupportedModel(f"edge {name!r} needs a {l}-bit ring; the HE layers support at most "
                                   f"{MAX_PLAIN_BITS} bits")
    return RingPlan(rings, folds, {rq: fold for rq, fold in found.values()})


def ring_widths(graph: QGraph, mode: Mode) -> dict[str, int]:
    """The ring width of every edge, from public metadata only (:func:`plan_rings`)."""
    return plan_rings(graph, mode).edges
