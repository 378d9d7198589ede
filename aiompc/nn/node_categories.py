"""What reports say of a node besides its bytes: what it computes (:data:`NODE_CATEGORIES`) and what its protocol
chose (:func:`layer_detail`).

:data:`NODE_CATEGORIES` says what every node type (with a protocol yet or not) computes, for reports that split bytes
by function (a transformer's matmul / Softmax / GELU / LayerNorm, :data:`CATEGORIES`):

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

from typing import Any, Literal

from aiompc.errors import UnsupportedModel
from aiompc.nn.ir import (Add, AddConst, ChannelAffine, Clip, Concat, Conv, FeatureAffine, Flatten, GeluFx, LayerNormFx,
                          LayerNormQ, Linear, Lookup, MatMul, MatMulShared, MaxPool, Node, PartialRelu,
                          PartialReluRequantize, ReduceSum, Relu, Requantize, Reshape, Slice, SoftmaxFx, SoftmaxQ,
                          SumPool, Transpose)
from aiompc.party import Party
from aiompc.protocols.linear.matmul import STATE_KEY as SHARED_MATMUL_PLANS

__all__ = ["Category", "CATEGORIES", "NODE_CATEGORIES", "category_of", "layer_detail"]

Category = Literal["matmul", "softmax", "gelu", "layernorm", "rescale", "other"]
CATEGORIES: tuple[Category, ...] = ("matmul", "softmax", "gelu", "layernorm", "rescale", "other")
"""What a node computes, for reports that split bytes by function (module docstring)."""


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
