"""Models exactly as torch's ONNX exporters write them (``examples/export_models.py`` made the files in
``tests/nn/data``; torch is not needed here): they import, Cheetah's fixed-point program of each agrees with
onnxruntime's float output (same argmax, max abs error <= 0.05), and the quantized program runs securely
bit for bit equal to the integer reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import aiompc
from aiompc.nn import load_onnx, quantize, run_float, run_int
from aiompc.nn.fixed_point import fixed_point
from aiompc.nn.ir import QGraph
from aiompc.nn.modes import EngineConfig, engine_config
from aiompc.nn.secure import run_secure



DATA = Path(__file__).parent / "data"
EXPORTS = ["lenet_dynamo", "lenet_script", "lenet_dynamo_dynamic", "resnet_dynamo", "resnet_script", "mobile_dynamo", "mobile_script",
           "mobile_script13"]
CHEETAH_TOLERANCE = 0.05
SECURE_SAMPLES = 2


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    return (np.load(DATA / "digits_sample.npy").astype(np.float64),
            np.load(DATA / "digits_calibration.npy").astype(np.float64))


def _onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime's float output, one sample at a time when the export fixed the batch size."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    if isinstance(sess.get_inputs()[0].shape[0], int):
        return np.concatenate([sess.run(None, {name: x[i:i + 1].astype(np.float32)})[0] for i in range(len(x))])
    return sess.run(None, {name: x.astype(np.float32)})[0]


async def _secure(graph: QGraph, xq: np.ndarray, config: EngineConfig) -> np.ndarray:
    meta = graph.without_weights()
    _, client = await aiompc.run_local(lambda p: run_secure(p, graph, batch=len(xq), config=config),
                                       lambda p: run_secure(p, meta, xq, config=config))
    return client.output


def test_the_exports_are_what_the_issue_is_about() -> None:
    ops = {name: {n.op_type for n in onnx.load(DATA / f"{name}.onnx").graph.node} for name in EXPORTS}
    assert {"Shape", "Gather", "Concat", "Reshape"} <= ops["lenet_script"]  # view(x.size(0), -1), dynamic batch
    assert "ReduceMean" in ops["resnet_dynamo"] and "BatchNormalization" in ops["resnet_script"]
    assert {"Pad", "ConstantOfShape", "Clip", "Sub", "Div"} <= ops["mobile_script"]
    opsets = {name: onnx.load(DATA / f"{name}.onnx").opset_import[0].version for name in EXPORTS}
    assert opsets["mobile_script13"] == 13 and min(opsets.values()) == 13 and max(opsets.values()) >= 18
    for name in ("lenet_script", "lenet_dynamo_dynamic"):
        dim = onnx.load(DATA / f"{name}.onnx").graph.input[0].type.tensor_type.shape.dim[0]
        assert dim.dim_param and not dim.HasField("dim_value")


@pytest.mark.parametrize("name", EXPORTS)
def test_float_import_equals_onnxruntime(name: str) -> None:
    x, _ = _inputs()
    fg = load_onnx(DATA / f"{name}.onnx")
    np.testing.assert_allclose(run_float(fg, x), _onnxruntime(DATA / f"{name}.onnx", x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", EXPORTS)
async def test_cheetah_mode_agrees_with_onnxruntime(name: str) -> None:
    x, _ = _inputs()
    want = _onnxruntime(DATA / f"{name}.onnx", x)
    graph = fixed_point(load_onnx(DATA / f"{name}.onnx"))
    plain = graph.dequantize_output(run_int(graph, graph.quantize_input(x)))
    assert np.array_equal(plain.argmax(1), want.argmax(1))
    assert np.abs(plain - want).max() <= CHEETAH_TOLERANCE
    xs = x[:SECURE_SAMPLES]
    cheetah = engine_config("cheetah", exact=False)  # Cheetah's own approximate truncation
    got = graph.dequantize_output(await _secure(graph, graph.quantize_input(xs), cheetah))
    assert np.array_equal(got.argmax(1), want[:SECURE_SAMPLES].argmax(1))
    assert np.abs(got - want[:SECURE_SAMPLES]).max() <= CHEETAH_TOLERANCE


@pytest.mark.parametrize("name", EXPORTS)
async def test_quantized_mode_is_bit_exact(name: str) -> None:
    x, calibration = _inputs()
    graph = quantize(load_onnx(DATA / f"{name}.onnx"), calibration)
    xq = graph.quantize_input(x[:SECURE_SAMPLES])
    assert np.array_equal(await _secure(graph, xq, EngineConfig()), run_int(graph, xq))
    # the w4a4 program still classifies like the float model on most samples (not a bit-exactness claim)
    agree = np.mean(graph.dequantize_output(run_int(graph, graph.quantize_input(x))).argmax(1)
                    == _onnxruntime(DATA / f"{name}.onnx", x).argmax(1))
    assert agree >= 0.75
