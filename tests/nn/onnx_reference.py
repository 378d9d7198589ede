"""Helpers for the ONNX import tests: a model imported and run against onnx's reference evaluator, a model made
static at batch 1, a model built without onnx's checker (graphs the importer must refuse)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from aiompc.nn.interpret import run_float
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.onnx_import import load_onnx


def same_as_onnx(model: onnx.ModelProto, gen: np.random.Generator, batch: int = 3, *, tol: float = 1e-5,
                 same_shape: bool = True) -> list[str]:
    """Import ``model``, run it and onnx's reference evaluator on ``batch`` random samples (float32 for the
    reference, float64 for aiompc) and compare within ``tol``; returns the float ops.  ``same_shape=False``
    compares the values in row-major order (a batch-1 token tensor may drop or keep a leading axis of 1)."""
    fg = load_onnx(model)
    x = gen.standard_normal((batch, *fg.input_shape))
    want = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x.astype(np.float32)})[0]
    got = run_float(fg, x)
    if same_shape:
        assert got.shape == want.shape, (got.shape, want.shape)
    assert got.size == want.size, (got.shape, want.shape)
    if batch > 1:  # the batch axis stays first: each sample's result is its own
        assert got.shape[0] == batch
    np.testing.assert_allclose(got.reshape(want.shape), want, atol=tol, rtol=tol)
    return [n.op for n in fg.nodes]


def static_batch_1(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose input's batch axis is a static 1."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    return model


def build_unchecked(b: OnnxBuilder, out: str) -> onnx.ModelProto:
    """``b.build(out)`` without onnx's checker and shape inference (the checker wants the output's shape, which
    inference cannot give for graphs the importer must refuse, or for a Squeeze of unknown axes at a dynamic
    batch)."""
    inp = helper.make_tensor_value_info(b.input, TensorProto.FLOAT, ["N", *b.input_shape])
    outp = helper.make_tensor_value_info(out, TensorProto.FLOAT, None)
    graph = helper.make_graph(b.nodes, "t", [inp], [outp], initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", b.opset)])
    model.ir_version = min(model.ir_version, 10)
    return model
