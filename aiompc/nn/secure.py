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
Conv / Linear     :func:`protocols.linear.conv2d` / :func:`protocols.linear.fc` (HE)
ChannelAffine     :func:`protocols.linear.batchnorm` (HE)
Requantize        :func:`protocols.nonlinear.requantize` (OT), output in the consumer's ring
Relu / Clip       :func:`protocols.nonlinear.relu` / requantize with ``M = 1, s = 0`` (OT)
MaxPool           :func:`protocols.nonlinear.maxpool2d` (OT)
SumPool / Add /   local on shares (window sums, public rescales, concatenation, reshape)
Concat / Flatten
================  =====================================================================

**Rings.**  Each edge's shares live in ``Z_{2^l}`` with ``l`` chosen by :func:`ring_widths` from public
metadata only: at least the edge's width, and whatever its consumers work in (an HE layer works in the
ring of its accumulator, a local node in the ring of its output).  Requantization writes its output
directly in the ring its consumers want, so no ring extension protocol is ever needed; an edge whose ring
is wider than a consumer's is reduced locally (reduction mod ``2^k`` is a ring homomorphism).  In
``cheetah`` mode every edge uses ``l = 37`` and the HE layers use Cheetah's parameters and tiling, the
baseline the quantized mode is measured against; the secure result is the same integer graph either way.

**Input and output.**  The client's input ``x`` is shared as ``(server: 0, client: x)``, which reveals
nothing to the server.  At the end either the server sends its output share to the client (logits), or
the argmax protocol reveals the class index to the client only (``output="argmax"``).  The server learns
nothing; the client learns only the output.

**Exactness.**  With ``exact=True`` the client's result equals :func:`aiompc.nn.interpret.run_int` bit
for bit.  With ``exact=False`` requantizations drop the carry of the shift: each requantized value may be
one LSB low (``e ∈ {-1, 0}``, still inside the clip range).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np

from aiompc import ring
from aiompc.errors import InputError, ProtocolError, UnsupportedModel
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
)
from aiompc.party import Party
from aiompc.wire import Packed
from protocols.linear.batchnorm import batchnorm
from protocols.linear.conv import conv2d
from protocols.linear.fc import fc
from protocols.linear.local import flatten, sum_pool2d
from protocols.nonlinear import argmax, maxpool2d, relu, requantize

__all__ = ["EngineConfig", "LayerRecord", "ring_widths", "run_secure", "CHEETAH_RING"]

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
    """A party's outcome: the output (client only) and the per-layer records."""

    output: np.ndarray | None
    layers: list[LayerRecord] = field(default_factory=list)


# --------------------------------------------------------------------------- rings


def _min_ring(bits: int, signed: bool) -> int:
    # an unsigned b-bit value needs b+1 bits to be read as a non-negative two's-complement number
    return bits if signed else bits + 1


def ring_widths(graph: QGraph, mode: Mode = "quantized") -> dict[str, int]:
    """The ring width of every edge, from public metadata only (see the module docstring)."""
    if mode == "cheetah":
        widest = max(_min_ring(t.bits, t.signed) for t in graph.tensors.values())
        if widest > CHEETAH_RING:
            raise UnsupportedModel(f"an edge needs {widest} bits, more than Cheetah's {CHEETAH_RING}-bit ring")
        return {name: CHEETAH_RING for name in graph.tensors}
    rings = {name: _min_ring(t.bits, t.signed) for name, t in graph.tensors.items()}
    for node in reversed(graph.nodes):
        if isinstance(node, Requantize):
            continue  # reads any ring, writes directly into its consumers' ring
        for edge in node.inputs:
            rings[edge] = max(rings[edge], rings[node.output])
    for name, l in rings.items():
        if l > 60:
            raise UnsupportedModel(f"edge {name!r} needs a {l}-bit ring; the HE layers support at most 60 bits")
    return rings


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
    msb_known_zero: bool,
) -> np.ndarray:
    """Requantize a batch ``(B, C, ...)`` with one multiplier, or one per channel (axis 1) in one protocol
    instance (the multipliers broadcast as ``(1, C, 1, ...)``)."""
    multiplier: int | np.ndarray = node.multiplier[0]
    if len(node.multiplier) > 1:
        multiplier = node.channel_multipliers(x.shape[1]).reshape((1, -1) + (1,) * (x.ndim - 2))
    return await requantize(
        party, label, x, l_in=l_in, multiplier=multiplier, shift=node.shift, lo=node.lo, hi=node.hi,
        rounding=node.rounding, l_out=l_out, exact=exact, msb_known_zero=msb_known_zero,
    )


async def _per_sample(coros: list[Any]) -> np.ndarray:
    return np.stack(await asyncio.gather(*coros))


