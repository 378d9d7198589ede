"""Quantization: batch-norm folding, the numeric helpers, the scheme's bit widths, the demo model."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.nn import (Add, ChannelAffine, Conv, Linear, QuantConfig, Requantize, SumPool, fold_batchnorm, load_onnx,
                       predict, quantize, run_float, run_int)
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.quantize import calibrate_scale, fixed_point_multipliers, quantize_weights, rescale_multipliers
from aiompc.nn.testing import random_network, random_qgraph
from aiompc.nn.zoo import DIGITS_CONFIG, digits_data, digits_model, digits_report


# ----------------------------------------------------------------------------------- batch-norm


@pytest.mark.parametrize("seed", range(5))
def test_batchnorm_folding_preserves_the_float_function(seed: int) -> None:
    net = random_network(seed, blocks=("residual", "depthwise", "stride2"))
    fg = load_onnx(net.model)
    folded = fold_batchnorm(fg)
    assert sum(n.op == "batchnorm" for n in fg.nodes) == 3
    assert not any(n.op == "batchnorm" for n in folded.nodes)
    np.testing.assert_allclose(run_float(folded, net.inputs), run_float(fg, net.inputs), rtol=1e-9, atol=1e-9)
    assert any(n.op == "batchnorm" for n in fg.nodes)  # the input graph is left alone


def test_unfoldable_batchnorm_becomes_a_channel_affine() -> None:
    rng = np.random.default_rng(3)
    b = OnnxBuilder((3, 6, 6))
    h = b.maxpool(b.relu(b.conv(b.input, rng.normal(0, 0.5, (4, 3, 3, 3)), None, pads=1)), 2)
    h = b.relu(b.batchnorm(h, rng.uniform(-1.5, 1.5, 4), rng.normal(0, 0.3, 4), rng.normal(0, 0.3, 4),
                           rng.uniform(0.5, 2, 4)))
    model = b.build(b.gemm(b.flatten(h), rng.normal(0, 0.3, (3, 36))))
    fg = load_onnx(model)
    calib = rng.normal(0, 1, (256, 3, 6, 6))
    qg = quantize(fg, calib, QuantConfig(weight_bits=8, act_bits=8))
    aff, = [n for n in qg.nodes if isinstance(n, ChannelAffine)]
    assert aff.weight_bits == 8 and np.abs(aff.weight).max() == 127  # per-tensor symmetric, full range used
    x = rng.normal(0, 1, (32, 3, 6, 6))
    got = qg.dequantize_output(run_int(qg, qg.quantize_input(x)))
    want = run_float(fg, x)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99


# ----------------------------------------------------------------------------------- numerics


def test_fixed_point_multipliers(nprng: np.random.Generator) -> None:
    for bits in (4, 8, 16, 24):
        r = nprng.uniform(1e-4, 3.0, 10) * 2.0 ** nprng.integers(-10, 4)
        m, s = fixed_point_multipliers(r, bits)
        approx = np.asarray(m) / 2.0 ** s
        assert max(m) < 2 ** bits + 1 and 0 <= s <= 62
        # the largest ratio is represented to bits-1 bits of relative precision
        top = int(np.argmax(r))
        assert abs(approx[top] - r[top]) <= r[top] * 2.0 ** -(bits - 1)
        assert np.all(np.abs(approx - r) <= 2.0 ** -(s + 1) + 1e-18)
    assert fixed_point_multipliers(np.array([0.25, 0.25]), 16) == ((1,), 2)
    assert fixed_point_multipliers(np.array([4.0]), 16) == ((4,), 0)
    assert fixed_point_multipliers(np.array([0.5, 0.25]), 16) == ((2, 1), 2)


def test_rescale_multipliers(nprng: np.random.Generator) -> None:
    s1, s2 = nprng.uniform(0.01, 1, 6), nprng.uniform(0.01, 1, 6)
    m, common = rescale_multipliers([s1, s2], 8)
    for i, s in enumerate((s1, s2)):
        assert np.all(np.abs(m[i] * common - s) <= s * 2.0 ** -8)
    m, common = rescale_multipliers([np.full(3, 0.1), np.full(3, 0.1)], 8)
    assert m.tolist() == [[1, 1, 1], [1, 1, 1]] and np.allclose(common, 0.1)
    m, _ = rescale_multipliers([np.array([0.1]), np.array([0.4])], 8)
    assert m.tolist() == [[1], [4]]


def test_calibrate_scale(nprng: np.random.Generator) -> None:
    v = nprng.standard_t(3, 20000)
    err = {}
    for method in ("max", "mse"):
        s = calibrate_scale(v, 4, True, method)
        err[method] = np.mean((np.clip(np.rint(v / s), -8, 7) * s - v) ** 2)
    assert err["mse"] < err["max"]
    assert calibrate_scale(np.abs(v), 8, False, "max") == pytest.approx(np.abs(v).max() / 255)
    s = calibrate_scale(v, 4, True, "mse", pow2=True)
    assert s == 2.0 ** np.round(np.log2(s))
    assert calibrate_scale(np.zeros(5), 4, False) == 1.0


def test_quantize_weights(nprng: np.random.Generator) -> None:
    w = nprng.normal(0, 1, (5, 3, 3, 3))
    w[2] = 0
    q, s = quantize_weights(w, 4, per_channel=True)
    assert q.dtype == np.int64 and np.abs(q).max() == 7 and s[2] == 1.0 and not q[2].any()
    assert np.all(np.abs(q * s.reshape(-1, 1, 1, 1) - w) <= s.reshape(-1, 1, 1, 1) / 2 + 1e-12)
    q, s = quantize_weights(w, 8, per_channel=False)
    assert len(set(s)) == 1 and np.abs(q).max() == 127


# ----------------------------------------------------------------------------------- the scheme


def test_bit_widths_follow_the_scheme() -> None:
    qg, _ = random_qgraph(4)
    linear = [n for n in qg.nodes if isinstance(n, (Conv, Linear))]
    first, last = linear[0], linear[-1]
    assert first.inputs == (qg.input,) and (qg.input_spec.bits, qg.input_spec.signed) == (8, True)
    assert first.weight_bits == 8 and last.weight_bits == 8
    assert all(n.weight_bits == 4 and np.abs(n.weight).max() <= 7 for n in linear[1:-1])
    assert qg.tensors[last.inputs[0]].bits == 8
    assert qg.output_spec.per_tensor and qg.output == last.output  # logits share one scale
    for n in linear[1:-1]:
        x = qg.tensors[n.inputs[0]]
        assert (x.bits, x.signed) == (4, False) and x.per_tensor
    for n in qg.nodes:
        if isinstance(n, Requantize):
            assert qg.tensors[n.output].bits in (4, 8) and max(n.multiplier) <= 1 << 16


@pytest.mark.parametrize("seed", range(4))
def test_pow2_scales_make_requantization_a_shift(seed: int) -> None:
    """Power-of-two scales: every multiplier is a power of two, except where an average pool's window
    size is not (its 1/k^2 lives in the multiplier)."""
    qg, _ = random_qgraph(seed, QuantConfig(pow2_scales=True))

    def after_odd_pool(edge: str) -> bool:
        n = qg.producer(edge)
        while n is not None and n.op in ("flatten", "maxpool"):
            n = qg.producer(n.inputs[0])
        return isinstance(n, SumPool) and n.window & (n.window - 1) != 0

    checked = 0
    for n in qg.nodes:
        if isinstance(n, Requantize) and not after_odd_pool(n.inputs[0]):
            assert all(m & (m - 1) == 0 for m in n.multiplier), n
            checked += 1
        if isinstance(n, Add):
            assert all(m & (m - 1) == 0 for ms in n.multipliers for m in ms)
    assert checked >= 4


def _requantize_after(qg, edge: str) -> Requantize:  # type: ignore[no-untyped-def]
    for n in qg.consumers(edge):
        if isinstance(n, Requantize):
            return n
        if n.op == "flatten":
            return _requantize_after(qg, n.output)
    raise AssertionError(f"no requantization after {edge}")


def test_average_pool_is_a_sum_with_the_division_in_the_multiplier() -> None:
    qg, _ = random_qgraph(6, blocks=("avgpool", "stride2"), input_shape=(1, 8, 8))
    pools = [n for n in qg.nodes if isinstance(n, SumPool)]
    assert pools
    for pool in pools:
        np.testing.assert_allclose(qg.tensors[pool.output].channel_scales(),
                                   qg.tensors[pool.inputs[0]].channel_scales() / pool.window)
        rq = _requantize_after(qg, pool.output)
        ratio = qg.tensors[rq.inputs[0]].channel_scales() / qg.tensors[rq.output].scale[0]
        np.testing.assert_allclose(np.asarray(rq.channel_multipliers(len(ratio))) / 2.0 ** rq.shift, ratio, rtol=2e-4)


def test_concat_of_differently_scaled_inputs_then_requantize() -> None:
    """Concat keeps each input's scale per channel; the next requantization rescales channel by channel."""
    qg, net = random_qgraph(8, blocks=("concat",), input_shape=(2, 6, 6), head="flatten")
    cat = next(n for n in qg.nodes if n.op == "concat")
    ins = [qg.tensors[i] for i in cat.inputs]
    assert ins[0].scale != ins[1].scale
    out = qg.tensors[cat.output]
    assert out.channel_scales().tolist() == np.concatenate([t.channel_scales() for t in ins]).tolist()
    rq = _requantize_after(qg, cat.output)
    ratio = qg.tensors[rq.inputs[0]].channel_scales() / qg.tensors[rq.output].scale[0]
    assert len(set(rq.multiplier)) == 2
    np.testing.assert_allclose(rq.channel_multipliers(len(ratio)) / 2.0 ** rq.shift, ratio, rtol=2e-4)
    got = qg.dequantize_output(run_int(qg, qg.quantize_input(net.inputs)))
    assert np.corrcoef(got.ravel(), run_float(load_onnx(net.model), net.inputs).ravel())[0, 1] > 0.9


# ----------------------------------------------------------------------------------- the demo model


def test_digits_model_accuracy_matches_its_report() -> None:
    report = digits_report()
    data = digits_data(report["split"]["seed"], report["split"]["test_fraction"])
    assert report["quantization"] == DIGITS_CONFIG.to_dict()
    qg = digits_model(data=data)
    assert np.mean(predict(qg, data.x_test) == data.y_test) == report["quantized_accuracy"]
    assert np.mean(run_float(qg.float_graph, data.x_test).argmax(1) == data.y_test) == report["float_accuracy"]
    assert report["float_accuracy"] >= 0.95 and report["quantized_accuracy"] >= report["float_accuracy"] - 0.02
    assert [n.op for n in qg.float_graph.nodes].count("batchnorm") == 1  # folded during quantization
    assert not any(isinstance(n, ChannelAffine) for n in qg.nodes)
