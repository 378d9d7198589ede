"""Cheetah's fixed-point graph (:mod:`aiompc.nn.fixed_point`): it tracks the float model, has Cheetah's
layer order (ReLU before an MSB-known truncation, no clip), runs in the engine's ``cheetah`` mode equal
to :func:`run_int` bit for bit (exact truncation) and, with Cheetah's approximate truncation, every
truncation is at most one LSB low and every other layer exact on what it received."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import aiompc
from aiompc import ring
from aiompc.errors import UnsupportedModel
from aiompc.nn.graph import FloatGraph, FloatNode, fold_batchnorm
from aiompc.nn.interpret import eval_node, run_float, run_int
from aiompc.nn.fixed_point import fixed_point
from aiompc.nn.ir import Add, Conv, Linear, QGraph, Relu, Requantize, SumPool
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.modes import EngineConfig, engine_config, mode_named
from aiompc.nn.rings import plan_rings
from aiompc.nn.secure import SecureResult, run_secure
from aiompc.nn.testing import random_network

F = 12


def tiny_cnn(seed: int = 0) -> tuple[FloatGraph, np.ndarray]:
    """conv-bn-relu, max-pool, conv-relu, residual conv-bn + add + relu, global average pool, fc."""
    rng = np.random.default_rng(seed)
    b = OnnxBuilder((2, 8, 8), graph_name="tiny")

    def conv(x: str, o: int, c: int, k: int = 3) -> str:
        return b.conv(x, rng.normal(0, np.sqrt(2 / (c * k * k)), (o, c, k, k)), rng.normal(0, 0.1, o), 1, k // 2)

    def bn(x: str, c: int) -> str:
        return b.batchnorm(x, rng.uniform(0.6, 1.4, c), rng.normal(0, 0.1, c), rng.normal(0, 0.2, c),
                           rng.uniform(0.5, 1.5, c))

    x = b.maxpool(b.relu(bn(conv(b.input, 4, 2), 4)), 2, 2)
    x = b.relu(conv(x, 4, 4))
    x = b.relu(b.add(bn(conv(x, 4, 4), 4), x))
    y = b.gemm(b.flatten(b.global_avgpool(x)), rng.normal(0, 0.5, (3, 4)), rng.normal(0, 0.1, 3))
    return load_onnx(b.build(y)), rng.normal(0, 1, (4, 2, 8, 8))


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


# --------------------------------------------------------------------------- plaintext


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_networks_track_the_float_model(seed: int) -> None:
    net = random_network(seed, blocks=("residual", "stride2", "depthwise", "maxpool", "concat", "avgpool", "affine"))
    fg = load_onnx(net.model)
    g = fixed_point(fg)
    got = g.dequantize_output(run_int(g, g.quantize_input(net.inputs)))
    assert relative_error(got, run_float(fg, net.inputs)) < 1e-2  # 12 fractional bits: measured ~1e-3
    coarse = fixed_point(fg, frac_bits=4)  # the error is the fixed point's: fewer bits, larger error
    worse = coarse.dequantize_output(run_int(coarse, coarse.quantize_input(net.inputs)))
    assert relative_error(worse, run_float(fg, net.inputs)) > relative_error(got, run_float(fg, net.inputs))


def test_tiny_cnn_layers_scales_and_weights() -> None:
    fg, x = tiny_cnn()
    g = fixed_point(fg)
    assert g.float_graph is fg
    ops = [n.op for n in g.nodes]
    assert ops == ["conv", "relu", "maxpool", "requantize", "conv", "relu", "requantize", "conv", "add", "relu",
                   "sumpool", "requantize", "flatten", "linear"]
    # the input is round(x * 2^12); the output the fc accumulator at 2^-24
    assert np.array_equal(g.quantize_input(x), np.rint(x * 2.0 ** F).astype(np.int64))
    assert g.input_spec.scale == (2.0 ** -F,) and g.output_spec.scale == (2.0 ** (-2 * F),)
    convs = [n for n in g.nodes if isinstance(n, (Conv, Linear))]
    ref = fold_batchnorm(fg).nodes[0].params  # conv + batch-norm folded as the quantizer folds it
    assert not np.array_equal(ref["weight"], fg.nodes[0].params["weight"])
    assert np.array_equal(convs[0].weight, np.rint(ref["weight"] * 2.0 ** F))
    assert np.array_equal(convs[0].bias, np.rint(ref["bias"] * 2.0 ** (2 * F)))
    for n in convs:  # weight widths are the rounded weights' real signed widths
        top = int(np.abs(n.weight).max())
        assert top < 1 << (n.weight_bits - 1) and top >= 1 << (n.weight_bits - 2)
    # truncations: multiplier 1, shift 12, floor, bounds the whole 37-bit ring (nothing clipped)
    truncs = [n for n in g.nodes if isinstance(n, Requantize) and n.name.startswith("trunc:")]
    assert len(truncs) == 2
    for n in truncs:
        assert (n.multiplier, n.shift, n.rounding, n.lo, n.hi) == ((1,), F, "floor", -(1 << 36), (1 << 36) - 1)
    # the residual add takes the block input at 2^-24 (no truncation of the shortcut) and the conv output
    (add,) = [n for n in g.nodes if isinstance(n, Add)]
    assert add.multipliers == ((1,), (1,))
    assert g.producer(add.inputs[1]).op == "relu"
    # global average pool of 4x4 values at 2^-24 down to 2^-12: a shift by 12 + 4
    (scale,) = [n for n in g.nodes if isinstance(n, Requantize) and n.name.endswith(":scale")]
    assert (scale.multiplier, scale.shift) == ((1,), 16) and isinstance(g.producer(scale.inputs[0]), SumPool)
    assert relative_error(g.dequantize_output(run_int(g, g.quantize_input(x))), run_float(fg, x)) < 1e-2


def test_every_truncation_follows_a_relu_and_has_its_msb_known() -> None:
    """What makes the truncations Cheetah's cheap ones: the engine passes msb_known_zero=True when the
    truncated edge is unsigned and narrower than its 37-bit ring."""
    fg, _ = tiny_cnn()
    g = fixed_point(fg)
    rings = plan_rings(g, mode_named("cheetah", exact=False))
    assert set(rings.edges.values()) == {37} and not rings.folds
    assert g.without_weights().nodes[0].op == "conv"  # the metadata view validates
    for n in g.nodes:
        if isinstance(n, Requantize):
            src = g.tensors[n.inputs[0]]
            assert not src.signed and src.bits < rings.edges[n.inputs[0]], n.name
            assert g.tensors[n.output].lo == -1  # an approximate truncation may be one LSB low


def test_mixed_scales_concat_and_add() -> None:
    # a concat of a 2^-24 ReLU output and the 2^-12 input truncates the former; an add rescales the latter
    rng = np.random.default_rng(4)
    b = OnnxBuilder((2, 4, 4))
    r = b.relu(b.conv(b.input, rng.normal(0, 0.5, (2, 2, 1, 1)), rng.normal(0, 0.1, 2)))
    y = b.add(b.concat([r, b.input]), b.conv(b.input, rng.normal(0, 0.5, (4, 2, 1, 1)), rng.normal(0, 0.1, 4)))
    fg = load_onnx(b.build(b.flatten(y)))
    g = fixed_point(fg)
    assert [n.op for n in g.nodes] == ["conv", "relu", "requantize", "concat", "conv", "add", "flatten"]
    (add,) = [n for n in g.nodes if isinstance(n, Add)]
    assert add.multipliers == ((1 << F,), (1,))
    x = rng.normal(0, 1, (3, 2, 4, 4))
    assert relative_error(g.dequantize_output(run_int(g, g.quantize_input(x))), run_float(fg, x)) < 1e-3


def test_unsupported_models_and_settings() -> None:
    fg, _ = tiny_cnn()
    with pytest.raises(UnsupportedModel, match="frac_bits"):
        fixed_point(fg, frac_bits=18)
    odd = fg.copy()
    odd.nodes[1] = FloatNode("mystery", "sm", odd.nodes[1].inputs, odd.nodes[1].output)
    with pytest.raises(UnsupportedModel, match="no fixed-point form"):
        fixed_point(odd)
    huge = fg.copy()
    huge.nodes[0].params["weight"] = huge.nodes[0].params["weight"] * 2.0 ** 25
    with pytest.raises(UnsupportedModel, match="bits at 12 fractional bits"):
        fixed_point(huge)


# --------------------------------------------------------------------------- secure, cheetah mode


async def _secure(graph: QGraph, xq: np.ndarray, config: EngineConfig) -> tuple[SecureResult, SecureResult]:
    meta = graph.without_weights()
    return await aiompc.run_local(
        lambda p: run_secure(p, graph, batch=len(xq), config=config, keep_shares=True),
        lambda p: run_secure(p, meta, xq, config=config, keep_shares=True))


@pytest.mark.parametrize("seed", [0, 1])
async def test_secure_exact_equals_the_reference(seed: int) -> None:
    net = random_network(seed)
    g = fixed_point(load_onnx(net.model))
    xq = g.quantize_input(net.inputs[:2])
    _, client = await _secure(g, xq, engine_config("cheetah", exact=True))
    assert np.array_equal(client.output, run_int(g, xq))


async def test_secure_approx_truncation_is_one_lsb_low_at_most() -> None:
    """Cheetah's truncation: node by node, each requantization is 0 or 1 LSB below the exact one on the
    value it received, every other node exact; end to end the logits stay within 1% of the largest
    (measured ~0.1%) and of the float model."""
    fg, x = tiny_cnn(1)
    g = fixed_point(fg)
    xq = g.quantize_input(x)
    config = engine_config("cheetah", exact=False)
    server, client = await _secure(g, xq, config)
    assert server.shares is not None and client.shares is not None
    value = {e: ring.to_signed(ring.reconstruct(server.shares[e], client.shares[e], 37), 37) for e in g.tensors}
    errors: Counter[int] = Counter()
    for node in g.nodes:
        want = eval_node(node, [value[e] for e in node.inputs], g)
        if isinstance(node, Requantize):
            errors.update((value[node.output] - want).ravel().tolist())
        else:
            assert np.array_equal(value[node.output], want), node.name
    assert set(errors) == {-1, 0}  # the dropped carry: one LSB low, and it happens
    reference = run_int(g, xq)
    assert np.array_equal(client.output, value[g.output])
    assert 0 < np.max(np.abs(client.output - reference)) < 0.01 * np.max(np.abs(reference))
    assert relative_error(g.dequantize_output(client.output), run_float(fg, x)) < 1e-2


def test_relu_node_is_not_duplicated_on_non_negative_values() -> None:
    # relu(relu(x)): the second ReLU cuts nothing off and emits nothing
    rng = np.random.default_rng(2)
    b = OnnxBuilder((1, 4, 4))
    y = b.relu(b.relu(b.conv(b.input, rng.normal(0, 0.5, (2, 1, 3, 3)), None, 1, 1)))
    g = fixed_point(load_onnx(b.build(y)))
    assert [type(n) for n in g.nodes] == [Conv, Relu]
