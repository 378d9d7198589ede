"""The protocol runners of the transformer layers of :mod:`aiompc.nn.ir_transformer` (their table:
:mod:`aiompc.nn.node_protocols`).

================  ======  ============================================================================
node              kind    protocol
================  ======  ============================================================================
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

Each ``run_*`` is a :data:`~aiompc.nn.node_step.Runner` (see :mod:`aiompc.nn.node_runners`).  Beside them, what
the HE-call planning (:mod:`aiompc.nn.prepare`, :mod:`aiompc.nn.stat_budget`) derives the same way: a shared
matmul's plan (:func:`shared_matmul_plan`, OT priced at :data:`DEFAULT_COT_BITS` before a session), a MatMul's
weight as fc's (:func:`matmul_fc_weight`), and a look-up's narrow ring (:func:`lookup_width`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aiompc import ring
from aiompc.errors import UnsupportedModel
from aiompc.nn.ir_base import TensorSpec
from aiompc.nn.ir_transformer import (AddConst, FeatureAffine, GeluFx, LayerNormFx, LayerNormQ, Lookup, MatMul,
                                      MatMulShared, ReduceSum, Reshape, Slice, SoftmaxFx, SoftmaxQ, Transpose,
                                      sample_axis)
from aiompc.nn.node_runners import fold_lift, fold_shift
from aiompc.nn.node_step import Step
from aiompc.nn.rings import signed_width
from aiompc.protocols.linear.fc import fc
from aiompc.protocols.linear.matmul import SharedMatmulPlan, matmul_shared, matmul_shared_plan
from aiompc.protocols.nonlinear.extension import extend
from aiompc.protocols.nonlinear.iron import gelu_fx, layernorm_fx, softmax_fx
from aiompc.protocols.nonlinear.layernorm import layernorm_q
from aiompc.protocols.nonlinear.lookup import lookup
from aiompc.protocols.nonlinear.millionaire import COT_BITS
from aiompc.protocols.nonlinear.multiply import multiply_private
from aiompc.protocols.nonlinear.softmax import softmax_q
from aiompc.protocols.ot.engines import DEFAULT_ENGINE
from aiompc.protocols.products import CROSS_METHODS, cot_bits

__all__ = ["DEFAULT_COT_BITS", "shared_matmul_plan", "matmul_fc_weight", "lookup_width", "run_matmul",
           "run_transpose", "run_reshape", "run_slice", "run_reduce_sum", "run_add_const", "run_lookup",
           "run_matmul_shared", "run_softmax_q", "run_feature_affine", "run_layernorm_q", "run_softmax_fx",
           "run_gelu_fx", "run_layernorm_fx"]

DEFAULT_COT_BITS = COT_BITS.get(DEFAULT_ENGINE, COT_BITS["iknp"])
"""Modelled bits per random COT of the default OT engine: what plans made before a session (no OT engine yet)
price a shared matmul's OT cross terms at (:func:`shared_matmul_plan`)."""


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


async def run_matmul(step: Step, node: MatMul, xs: list[np.ndarray]) -> np.ndarray:
    """A token MatMul: the rows of the whole batch, ``(B·S, K)``, by ``W^T`` in one fc call on shares mod ``2^l``,
    folded as :func:`~aiompc.nn.node_runners.fold_lift` says."""
    party, x = step.party, xs[0]
    weight = node.weight if party.is_server else None
    rows = await fc(party, step.label, x.reshape(-1, node.in_features), out_features=node.out_features,
                    l=step.rings.compute_ring(node), weight=None if weight is None else matmul_fc_weight(weight),
                    bias=node.bias if party.is_server else None, weight_bits=node.weight_bits,
                    planner=step.config.mode.planner, out_shift=fold_shift(step, node))
    return fold_lift(step, node, rows.reshape(*x.shape[:-1], node.out_features))


