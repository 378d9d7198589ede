"""Non-linear two-party protocols on secret shares (Cheetah / CrypTFlow2 style, OT-based).

Every protocol is an ``async`` function of a :class:`~aiompc.party.Party`, called by both parties with
the same deterministic ``label``, vectorised over numpy arrays of shares (``uint64`` mod ``2^l``,
``l <= 64``; Boolean shares are ``uint8`` XOR shares).  Correlated OTs come from :mod:`aiompc.protocols.ot`,
so the OT engine (IKNP now, silent OT later) is swapped without touching this package.

* :mod:`.boolean` — AND (bit triples), B2A, multiplexer, cross products of held bits
* :mod:`.millionaire` — batched millionaire comparison (digit leaves by 1-of-2^m OT, AND tree)
* :mod:`.relu` — DReLU, ReLU
* :mod:`.partial_relu` — ReLU on the elements a public mask keeps (SNL / SENet), plain or fused into a requantization
* :mod:`.truncation` — exact and approximate truncation, known-MSB shortcuts
* :mod:`.extension` — ring extension and reduction
* :mod:`.requantize` — clip(round(x·M / 2^s), lo, hi) into a chosen output ring
* :mod:`.pooling` — max-pool, argmax
* :mod:`.lookup` — exact table look-up of any function of a ``k``-bit shared value (``k <= 8``)
* :mod:`.softmax` — the quantized Softmax, bit for bit :func:`aiompc.qmath.softmax_int`
* :mod:`.multiply` — products of shares (Gilboa by correlated OT; narrow operands by their public width)
* :mod:`.layernorm` — quantized LayerNorm and GELU, bit for bit as :mod:`aiompc.qmath`
* :mod:`.iron` — Iron's fixed-point Softmax, GELU, LayerNorm (the ``cheetah`` baseline; blocks in :mod:`.iron_blocks`)
"""

from aiompc.protocols.nonlinear.boolean import and_, b2a, cross_and, cross_or, mux
from aiompc.protocols.nonlinear.extension import change_ring, extend, reduce_ring
from aiompc.protocols.nonlinear.layernorm import gelu_q, layernorm_q
from aiompc.protocols.nonlinear.iron import gelu_fx, layernorm_fx, softmax_fx
from aiompc.protocols.nonlinear.lookup import lookup
from aiompc.protocols.nonlinear.multiply import multiply, multiply_private, square
from aiompc.protocols.nonlinear.millionaire import CompareTask, compare_batch, millionaire
from aiompc.protocols.nonlinear.partial_relu import partial_relu, partial_relu_requantize
from aiompc.protocols.nonlinear.pooling import argmax, max_reduce, maxpool2d
from aiompc.protocols.nonlinear.relu import drelu, drelu_shifted, relu
from aiompc.protocols.nonlinear.requantize import requantize
from aiompc.protocols.nonlinear.softmax import softmax_q
from aiompc.protocols.nonlinear.truncation import truncate

__all__ = [
    "and_",
    "b2a",
    "cross_and",
    "cross_or",
    "mux",
    "millionaire",
    "compare_batch",
    "CompareTask",
    "drelu",
    "drelu_shifted",
    "relu",
    "partial_relu",
    "partial_relu_requantize",
    "truncate",
    "extend",
    "reduce_ring",
    "change_ring",
    "requantize",
    "maxpool2d",
    "max_reduce",
    "argmax",
    "lookup",
    "softmax_fx",
    "gelu_fx",
    "layernorm_fx",
    "multiply",
    "multiply_private",
    "square",
    "softmax_q",
    "layernorm_q",
    "gelu_q",
]
