"""The built-in benchmark networks: architecture shapes (construction only for the big ones) and, for the
small ones, quantization to the stated widths and the integer reference running."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.nn.interpret import run_float, run_int
from aiompc.nn.ir import Conv, Linear
from aiompc.nn.networks import BENCH_CONFIG, NETWORKS, network, network_inputs, network_names, network_onnx
from aiompc.nn.onnx_import import load_onnx

# name: (input shape, classes, convs, fcs, adds, concats, maxpools, shape of the last conv's output)
ARCHITECTURES = {
    "resnet18": ((3, 32, 32), 100, 20, 1, 8, 0, 0, (512, 4, 4)),
    "resnet32": ((3, 32, 32), 10, 33, 1, 15, 0, 0, (64, 8, 8)),
    "minionn": ((3, 32, 32), 10, 7, 1, 0, 0, 0, (16, 8, 8)),
    "squeezenet": ((3, 224, 224), 1000, 26, 0, 0, 8, 3, (1000, 13, 13)),
    "resnet50": ((3, 224, 224), 1000, 53, 1, 16, 0, 1, (2048, 7, 7)),
}


def test_every_network_is_listed() -> None:
    """The CNNs here, the transformers in test_networks_transformer.py."""
    assert network_names() == list(ARCHITECTURES) + ["bert-tiny", "bert-base"]


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_shapes(name: str) -> None:
    shape, classes, convs, fcs, adds, concats, maxpools, last_conv = ARCHITECTURES[name]
    g = load_onnx(network_onnx(name))
    ops = [n.op for n in g.nodes]
    assert g.input_shape == shape == NETWORKS[name].input_shape
    assert np.prod(g.output_shape) == classes == NETWORKS[name].classes
    assert (ops.count("conv"), ops.count("gemm"), ops.count("add"), ops.count("concat"), ops.count("maxpool")) == (
        convs, fcs, adds, concats, maxpools)
    last = [n for n in g.nodes if n.op == "conv"][-1]
    assert g.shapes[last.output] == last_conv
    # the ResNets follow every conv by a batch-norm (folded later); MiniONN and SqueezeNet have biases
    assert ops.count("batchnorm") == (convs if name.startswith("resnet") else 0)


def test_resnet50_stage_shapes() -> None:
    """Bottleneck outputs: 256x56x56, 512x28x28, 1024x14x14, 2048x7x7 (the ImageNet ResNet-50)."""
    g = load_onnx(network_onnx("resnet50"))
    adds = [g.shapes[n.output] for n in g.nodes if n.op == "add"]
    assert adds == [(256, 56, 56)] * 3 + [(512, 28, 28)] * 4 + [(1024, 14, 14)] * 6 + [(2048, 7, 7)] * 3


def test_squeezenet_fire_concats() -> None:
    g = load_onnx(network_onnx("squeezenet"))
    cats = [g.shapes[n.output] for n in g.nodes if n.op == "concat"]
    assert cats == [(128, 55, 55)] * 2 + [(256, 27, 27)] * 2 + [(384, 13, 13)] * 2 + [(512, 13, 13)] * 2


def test_weights_are_seeded() -> None:
    a, b, c = (load_onnx(network_onnx("minionn", seed=s)) for s in (0, 0, 1))
    wa, wb, wc = (next(n for n in g.nodes if n.op == "conv").params["weight"] for g in (a, b, c))
    assert np.array_equal(wa, wb)
    assert not np.array_equal(wa, wc)
    assert np.array_equal(network_inputs("minionn", 2, seed=5), network_inputs("minionn", 2, seed=5))


def test_unknown_network() -> None:
    with pytest.raises(InputError, match="resnet18"):
        network_onnx("vgg16")


@pytest.mark.parametrize("name", ["minionn", "resnet32"])
def test_quantized_widths_and_reference(name: str) -> None:
    """Body w4a4, first/last layers 8-bit weights, 8-bit input; the integer graph tracks the float one."""
    g = network(name)
    linear = [n for n in g.nodes if isinstance(n, (Conv, Linear))]
    assert linear[0].weight_bits == BENCH_CONFIG.first_last_bits
    assert linear[-1].weight_bits == BENCH_CONFIG.first_last_bits
    assert {n.weight_bits for n in linear[1:-1]} == {BENCH_CONFIG.weight_bits}
    assert g.input_spec.bits == BENCH_CONFIG.input_bits
    body_inputs = {g.tensors[n.inputs[0]].bits for n in linear[1:-1]}
    assert body_inputs == {BENCH_CONFIG.act_bits}
    x = network_inputs(name, 3, seed=7)
    y = g.dequantize_output(run_int(g, g.quantize_input(x)))
    ref = run_float(load_onnx(network_onnx(name)), x).reshape(y.shape)
    assert y.shape == (3, NETWORKS[name].classes)
    # 4-bit quantization of a random deep network is coarse, but the logits must stay correlated
    assert np.corrcoef(y.reshape(-1), ref.reshape(-1))[0, 1] > 0.5
