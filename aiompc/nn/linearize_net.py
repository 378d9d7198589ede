"""A float model as a trainable PyTorch module with SNL's masked ReLUs, and its ONNX export.

:class:`GraphNet` is built from the :class:`~aiompc.nn.graph.FloatGraph` that aiompc's own importer made of
the user's ONNX file (:func:`aiompc.nn.onnx_import.load_onnx`), so it covers exactly the operators aiompc
runs (conv, gemm, batch-norm, ReLU, Clip, max/average/global-average pooling, residual add, channel concat,
flatten), in whatever form the exporter wrote them, and nothing else.  Every ``relu`` node becomes a
:class:`MaskedRelu` with one mask entry per element of its per-sample output (SNL's per-pixel mask; a
``partial_relu`` of an already linearized model starts from its own mask):

* while the mask is learned, ``c * relu(x) + (1 - c) * x`` with a trainable real ``c`` per element;
* once it is binary, the exported form ``x + m * (relu(x) - x)`` with a constant ``m`` of shape
  ``(1, C, H, W)`` (or ``(1, F)`` after a fully connected layer): the pattern aiompc's importer reads as a
  partial ReLU.  An all-ones mask exports as a plain ``Relu`` and an all-zeros mask as nothing at all.

Clip (ReLU6) activations are left alone: SNL linearizes ReLUs only.  QDQ (fake-quantized) models are
refused: their quantization ranges were fitted to the dense network's activations; linearize the float
model and quantize the result (``aiompc run`` quantizes float models, or re-run the quantization-aware
training on the linearized model).

Why not a converter library: onnx2torch (PyPI) imports torchvision, whose PyPI build does not load beside
the CPU build of torch this project installs; and building from aiompc's float graph means the trained
network is the one aiompc would run, whatever exporter wrote the file.

torch is imported by this module: import it only through :mod:`aiompc.nn.linearize`, which checks that
torch is installed (``pip install 'aiompc[train]'``).
"""

from __future__ import annotations

import io
import logging
import re
import warnings

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from aiompc.errors import UnsupportedModel
from aiompc.nn.graph import FloatGraph, FloatNode

__all__ = ["MaskedRelu", "GraphNet", "export_onnx"]


