"""Which protocol runs each IR node: one table, used by the secure engine and by the cost reports.

================  ======  ============================================================================
node              kind    protocol
================  ======  ============================================================================
Conv / Linear     he      :func:`aiompc.protocols.linear.conv2d` / :func:`aiompc.protocols.linear.fc`
ChannelAffine     he      :func:`aiompc.protocols.linear.batchnorm`
Requantize        ot      :func:`aiompc.protocols.nonlinear.requantize`, output in the consumer's ring
Relu              ot      :func:`aiompc.protocols.nonlinear.relu`
PartialRelu       ot      :func:`aiompc.protocols.nonlinear.partial_relu` (the kept elements only)
PartialRelu-      ot      :func:`aiompc.protocols.nonlinear.partial_relu_requantize` (two requantizations,
 Requantize               kept / identity elements, side by side)
Clip              ot      requantize with ``M = 1, s = 0``
MaxPool           ot      :func:`aiompc.protocols.nonlinear.maxpool2d`
SumPool           local   window sums on shares
Add               local   public per-channel rescales and a sum on shares
Concat / Flatten  local   reshaping of shares
MatMul            he      :func:`aiompc.protocols.linear.fc` on the rows ``(B·S, K)`` of the batch's tokens
                          (Iron's matrix-matrix packing; the planner's tiling), ``W^T`` as the fc weight
Transpose /       local   the same permutation / reshape / slice / sum of each party's shares (the batch
 Reshape / Slice /        axis untouched)
 ReduceSum
AddConst          local   the server adds its secret constant to its share
Lookup            ot      :func:`aiompc.protocols.nonlinear.lookup` (the server's public table; the input's
                          shares reduced mod ``2^k``; looked up in the table's own ring and extended to the
                          consumers' ring with a known top bit when that is wider)
MatMulShared      he      :func:`aiompc.protocols.linear.matmul.matmul_shared` on ``(B·heads)`` products: the
                          local terms on each side, each cross term by HE or by Gilboa's OT product, whichever
                          the cost model prices lower at the session's OT engine (:func:`shared_matmul_plan`;
                          the choice is in ``party.state["matmul_shared"][label]``)
SoftmaxQ          ot      :func:`aiompc.protocols.nonlinear.softmax.softmax_q` (input in its own ring, the
                          logits' public signed width, output in the consumers' ring)
FeatureAffine     ot      :func:`aiompc.protocols.nonlinear.multiply.multiply_private` by the server's weights
                          (public ``weight_bits``), then the server adds its bias
LayerNormQ        ot      :func:`aiompc.protocols.nonlinear.layernorm.layernorm_q` (input in its own ring,
                          output in the consumers' ring)
SoftmaxFx /       ot      Iron's :func:`~aiompc.protocols.nonlinear.iron.softmax_fx` / ``gelu_fx`` /
 GeluFx /                 ``layernorm_fx`` on their own ring ``l`` (37 bits: the ``cheetah`` mode's), exact or
 LayerNormFx              with Cheetah's approximate truncation as the session is
================  ======  ============================================================================

Each entry is a :class:`NodeProtocol`: its ``kind`` (``he``, ``ot`` or ``local``: how the bytes of the node
are reported) and ``run(step, node, xs)``, which maps this party's shares of the node's inputs (a batch
``(B, *shape)`` each, in the ring :class:`~aiompc.nn.rings.RingPlan` gives) to its share of the output.

Beside it, :data:`NODE_CATEGORIES` says what every node type (with a protocol yet or not) computes, for reports
that split bytes by function (a transformer's matmul / Softmax / GELU / LayerNorm, :data:`CATEGORIES`):

=========  ====================================================================================================
category   node types
=========  ====================================================================================================
matmul     every HE linear layer: Conv, Linear, ChannelAffine, MatMul, MatMulShared
softmax    SoftmaxQ, SoftmaxFx
gelu       Lookup (the only elementwise function the transformer lowering tabulates), GeluFx
layernorm  LayerNormQ, LayerNormFx, FeatureAffine (LayerNorm's gamma / beta)
rescale    Requantize (the quantized program's requantizations, the fixed-point program's truncations)
other      everything else (ReLU, clip, pooling, and the local nodes, which send nothing)
=========  ====================================================================================================
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal

import numpy as np

from aiompc import ring
from aiompc.errors import UnsupportedModel
from aiompc.nn.bounds import range_of_width
from aiompc.nn.ir import (
    Add,
    AddConst,
    ChannelAffine,
    Clip,
    Concat,
    Conv,
    FeatureAffine,
    Flatten,
    GeluFx,
    LayerNormFx,
    LayerNormQ,
    Linear,
    Lookup,
    MatMul,
    MatMulShared,
    MaxPool,
    Node,
    PartialRelu,
    PartialReluRequantize,
    QGraph,
    ReduceSum,
    Relu,
    ReluMasked,
    Requantize,
    Reshape,
    Slice,
    SoftmaxFx,
    SoftmaxQ,
    SumPool,
    TensorSpec,
    Transpose,
)
from aiompc.nn.ir_transformer import sample_axis
from aiompc.nn.modes import EngineConfig
from aiompc.nn.rings import FOLD_LIFT, RingPlan, reads_any_ring, signed_width
from aiompc.party import Party
from aiompc.protocols.linear.batchnorm import batchnorm
from aiompc.protocols.linear.conv import conv2d
from aiompc.protocols.linear.fc import fc
from aiompc.protocols.linear.local import flatten, sum_pool2d
from aiompc.protocols.linear.matmul import STATE_KEY as SHARED_MATMUL_PLANS
from aiompc.protocols.linear.matmul import SharedMatmulPlan, matmul_shared, matmul_shared_plan
from aiompc.protocols.nonlinear import maxpool2d, partial_relu, partial_relu_requantize, relu, requantize
from aiompc.protocols.nonlinear.extension import extend
from aiompc.protocols.nonlinear.iron import gelu_fx, layernorm_fx, softmax_fx
from aiompc.protocols.nonlinear.layernorm import layernorm_q
from aiompc.protocols.nonlinear.lookup import lookup
from aiompc.protocols.nonlinear.millionaire import COT_BITS
from aiompc.protocols.nonlinear.multiply import multiply_private
from aiompc.protocols.nonlinear.softmax import softmax_q
from aiompc.protocols.ot.engines import DEFAULT_ENGINE
from aiompc.protocols.products import CROSS_METHODS, cot_bits

__all__ = ["Step", "NodeProtocol", "NODE_PROTOCOLS", "protocol_of", "run_node", "narrow_kwargs", "CATEGORIES",
           "NODE_CATEGORIES", "category_of", "shared_matmul_plan", "DEFAULT_COT_BITS", "layer_detail", "lookup_width"]

DEFAULT_COT_BITS = COT_BITS.get(DEFAULT_ENGINE, COT_BITS["iknp"])
"""Modelled bits per random COT of the default OT engine: what plans made before a session (no OT engine yet)
price a shared matmul's OT cross terms at (:func:`shared_matmul_plan`)."""