async def run_transpose(step: Step, node: Transpose, xs: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(xs[0].transpose(0, *(p + 1 for p in node.perm)))


async def run_reshape(step: Step, node: Reshape, xs: list[np.ndarray]) -> np.ndarray:
    return xs[0].reshape(len(xs[0]), *step.graph.tensors[node.output].shape)


async def run_slice(step: Step, node: Slice, xs: list[np.ndarray]) -> np.ndarray:
    a = sample_axis(node, node.axis, xs[0].ndim - 1) + 1
    return np.ascontiguousarray(xs[0][(slice(None),) * a + (slice(node.start, node.stop),)])


async def run_reduce_sum(step: Step, node: ReduceSum, xs: list[np.ndarray]) -> np.ndarray:
    a = sample_axis(node, node.axis, xs[0].ndim - 1) + 1
    return ring.reduce(xs[0].sum(axis=a, keepdims=node.keepdims, dtype=np.uint64), step.rings.compute_ring(node))


async def run_add_const(step: Step, node: AddConst, xs: list[np.ndarray]) -> np.ndarray:
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


async def run_lookup(step: Step, node: Lookup, xs: list[np.ndarray]) -> np.ndarray:
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


async def run_matmul_shared(step: Step, node: MatMulShared, xs: list[np.ndarray]) -> np.ndarray:
    """The batch's ``a @ b`` by one :func:`matmul_shared` call (leading axes batch × heads)."""
    a, b = (step.graph.tensors[e] for e in node.inputs)
    l = step.rings.compute_ring(node)
    plan = await step.party.compute(shared_matmul_plan, a, b, len(xs[0]), l, step.config.mode.planner,
                                    cot_bits(step.party))
    return await matmul_shared(step.party, step.label, xs[0], xs[1], l=l, plan=plan, methods=CROSS_METHODS)


async def run_softmax_q(step: Step, node: SoftmaxQ, xs: list[np.ndarray]) -> np.ndarray:
    src = step.graph.tensors[node.inputs[0]]
    l_in = step.rings.edges[node.inputs[0]]
    return await softmax_q(step.party, step.label, xs[0], params=node.params, l_in=l_in,
                           l_out=step.rings.compute_ring(node), value_bits=min(signed_width(src), l_in))


async def run_feature_affine(step: Step, node: FeatureAffine, xs: list[np.ndarray]) -> np.ndarray:
    """``x·w`` by :func:`multiply_private` (the server's weights, their public width), then the server's bias."""
    party, l = step.party, step.rings.compute_ring(node)
    src = step.graph.tensors[node.inputs[0]]
    y = await multiply_private(party, step.label, xs[0], node.weight if party.is_server else None, l=l,
                               x_bits=min(signed_width(src), l), w_bits=node.weight_bits)
    if not party.is_server:
        return y
    assert node.bias is not None
    return ring.reduce(y + ring.from_signed(node.bias, l), l)


async def run_layernorm_q(step: Step, node: LayerNormQ, xs: list[np.ndarray]) -> np.ndarray:
    """The input in its own ring (its values signed ``l_in``-bit), the output in the consumers' ring."""
    return await layernorm_q(step.party, step.label, xs[0], params=node.params, l_in=step.rings.edges[node.inputs[0]],
                             l_out=step.rings.compute_ring(node))


def _fixed_point_ring(step: Step, node: SoftmaxFx | GeluFx | LayerNormFx) -> int:
    """Iron's fixed-point programs run on their own ring ``node.l`` (Cheetah's 37 bits: every edge's ring in the
    ``cheetah`` mode); :class:`UnsupportedModel` if the node's consumers need another."""
    l = step.rings.compute_ring(node)
    if l != node.l:
        raise UnsupportedModel(f"{node.op} {node.name!r}: Iron's fixed-point program runs on its {node.l}-bit ring, "
                               f"but its consumers need {l} bits (run the fixed-point program in the cheetah mode)")
    return l


async def run_softmax_fx(step: Step, node: SoftmaxFx, xs: list[np.ndarray]) -> np.ndarray:
    """Iron's Softmax; ``exact`` as the session's (Cheetah's approximate truncation by default)."""
    return await softmax_fx(step.party, step.label, xs[0], f=node.f, l=_fixed_point_ring(step, node),
                            exact=step.config.exact)


async def run_gelu_fx(step: Step, node: GeluFx, xs: list[np.ndarray]) -> np.ndarray:
    """Iron's GELU; ``exact`` as the session's."""
    return await gelu_fx(step.party, step.label, xs[0], f=node.f, l=_fixed_point_ring(step, node),
                         exact=step.config.exact)


async def run_layernorm_fx(step: Step, node: LayerNormFx, xs: list[np.ndarray]) -> np.ndarray:
    """Iron's LayerNorm without its affine part; ``exact`` as the session's."""
    return await layernorm_fx(step.party, step.label, xs[0], f=node.f, l=_fixed_point_ring(step, node),
                              exact=step.config.exact, eps=node.eps)
