"""Train the shipped digits models that need more than numpy: a ResNet-style network and a max-pool CNN.

Both are trained on scikit-learn's bundled 8x8 digits (the split of :func:`aiompc.nn.zoo.digits_data`),
exported to ONNX with the project's own builder (Conv / BatchNormalization / Relu / Add / MaxPool /
GlobalAveragePool / Flatten / Gemm, opset 17), and quantized by aiompc's post-training quantizer at w4a4
with 8-bit first and last layers (:data:`aiompc.nn.zoo.DIGITS_CONFIG`), calibrated on the first 256
training images.  torch is a *build-time* tool here (``pip install torch``); the runtime never imports it.

Networks (NCHW, input 1x8x8)::

    digits_resnet   conv 1->16 3x3 + BN + ReLU                                       16x8x8
                    basic block 16: [conv3x3 BN ReLU conv3x3 BN] + identity, ReLU     16x8x8
                    basic block 16->32, stride 2: [conv3x3/2 BN ReLU conv3x3 BN]
                                      + [conv1x1/2 BN] shortcut, ReLU                  32x4x4
                    global average pool, fc 32->10                                    logits
    digits_maxpool  conv 1->16 3x3 + ReLU, maxpool 2x2                                16x4x4
                    conv 16->32 3x3 + BN + ReLU, maxpool 2x2                          32x2x2
                    flatten, fc 128->10                                               logits

Training (both): AdamW (lr 3e-3, weight decay 1e-4), batch 64, cosine schedule, random shifts of at most
one pixel as augmentation, seeded (torch and numpy generators; nothing here is a protocol secret), one
thread per op so the result does not depend on the core count.

Writes (to aiompc/models/, or --out): ``<name>.onnx`` and ``<name>.json`` (float and quantized test
accuracy, split, quantization settings, seed, training settings and time).

    python examples/train_digits_torch.py [--model resnet|maxpool|all] [--epochs 40] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from aiompc.nn import load_onnx, predict, quantize, run_float
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.zoo import CALIBRATION_SAMPLES, DIGITS_CONFIG, SPLIT_SEED, TEST_FRACTION, digits_data

BN_EPS = 1e-5


# --------------------------------------------------------------------------- networks


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS))


class Block(nn.Module):
    """A ResNet basic block (two 3x3 conv+BN, shortcut identity or 1x1 conv+BN)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.a, self.b = conv_bn(cin, cout, 3, stride), conv_bn(cout, cout)
        self.short = conv_bn(cin, cout, 1, stride) if (cin, stride) != (cout, 1) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(torch.relu(self.a(x)))
        return torch.relu(y + (x if self.short is None else self.short(x)))


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(1, 16)
        self.block1, self.block2 = Block(16, 16, 1), Block(16, 32, 2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(torch.relu(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


class MaxPoolNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1)
        self.conv2 = conv_bn(16, 32)
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


# --------------------------------------------------------------------------- export (aiompc's ONNX builder)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def _conv_bn(b: OnnxBuilder, x: str, m: nn.Sequential) -> str:
    conv, bn = m[0], m[1]
    h = b.conv(x, _np(conv.weight), None if conv.bias is None else _np(conv.bias), stride=conv.stride[0],
               pads=conv.padding[0])
    return b.batchnorm(h, _np(bn.weight), _np(bn.bias), _np(bn.running_mean), _np(bn.running_var), eps=bn.eps)


def _block(b: OnnxBuilder, x: str, m: Block) -> str:
    y = _conv_bn(b, b.relu(_conv_bn(b, x, m.a)), m.b)
    return b.relu(b.add(y, x if m.short is None else _conv_bn(b, x, m.short)))


def export_resnet(net: ResNet) -> onnx.ModelProto:
    b = OnnxBuilder((1, 8, 8), graph_name="digits_resnet")
    h = _block(b, _block(b, b.relu(_conv_bn(b, b.input, net.stem)), net.block1), net.block2)
    return b.build(b.gemm(b.flatten(b.global_avgpool(h)), _np(net.fc.weight), _np(net.fc.bias)))


def export_maxpool(net: MaxPoolNet) -> onnx.ModelProto:
    b = OnnxBuilder((1, 8, 8), graph_name="digits_maxpool")
    h = b.maxpool(b.relu(b.conv(b.input, _np(net.conv1.weight), _np(net.conv1.bias), stride=1, pads=1)), 2, 2)
    h = b.maxpool(b.relu(_conv_bn(b, h, net.conv2)), 2, 2)
    return b.build(b.gemm(b.flatten(h), _np(net.fc.weight), _np(net.fc.bias)))


MODELS = {"resnet": (ResNet, export_resnet), "maxpool": (MaxPoolNet, export_maxpool)}


# --------------------------------------------------------------------------- training


def shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image moved by a random offset in {-1, 0, 1}^2 (zero fill)."""
    n = len(x)
    off = torch.randint(-1, 2, (n, 2), generator=gen)
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    rows = (torch.arange(8)[None, :] + 1 - off[:, :1])  # n x 8
    cols = (torch.arange(8)[None, :] + 1 - off[:, 1:])
    idx_n = torch.arange(n)[:, None, None]
    return padded[idx_n, 0, rows[:, :, None], cols[:, None, :]][:, None]


def train(net: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, lr: float = 3e-3,
          batch: int = 64, wd: float = 1e-4) -> None:
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=wd)
    steps = epochs * -(-len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss()
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = loss_fn(net(shift(xt[idx], gen)), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
    net.eval()


def data_card(data: Any, calibration_method: str) -> dict[str, Any]:
    """The model card's test-set, split, calibration and quantization entries (``data``: :func:`digits_data`)."""
    return {
        "test_samples": int(len(data.y_test)),
        "split": {"dataset": "sklearn.datasets.load_digits", "seed": SPLIT_SEED, "test_fraction": TEST_FRACTION,
                  "stratified": True, "train_samples": int(len(data.y_train))},
        "calibration": {"samples": CALIBRATION_SAMPLES, "source": "first training samples",
                        "method": calibration_method},
        "quantization": DIGITS_CONFIG.to_dict(),
    }


def layer_card(qg: Any) -> list[dict[str, Any]]:
    """The model card's per-layer output widths of the quantized graph ``qg``."""
    return [{"node": n.name, "op": n.op, "bits": qg.tensors[n.output].bits, "signed": qg.tensors[n.output].signed}
            for n in qg.nodes]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=(*MODELS, "all"), default="all")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0, help="training seed (initialisation, batch order, augmentation)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "aiompc" / "models")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = digits_data()
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in MODELS if args.model == "all" else (args.model,):
        make, export = MODELS[kind]
        name = f"digits_{kind}"
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        net = make()
        train(net, data.x_train, data.y_train, epochs=args.epochs, seed=args.seed)
        seconds = time.perf_counter() - t0
        onnx_path = args.out / f"{name}.onnx"
        onnx.save(export(net), onnx_path)

        fg = load_onnx(onnx_path)  # evaluate what was exported
        float_pred = run_float(fg, data.x_test).argmax(1)
        with torch.no_grad():
            torch_pred = net(torch.tensor(data.x_test, dtype=torch.float32)).argmax(1).numpy()
        qg = quantize(fg, data.calibration, DIGITS_CONFIG)
        q_pred = predict(qg, data.x_test)
        report = {
            "model": onnx_path.name,
            "dataset": "digits",
            "float_accuracy": float((float_pred == data.y_test).mean()),
            "quantized_accuracy": float((q_pred == data.y_test).mean()),
            "prediction_agreement": float((q_pred == float_pred).mean()),
            "export_agreement_with_torch": float((torch_pred == float_pred).mean()),
            **data_card(data, "PTQ"),
            "training": {"script": "examples/train_digits_torch.py", "seed": args.seed, "epochs": args.epochs,
                         "optimizer": "adamw", "lr": 3e-3, "schedule": "one-cycle", "batch": 64,
                         "weight_decay": 1e-4, "augmentation": "random shift <= 1 pixel",
                         "torch": torch.__version__, "threads": 1, "seconds": round(seconds, 2)},
            "parameters": int(sum(p.numel() for p in net.parameters())),
            "layers": layer_card(qg),
        }
        (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"{name}: float accuracy {report['float_accuracy']:.4f}, quantized (w4a4, first/last 8-bit, PTQ) "
              f"{report['quantized_accuracy']:.4f} on {len(data.y_test)} test digits; trained in {seconds:.1f} s")


if __name__ == "__main__":
    main()