async def _node(
    party: Party, graph: QGraph, node: Node, xs: list[np.ndarray], rings: dict[str, int], label: str,
    config: EngineConfig,
) -> np.ndarray:
    """One node on a batch of shares ``(B, *shape)``; HE layers run their samples concurrently."""
    l = rings[node.output]
    xs = [ring.reduce(x, l) if rings[e] > l and not isinstance(node, Requantize) else x
          for x, e in zip(xs, node.inputs)]
    x = xs[0]
    server = party.is_server
    if isinstance(node, Conv):
        return await _per_sample([conv2d(
            party, f"{label}/b{b}", x[b], out_channels=node.out_channels, kernel=node.kernel, l=l,
            stride=node.stride, padding=_pads_tblr(node.pads), groups=node.groups,
            weight=node.weight if server else None, bias=node.bias if server else None,
            weight_bits=node.weight_bits, planner=config.planner,
        ) for b in range(len(x))])
    if isinstance(node, Linear):
        return await fc(
            party, label, x, out_features=node.out_features, l=l, weight=node.weight if server else None,
            bias=node.bias if server else None, weight_bits=node.weight_bits, planner=config.planner,
        )
    if isinstance(node, ChannelAffine):
        return await _per_sample([batchnorm(
            party, f"{label}/b{b}", x[b], l=l, scale=node.weight if server else None,
            shift=node.bias if server else None, weight_bits=node.weight_bits, planner=config.planner,
        ) for b in range(len(x))])
    if isinstance(node, Requantize):
        src = graph.tensors[node.inputs[0]]
        l_in = rings[node.inputs[0]]
        return await _requantize_channels(
            party, label, x, node, l_in=l_in, l_out=l, exact=config.exact,
            msb_known_zero=not src.signed and l_in > src.bits,
        )
    if isinstance(node, Relu):
        return await relu(party, label, x, l=l)
    if isinstance(node, Clip):
        clip = Requantize(name=node.name, inputs=node.inputs, output=node.output, multiplier=(1,), shift=0,
                          lo=node.lo, hi=node.hi)
        return await _requantize_channels(party, label, x, clip, l_in=l, l_out=l, exact=True, msb_known_zero=False)
    if isinstance(node, MaxPool):
        t, left, b, r = node.pads
        if (t, left) != (b, r):
            raise UnsupportedModel(f"max-pool {node.name!r}: asymmetric padding {node.pads} is not supported")
        return await maxpool2d(party, label, x, l=l, kernel=node.kernel, stride=node.stride, padding=(t, left))
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
) -> SecureResult:
    """Evaluate ``graph`` on the client's integer inputs ``x``, a batch ``(B, *graph.input_spec.shape)``.

    Server: pass the full graph and ``batch=B`` (no ``x``); gets ``SecureResult(None, layers)``.  Client:
    pass the metadata graph and ``x``; gets the int64 logits ``(B, *output_shape)`` (``output="logits"``)
    or the class indices ``(B,)`` (``"argmax"``).  Per-layer bytes and rounds are in the channel
    statistics under ``f"{label}/{node.name}"``; ``on_layer`` is called with each layer's record as it
    completes (progress display).
    """
    if party.is_server and not graph.has_weights:
        raise InputError("the server needs the full graph (with weights)")
    if batch is None:
        if x is None:
            raise InputError("the server must pass batch=B (the number of samples the client announced)")
        batch = len(x)
    if batch < 1:
        raise InputError("batch must be at least 1")
    rings = ring_widths(graph, config.mode)
    env: dict[str, np.ndarray] = {graph.input: _input_share(party, graph, x, batch, rings[graph.input])}
    records: list[LayerRecord] = []

    def record(name: str, op: str, node_label: str, start: float, l: int) -> None:
        records.append(LayerRecord(name, op, node_label, time.perf_counter() - start, l))
        if on_layer is not None:
            on_layer(records[-1])

    for node in graph.nodes:
        start = time.perf_counter()
        node_label = f"{label}/{node.name}"
        env[node.output] = await _node(party, graph, node, [env[e] for e in node.inputs], rings, node_label, config)
        record(node.name, node.op, node_label, start, rings[node.output])
    out = env[graph.output]
    l = rings[graph.output]
    start = time.perf_counter()
    if config.output == "argmax":
        cls = await argmax(party, f"{label}/argmax", out.reshape(batch, -1), l=l, reveal_to="client")
        record("argmax", "argmax", f"{label}/argmax", start, l)
        return SecureResult(None if party.is_server else np.asarray(cls), records)
    sub = party.sub(f"{label}/output")
    if party.is_server:
        await sub.send(Packed(out.reshape(-1), l))
        record("output", "reveal", sub.label, start, l)
        return SecureResult(None, records)
    peer = await sub.recv()
    if not isinstance(peer, np.ndarray) or peer.size != out.size:
        raise ProtocolError("the server's output share has the wrong size")
    y = ring.to_signed(ring.reconstruct(out.reshape(-1), peer, l), l).reshape(out.shape)
    record("output", "reveal", sub.label, start, l)
    return SecureResult(y, records)
