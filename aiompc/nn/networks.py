"""The standard benchmark networks, built in: float ONNX graphs with seeded random weights, quantized.

================  ==========  ===========  =======  ==========================================================
name              input       classes      convs    structure
================  ==========  ===========  =======  ==========================================================
``resnet18``      3x32x32     100          20 + fc  CIFAR ResNet-18: 3x3 stem (64), 4 stages x 2 basic blocks
                                                    (64/128/256/512, stride 2 from stage 2 with 1x1 projection
                                                    shortcuts), global average pool, fc
``resnet32``      3x32x32     10           33 + fc  CIFAR ResNet-32 (He et al.): 3x3 stem (16), 3 stages x 5
                                                    basic blocks (16/32/64), 1x1 projection shortcuts
``minionn``       3x32x32     10           7 + fc   MiniONN's CIFAR-10 network: 3x3/64 convs, two 2x2 mean
                                                    pools, 1x1 convs to 16 channels, fc 1024 -> 10
``squeezenet``    3x224x224   1000         26       SqueezeNet v1.1: 3x3/2 stem, 3 max pools, 8 Fire modules
                                                    (1x1 squeeze, then 1x1 and 3x3 expand joined by Concat),
                                                    1x1 classifier conv, global average pool
``resnet50``      3x224x224   1000         53 + fc  ImageNet ResNet-50: 7x7/2 stem, 3x3/2 max pool, bottleneck
                                                    stages of 3/4/6/3 blocks (256/512/1024/2048), fc
================  ==========  ===========  =======  ==========================================================

and the transformers of :mod:`aiompc.nn.networks_transformer` (input: the client's token embeddings ``(S, H)``,
``S`` from ``seq``, default :data:`~aiompc.nn.networks_transformer.DEFAULT_SEQ`):

================  ==========  ===========  ==========================================================================
name              input       classes      structure
================  ==========  ===========  ==========================================================================
``bert-tiny``     S x 128     2            2 post-LN BERT layers, 2 heads, FFN 512, head on the first token
``bert-base``     S x 768     2            12 post-LN BERT layers, 12 heads, FFN 3072, head on the first token
================  ==========  ===========  ==========================================================================

ResNet-32's stage transitions use 1x1 projection shortcuts (option B) instead of the original's
zero-padding identity (option A), which the IR has no operator for: two extra small convolutions.
In the ResNets every convolution is followed by a batch-norm (folded into it by the quantizer); MiniONN
and SqueezeNet use convolutions with biases, as published.

The communication and time of secure inference depend on the shapes and bit widths, not on the weight
values — except that the quantized mode sizes each ring by the accumulator bound, which follows from the
sums of the integer weights; random weights give typical sums.  So random weights (He-normal, from
``numpy.random`` with a fixed seed: benchmark data, never a secret) give faithful costs.  :func:`network` quantizes the float graph with :data:`BENCH_CONFIG` — body
w4a4, first and last layers and the network input 8 bits, per-channel weights, power-of-two scales —
calibrated on :data:`CALIBRATION_SAMPLES` random normal inputs.  The Cheetah baseline of the benchmarks
evaluates the same float model (:func:`network_onnx`) as Cheetah does, in 12-bit fixed point
(:func:`aiompc.nn.fixed_point.fixed_point`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import onnx

from aiompc.errors import InputError
from aiompc.nn.ir import QGraph
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.networks_transformer import BERT_SHAPES, DEFAULT_SEQ, TokenNet, bert_body
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.quantize import QuantConfig, quantize

__all__ = ["NetworkSpec", "NETWORKS", "BENCH_CONFIG", "CALIBRATION_SAMPLES", "DEFAULT_SEQ", "network_names",
           "network_spec", "network_onnx", "network", "network_inputs"]

BENCH_CONFIG = QuantConfig(weight_bits=4, act_bits=4, input_bits=8, first_last_bits=8, pow2_scales=True)
"""Body w4a4, first/last layers 8 bits, 8-bit input, power-of-two scales: HEQuant's standard setting (its
authors' quantization code uses power-of-two scales, so every requantization is a shift by a few bits
rather than a 16-bit fixed-point multiplier and a shift by 20+ bits)."""
CALIBRATION_SAMPLES = 4


class _Net:
    """An :class:`OnnxBuilder` that tracks the current ``(C, H, W)`` and draws random layer parameters."""

    def __init__(self, rng: np.random.Generator, input_shape: tuple[int, int, int], name: str) -> None:
        self.rng = rng
        self.b = OnnxBuilder(input_shape, graph_name=name)
        self.c, self.h, self.w = input_shape

    def conv(self, x: str, out: int, k: int, stride: int = 1, pad: int | None = None, *, c_in: int | None = None,
             hw: tuple[int, int] | None = None, bias: bool = False) -> str:
        """A ``k x k`` convolution (He-normal weights); ``c_in``/``hw`` override the tracked input shape
        (for branches that start from an earlier tensor)."""
        c = self.c if c_in is None else c_in
        h, w = (self.h, self.w) if hw is None else hw
        pad = k // 2 if pad is None else pad
        weight = self.rng.normal(0.0, np.sqrt(2.0 / (c * k * k)), (out, c, k, k)).astype(np.float32)
        b = self.rng.normal(0.0, 0.05, out).astype(np.float32) if bias else None
        y = self.b.conv(x, weight, b, stride, pad)
        self.c, self.h, self.w = out, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        return y

    def bn(self, x: str) -> str:
        r, c = self.rng, self.c
        return self.b.batchnorm(x, r.uniform(0.5, 1.0, c), r.normal(0.0, 0.1, c), r.normal(0.0, 0.1, c),
                                r.uniform(0.8, 1.2, c))

    def conv_bn(self, x: str, out: int, k: int, stride: int = 1, pad: int | None = None, *, relu: bool = True,
                c_in: int | None = None, hw: tuple[int, int] | None = None) -> str:
        y = self.bn(self.conv(x, out, k, stride, pad, c_in=c_in, hw=hw))
        return self.b.relu(y) if relu else y

    def maxpool(self, x: str, k: int, stride: int, pad: int = 0) -> str:
        self.h = (self.h + 2 * pad - k) // stride + 1
        self.w = (self.w + 2 * pad - k) // stride + 1
        return self.b.maxpool(x, k, stride, pads=pad)

    def avgpool(self, x: str, k: int) -> str:
        self.h, self.w = self.h // k, self.w // k
        return self.b.avgpool(x, k, k)

    def head(self, x: str, classes: int) -> str:
        """Global average pool, flatten, fully connected layer to ``classes`` logits."""
        x = self.b.flatten(self.b.global_avgpool(x))
        w = self.rng.normal(0.0, np.sqrt(1.0 / self.c), (classes, self.c)).astype(np.float32)
        return self.b.gemm(x, w, self.rng.normal(0.0, 0.05, classes).astype(np.float32))

    # ------------------------------------------------------------------ blocks

    def basic_block(self, x: str, out: int, stride: int) -> str:
        """ResNet basic block: conv3x3-bn-relu, conv3x3-bn, shortcut (identity or 1x1/stride projection), add, relu."""
        c, hw = self.c, (self.h, self.w)
        y = self.conv_bn(x, out, 3, stride)
        y = self.conv_bn(y, out, 3, relu=False)
        return self._residual(y, x, out, stride, c, hw)

    def bottleneck(self, x: str, width: int, stride: int) -> str:
        """ResNet-50 bottleneck (stride on the 3x3, as torchvision): 1x1 down, 3x3, 1x1 up to ``4 * width``."""
        c, hw, out = self.c, (self.h, self.w), 4 * width
        y = self.conv_bn(x, width, 1, 1, 0)
        y = self.conv_bn(y, width, 3, stride)
        y = self.conv_bn(y, out, 1, 1, 0, relu=False)
        return self._residual(y, x, out, stride, c, hw)

    def _residual(self, y: str, x: str, out: int, stride: int, c: int, hw: tuple[int, int]) -> str:
        """``relu(y + shortcut(x))``: the shortcut is the identity, or a 1x1/``stride`` conv-bn projection of the
        block input ``x`` (``c`` channels, ``hw`` spatial) when the shape changes; the block's output shape stays."""
        if stride != 1 or c != out:
            shape = (self.c, self.h, self.w)
            x = self.conv_bn(x, out, 1, stride, 0, relu=False, c_in=c, hw=hw)
            self.c, self.h, self.w = shape
        return self.b.relu(self.b.add(y, x))

    def fire(self, x: str, squeeze: int, expand: int) -> str:
        """SqueezeNet Fire module: 1x1 squeeze + ReLU, then 1x1 and 3x3 expands (+ ReLU) concatenated."""
        s = self.b.relu(self.conv(x, squeeze, 1, bias=True))
        left = self.b.relu(self.conv(s, expand, 1, bias=True))
        right = self.b.relu(self.conv(s, expand, 3, bias=True, c_in=squeeze))
        self.c = 2 * expand
        return self.b.concat([left, right])


