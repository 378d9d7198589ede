"""HE linear layers as two-party protocols on additive shares mod ``2^l``.

Protocols (async functions of a :class:`~aiompc.party.Party`, called by both roles with the same label;
the server alone passes weights):

* :func:`conv2d` — any ``C, H, W``, ``M``, kernel, stride, zero padding, groups (depthwise included);
* :func:`fc` — a vector or a batch of vectors (a constant-weight MatMul over tokens: the rows ``(batch·S, K)``);
* :func:`matmul_shared` — the product of two shared matrices (attention), cross terms by the fc engine
  (:mod:`~.matmul`; OT as an alternative through :data:`aiompc.protocols.products.CROSS_METHODS`);
* :func:`batchnorm` — per-channel affine when it is not folded into a convolution;
* :mod:`~aiompc.protocols.linear.local` — average / global pooling, residual add, public bias and scale,
  flatten / reshape: local on shares, no communication.

Structure (each module has one job):

* :mod:`~.tiling` — layer shapes and tilings, Cheetah's closed-form tile rule and fc block sizes;
* :mod:`~.encoding` — Cheetah's coefficient encodings (pure numpy, tested without HE);
* :mod:`~.layouts` — the generic view the protocol needs (units, input / output polynomials, positions);
* :mod:`~.plan` — :class:`LinearPlan` (layout + HE parameters + wire widths), the :class:`Planner`
  interface and Cheetah's planners;
* :mod:`~.quantized` — the ``quantized`` planner: cost-driven search over ``N``, ``q``, tiles and packing;
* :mod:`~.planners` — the planners by name (:data:`PLANNERS`, one explicit table);
* :mod:`~.costs` — the exact bytes of a plan (and a rough compute model), what the search minimises;
* :mod:`~.kronecker` — intra-coefficient (Kronecker) packing of input channels (approximate mode);
* :mod:`~.interleaved` — channel-interleaved conv layout (outputs on a ``2^k`` lattice, cheap to pack);
* :mod:`~.packed` — the message structure of output packing (``LinearPlan.output_packing``, quantized mode);
* :mod:`~.weight_cache` — prepared weight plaintexts kept per session and reused across samples;
* :mod:`~.plaintexts` — weight plaintexts in NTT form (sparse fast path);
* :mod:`~.engine` — the pipelined two-party flow, generic over the plan;
* :mod:`~.reference` — plaintext integer semantics (the test oracle).

Communication is recorded by the channel under the call's label (``f"{label}/tile{i}"`` per unit), plus
once per session the client's public key under ``"he-keys/<fingerprint>"`` and, for plans with output
packing, one Galois key per element under ``"he-galois/<fingerprint>/<g>"`` (setup bytes, apart from the layers).
"""

from aiompc.protocols.linear.batchnorm import batchnorm
from aiompc.protocols.linear.conv import conv2d, conv_plan
from aiompc.protocols.linear.fc import fc, fc_plan
from aiompc.protocols.linear.matmul import SharedMatmulPlan, matmul_shared, matmul_shared_plan
from aiompc.protocols.linear.plan import CheetahBaselinePlanner, CheetahPlanner, LinearPlan, Planner, make_plan
from aiompc.protocols.linear.planners import PLANNERS, planner_named
from aiompc.protocols.linear.quantized import QuantizedPlanner, choose_packing
from aiompc.protocols.linear.tiling import ConvShape, ConvTiling, MatmulShape, MatmulTiling

__all__ = [
    "conv2d",
    "conv_plan",
    "fc",
    "fc_plan",
    "matmul_shared",
    "matmul_shared_plan",
    "SharedMatmulPlan",
    "batchnorm",
    "LinearPlan",
    "Planner",
    "CheetahPlanner",
    "CheetahBaselinePlanner",
    "planner_named",
    "QuantizedPlanner",
    "choose_packing",
    "make_plan",
    "PLANNERS",
    "ConvShape",
    "ConvTiling",
    "MatmulShape",
    "MatmulTiling",
]
