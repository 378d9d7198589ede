"""The secure inference engine: both parties walk the same integer graph on secret shares.

Everything runs on a batch of samples at once: the non-linear protocols are vectorised over the batch,
the HE layers run one sample per concurrent sub-label (``f"{label}/b{i}"``) so tiles of different samples
pipeline.  The server holds the full :class:`~aiompc.nn.ir.QGraph` (with weights); the client holds its metadata
view (``QGraph.without_weights()``, received in the session handshake) and the input.  Both call
:func:`run_secure` with the same ``label`` and :class:`EngineConfig`; every node becomes one protocol
call on the sub-channel ``f"{label}/{node.name}"``:

================  =====================================================================
node              protocol
================  =====================================================================
Conv / Linear     :func:`aiompc.protocols.linear.conv2d` / :func:`aiompc.protocols.linear.fc` (HE)
ChannelAffine     :func:`aiompc.protocols.linear.batchnorm` (HE)
Requantize        :func:`aiompc.protocols.nonlinear.requantize` (OT), output in the consumer's ring
Relu / Clip       :func:`aiompc.protocols.nonlinear.relu` / requantize with ``M = 1, s = 0`` (OT)
MaxPool           :func:`aiompc.protocols.nonlinear.maxpool2d` (OT)
SumPool / Add /   local on shares (window sums, public rescales, concatenation, reshape)
Concat / Flatten
================  =====================================================================

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

**Folded truncation** (quantized mode, ``exact=False``).  When an HE layer (Conv / Linear) feeds a single
Requantize ``(M, s)``, the layer takes over the low ``s'`` bits of the shift (:class:`Fold`): the client
decrypts only the top bits of each output (``out_shift = s'`` of :mod:`aiompc.protocols.linear.engine`, smaller
ciphertexts), the server adds the public *lift* ``2`` to its share, and the requantization runs with shift
``s - s'`` on the narrow result ``y = floor(acc / 2^s') + e + 2`` (``e ∈ {-1, 0, 1}``), in a ring of about
``l - s' + 1`` bits instead of ``l``.  ``s'`` is the largest shift with ``3·max(M) < 2^(s - s')``; see
:class:`Fold` for why that keeps every requantized value within one LSB of the exact one.

**Input and output.**  The client's input ``x`` is shared as ``(server: 0, client: x)``, which reveals
nothing to the server.  At the end either the server sends its output share to the client (logits), or
the argmax protocol reveals the class index to the client only (``output="argmax"``).  The server learns
nothing; the client learns only the output.

**Exactness.**  With ``exact=True`` the client's result equals :func:`aiompc.nn.interpret.run_int` bit
for bit.  With ``exact=False`` requantizations drop the carry of the shift: in quantized mode each
requantized value may be one LSB off either way (``e ∈ {-1, 0, 1}``, mean ``≈ 0``: the server adds half an
LSB first; still inside the clip range), and so may a requantization folded into its HE layer; in
``cheetah`` mode a truncation may be one LSB low (``e ∈ {-1, 0}``, Cheetah's own).  Every other node is
exact on its (possibly approximate) inputs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np

from aiompc import ring
from aiompc.errors import InputError, ProtocolError, UnsupportedModel
from aiompc.nn.bounds import range_of_width, width_for_range
from aiompc.nn.ir import (
    Add,
    ChannelAffine,
    Clip,
    Concat,
    Conv,
    Flatten,
    Linear,
    MaxPool,
    Node,
    QGraph,
    Relu,
    Requantize,
    SumPool,
    TensorSpec,
)
from aiompc.party import Party
from aiompc.wire import Packed
from aiompc.protocols.linear.batchnorm import batchnorm
from aiompc.protocols.linear.conv import conv2d
from aiompc.protocols.linear.fc import fc
from aiompc.protocols.linear.local import flatten, sum_pool2d
from aiompc.protocols.nonlinear import argmax, maxpool2d, relu, requantize
from aiompc.protocols.nonlinear.narrow import narrow_plan

__all__ = [
    "EngineConfig", "LayerRecord", "SecureResult", "Fold", "RingPlan", "fold_for", "plan_rings", "ring_widths",
    "run_secure", "CHEETAH_RING", "FOLD_LIFT",
]

Mode = Literal["quantized", "cheetah"]
CHEETAH_RING = 37


@dataclass(frozen=True)
class EngineConfig:
    """What both parties must agree on (it travels in the handshake's options)."""

    mode: Mode = "quantized"
    exact: bool = True
    output: Literal["logits", "argmax"] = "logits"

    def __post_init__(self) -> None:
        if self.mode not in ("quantized", "cheetah"):
            raise InputError(f"mode must be 'quantized' or 'cheetah', got {self.mode!r}")
        if self.output not in ("logits", "argmax"):
            raise InputError(f"output must be 'logits' or 'argmax', got {self.output!r}")

    @property
    def planner(self) -> str:
        """The linear-layer planner of this mode."""
        return "quantized" if self.mode == "quantized" else "cheetah-baseline"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "exact": self.exact, "output": self.output}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EngineConfig":
        return cls(mode=d.get("mode", "quantized"), exact=bool(d.get("exact", True)), output=d.get("output", "logits"))