Kind = Literal["he", "ot", "local"]
Category = Literal["matmul", "softmax", "gelu", "layernorm", "rescale", "other"]
CATEGORIES: tuple[Category, ...] = ("matmul", "softmax", "gelu", "layernorm", "rescale", "other")
"""What a node computes, for reports that split bytes by function (module docstring)."""


@dataclass(frozen=True)
class Step:
    """What a node's protocol needs besides the node and its inputs: the party, the graph (public view),
    the rings, the node's label and the session's configuration."""

    party: Party
    graph: QGraph
    rings: RingPlan
    label: str
    config: EngineConfig


Runner = Callable[[Step, Any, list[np.ndarray]], Awaitable[np.ndarray]]


@dataclass(frozen=True)
class NodeProtocol:
    """How the engine evaluates one node type (see the module docstring)."""

    kind: Kind
    run: Runner


def _pads_tblr(pads: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """IR pads are ONNX's (top, left, bottom, right); the protocols take (top, bottom, left, right)."""
    top, left, bottom, right = pads
    return (top, bottom, left, right)


async def _per_sample(coros: list[Any]) -> np.ndarray:
    return np.stack(await asyncio.gather(*coros))


async def _requantize_channels(
    party: Party, label: str, x: np.ndarray, node: Requantize, *, l_in: int, l_out: int, exact: bool,
    msb_known_zero: bool, shift: int | None = None, x_range: tuple[int, int] | None = None, baseline: bool = False,
    folded: bool = False, relu_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Requantize a batch ``(B, C, ...)`` with one multiplier, or one per channel (axis 1) in one protocol
    instance (the multipliers broadcast as ``(1, C, 1, ...)``); ``shift`` overrides ``node.shift`` (the
    rest of a folded requantization).  ``x_range``: the input's public range (its width's; it lets the
    quantized mode requantize on the narrow ring); ``baseline``: Cheetah's own protocol (wrap-based, m = 4
    digits, the dropped carry's ``{-1, 0}`` error).  An unfolded approximate requantization of the quantized
    rings is unbiased (``e ∈ {-1, 0, 1}``); a folded one keeps ``{-1, 0}``, which :class:`Fold`'s bound
    needs.  ``relu_mask`` (per-sample, broadcast): a ReLU fused on the elements where it is 1
    (:func:`~aiompc.protocols.nonlinear.partial_relu_requantize`)."""
    multiplier: int | np.ndarray = node.multiplier[0]
    if len(node.multiplier) > 1:
        multiplier = node.channel_multipliers(x.shape[1]).reshape((1, -1) + (1,) * (x.ndim - 2))
    kwargs: dict[str, Any] = dict(
        l_in=l_in, shift=node.shift if shift is None else shift, rounding=node.rounding, l_out=l_out, exact=exact,
        msb_known_zero=msb_known_zero, x_range=None if baseline else x_range, narrow=not baseline,
        digit_bits=4 if baseline else None, unbiased=not (baseline or folded))
    if relu_mask is not None:
        return await partial_relu_requantize(party, label, x, mask=relu_mask, multiplier=multiplier, lo=node.lo,
                                             hi=node.hi, **kwargs)
    return await requantize(party, label, x, multiplier=multiplier, lo=node.lo, hi=node.hi, **kwargs)


def _baseline(step: Step) -> bool:
    """Cheetah's rings (``cheetah``, ``cheetah-int``): Cheetah's own non-linear protocols."""
    return step.config.mode.rings == "cheetah"


def narrow_kwargs(step: Step, edge: str) -> dict[str, Any]:
    """Keyword arguments of a max-pool / argmax on the narrow ring of ``edge``'s public width (quantized
    rings), or none (Cheetah's own)."""
    if _baseline(step):
        return {}
    spec = step.graph.tensors[edge]
    return {"value_range": range_of_width(spec.bits, spec.signed), "digit_bits": None}


async def _he_layer(step: Step, node: Conv | Linear | MatMul, xs: list[np.ndarray]) -> np.ndarray:
    """A Conv (one concurrent call per sample), Linear (the whole batch) or token MatMul (the rows of the whole
    batch, ``(B·S, K)``, by ``W^T``) on shares mod ``2^l``; folded into
    its requantization (approximate mode), shares of ``floor(acc / 2^s') + e + lift`` mod ``2^(l - s')``
    (``e ∈ {-1, 0, 1}``, see :class:`~aiompc.nn.rings.Fold`)."""
    party, x, l = step.party, xs[0], step.rings.compute_ring(node)
    fold = step.rings.folds.get(node.name)
    out_shift = 0 if fold is None else fold.shift
    server = party.is_server
    weight = node.weight if server else None
    bias = node.bias if server else None
    planner = step.config.mode.planner
    if isinstance(node, Conv):
        y = await _per_sample([conv2d(
            party, f"{step.label}/b{b}", x[b], out_channels=node.out_channels, kernel=node.kernel, l=l,
            stride=node.stride, padding=_pads_tblr(node.pads), groups=node.groups, weight=weight, bias=bias,
            weight_bits=node.weight_bits, planner=planner, out_shift=out_shift,
        ) for b in range(len(x))])
    elif isinstance(node, MatMul):
        rows = await fc(party, step.label, x.reshape(-1, node.in_features), out_features=node.out_features, l=l,
                        weight=None if weight is None else matmul_fc_weight(weight), bias=bias,
                        weight_bits=node.weight_bits, planner=planner, out_shift=out_shift)
        y = rows.reshape(*x.shape[:-1], node.out_features)
    else:
        y = await fc(party, step.label, x, out_features=node.out_features, l=l, weight=weight, bias=bias,
                     weight_bits=node.weight_bits, planner=planner, out_shift=out_shift)
    if fold is not None and server:  # the lift of the error bound (see Fold)
        y = ring.reduce(y + np.uint64(FOLD_LIFT), fold.out_ring)
    return y


def shared_matmul_plan(a: TensorSpec, b: TensorSpec, batch: int, l: int, planner: Any,
                       cot: float = DEFAULT_COT_BITS) -> SharedMatmulPlan:
    """The plan of a :class:`~aiompc.nn.ir.MatMulShared` of per-sample operands ``a (..., S, K)`` and
    ``b (..., K, T)`` over ``batch`` samples (``batch · prod(...)`` products) at ``l`` bits: both cross terms,
    each by HE or OT among :data:`~aiompc.protocols.products.CROSS_METHODS`, OT priced at ``cot`` bits per
    random COT (the session's engine: :func:`aiompc.protocols.products.cot_bits`).  Pure and cached: the engine
    and :func:`aiompc.nn.prepare.linear_calls` (the flooding budget) derive the same plan."""
    groups = batch * int(np.prod(a.shape[:-2], dtype=np.int64))
    return matmul_shared_plan(groups, a.shape[-2], a.shape[-1], b.shape[-1], l, planner, cot_bits=cot,
                              methods=tuple(sorted(CROSS_METHODS)))


def matmul_fc_weight(weight: np.ndarray) -> np.ndarray:
    """A MatMul's ``(K, O)`` weight as the ``(O, K)`` weight of :func:`~aiompc.protocols.linear.fc` (contiguous:
    the prepared-weight cache keys on its bytes)."""
    return np.ascontiguousarray(np.asarray(weight).T)


async def _channel_affine(step: Step, node: ChannelAffine, xs: list[np.ndarray]) -> np.ndarray:
    party, x, server = step.party, xs[0], step.party.is_server
    return await _per_sample([batchnorm(
        party, f"{step.label}/b{b}", x[b], l=step.rings.compute_ring(node), scale=node.weight if server else None,
        shift=node.bias if server else None, weight_bits=node.weight_bits, planner=step.config.mode.planner,
    ) for b in range(len(x))])


async def _requantize(step: Step, node: Requantize, xs: list[np.ndarray]) -> np.ndarray:
    src = step.graph.tensors[node.inputs[0]]
    l_in = step.rings.edges[node.inputs[0]]
    folded = step.rings.folded.get(node.name)
    if folded is None:
        msb_known_zero, shift = not src.signed and l_in > src.bits, node.shift
        x_range = range_of_width(src.bits, src.signed)  # public (the proven bounds are the server's)
    else:  # the input is y = floor(acc / 2^shift) + e + lift (out_ring holds y_lo..y_hi): shift the rest
        msb_known_zero, shift, x_range = folded.y_lo >= 0, folded.rest, (folded.y_lo, folded.y_hi)
    l_out = step.rings.compute_ring(node)
    x, offset = xs[0], _msb_offset(step, node, src, l_in, shift)
    if offset:  # x + 2^(b-1) >= 0 has its MSB known; the offset comes off the output exactly
        lift, drop = offset
        x = ring.reduce(x + np.uint64(lift), l_in) if step.party.is_server else x
        node = dataclasses.replace(node, lo=node.lo + drop, hi=node.hi + drop)
        msb_known_zero = True
    y = await _requantize_channels(
        step.party, step.label, x, node, l_in=l_in, l_out=l_out,
        exact=step.config.exact, msb_known_zero=msb_known_zero, shift=shift, x_range=x_range,
        baseline=_baseline(step), folded=folded is not None,
        relu_mask=node.full_mask(x.shape[1:]) if isinstance(node, ReluMasked) else None,
    )
    if offset and step.party.is_server:
        y = ring.reduce(y - np.uint64(offset[1] % (1 << l_out)), l_out)
    return y


def _msb_offset(step: Step, node: Requantize, src: TensorSpec, l_in: int, shift: int) -> tuple[int, int] | None:
    """``(2^(b-1), 2^(b-1)·M / 2^shift)`` when the fixed-point program truncates a signed ``b``-bit edge held in a
    wider ring with one multiplier that makes the second an integer (a partial ReLU's output,
    :mod:`aiompc.nn.fixed_point`): adding the first makes the input's MSB known, the output is then the
    second too high.  ``None`` otherwise (the usual wrap)."""
    if (step.config.mode.program != "fixed-point" or not src.signed or src.bits >= l_in
            or len(set(node.multiplier)) != 1 or isinstance(node, ReluMasked)):
        return None
    lift = 1 << (src.bits - 1)
    if (lift * node.multiplier[0]) % (1 << shift):
        return None
    return lift, (lift * node.multiplier[0]) >> shift


async def _relu(step: Step, node: Relu, xs: list[np.ndarray]) -> np.ndarray:
    return await relu(step.party, step.label, xs[0], l=step.rings.compute_ring(node))


async def _partial_relu(step: Step, node: PartialRelu, xs: list[np.ndarray]) -> np.ndarray:
    return await partial_relu(step.party, step.label, xs[0], mask=node.full_mask(xs[0].shape[1:]),
                              l=step.rings.compute_ring(node))


async def _clip(step: Step, node: Clip, xs: list[np.ndarray]) -> np.ndarray:
    l = step.rings.compute_ring(node)
    clip = Requantize(name=node.name, inputs=node.inputs, output=node.output, multiplier=(1,), shift=0,
                      lo=node.lo, hi=node.hi)
    spec = step.graph.tensors[node.inputs[0]]
    fits = spec.bits + (0 if spec.signed else 1) <= l  # the input's width inside the ring it is reduced to
    return await _requantize_channels(step.party, step.label, xs[0], clip, l_in=l, l_out=l, exact=True,
                                      msb_known_zero=False, baseline=_baseline(step),
                                      x_range=range_of_width(spec.bits, spec.signed) if fits else None)


async def _maxpool(step: Step, node: MaxPool, xs: list[np.ndarray]) -> np.ndarray:
    t, left, b, r = node.pads
    if (t, left) != (b, r):
        raise UnsupportedModel(f"max-pool {node.name!r}: asymmetric padding {node.pads} is not supported; "
                               "pad symmetrically or pad the input before the pooling")
    return await maxpool2d(step.party, step.label, xs[0], l=step.rings.compute_ring(node), kernel=node.kernel,
                           stride=node.stride, padding=(t, left), **narrow_kwargs(step, node.inputs[0]))


async def _sum_pool(step: Step, node: SumPool, xs: list[np.ndarray]) -> np.ndarray:
    return sum_pool2d(xs[0], node.kernel, step.rings.compute_ring(node), stride=node.stride,
                      padding=_pads_tblr(node.pads))


async def _add(step: Step, node: Add, xs: list[np.ndarray]) -> np.ndarray:
    l = step.rings.compute_ring(node)
    ms = node.channel_multipliers(xs[0].shape[1])
    out = np.zeros(xs[0].shape, dtype=np.uint64)
    for m, xi in zip(ms, xs):
        scale = ring.reduce(m, l).reshape((1, -1) + (1,) * (xi.ndim - 2))
        out = ring.reduce(out + xi * scale, l)
    return out


async def _concat(step: Step, node: Concat, xs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(xs, axis=1)


async def _flatten(step: Step, node: Flatten, xs: list[np.ndarray]) -> np.ndarray:
    return flatten(xs[0], 1)


async def _transpose(step: Step, node: Transpose, xs: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(xs[0].transpose(0, *(p + 1 for p in node.perm)))


async def _reshape(step: Step, node: Reshape, xs: list[np.ndarray]) -> np.ndarray:
    return xs[0].reshape(len(xs[0]), *step.graph.tensors[node.output].shape)


async def _slice(step: Step, node: Slice, xs: list[np.ndarray]) -> np.ndarray:
    a = sample_axis(node, node.axis, xs[0].ndim - 1) + 1
    return np.ascontiguousarray(xs[0][(slice(None),) * a + (slice(node.start, node.stop),)])


async def _reduce_sum(step: Step, node: ReduceSum, xs: list[np.ndarray]) -> np.ndarray:
    a = sample_axis(node, node.axis, xs[0].ndim - 1) + 1
    return ring.reduce(xs[0].sum(axis=a, keepdims=node.keepdims, dtype=np.uint64), step.rings.compute_ring(node))


async def _add_const(step: Step, node: AddConst, xs: list[np.ndarray]) -> np.ndarray:
    if not step.party.is_server:
        return xs[0]
    assert node.bias is not None  # the server's graph has its weights (run_secure checks)
    l = step.rings.compute_ring(node)
    return ring.reduce(xs[0] + ring.from_signed(node.bias, l)[None], l)


def lookup_width(table: tuple[int, ...]) -> tuple[int, int]:
    """``(offset, l_own)`` of a look-up's narrow output: the table shifted by ``offset = -min(table)`` (when negative)
    holds ``[0, max - min]``, whose ring with a known-zero top bit is ``l_own = bitlen(max - min) + 1``."""
    offset = max(0, -min(table))
    return offset, max(1, max(table) + offset).bit_length() + 1


async def _lookup(step: Step, node: Lookup, xs: list[np.ndarray]) -> np.ndarray:
    """The input's shares (in a ring of at least ``k`` bits, :func:`aiompc.nn.rings.input_floor`) reduced mod
    ``2^k``; the output shares in the ring ``l`` the node's consumers want (an HE layer's accumulator ring, often
    much wider than the table's values).  Each look-up's OT carries ``2^k`` entries of its output ring, so when
    ``l`` is wider than the table's own ring ``l_own`` (:func:`lookup_width`) the table is looked up in ``l_own``,
    shifted to be non-negative, and extended to ``l`` with its top bit known zero (one COT and an
    ``(l − l_own)``-bit B2A, :func:`~aiompc.protocols.nonlinear.extension.extend`), the server taking the shift
    off: ``2^k·(l − l_own)`` bits fewer per element for one more round trip (GELU of 8 bits into a 28-bit
    accumulator ring: ~7.2k → ~2.4k bits per element)."""
    party, l = step.party, step.rings.compute_ring(node)
    x = ring.reduce(xs[0], node.k)
    offset, l_own = lookup_width(node.table)
    if l_own >= l:
        table = np.asarray(node.table, dtype=np.int64) if party.is_server else None
        return await lookup(party, step.label, x, k=node.k, l_out=l, table=table)
    shifted = np.asarray(node.table, dtype=np.int64) + offset if party.is_server else None
    y = await lookup(party, step.label, x, k=node.k, l_out=l_own, table=shifted)
    y = await extend(party, f"{step.label}/ext", y, l=l_own, l_out=l, signed=False, msb_known_zero=True)
    return ring.reduce(y - np.uint64(offset), l) if party.is_server and offset else y


async def _matmul_shared(step: Step, node: MatMulShared, xs: list[np.ndarray]) -> np.ndarray:
    """The batch's ``a @ b`` by one :func:`matmul_shared` call (leading axes batch × heads)."""
    a, b = (step.graph.tensors[e] for e in node.inputs)
    l = step.rings.compute_ring(node)
    plan = await step.party.compute(shared_matmul_plan, a, b, len(xs[0]), l, step.config.mode.planner,
                                    cot_bits(step.party))
    return await matmul_shared(step.party, step.label, xs[0], xs[1], l=l, plan=plan, methods=CROSS_METHODS)


async def _softmax_q(step: Step, node: SoftmaxQ, xs: list[np.ndarray]) -> np.ndarray:
    src = step.graph.tensors[node.inputs[0]]
    l_in = step.rings.edges[node.inputs[0]]
    return await softmax_q(step.party, step.label, xs[0], params=node.params, l_in=l_in,
                           l_out=step.rings.compute_ring(node), value_bits=min(signed_width(src), l_in))


async def _feature_affine(step: Step, node: FeatureAffine, xs: list[np.ndarray]) -> np.ndarray:
    """``x·w`` by :func:`multiply_private` (the server's weights, their public width), then the server's bias."""
    party, l = step.party, step.rings.compute_ring(node)
    src = step.graph.tensors[node.inputs[0]]
    y = await multiply_private(party, step.label, xs[0], node.weight if party.is_server else None, l=l,
                               x_bits=min(signed_width(src), l), w_bits=node.weight_bits)
    if not party.is_server:
        return y
    assert node.bias is not None
    return ring.reduce(y + ring.from_signed(node.bias, l), l)


async def _layernorm_q(step: Step, node: LayerNormQ, xs: list[np.ndarray]) -> np.ndarray:
    """The input in its own ring (its values signed ``l_in``-bit), the output in the consumers' ring."""
    return await layernorm_q(step.party, step.label, xs[0], params=node.params, l_in=step.rings.edges[node.inputs[0]],
                             l_out=step.rings.compute_ring(node))


async def _fixed_point_fn(step: Step, node: SoftmaxFx | GeluFx | LayerNormFx, xs: list[np.ndarray]) -> np.ndarray:
    """Iron's fixed-point programs on their own ring ``node.l`` (Cheetah's 37 bits: every edge's ring in the
    ``cheetah`` mode); ``exact`` as the session's (Cheetah's approximate truncation by default)."""
    l = step.rings.compute_ring(node)
    if l != node.l:
        raise UnsupportedModel(f"{node.op} {node.name!r}: Iron's fixed-point program runs on its {node.l}-bit ring, "
                               f"but its consumers need {l} bits (run the fixed-point program in the cheetah mode)")
    if isinstance(node, LayerNormFx):
        return await layernorm_fx(step.party, step.label, xs[0], f=node.f, l=l, exact=step.config.exact, eps=node.eps)
    fn = softmax_fx if isinstance(node, SoftmaxFx) else gelu_fx
    return await fn(step.party, step.label, xs[0], f=node.f, l=l, exact=step.config.exact)


NODE_PROTOCOLS: dict[type[Node], NodeProtocol] = {
    Conv: NodeProtocol("he", _he_layer),
    Linear: NodeProtocol("he", _he_layer),
    ChannelAffine: NodeProtocol("he", _channel_affine),
    Requantize: NodeProtocol("ot", _requantize),
    Relu: NodeProtocol("ot", _relu),
    PartialRelu: NodeProtocol("ot", _partial_relu),
    PartialReluRequantize: NodeProtocol("ot", _requantize),
    Clip: NodeProtocol("ot", _clip),
    MaxPool: NodeProtocol("ot", _maxpool),
    SumPool: NodeProtocol("local", _sum_pool),
    Add: NodeProtocol("local", _add),
    Concat: NodeProtocol("local", _concat),
    Flatten: NodeProtocol("local", _flatten),
    MatMul: NodeProtocol("he", _he_layer),
    Transpose: NodeProtocol("local", _transpose),
    Reshape: NodeProtocol("local", _reshape),
    Slice: NodeProtocol("local", _slice),
    ReduceSum: NodeProtocol("local", _reduce_sum),
    AddConst: NodeProtocol("local", _add_const),
    Lookup: NodeProtocol("ot", _lookup),
    MatMulShared: NodeProtocol("he", _matmul_shared),
    SoftmaxQ: NodeProtocol("ot", _softmax_q),
    FeatureAffine: NodeProtocol("ot", _feature_affine),
    LayerNormQ: NodeProtocol("ot", _layernorm_q),
    SoftmaxFx: NodeProtocol("ot", _fixed_point_fn),
    GeluFx: NodeProtocol("ot", _fixed_point_fn),
    LayerNormFx: NodeProtocol("ot", _fixed_point_fn),
}
"""IR node type → the protocol that evaluates it (the one source of this fact)."""


NODE_CATEGORIES: dict[type[Node], Category] = {
    Conv: "matmul", Linear: "matmul", ChannelAffine: "matmul", MatMul: "matmul", MatMulShared: "matmul",
    SoftmaxQ: "softmax", SoftmaxFx: "softmax",
    Lookup: "gelu", GeluFx: "gelu",
    LayerNormQ: "layernorm", LayerNormFx: "layernorm", FeatureAffine: "layernorm",
    Requantize: "rescale",
    Relu: "other", PartialRelu: "other", PartialReluRequantize: "other", Clip: "other", MaxPool: "other",
    SumPool: "other", Add: "other", Concat: "other", Flatten: "other", Transpose: "other", Reshape: "other",
    Slice: "other", ReduceSum: "other", AddConst: "other",
}
"""IR node type → what it computes (:data:`CATEGORIES`; every node type of :data:`aiompc.nn.ir.NODE_TYPES`)."""


def category_of(node: Node | type[Node]) -> Category:
    """The category of ``node`` (or node type) in :data:`NODE_CATEGORIES`."""
    kind = node if isinstance(node, type) else type(node)
    try:
        return NODE_CATEGORIES[kind]
    except KeyError:
        raise UnsupportedModel(f"no report category for IR node type {kind.__name__}") from None


def layer_detail(party: Party, node: Node, label: str) -> dict[str, Any] | None:
    """What a layer's protocol chose, for reports (after the node ran under ``label``): a MatMulShared's cross-term
    methods, digits and HE blocks (:meth:`~aiompc.protocols.linear.matmul.SharedMatmulPlan.summary`); None for
    every other node."""
    if isinstance(node, MatMulShared):
        plan = party.state.get(SHARED_MATMUL_PLANS, {}).get(label)
        return None if plan is None else plan.summary()
    return None


def protocol_of(node: Node) -> NodeProtocol:
    """The protocol of ``node``'s type; :class:`UnsupportedModel` if the engine has none."""
    try:
        return NODE_PROTOCOLS[type(node)]
    except KeyError:
        raise UnsupportedModel(f"node {node.name!r}: no secure protocol for op {node.op!r}; supported: "
                               f"{', '.join(sorted(t.op for t in NODE_PROTOCOLS))}") from None


async def run_node(step: Step, node: Node, xs: list[np.ndarray]) -> np.ndarray:
    """``node`` on this party's input shares; inputs on wider rings than the node computes in are reduced
    locally first (reduction mod ``2^k`` is a ring homomorphism), except for the nodes that read any ring
    (:data:`aiompc.nn.rings.READS_ANY_RING`: a requantization, a look-up, SoftmaxQ, LayerNormQ)."""
    protocol = protocol_of(node)
    l = step.rings.compute_ring(node)
    if not reads_any_ring(node):
        xs = [ring.reduce(x, l) if step.rings.edges[e] > l else x for x, e in zip(xs, node.inputs)]
    return await protocol.run(step, node, xs)
