"""The integer reference against an independent naive computation, bounds on every edge, and the
float reference against onnx's own reference evaluator."""

from __future__ import annotations

import numpy as np
import pytest
from nn_naive import run_naive
from onnx.reference import ReferenceEvaluator

from aiompc.errors import InputError
from aiompc.nn import ChannelAffine, Clip, QuantConfig, Relu, Requantize, load_onnx, quantize, run_float, run_int
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.testing import BLOCKS, random_network, random_qgraph


def _extreme_inputs(qg, rng: np.random.Generator, n: int) -> np.ndarray:
    """Random integer inputs, half of them pushed to the input range's ends."""
    s = qg.input_spec
    x = rng.integers(s.lo, s.hi + 1, (n, *s.shape))
    ends = rng.choice([s.lo, s.hi], x.shape)
    return np.where(rng.random(x.shape) < 0.5, ends, x)


@pytest.mark.parametrize("seed", range(6))
def test_run_int_equals_naive_python(seed: int) -> None:
    qg, net = random_qgraph(seed, input_shape=(2, 6, 6))
    rng = np.random.default_rng(seed)
    x = np.concatenate([qg.quantize_input(net.inputs[:2]), _extreme_inputs(qg, rng, 1)])
    got = run_int(qg, x)
    for i in range(len(x)):
        assert got[i].tolist() == run_naive(qg, x[i].tolist())


@pytest.mark.parametrize("config", [QuantConfig(), QuantConfig(weight_bits=2, act_bits=2, first_last_bits=None),
                                    QuantConfig(weight_bits=8, act_bits=8, rounding="floor", pow2_scales=True)])
def test_run_int_equals_naive_across_configs(config: QuantConfig) -> None:
    qg, net = random_qgraph(11, config, input_shape=(1, 6, 6), blocks=("residual", "concat", "avgpool", "depthwise"))
    x = qg.quantize_input(net.inputs[:2])
    got = run_int(qg, x)
    assert [got[i].tolist() for i in range(2)] == [run_naive(qg, s.tolist()) for s in x]


@pytest.mark.parametrize("seed", range(8))
def test_every_edge_stays_within_its_proven_bounds(seed: int) -> None:
    qg, net = random_qgraph(seed)
    rng = np.random.default_rng(100 + seed)
    x = np.concatenate([qg.quantize_input(net.inputs), _extreme_inputs(qg, rng, 64)])
    values = run_int(qg, x, collect=True)
    for name, spec in qg.tensors.items():
        v = values[name]
        assert v.dtype == np.int64 and v.shape[1:] == spec.shape
        assert spec.lo <= v.min() and v.max() <= spec.hi, name


@pytest.mark.parametrize("seed", range(4))
def test_float_interpreter_matches_onnx_reference_evaluator(seed: int) -> None:
    net = random_network(seed, blocks=BLOCKS)
    fg = load_onnx(net.model)
    want = ReferenceEvaluator(net.model).run(None, {"input": net.inputs.astype(np.float32)})[0]
    np.testing.assert_allclose(run_float(fg, net.inputs), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_quantized_model_tracks_the_float_model(seed: int) -> None:
    """w8a8 must be close to float; the default w4a4 must still be strongly correlated with it.
    (A calibration batch much larger than the test batch, so clipping of unseen extremes stays rare.)"""
    net = random_network(seed, test_size=32, calibration_size=256)
    fg = load_onnx(net.model)
    want = run_float(fg, net.inputs)
    for config, min_corr in ((QuantConfig(weight_bits=8, act_bits=8), 0.99), (QuantConfig(), 0.9)):
        qg = quantize(fg, net.calibration, config)
        got = qg.dequantize_output(run_int(qg, qg.quantize_input(net.inputs)))
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > min_corr


def test_run_int_rejects_bad_inputs() -> None:
    qg, net = random_qgraph(1)
    x = qg.quantize_input(net.inputs)
    with pytest.raises(InputError, match="integer"):
        run_int(qg, x.astype(np.float64))
    with pytest.raises(InputError, match="shape"):
        run_int(qg, x[:, :, :-1])
    with pytest.raises(InputError, match="range"):
        run_int(qg, x + (qg.input_spec.hi + 1))
    with pytest.raises(InputError, match="metadata"):
        run_int(qg.without_weights(), x)
    with pytest.raises(InputError, match="shape"):
        qg.quantize_input(net.inputs[:, :1, :3])
    with pytest.raises(InputError, match="NaN"):
        qg.quantize_input(np.full(net.inputs.shape, np.nan))


def test_standalone_relu_clip_and_affine_equal_naive() -> None:
    """Layers the default random networks do not produce: ReLU on the (signed) input, an unfoldable
    batch-norm (per-channel affine) and a Clip of a requantized tensor."""
    qg, net = random_qgraph(5, blocks=("affine", "maxpool"), input_shape=(2, 6, 6))
    kinds = {type(n) for n in qg.nodes}
    assert {ChannelAffine, Clip} <= kinds
    x = qg.quantize_input(net.inputs[:2])
    got = run_int(qg, x)
    assert [got[i].tolist() for i in range(2)] == [run_naive(qg, s.tolist()) for s in x]

    rng = np.random.default_rng(0)
    b = OnnxBuilder((2, 5, 5))
    h = b.clip(b.relu(b.input), None, 1.5)
    model = b.build(b.gemm(b.flatten(b.conv(h, rng.normal(0, 0.5, (3, 2, 3, 3)))), rng.normal(0, 0.5, (4, 27))))
    qg = quantize(load_onnx(model), rng.normal(0, 1, (64, 2, 5, 5)))
    assert {Relu, Clip} <= {type(n) for n in qg.nodes}
    x = qg.quantize_input(rng.normal(0, 1, (2, 2, 5, 5)))
    got = run_int(qg, x)
    assert [got[i].tolist() for i in range(2)] == [run_naive(qg, s.tolist()) for s in x]


@pytest.mark.parametrize("seed", range(3))
def test_requantize_product_width_holds_the_product(seed: int) -> None:
    qg, net = random_qgraph(seed)
    values = run_int(qg, qg.quantize_input(net.inputs), collect=True)
    for n in qg.nodes:
        if isinstance(n, Requantize):
            bits = n.product_bits(qg.tensors[n.inputs[0]])
            x = values[n.inputs[0]]
            m = n.channel_multipliers(x.shape[1]).reshape((1, -1) + (1,) * (x.ndim - 2))
            p = x * m + (1 << max(n.shift - 1, 0))
            assert -(1 << (bits - 1)) <= p.min() and p.max() < 1 << (bits - 1)
