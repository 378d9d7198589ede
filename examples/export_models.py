"""Export small PyTorch models with torch's own ONNX exporters, as users do: the test data of the importer.

Three networks on scikit-learn's 8x8 digits (input ``(N, 1, 8, 8)``, pixels ÷ 16), each trained for a few
epochs so that their argmax means something, each exported twice:

* ``*_dynamo.onnx`` — ``torch.onnx.export(model, (x,))`` with its defaults (the dynamo exporter);
* ``*_script.onnx`` — ``torch.onnx.export(..., dynamo=False, dynamic_axes={"x": {0: "batch"}})``: the
  TorchScript exporter with a dynamic batch axis (``Shape``/``Gather``/``Concat``/``Reshape`` arithmetic);
* ``mobile_script13.onnx`` — the same at ``opset_version=13`` (axes as attributes, the oldest opset covered);
* ``lenet_dynamo_dynamic.onnx`` — the dynamo exporter with ``dynamic_shapes`` (a dynamic batch axis).

Networks:

``lenet``      conv-relu-maxpool twice, ``x.view(x.size(0), -1)``, two fully connected layers.
``resnet``     stem conv + batch-norm, a residual block with an identity shortcut, a stride-2 block with a
               1x1 projection shortcut, a pre-activation batch-norm after the last residual add (never fused
               into a conv), ``AdaptiveAvgPool2d(1)``, ``flatten``, linear.
``mobile``     ``(x - 0.5) / 0.25`` input normalization, an inverted-residual block (1x1 expand, depthwise
               3x3, ReLU6, 1x1 project, residual add), ``F.pad`` before a valid conv, ``x.mean((2, 3))``.
``snl``        a ReLU-reduced (SNL / SENet style) ResNet: fixed random 0/1 masks (seeded) keep about half of
               the ReLUs, written in the three forms such models export to — ``x + m * (relu(x) - x)``
               (per-pixel mask of shape (1, C, H, W), the stem), ``m * relu(x) + (1 - m) * x`` (per-channel
               mask (C, 1, 1), inside the residual block) and ``torch.where(mask, relu(x), x)`` (per-pixel,
               after the residual add); trained with the masks in place.

Also writes ``digits_sample.npy`` (16 test images) and ``digits_calibration.npy`` (64 training images).
torch is needed only to run this script (``pip install torch onnxscript``), never by aiompc::

    python examples/export_models.py [--out tests/nn/data] [--epochs 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from aiompc.nn.zoo import digits_data


class LeNet(nn.Module):
    """Two conv/ReLU/max-pool stages, the idiomatic ``view(x.size(0), -1)``, two linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 12, 3, padding=1)
        self.fc1 = nn.Linear(12 * 2 * 2, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        return self.fc2(F.relu(self.fc1(x)))


class Block(nn.Module):
    """A ResNet basic block; a 1x1 projection shortcut when the stride or width changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class ResNet(nn.Module):
    """Stem, two residual blocks, an unfusable batch-norm, ``AdaptiveAvgPool2d(1)``, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.block1 = Block(8, 8, 1)
        self.block2 = Block(8, 16, 2)
        self.post = nn.BatchNorm2d(16)  # follows a ReLU: no conv to fold into
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(self.stem(x)))
        x = self.pool(self.post(x))
        return self.fc(torch.flatten(x, 1))


class Mobile(nn.Module):
    """Input normalization, an inverted-residual block with a depthwise conv and ReLU6, an explicit pad,
    a spatial mean."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.expand = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.depthwise = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16),
                                       nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.down = nn.Conv2d(8, 16, 3, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem((x - 0.5) / 0.25)
        x = x + self.project(self.depthwise(self.expand(x)))
        x = F.relu6(self.down(F.pad(x, (1, 1, 1, 1))))
        return self.fc(x.mean((2, 3)))


class SNLNet(nn.Module):
    """A small ResNet whose ReLUs are partial (see the module docstring): masks are buffers, so they export
    as constants."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(24)
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.conv1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.conv2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)
        self.register_buffer("m_stem", (torch.rand(1, 8, 8, 8, generator=gen) < 0.5).float())
        self.register_buffer("m_block", (torch.rand(8, 1, 1, generator=gen) < 0.5).float())
        self.register_buffer("m_add", torch.rand(1, 8, 8, 8, generator=gen) < 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.m_stem * (F.relu(x) - x)
        y = self.conv1(x)
        y = self.m_block * F.relu(y) + (1 - self.m_block) * y
        z = self.conv2(y) + x
        z = torch.where(self.m_add, F.relu(z), z)
        z = F.relu(self.down(z))
        return self.fc(z.mean((2, 3)))


MODELS: dict[str, Callable[[], nn.Module]] = {"lenet": LeNet, "resnet": ResNet, "mobile": Mobile, "snl": SNLNet}


def as_tensor(x: np.ndarray) -> torch.Tensor:
    """A float32 tensor with standard strides (numpy's stride on the size-1 channel axis would make torch pick
    channels-last convolutions, and ``view`` then refuses)."""
    return torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(-1).copy()).reshape(x.shape)


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> None:
    """A few epochs of Adam on the digits training split (enough for a meaningful argmax)."""
    gen = torch.Generator().manual_seed(seed)
    xt, yt = as_tensor(x), torch.tensor(y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()


def export(model: nn.Module, example: torch.Tensor, dynamo: bool, opset: int | None = None,
           dynamic: bool = False) -> onnx.ModelProto:
    """The model as ``torch.onnx.export`` writes it: dynamo defaults (with a dynamic batch if ``dynamic``),
    or TorchScript with a dynamic batch (at its default opset, or ``opset``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            shapes = {"dynamic_shapes": {"x": {0: torch.export.Dim("batch")}}} if dynamic else {}
            program = torch.onnx.export(model, (example,), input_names=["x"], output_names=["logits"], **shapes)
            assert program is not None
            return program.model_proto
        buf = io.BytesIO()
        opts = {} if opset is None else {"opset_version": opset}
        torch.onnx.export(model, (example,), buf, dynamo=False, input_names=["x"], output_names=["logits"], **opts,
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
        return onnx.load_model_from_string(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "nn" / "data"))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", choices=sorted(MODELS), help="export only these networks")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = digits_data()
    np.save(out / "digits_sample.npy", data.x_test[:16].astype(np.float32))
    np.save(out / "digits_calibration.npy", data.x_train[:64].astype(np.float32))
    example = as_tensor(data.x_test[:1])
    for name, make in MODELS.items():
        if args.only and name not in args.only:
            continue
        torch.manual_seed(args.seed)
        model = make()
        train(model, data.x_train, data.y_train, args.epochs, args.seed)
        with torch.no_grad():
            acc = float((model(as_tensor(data.x_test)).argmax(1).numpy()
                         == data.y_test).mean())
        variants = [("dynamo", True, None, False), ("script", False, None, False)]
        variants += {"mobile": [("script13", False, 13, False)], "lenet": [("dynamo_dynamic", True, None, True)]}.get(
            name, [])
        for kind, dynamo, opset, dynamic in variants:
            proto = export(model, example if not dynamic else as_tensor(data.x_test[:2]), dynamo, opset, dynamic)
            path = out / f"{name}_{kind}.onnx"
            onnx.save(proto, path)
            ops = sorted({n.op_type for n in proto.graph.node})
            opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
            print(f"{path.name}: opset {opset}, {path.stat().st_size} bytes, test accuracy {acc:.3f}, ops {ops}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