@dataclass
class LayerRecord:
    """One node's evaluation as seen by this party: what ran and how long it took."""

    name: str
    op: str
    label: str
    seconds: float
    ring: int


@dataclass
class SecureResult:
    """A party's outcome: the output (client only), the per-layer records and, if asked for
    (``run_secure(..., keep_shares=True)``), this party's share of every edge (ring per edge from
    :func:`plan_rings`) for tests and debugging."""

    output: np.ndarray | None
    layers: list[LayerRecord] = field(default_factory=list)
    shares: dict[str, np.ndarray] | None = None


# --------------------------------------------------------------------------- rings


def _min_ring(bits: int, signed: bool) -> int:
    # an unsigned b-bit value needs b+1 bits to be read as a non-negative two's-complement number
    return bits if signed else bits + 1


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
    """HE node name -> (requantize name, fold) for every Conv / Linear with a single Requantize consumer."""
    out: dict[str, tuple[str, Fold]] = {}
    for node in graph.nodes:
        if not isinstance(node, (Conv, Linear)) or node.output == graph.output:
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
    return narrow_plan(l=l, multipliers=sorted(set(node.multiplier)), index=None, shape=(), shift=node.shift,
                       rounding=node.rounding, lo=node.lo, hi=node.hi, l_out=l, x_lo=lo, x_hi=hi,
                       exact=exact) is not None


def plan_rings(graph: QGraph, mode: Mode = "quantized", *, exact: bool = True) -> RingPlan:
    """Every edge's ring and, in approximate quantized mode, the folds (see the module docstring).

    Exact mode and ``cheetah`` mode fold nothing (``cheetah`` is the 37-bit baseline).  In quantized mode
    the input of an unfolded requantization gets one more bit than its width where that lets the
    requantization run on the narrow ring (nearest rounding over a whole signed range has one value too
    many for it): the HE layer pays a bit of plaintext, the requantization saves the wrap comparison."""
    if mode == "cheetah":
        widest = max(_min_ring(t.bits, t.signed) for t in graph.tensors.values())
        if widest > CHEETAH_RING:
            raise UnsupportedModel(f"an edge needs {widest} bits, more than Cheetah's {CHEETAH_RING}-bit ring")
        return RingPlan({name: CHEETAH_RING for name in graph.tensors}, {}, {})
    found = {} if exact else _folds(graph)
    folds = {name: fold for name, (_, fold) in found.items()}
    rings = {name: _min_ring(t.bits, t.signed) for name, t in graph.tensors.items()}
    folded_rq = {rq for rq, _ in found.values()}
    for node in graph.nodes:  # one more bit where it lets a requantization run on the narrow ring
        if isinstance(node, Requantize) and node.name not in folded_rq:
            e = node.inputs[0]
            if not _narrow_fits(graph.tensors[e], node, rings[e], exact) and _narrow_fits(
                    graph.tensors[e], node, rings[e] + 1, exact):
                rings[e] += 1
    for node in reversed(graph.nodes):
        if isinstance(node, Requantize):
            continue  # reads any ring, writes directly into its consumers' ring
        fold = folds.get(node.name)
        if fold is not None:  # the HE layer's sole consumer reads y in out_ring; its input needs he_ring
            rings[node.output] = fold.out_ring
        work = fold.he_ring if fold is not None else rings[node.output]
        for edge in node.inputs:
            rings[edge] = max(rings[edge], work)
    for name, l in rings.items():
        if l > 60:
            raise UnsupportedModel(f"edge {name!r} needs a {l}-bit ring; the HE layers support at most 60 bits")
    return RingPlan(rings, folds, {rq: fold for rq, fold in found.values()})


