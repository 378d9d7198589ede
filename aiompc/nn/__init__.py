"""Model pipeline: ONNX import, float graph, post-training quantization, integer IR and its references.

Typical use::

    from aiompc.nn import load_onnx, quantize, run_int, run_float

    fg = load_onnx("model.onnx")                 # float graph (QDQ annotations kept)
    qg = quantize(fg, calibration=x_calib)       # integer IR (QGraph), validated
    y = run_int(qg, qg.quantize_input(x))        # exact integer reference (secure inference equals it)
    meta = qg.to_dict(include_weights=False)     # handshake metadata, no weights
"""

from __future__ import annotations

from aiompc.nn.bounds import heq_acc_bits, linear_channel_ranges, width_for_range
from aiompc.nn.graph import FloatGraph, FloatNode, fold_batchnorm
from aiompc.nn.interpret import predict, run_float, run_int
from aiompc.nn.ir import (Add, ChannelAffine, Clip, Concat, Conv, Flatten, Linear, MaxPool, Node, PartialRelu,
                          PartialReluRequantize, QGraph, Relu, Requantize, SumPool, TensorSpec)
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.quantize import QuantConfig, quantize

__all__ = [
    "FloatGraph", "FloatNode", "fold_batchnorm", "load_onnx", "QuantConfig", "quantize", "QGraph", "TensorSpec",
    "Node", "Conv", "Linear", "ChannelAffine", "Requantize", "Relu", "Clip", "MaxPool", "SumPool", "Add", "Concat",
    "Flatten", "PartialRelu", "PartialReluRequantize", "run_float", "run_int", "predict", "heq_acc_bits", "linear_channel_ranges", "width_for_range",
]