# ---------------------------------------------------------------------- architectures


def _cifar_resnet(net: _Net, stem: int, widths: tuple[int, ...], blocks: int, classes: int) -> str:
    x = net.conv_bn(net.b.input, stem, 3)
    for stage, width in enumerate(widths):
        for i in range(blocks):
            x = net.basic_block(x, width, 2 if stage > 0 and i == 0 else 1)
    return net.head(x, classes)


def _resnet18(net: _Net) -> str:
    return _cifar_resnet(net, 64, (64, 128, 256, 512), 2, 100)


def _resnet32(net: _Net) -> str:
    return _cifar_resnet(net, 16, (16, 32, 64), 5, 10)


def _minionn(net: _Net) -> str:
    b = net.b
    x = b.relu(net.conv(b.input, 64, 3, bias=True))
    x = b.relu(net.conv(x, 64, 3, bias=True))
    x = net.avgpool(x, 2)
    x = b.relu(net.conv(x, 64, 3, bias=True))
    x = b.relu(net.conv(x, 64, 3, bias=True))
    x = net.avgpool(x, 2)
    x = b.relu(net.conv(x, 64, 3, bias=True))
    x = b.relu(net.conv(x, 64, 1, bias=True))
    x = b.relu(net.conv(x, 16, 1, bias=True))
    feats = net.c * net.h * net.w
    w = net.rng.normal(0.0, np.sqrt(1.0 / feats), (10, feats)).astype(np.float32)
    return b.gemm(b.flatten(x), w, net.rng.normal(0.0, 0.05, 10).astype(np.float32))