def ring_widths(graph: QGraph, mode: Mode = "quantized", *, exact: bool = True) -> dict[str, int]:
    """The ring width of every edge, from public metadata only (:func:`plan_rings`)."""
    return plan_rings(graph, mode, exact=exact).edges


# --------------------------------------------------------------------------- the walk


def _pads_tblr(pads: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """IR pads are ONNX's (top, left, bottom, right); the protocols take (top, bottom, left, right)."""
    top, left, bottom, right = pads
    return (top, bottom, left, right)


def _input_share(party: Party, graph: QGraph, x: np.ndarray | None, batch: int, l: int) -> np.ndarray:
    spec = graph.input_spec
    if party.is_server:
        return np.zeros((batch, *spec.shape), dtype=np.uint64)
    if x is None:
        raise InputError("the client must pass its input")
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise InputError(f"secure inference takes the quantized integer input, got dtype {x.dtype}")
    if x.shape != (batch, *spec.shape):
        raise InputError(f"input has shape {x.shape}; the model expects ({batch}, {', '.join(map(str, spec.shape))})")
    lo, hi = (-(1 << (spec.bits - 1)), (1 << (spec.bits - 1)) - 1) if spec.signed else (0, (1 << spec.bits) - 1)
    if x.size and (int(x.min()) < lo or int(x.max()) > hi):
        raise InputError(f"input values must lie in [{lo}, {hi}] ({spec.bits}-bit {'signed' if spec.signed else 'unsigned'})")
    return ring.from_signed(x.astype(np.int64), l)


async def _requantize_channels(
    party: Party, label: str, x: np.ndarray, node: Requantize, *, l_in: int, l_out: int, exact: bool,
    msb_known_zero: bool, shift: int | None = None, x_range: tuple[int, int] | None = None, baseline: bool = False,
    folded: bool = False,
) -> np.ndarray:
    """Requantize a batch ``(B, C, ...)`` with one multiplier, or one per channel (axis 1) in one protocol
    instance (the multipliers broadcast as ``(1, C, 1, ...)``); ``shift`` overrides ``node.shift`` (the
    rest of a folded requantization).  ``x_range``: the input's proven bounds (they let the quantized mode
    requantize on the narrow ring); ``baseline``: Cheetah's own protocol (wrap-based, m = 4 digits, the
    dropped carry's ``{-1, 0}`` error).  An unfolded approximate requantization of the quantized mode is
    unbiased (``e ∈ {-1, 0, 1}``); a folded one keeps ``{-1, 0}``, which :class:`Fold`'s bound needs."""
    multiplier: int | np.ndarray = node.multiplier[0]
    if len(node.multiplier) > 1:
        multiplier = node.channel_multipliers(x.shape[1]).reshape((1, -1) + (1,) * (x.ndim - 2))
    return await requantize(
        party, label, x, l_in=l_in, multiplier=multiplier, shift=node.shift if shift is None else shift,
        lo=node.lo, hi=node.hi, rounding=node.rounding, l_out=l_out, exact=exact, msb_known_zero=msb_known_zero,
        x_range=None if baseline else x_range, narrow=not baseline, digit_bits=4 if baseline else None,
        unbiased=not (baseline or folded),
    )


async def _per_sample(coros: list[Any]) -> np.ndarray:
    return np.stack(await asyncio.gather(*coros))


async def _he_layer(
    party: Party, node: Conv | Linear, x: np.ndarray, l: int, label: str, config: EngineConfig, out_shift: int,
) -> np.ndarray:
    """A Conv (one concurrent call per sample) or Linear (the whole batch) on shares mod ``2^l``; with
    ``out_shift = s'`` shares of ``floor(acc / 2^s') + e`` mod ``2^(l - s')`` (``e ∈ {-1, 0, 1}``)."""
    server = party.is_server
    weight = node.weight if server else None
    bias = node.bias if server else None
    if isinstance(node, Conv):
        return await _per_sample([conv2d(
            party, f"{label}/b{b}", x[b], out_channels=node.out_channels, kernel=node.kernel, l=l,
            stride=node.stride, padding=_pads_tblr(node.pads), groups=node.groups, weight=weight, bias=bias,
            weight_bits=node.weight_bits, planner=config.planner, out_shift=out_shift,
        ) for b in range(len(x))])
    return await fc(
        party, label, x, out_features=node.out_features, l=l, weight=weight, bias=bias,
        weight_bits=node.weight_bits, planner=config.planner, out_shift=out_shift,
    )


async def _node(
    party: Party, graph: QGraph, node: Node, xs: list[np.ndarray], rings: RingPlan, label: str,
    config: EngineConfig,
) -> np.ndarray:
    """One node on a batch of shares ``(B, *shape)``; HE layers run their samples concurrently."""
    l = rings.compute_ring(node)
    xs = [ring.reduce(x, l) if rings.edges[e] > l and not isinstance(node, Requantize) else x
          for x, e in zip(xs, node.inputs)]
    x = xs[0]
    server = party.is_server
    if isinstance(node, (Conv, Linear)):
        fold = rings.folds.get(node.name)
        y = await _he_layer(party, node, x, l, label, config, 0 if fold is None else fold.shift)
        if fold is not None and server:  # the lift of the error bound (see Fold)
            y = ring.reduce(y + np.uint64(FOLD_LIFT), fold.out_ring)
        return y
    if isinstance(node, ChannelAffine):
        return await _per_sample([batchnorm(
            party, f"{label}/b{b}", x[b], l=l, scale=node.weight if server else None,
            shift=node.bias if server else None, weight_bits=node.weight_bits, planner=config.planner,
        ) for b in range(len(x))])
    if isinstance(node, Requantize):
        src = graph.tensors[node.inputs[0]]
        l_in = rings.edges[node.inputs[0]]
        folded = rings.folded.get(node.name)
        if folded is None:
            msb_known_zero, shift = not src.signed and l_in > src.bits, node.shift
            x_range = range_of_width(src.bits, src.signed)  # public (the proven bounds are the server's)
        else:  # the input is y = floor(acc / 2^shift) + e + lift (out_ring holds y_lo..y_hi): shift the rest
            msb_known_zero, shift, x_range = folded.y_lo >= 0, folded.rest, (folded.y_lo, folded.y_hi)
        return await _requantize_channels(
            party, label, x, node, l_in=l_in, l_out=l, exact=config.exact, msb_known_zero=msb_known_zero,
            shift=shift, x_range=x_range, baseline=config.mode == "cheetah", folded=folded is not None,
        )
    if isinstance(node, Relu):
        return await relu(party, label, x, l=l)
    if isinstance(node, Clip):
        clip = Requantize(name=node.name, inputs=node.inputs, output=node.output, multiplier=(1,), shift=0,
                          lo=node.lo, hi=node.hi)
        return await _requantize_channels(party, label, x, clip, l_in=l, l_out=l, exact=True, msb_known_zero=False,
                                          x_range=range_of_width(graph.tensors[node.inputs[0]].bits,
                                                                 graph.tensors[node.inputs[0]].signed),
                                          baseline=config.mode == "cheetah")
    if isinstance(node, MaxPool):
        t, left, b, r = node.pads
        if (t, left) != (b, r):
            raise UnsupportedModel(f"max-pool {node.name!r}: asymmetric padding {node.pads} is not supported")
        spec = graph.tensors[node.inputs[0]]  # quantized mode: on the narrow ring of the inputs' width
        narrow = {} if config.mode == "cheetah" else {"value_range": range_of_width(spec.bits, spec.signed),
                                                      "digit_bits": None}
        return await maxpool2d(party, label, x, l=l, kernel=node.kernel, stride=node.stride, padding=(t, left),
                               **narrow)
    if isinstance(node, SumPool):
        return sum_pool2d(x, node.kernel, l, stride=node.stride, padding=_pads_tblr(node.pads))
    if isinstance(node, Add):
        ms = node.channel_multipliers(x.shape[1])
        out = np.zeros(x.shape, dtype=np.uint64)
        for m, xi in zip(ms, xs):
            scale = ring.reduce(m, l).reshape((1, -1) + (1,) * (xi.ndim - 2))
            out = ring.reduce(out + xi * scale, l)
        return out
    if isinstance(node, Concat):
        return np.concatenate(xs, axis=1)
    if isinstance(node, Flatten):
        return flatten(x, 1)
    raise UnsupportedModel(f"node {node.name!r}: no secure protocol for op {node.op!r}")


async def run_secure(
    party: Party,
    graph: QGraph,
    x: np.ndarray | None = None,
    *,
    batch: int | None = None,
    config: EngineConfig = EngineConfig(),
    label: str = "infer",
    on_layer: Callable[[LayerRecord], None] | None = None,
    keep_shares: bool = False,
) -> SecureResult:
    """Evaluate ``graph`` on the client's integer inputs ``x``, a batch ``(B, *graph.input_spec.shape)``.

    Server: pass the full graph and ``batch=B`` (no ``x``); gets ``SecureResult(None, layers)``.  Client:
    pass the metadata graph and ``x``; gets the int64 logits ``(B, *output_shape)`` (``output="logits"``)
    or the class indices ``(B,)`` (``"argmax"``).  Per-layer bytes and rounds are in the channel
    statistics under ``f"{label}/{node.name}"``; ``on_layer`` is called with each layer's record as it
    completes (progress display; its ``ring`` is the ring the node computes in).  ``keep_shares``: also
    return this party's share of every edge (``SecureResult.shares``, rings from :func:`plan_rings`).
    """
    if party.is_server and not graph.has_weights:
        raise InputError("the server needs the full graph (with weights)")
    if batch is None:
        if x is None:
            raise InputError("the server must pass batch=B (the number of samples the client announced)")
        batch = len(x)
    if batch < 1:
        raise InputError("batch must be at least 1")
    plan = plan_rings(graph, config.mode, exact=config.exact)
    rings = plan.edges
    env: dict[str, np.ndarray] = {graph.input: _input_share(party, graph, x, batch, rings[graph.input])}
    records: list[LayerRecord] = []

    def record(name: str, op: str, node_label: str, start: float, l: int) -> None:
        records.append(LayerRecord(name, op, node_label, time.perf_counter() - start, l))
        if on_layer is not None:
            on_layer(records[-1])

    for node in graph.nodes:
        start = time.perf_counter()
        node_label = f"{label}/{node.name}"
        env[node.output] = await _node(party, graph, node, [env[e] for e in node.inputs], plan, node_label, config)
        record(node.name, node.op, node_label, start, plan.compute_ring(node))
    shares = env if keep_shares else None
    out = env[graph.output]
    l = rings[graph.output]
    start = time.perf_counter()
    if config.output == "argmax":
        spec = graph.tensors[graph.output]
        narrow = {} if config.mode == "cheetah" else {"value_range": range_of_width(spec.bits, spec.signed),
                                                      "digit_bits": None}
        cls = await argmax(party, f"{label}/argmax", out.reshape(batch, -1), l=l, reveal_to="client", **narrow)
        record("argmax", "argmax", f"{label}/argmax", start, l)
        return SecureResult(None if party.is_server else np.asarray(cls), records, shares)
    sub = party.sub(f"{label}/output")
    if party.is_server:
        await sub.send(Packed(out.reshape(-1), l))
        record("output", "reveal", sub.label, start, l)
        return SecureResult(None, records, shares)
    peer = await sub.recv()
    if not isinstance(peer, np.ndarray) or peer.size != out.size:
        raise ProtocolError("the server's output share has the wrong size")
    y = ring.to_signed(ring.reconstruct(out.reshape(-1), peer, l), l).reshape(out.shape)
    record("output", "reveal", sub.label, start, l)
    return SecureResult(y, records, shares)
