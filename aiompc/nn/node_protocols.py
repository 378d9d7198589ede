"""Which protocol runs each IR node: one table, used by the secure engine and by the cost reports.

:data:`NODE_PROTOCOLS` maps every IR node type the engine evaluates to its :class:`~aiompc.nn.node_step.NodeProtocol`:
its ``kind`` (``he``, ``ot`` or ``local``: how the bytes of the node are reported) and ``run(step, node, xs)``,
which maps this party's shares of the node's inputs (a batch ``(B, *shape)`` each, in the ring
:class:`~aiompc.nn.rings.RingPlan` gives) to its share of the output.  The runners are those of the CNN layers
(:mod:`aiompc.nn.node_runners`, whose docstring tables which protocol each calls) and of the transformer layers
(:mod:`aiompc.nn.node_runners_transformer`); what each node computes, for reports, is
:data:`aiompc.nn.node_categories.NODE_CATEGORIES`.
"""

from __future__ import annotations

import numpy as np

from aiompc import ring
from aiompc.errors import UnsupportedModel
from aiompc.nn.ir import (Add, AddConst, ChannelAffine, Clip, Concat, Conv, FeatureAffine, Flatten, GeluFx, LayerNormFx,
                          LayerNormQ, Linear, Lookup, MatMul, MatMulShared, MaxPool, Node, PartialRelu,
                          PartialReluRequantize, ReduceSum, Relu, Requantize, Reshape, Slice, SoftmaxFx, SoftmaxQ,
                          SumPool, Transpose)
from aiompc.nn.node_runners import (run_add, run_channel_affine, run_clip, run_concat, run_conv, run_flatten,
                                    run_linear, run_maxpool, run_partial_relu, run_relu, run_requantize,
                                    run_sum_pool)
from aiompc.nn.node_runners_transformer import (run_add_const, run_feature_affine, run_gelu_fx, run_layernorm_fx,
                                                run_layernorm_q, run_lookup, run_matmul, run_matmul_shared,
                                                run_reduce_sum, run_reshape, run_slice, run_softmax_fx,
                                                run_softmax_q, run_transpose)
from aiompc.nn.node_step import NodeProtocol, Step
from aiompc.nn.rings import reads_any_ring

__all__ = ["NODE_PROTOCOLS", "protocol_of", "run_node"]


NODE_PROTOCOLS: dict[type[Node], NodeProtocol] = {
    Conv: NodeProtocol("he", run_conv),
    Linear: NodeProtocol("he", run_linear),
    ChannelAffine: NodeProtocol("he", run_channel_affine),
    Requantize: NodeProtocol("ot", run_requantize),
    Relu: NodeProtocol("ot", run_relu),
    PartialRelu: NodeProtocol("ot", run_partial_relu),
    PartialReluRequantize: NodeProtocol("ot", run_requantize),
    Clip: NodeProtocol("ot", run_clip),
    MaxPool: NodeProtocol("ot", run_maxpool),
    SumPool: NodeProtocol("local", run_sum_pool),
    Add: NodeProtocol("local", run_add),
    Concat: NodeProtocol("local", run_concat),
    Flatten: NodeProtocol("local", run_flatten),
    MatMul: NodeProtocol("he", run_matmul),
    Transpose: NodeProtocol("local", run_transpose),
    Reshape: NodeProtocol("local", run_reshape),
    Slice: NodeProtocol("local", run_slice),
    ReduceSum: NodeProtocol("local", run_reduce_sum),
    AddConst: NodeProtocol("local", run_add_const),
    Lookup: NodeProtocol("ot", run_lookup),
    MatMulShared: NodeProtocol("he", run_matmul_shared),
    SoftmaxQ: NodeProtocol("ot", run_softmax_q),
    FeatureAffine: NodeProtocol("ot", run_feature_affine),
    LayerNormQ: NodeProtocol("ot", run_layernorm_q),
    SoftmaxFx: NodeProtocol("ot", run_softmax_fx),
    GeluFx: NodeProtocol("ot", run_gelu_fx),
    LayerNormFx: NodeProtocol("ot", run_layernorm_fx),
}
"""IR node type → the protocol that evaluates it (the one source of this fact)."""


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
