"""QDQ models as onnxruntime's ``quantize_static`` writes them (asymmetric int8/uint8 activations, int8 or
uint8, per-tensor or per-channel weights) against onnxruntime's *unoptimized* evaluation of the same file.

Where the integer semantics agree (conv/gemm/max-pool/ReLU networks: every tensor between QDQ pairs) the
quantized program equals onnxruntime bit for bit.  Where they cannot (see :mod:`aiompc.nn.onnx_qdq`): an
operator onnxruntime leaves in float (the unfused BatchNormalization, the mean of a global average pool)
and the rounding of requantizations (float32 and half-to-even there, an exact accumulator times a
fixed-point multiplier, half-up here) may move a logit by a few LSB; the test states the bound measured
(on these models: at most 2 LSB, at least half the logits equal, the same argmax)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

import aiompc
from aiompc.nn import QuantConfig, load_onnx, quantize, run_int
from aiompc.nn.fixed_point import fixed_point
from aiompc.nn.ir import QGraph
from aiompc.nn.modes import EngineConfig
from aiompc.nn.secure import run_secure

DATA = Path(__file__).parent / "data"


class _Reader(CalibrationDataReader):
    def __init__(self, x: np.ndarray) -> None:
        self.batches = iter([{"x": x[i:i + 1].astype(np.float32)} for i in range(len(x))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def _qdq(tmp_path: Path, name: str, **options: object) -> tuple[Path, np.ndarray, np.ndarray]:
    """``quantize_static`` of an exported float model (defaults unless ``options``), the unoptimized
    onnxruntime output on the sample inputs, and those inputs."""
    calibration = np.load(DATA / "digits_calibration.npy")
    x = np.load(DATA / "digits_sample.npy").astype(np.float64)
    out = tmp_path / f"{name}_qdq.onnx"
    quantize_static(str(DATA / f"{name}.onnx"), str(out), _Reader(calibration), **options)  # type: ignore[arg-type]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x.astype(np.float32)})[0]
    return out, want, x


def _lsb(graph: QGraph, want: np.ndarray) -> np.ndarray:
    """onnxruntime's dequantized output in the integers of aiompc's output (``q - zero_point``)."""
    return np.rint(want / graph.output_spec.scale[0]).astype(np.int64)  # type: ignore[index]


async def _secure(graph: QGraph, xq: np.ndarray) -> np.ndarray:
    meta = graph.without_weights()
    _, client = await aiompc.run_local(lambda p: run_secure(p, graph, batch=len(xq), config=EngineConfig()),
                                       lambda p: run_secure(p, meta, xq, config=EngineConfig()))
    return client.output


@pytest.mark.parametrize("options", [
    {},  # the defaults: QDQ, int8 activations with zero point -128 after ReLUs, int8 per-tensor weights
    {"activation_type": QuantType.QUInt8, "per_channel": True},
    {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QUInt8},  # asymmetric weights too
])
async def test_quantize_static_lenet_is_bit_exact(tmp_path: Path, options: dict) -> None:
    path, want, x = _qdq(tmp_path, "lenet_script", **options)
    zero_points = [onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer
                   if t.name.endswith("zero_point")]
    assert any(np.any(z != 0) for z in zero_points)  # really asymmetric
    # every tensor is annotated: no calibration needed.  With the default 16-bit requantization multipliers
    # a value within 2^-16 (relative) of a rounding boundary may land one step apart (7 of the 160 logits
    # with uint8 weights); with 24-bit multipliers the integer program is onnxruntime's exactly
    default = quantize(load_onnx(path))
    assert np.abs(run_int(default, default.quantize_input(x)) - _lsb(default, want)).max() <= 1
    graph = quantize(load_onnx(path), config=QuantConfig(multiplier_bits=24))
    xq = graph.quantize_input(x)
    got = run_int(graph, xq)
    assert np.array_equal(got, _lsb(graph, want))
    assert np.array_equal(await _secure(graph, xq[:2]), got[:2])
    # --mode cheetah runs the float model the QDQ graph describes in Cheetah's fixed point: the ReLUs that
    # quantize_static fused into QDQ clamps (zero point at the bottom of the type) are ReLUs again
    fp = fixed_point(load_onnx(path))
    assert [n.op for n in fp.nodes].count("relu") == 4  # the three ReLUs and the input's clamp at 0
    assert np.mean(fp.dequantize_output(run_int(fp, fp.quantize_input(x))).argmax(1) == want.argmax(1)) >= 0.9


@pytest.mark.parametrize("name", ["resnet_script", "mobile_script"])
async def test_quantize_static_with_float_operators_agrees_within_two_lsb(tmp_path: Path, name: str) -> None:
    path, want, x = _qdq(tmp_path, name)
    calibration = np.load(DATA / "digits_calibration.npy").astype(np.float64)
    graph = quantize(load_onnx(path), calibration)  # the float BatchNormalization/affine needs calibration
    xq = graph.quantize_input(x)
    got = run_int(graph, xq)
    diff = np.abs(got - _lsb(graph, want))
    assert diff.max() <= 2 and np.mean(diff == 0) >= 0.5
    assert np.array_equal(got.argmax(1), want.argmax(1))
    assert np.array_equal(await _secure(graph, xq[:2]), got[:2])