class MaskedRelu(nn.Module):
    """SNL's per-element ReLU mask over a per-sample shape ``shape``.

    ``c`` (trainable, initialised to 1: the dense ReLU) while :attr:`binary` is False; the fixed 0/1 buffer
    ``m`` afterwards (:meth:`freeze`)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.c = nn.Parameter(torch.ones((1, *shape)))
        self.register_buffer("m", torch.ones((1, *shape)))
        self.binary = False
        self.kept = self.size

    @property
    def size(self) -> int:
        """Number of elements (ReLU positions) per sample."""
        return int(np.prod(self.shape))

    def freeze(self, keep: torch.Tensor) -> None:
        """Fix the mask to the boolean ``keep`` (per-sample shape or flat): ReLU where True, identity elsewhere."""
        self.m.copy_(keep.reshape(self.m.shape).to(self.m.dtype))
        self.c.requires_grad_(False)
        self.binary = True
        self.kept = int(self.m.sum().item())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.binary:
            return self.c * torch.relu(x) + (1 - self.c) * x
        if self.kept == self.size:
            return torch.relu(x)
        if self.kept == 0:
            return x
        return x + self.m * (torch.relu(x) - x)


_RELUS = ("relu", "partial_relu")


def _pairs(pads: tuple[int, int, int, int]) -> tuple[int, int] | None:
    """``(top, left)`` if ``pads`` (top, left, bottom, right) is symmetric, else None."""
    t, l, b, r = pads
    return (t, l) if (t, l) == (b, r) else None


class _Node(nn.Module):
    """One FloatGraph node as a module (its parameters, if any, registered under it)."""

    def __init__(self, node: FloatNode, in_shapes: list[tuple[int, ...]]) -> None:
        super().__init__()
        self.op = node.op
        self.attrs = dict(node.attrs)
        a, p = node.attrs, node.params
        f32 = {"dtype": torch.float32}
        if node.op == "conv":
            o, cg, kh, kw = p["weight"].shape
            sym = _pairs(a["pads"])
            self.pad = None if sym is not None else (a["pads"][1], a["pads"][3], a["pads"][0], a["pads"][2])
            self.layer = nn.Conv2d(cg * a["groups"], o, (kh, kw), a["stride"], sym or 0, groups=a["groups"])
            self.layer.weight.data = torch.tensor(p["weight"], **f32)
            self.layer.bias.data = torch.tensor(p["bias"], **f32)
        elif node.op == "gemm":
            o, i = p["weight"].shape
            self.layer = nn.Linear(i, o)
            self.layer.weight.data = torch.tensor(p["weight"], **f32)
            self.layer.bias.data = torch.tensor(p["bias"], **f32)
        elif node.op == "batchnorm":
            bn = nn.BatchNorm2d if len(in_shapes[0]) == 3 else nn.BatchNorm1d
            self.layer = bn(len(p["scale"]), eps=a["eps"])
            self.layer.weight.data = torch.tensor(p["scale"], **f32)
            self.layer.bias.data = torch.tensor(p["bias"], **f32)
            self.layer.running_mean.copy_(torch.tensor(p["mean"], **f32))
            self.layer.running_var.copy_(torch.tensor(p["var"], **f32))
        elif node.op == "relu":
            self.layer = MaskedRelu(in_shapes[0])
        elif node.op == "partial_relu":  # already linearized: the search starts from its mask
            self.layer = MaskedRelu(in_shapes[0])
            mask = np.broadcast_to(p["mask"] != 0, in_shapes[0])
            self.layer.c.data = torch.tensor(mask, **f32).reshape(self.layer.c.shape)
        elif node.op in ("maxpool", "avgpool"):
            sym = _pairs(a["pads"])
            if node.op == "maxpool" and sym is None:
                raise UnsupportedModel(f"MaxPool node {node.name!r}: asymmetric padding {a['pads']} cannot be "
                                       "trained here; pad symmetrically")
            self.pad = None if sym is not None else (a["pads"][1], a["pads"][3], a["pads"][0], a["pads"][2])
            self.padding = sym or (0, 0)
        elif node.op == "fakequant" or "weight_q" in p:
            raise UnsupportedModel(
                f"node {node.name!r}: a QDQ (quantized) model cannot be linearized, since its quantization ranges "
                "belong to the dense network; linearize the float model, then quantize the result "
                "(aiompc run/serve quantize a float model with --calibration) or retrain it with QAT")
        elif node.op not in ("clip", "global_avgpool", "add", "concat", "flatten"):
            raise UnsupportedModel(f"node {node.name!r}: operator {node.op!r} cannot be trained here")

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        op, a, x = self.op, self.attrs, xs[0]
        if op == "conv":
            return self.layer(x if self.pad is None else F.pad(x, self.pad))
        if op in ("gemm", "batchnorm", *_RELUS):
            return self.layer(x)
        if op == "clip":
            return torch.clamp(x, a["lo"], a["hi"])
        if op == "maxpool":
            return F.max_pool2d(x, a["kernel"], a["stride"], self.padding)
        if op == "avgpool":  # aiompc's average pool counts the padding (count_include_pad)
            x = x if self.pad is None else F.pad(x, self.pad)
            return F.avg_pool2d(x, a["kernel"], a["stride"], self.padding, count_include_pad=True)
        if op == "global_avgpool":
            return F.adaptive_avg_pool2d(x, 1)
        if op == "add":
            out = xs[0]
            for y in xs[1:]:
                out = out + y
            return out
        if op == "concat":
            return torch.cat(xs, dim=1)
        return torch.flatten(x, 1)  # flatten


def _key(name: str, taken: set[str]) -> str:
    key = re.sub(r"\W", "_", name) or "node"
    key = key if not key[0].isdigit() else f"n{key}"
    while key in taken:
        key += "_"
    taken.add(key)
    return key


class GraphNet(nn.Module):
    """The float graph as a module: same function (in float32), trainable weights and batch-norm, and a
    :class:`MaskedRelu` per ``relu`` node (:attr:`relus`, in graph order; their node names
    :attr:`relu_names`)."""

    def __init__(self, graph: FloatGraph) -> None:
        super().__init__()
        if graph.is_qdq:
            bad = next(n for n in graph.nodes if n.op == "fakequant" or "weight_q" in n.params)
            _Node(bad, [graph.shapes[i] for i in bad.inputs])  # raises the QDQ message
        self.input = graph.input
        self.output = graph.output
        self.input_shape = tuple(graph.input_shape)
        self.nodes = nn.ModuleDict()
        self.wiring: list[tuple[str, tuple[str, ...], str]] = []
        taken: set[str] = set()
        for n in graph.nodes:
            key = _key(n.name, taken)
            self.nodes[key] = _Node(n, [graph.shapes[i] for i in n.inputs])
            self.wiring.append((key, n.inputs, n.output))
        self.relus: list[MaskedRelu] = [m.layer for m in self.nodes.values() if m.op in _RELUS]
        self.relu_names: list[str] = [n.name for n in graph.nodes if n.op in _RELUS]

    @property
    def relu_count(self) -> int:
        """Total ReLU positions per sample."""
        return sum(r.size for r in self.relus)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self.input: x}
        for key, inputs, output in self.wiring:
            env[output] = self.nodes[key](*(env[i] for i in inputs))
        return env[self.output]


def export_onnx(net: GraphNet, batch: int = 1) -> onnx.ModelProto:
    """``net`` (binary masks) as ``torch.onnx.export`` writes it (the dynamo exporter, a dynamic batch axis,
    input ``input``, output ``logits``), in eval mode (batch-norm with its running statistics)."""
    if any(not r.binary for r in net.relus):
        raise ValueError("export_onnx needs binary masks: freeze every MaskedRelu first")
    net.eval()
    example = torch.zeros((max(batch, 2), *net.input_shape))
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
    level = registry.level
    registry.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(net, (example,), input_names=["input"], output_names=["logits"],
                                        dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
    finally:
        registry.setLevel(level)
    assert program is not None
    buf = io.BytesIO()
    program.save(buf)
    return onnx.load_model_from_string(buf.getvalue())
