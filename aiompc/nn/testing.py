"""Random small CNNs as ONNX models, for tests of the reference and of secure inference.

Each network is a stem convolution, a sequence of blocks and a classifier head.  By default the block
sequence contains every feature the secure engine must handle — a residual block (two convs with
batch-norm and an identity ``Add``), a stride-2 convolution, a depthwise-separable block (depthwise
3x3, batch-norm, ReLU6, pointwise 1x1), a max-pool and a two-branch ``Concat`` — in random order, plus
sometimes an average pool; the head is global-average-pool or flatten, then a ``Gemm``.  On request,
an ``"affine"`` block (a batch-norm that cannot be folded, then ReLU and a Clip) exercises the
per-channel affine layer and the standalone integer Clip, and a ``"partial"`` block (a residual block whose
ReLUs are partial, SNL / SENet style: random per-element and per-channel 0/1 masks in the three exported
forms, one partial ReLU right after another) exercises the partial ReLU.

Test data only: the generator is ``numpy.random`` (never used for protocol secrets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import onnx

from aiompc.errors import InputError
from aiompc.nn.ir import QGraph
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.quantize import QuantConfig, quantize

__all__ = ["BLOCKS", "RandomNet", "random_network", "random_qgraph"]

BLOCKS = ("residual", "stride2", "depthwise", "maxpool", "concat", "avgpool", "affine", "partial")
REQUIRED = ("residual", "stride2", "depthwise", "maxpool", "concat")


@dataclass(frozen=True)
class RandomNet:
    """A random network: the ONNX model, its per-sample input shape, a calibration batch, a test batch
    and the block sequence it was built from."""

    model: onnx.ModelProto
    input_shape: tuple[int, int, int]
    calibration: np.ndarray
    inputs: np.ndarray
    blocks: tuple[str, ...]


class _Gen:
    def __init__(self, rng: np.random.Generator, b: OnnxBuilder, shape: tuple[int, int, int]) -> None:
        self.rng, self.b = rng, b
        self.c, self.h, self.w = shape

    def weight(self, o: int, cg: int, k: int) -> np.ndarray:
        return self.rng.normal(0.0, np.sqrt(2.0 / (cg * k * k)), (o, cg, k, k)) * self.rng.uniform(0.7, 1.3)

    def bias(self, o: int) -> np.ndarray:
        return self.rng.normal(0.0, 0.1, o)

    def bn(self, x: str, c: int) -> str:
        r = self.rng
        return self.b.batchnorm(x, r.uniform(0.6, 1.4, c), r.normal(0, 0.1, c), r.normal(0, 0.2, c),
                                r.uniform(0.5, 1.5, c))

    def conv(self, x: str, o: int, k: int, stride: int = 1, groups: int = 1, bias: bool = True) -> str:
        pad = k // 2
        y = self.b.conv(x, self.weight(o, self.c // groups, k), self.bias(o) if bias else None, stride, pad, groups)
        self.c = o
        self.h = (self.h + 2 * pad - k) // stride + 1
        self.w = (self.w + 2 * pad - k) // stride + 1
        return y

    def width(self) -> int:
        return int(self.rng.integers(2, 7))

    def block(self, kind: str, x: str) -> str:
        b, c = self.b, self.c
        if kind == "residual":
            y = b.relu(self.bn(self.conv(x, c, 3, bias=False), c))
            y = self.bn(self.conv(y, c, 3, bias=False), c)
            return b.relu(b.add(y, x))
        if kind == "partial":
            forms = ("sub", "mul", "where")
            form = lambda: forms[int(self.rng.integers(3))]  # noqa: E731
            y = self.bn(self.conv(x, c, 3, bias=False), c)
            y = b.partial_relu(y, self.rng.random((1, c, self.h, self.w)) < 0.5, form())
            y = b.partial_relu(y, self.rng.random((c, 1, 1)) < 0.5, form())
            y = self.bn(self.conv(y, c, 3, bias=False), c)
            return b.partial_relu(b.add(y, x), self.rng.random((c, self.h, self.w)) < 0.5, form())
        if kind == "stride2":
            return b.relu(self.conv(x, self.width(), 3, stride=2))
        if kind == "depthwise":
            y = b.clip(self.bn(self.conv(x, c, 3, groups=c, bias=False), c), 0.0, 6.0)
            return b.relu(self.conv(y, self.width(), 1))
        if kind == "maxpool":
            if self.rng.random() < 0.5:
                self.h, self.w = self.h // 2, self.w // 2
                return b.maxpool(x, 2, 2)
            self.h, self.w = (self.h - 1) // 2 + 1, (self.w - 1) // 2 + 1
            return b.maxpool(x, 3, 2, pads=1)
        if kind == "affine":
            return b.clip(b.relu(self.bn(x, c)), 0.0, 1.0)
        if kind == "avgpool":
            self.h, self.w = self.h // 2, self.w // 2
            return b.avgpool(x, 2, 2)
        if kind == "concat":
            h, w = self.h, self.w
            left = b.relu(self.conv(x, self.width(), 1))
            cl = self.c
            self.c, self.h, self.w = c, h, w
            right = b.relu(self.conv(x, self.width(), 3))
            self.c += cl
            return b.concat([left, right])
        raise InputError(f"unknown block {kind!r}; choose from {BLOCKS}")


def random_network(seed: int, *, blocks: Sequence[str] | None = None, input_shape: tuple[int, int, int] | None = None,
                   head: str | None = None, classes: int = 5, calibration_size: int = 32,
                   test_size: int = 4) -> RandomNet:
    """A random CNN (see the module docstring) and random normal input batches, all from ``seed``.

    ``blocks``: the block sequence (default: every required feature once, shuffled, plus an average
    pool half of the time); ``input_shape``: ``(C, H, W)`` (default: 1-3 channels, 8x8 or 10x10);
    ``head``: ``"gap"`` (global average pool, flatten, gemm) or ``"flatten"`` (flatten, gemm), default
    random."""
    rng = np.random.default_rng(seed)
    if input_shape is None:
        size = int(rng.choice([8, 10]))
        input_shape = (int(rng.integers(1, 4)), size, size)
    if blocks is None:
        kinds = list(REQUIRED) + (["avgpool"] if rng.random() < 0.5 else [])
        blocks = [kinds[i] for i in rng.permutation(len(kinds))]
    b = OnnxBuilder(input_shape, graph_name=f"random_{seed}")
    g = _Gen(rng, b, input_shape)
    x = b.relu(g.conv(b.input, int(rng.integers(2, 6)), 3))
    for kind in blocks:
        if kind in ("stride2", "maxpool", "avgpool") and min(g.h, g.w) < 2:
            continue
        x = g.block(kind, x)
    gap = rng.random() < 0.5
    if head not in (None, "gap", "flatten"):
        raise InputError(f"head must be 'gap' or 'flatten', got {head!r}")
    if head == "gap" or (head is None and gap):
        x = b.flatten(b.global_avgpool(x))
        feats = g.c
    else:
        x = b.flatten(x)
        feats = g.c * g.h * g.w
    x = b.gemm(x, rng.normal(0.0, np.sqrt(1.0 / feats), (classes, feats)), g.bias(classes))
    model = b.build(x)
    calib = rng.normal(0.0, 1.0, (calibration_size, *input_shape))
    inputs = rng.normal(0.0, 1.0, (test_size, *input_shape))
    return RandomNet(model, tuple(input_shape), calib, inputs, tuple(blocks))  # type: ignore[arg-type]


def random_qgraph(seed: int, config: QuantConfig | None = None, **kwargs: object) -> tuple[QGraph, RandomNet]:
    """:func:`random_network` imported and quantized on its calibration batch."""
    net = random_network(seed, **kwargs)  # type: ignore[arg-type]
    return quantize(load_onnx(net.model), net.calibration, config), net