def _squeezenet(net: _Net) -> str:
    b = net.b
    x = b.relu(net.conv(b.input, 64, 3, 2, 0, bias=True))
    x = net.maxpool(x, 3, 2)
    x = net.fire(net.fire(x, 16, 64), 16, 64)
    x = net.maxpool(x, 3, 2)
    x = net.fire(net.fire(x, 32, 128), 32, 128)
    x = net.maxpool(x, 3, 2)
    for squeeze, expand in ((48, 192), (48, 192), (64, 256), (64, 256)):
        x = net.fire(x, squeeze, expand)
    x = b.relu(net.conv(x, 1000, 1, bias=True))
    return b.flatten(b.global_avgpool(x))


def _resnet50(net: _Net) -> str:
    x = net.conv_bn(net.b.input, 64, 7, 2, 3)
    x = net.maxpool(x, 3, 2, 1)
    for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
        for i in range(blocks):
            x = net.bottleneck(x, width, 2 if stage > 0 and i == 0 else 1)
    return net.head(x, 1000)


@dataclass(frozen=True)
class NetworkSpec:
    """A built-in network: its per-sample input shape, classes, the data set whose shapes it uses, a one-line
    description and the function that emits its layers on a ``builder``.

    Two kinds: image networks (``input_shape`` ``(C, H, W)``, layers emitted on a :class:`_Net`) and token
    networks (``sequence=True``: ``input_shape`` ``(S, H)`` with ``S`` the default sequence length, layers
    emitted on a :class:`~aiompc.nn.networks_transformer.TokenNet`; :meth:`shape` gives another ``S``)."""

    name: str
    input_shape: tuple[int, ...]
    classes: int
    dataset: str
    description: str
    body: Callable[[Any], str]
    builder: Callable[[np.random.Generator, tuple[int, ...], str], Any] = _Net
    sequence: bool = False

    def shape(self, seq: int | None = None) -> tuple[int, ...]:
        """The per-sample input shape; ``seq`` (token networks only) replaces the default sequence length."""
        if seq is None:
            return self.input_shape
        if not self.sequence:
            raise InputError(f"--seq applies to the transformer networks; {self.name} takes images of shape "
                             f"{self.input_shape}")
        if seq < 1:
            raise InputError(f"the sequence length must be at least 1, got {seq}")
        return (int(seq), *self.input_shape[1:])

    def label(self, seq: int | None = None) -> str:
        """The name results carry: the network's, with ``:seq<S>`` for a token network (its costs depend on S)."""
        shape = self.shape(seq)
        return f"{self.name}:seq{shape[0]}" if self.sequence else self.name


def _bert(name: str, description: str) -> NetworkSpec:
    shape = BERT_SHAPES[name]
    return NetworkSpec(name, (DEFAULT_SEQ, shape.hidden), shape.classes, "token embeddings (random)", description,
                       bert_body(shape), TokenNet, sequence=True)


NETWORKS: dict[str, NetworkSpec] = {s.name: s for s in (
    NetworkSpec("resnet18", (3, 32, 32), 100, "CIFAR-100", "ResNet-18 (CIFAR variant, 3x3 stem)", _resnet18),
    NetworkSpec("resnet32", (3, 32, 32), 10, "CIFAR-10", "ResNet-32 (He et al., 3 stages x 5 blocks)", _resnet32),
    NetworkSpec("minionn", (3, 32, 32), 10, "CIFAR-10", "MiniONN's CIFAR-10 CNN (7 convs, 2 mean pools, fc)", _minionn),
    NetworkSpec("squeezenet", (3, 224, 224), 1000, "ImageNet", "SqueezeNet v1.1 (8 Fire modules)", _squeezenet),
    NetworkSpec("resnet50", (3, 224, 224), 1000, "ImageNet", "ResNet-50 (bottleneck 3/4/6/3)", _resnet50),
    _bert("bert-tiny", "BERT-tiny encoder (2 layers, hidden 128, 2 heads, FFN 512)"),
    _bert("bert-base", "BERT-base encoder (12 layers, hidden 768, 12 heads, FFN 3072)"),
)}


def network_names() -> list[str]:
    """The built-in networks' names: the CNNs smallest first, then the transformers."""
    return list(NETWORKS)


def network_spec(name: str) -> NetworkSpec:
    """The :class:`NetworkSpec` of built-in network ``name`` (case-insensitive); :class:`InputError` if unknown."""
    try:
        return NETWORKS[name.lower()]
    except KeyError:
        raise InputError(f"unknown network {name!r}; built in: {', '.join(NETWORKS)} (or pass an .onnx file)") from None


def network_onnx(name: str, seed: int = 0, *, seq: int | None = None) -> onnx.ModelProto:
    """The float ONNX model of built-in network ``name`` with random weights from ``seed`` (He-normal for
    the CNNs, :mod:`~aiompc.nn.networks_transformer` for the transformers); ``seq``: a token network's
    sequence length (default :data:`DEFAULT_SEQ`)."""
    spec = network_spec(name)
    net = spec.builder(np.random.default_rng(seed), spec.shape(seq), spec.name)
    return net.b.build(spec.body(net))


def network_inputs(name: str, n: int, seed: int = 1, *, seq: int | None = None) -> np.ndarray:
    """``n`` random float inputs ``(n, *input_shape)`` for network ``name`` (standard normal: like normalised
    images, or like token embeddings after BERT's embedding LayerNorm)."""
    spec = network_spec(name)
    return np.random.default_rng(seed).normal(0.0, 1.0, (n, *spec.shape(seq)))


def network(name: str, *, seed: int = 0, config: QuantConfig = BENCH_CONFIG,
            calibration_samples: int = CALIBRATION_SAMPLES, seq: int | None = None) -> QGraph:
    """Built-in network ``name`` quantized with ``config`` (default :data:`BENCH_CONFIG`), calibrated on
    ``calibration_samples`` random inputs (seed ``seed + 1000``)."""
    model = network_onnx(name, seed, seq=seq)
    calibration = network_inputs(name, calibration_samples, seed + 1000, seq=seq)
    return quantize(load_onnx(model), calibration, config)
