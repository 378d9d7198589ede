"""Quantization-aware fine-tuning of the torch-trained digits models, exported as QDQ ONNX (opset 21, the first with 4-bit QuantizeLinear types).

Starts from exactly the float networks of ``train_digits_torch.py`` (same seed, retrained here: training
is bit-reproducible), folds each batch-norm into its convolution, then fine-tunes with the quantization
aiompc applies simulated in the forward pass (straight-through rounding):

* weights symmetric, narrow range, per output channel for convolutions (max-based scale, as
  :func:`aiompc.nn.quantize.quantize_weights`), per tensor for the last layer; 8 bits for the first and
  last layers, 4 bits elsewhere;
* activations unsigned after every ReLU, 4 bits (8 bits for the tensor feeding the last layer), with a
  learned step size (LSQ) initialised by aiompc's MSE calibration on the fixed calibration batch;
* the input at 8 bits with scale 1/16 (the digits' pixel values are multiples of 1/16, so it is exact).

The export carries these integers and scales as QuantizeLinear/DequantizeLinear annotations, which
aiompc's importer keeps (:mod:`aiompc.nn.onnx_import`), so the integer program is the fine-tuned one
(biases, residual rescales and requantization multipliers are still rounded by the quantizer).
Writes ``<name>_qat.onnx`` / ``.json`` (to aiompc/models/ or --out), with the PTQ accuracy beside it.

Measured (seed 0, 450 test digits): ResNet 99.11 % after QAT against 97.56 % by PTQ (float 98.22 %), so
``digits_resnet_qat`` ships beside the PTQ ``digits_resnet``; the max-pool CNN 97.78 % after QAT against
98.00 % by PTQ, so only its PTQ model ships (``--model maxpool`` reproduces the QAT one).  With
``--inject-lsb 0.5 --inject-low`` (each requantized value one LSB low with probability 1/2 while
fine-tuning, the error of the carry-dropping approximate requantization) the ResNet scores 98.00 % in
exact and in approximate mode (``digits_resnet_qat_low`` ships for that comparison); ``--inject-lsb 0.5``
(±1 LSB) gave 98.67 % exact, 97.11 % approximate and does not ship.

    python examples/qat_digits_torch.py [--model resnet|maxpool|all] [--epochs 40] [--qat-epochs 15] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from aiompc.nn import load_onnx, predict, quantize, run_float
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.quantize import calibrate_scale
from aiompc.nn.zoo import DIGITS_CONFIG, digits_data
from train_digits_torch import MODELS, MaxPoolNet, ResNet, data_card, layer_card, shift, train

INPUT_SCALE = 1.0 / 16


def ste_round(v: torch.Tensor) -> torch.Tensor:
    return (v.round() - v).detach() + v


def weight_quant(w: torch.Tensor, bits: int, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Integers (as floats, straight-through) and the scale per output channel (max-based, narrow range)."""
    qmax = (1 << (bits - 1)) - 1
    amax = w.detach().abs().flatten(1).max(1).values if per_channel else w.detach().abs().max().expand(w.shape[0])
    s = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    view = s.view(-1, *([1] * (w.dim() - 1)))
    return torch.clamp(ste_round(w / view), -qmax, qmax), s


class QLayer(nn.Module):
    """A convolution or fully connected layer (batch-norm folded in) with fake-quantized weights."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, bits: int, stride: int = 1, pad: int = 0,
                 per_channel: bool = True) -> None:
        super().__init__()
        self.w, self.b = nn.Parameter(w.detach().clone()), nn.Parameter(b.detach().clone())
        self.bits, self.stride, self.pad, self.per_channel = bits, stride, pad, per_channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, s = weight_quant(self.w, self.bits, self.per_channel)
        wq = q * s.view(-1, *([1] * (self.w.dim() - 1)))
        if self.w.dim() == 2:
            return F.linear(x, wq, self.b)
        return F.conv2d(x, wq, self.b, self.stride, self.pad)

    def export(self, b: OnnxBuilder, x: str) -> str:
        with torch.no_grad():
            q, s = weight_quant(self.w, self.bits, self.per_channel)
        q_np, s_np = q.numpy().astype(np.int64), s.numpy().astype(np.float64)
        bias = self.b.detach().numpy().astype(np.float64)
        if self.w.dim() == 2:
            return b.gemm(x, None, bias, weight_name=b.qweight(q_np, s_np[0] if not self.per_channel else s_np,
                                                               self.bits, axis=0))
        return b.conv(x, None, bias, stride=self.stride, pads=self.pad,
                      weight_name=b.qweight(q_np, s_np, self.bits, axis=0))


class ActQuant(nn.Module):
    """Unsigned fake quantization with a learned step (LSQ); the first call calibrates the step (MSE)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.ready = False
        self.noise = 0.0  # training only: probability of a one-LSB error, see --inject-lsb
        self.low = False  # errors only one LSB low (Cheetah-style truncation) instead of half -1, half +1
        self.gen: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qmax = (1 << self.bits) - 1
        if not self.ready:
            with torch.no_grad():
                self.scale.fill_(calibrate_scale(x.detach().numpy().astype(np.float64), self.bits, False, "mse"))
            self.ready = True
        v = ste_round(x / self.scale)
        if self.training and self.noise > 0:
            r = torch.rand(x.shape, generator=self.gen)
            if self.low:
                v = v - (r < self.noise).float()
            else:
                v = v + ((r > 1 - self.noise / 2).float() - (r < self.noise / 2).float())
        return torch.clamp(v, 0, qmax) * self.scale

    def export(self, b: OnnxBuilder, x: str) -> str:
        return b.qdq(x, float(self.scale.detach()), self.bits, False)


def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    inv = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = bn.bias - bn.running_mean * inv + (conv.bias * inv if conv.bias is not None else 0)
    return conv.weight * inv.view(-1, 1, 1, 1), b


def qconv_bn(m: nn.Sequential, bits: int = 4) -> QLayer:
    w, b = fold(m[0], m[1])
    return QLayer(w, b, bits, m[0].stride[0], m[0].padding[0])


def quant_input(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.round(x / INPUT_SCALE), 0, 255) * INPUT_SCALE


class QResNet(nn.Module):
    def __init__(self, net: ResNet) -> None:
        super().__init__()
        self.stem = qconv_bn(net.stem, 8)
        self.blocks = nn.ModuleList()
        for blk in (net.block1, net.block2):
            self.blocks.append(nn.ModuleDict({"a": qconv_bn(blk.a), "b": qconv_bn(blk.b), "qa": ActQuant(4),
                                              "q": ActQuant(4), **({"s": qconv_bn(blk.short)} if blk.short else {})}))
        self.q0, self.qg = ActQuant(4), ActQuant(8)
        self.fc = QLayer(net.fc.weight, net.fc.bias, 8, per_channel=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.q0(torch.relu(self.stem(quant_input(x))))
        for blk in self.blocks:
            y = blk["b"](blk["qa"](torch.relu(blk["a"](h))))
            h = blk["q"](torch.relu(y + (blk["s"](h) if "s" in blk else h)))
        return self.fc(self.qg(h.mean(dim=(2, 3))))

    def export(self) -> onnx.ModelProto:
        b = OnnxBuilder((1, 8, 8), graph_name="digits_resnet_qat", opset=21)
        h = self.q0.export(b, b.relu(self.stem.export(b, b.qdq(b.input, INPUT_SCALE, 8, False))))
        for blk in self.blocks:
            y = blk["b"].export(b, blk["qa"].export(b, b.relu(blk["a"].export(b, h))))
            h = blk["q"].export(b, b.relu(b.add(y, blk["s"].export(b, h) if "s" in blk else h)))
        return b.build(self.fc.export(b, self.qg.export(b, b.flatten(b.global_avgpool(h)))))


class QMaxPoolNet(nn.Module):
    def __init__(self, net: MaxPoolNet) -> None:
        super().__init__()
        self.conv1 = QLayer(net.conv1.weight, net.conv1.bias, 8, 1, 1)
        self.conv2 = qconv_bn(net.conv2)
        self.q1, self.q2 = ActQuant(4), ActQuant(8)
        self.fc = QLayer(net.fc.weight, net.fc.bias, 8, per_channel=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(self.q1(torch.relu(self.conv1(quant_input(x)))), 2)
        h = F.max_pool2d(self.q2(torch.relu(self.conv2(h))), 2)
        return self.fc(h.flatten(1))

    def export(self) -> onnx.ModelProto:
        b = OnnxBuilder((1, 8, 8), graph_name="digits_maxpool_qat", opset=21)
        h = b.maxpool(self.q1.export(b, b.relu(self.conv1.export(b, b.qdq(b.input, INPUT_SCALE, 8, False)))), 2, 2)
        h = b.maxpool(self.q2.export(b, b.relu(self.conv2.export(b, h))), 2, 2)
        return b.build(self.fc.export(b, b.flatten(h)))


QAT = {"resnet": QResNet, "maxpool": QMaxPoolNet}


def finetune(qnet: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, lr: float = 1e-3,
             batch: int = 64) -> None:
    gen = torch.Generator().manual_seed(seed + 1)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    opt = torch.optim.Adam(qnet.parameters(), lr=lr)
    steps = epochs * -(-len(x) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    qnet.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            F.cross_entropy(qnet(shift(xt[idx], gen)), yt[idx]).backward()
            opt.step()
            sched.step()
    qnet.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=(*QAT, "all"), default="resnet")
    ap.add_argument("--epochs", type=int, default=40, help="float training epochs (as train_digits_torch.py)")
    ap.add_argument("--qat-epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inject-lsb", type=float, default=0.0, metavar="P",
                    help="inject one-LSB errors (each requantized value off by -1 or +1 with probability P) while "
                    "fine-tuning, as approximate requantization makes them; writes <name>_qat_lsb")
    ap.add_argument("--inject-low", action="store_true",
                    help="the injected errors are one LSB low only (as the carry-dropping truncation), not +-1")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "aiompc" / "models")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = digits_data()
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in QAT if args.model == "all" else (args.model,):
        make, _ = MODELS[kind]
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        net = make()
        train(net, data.x_train, data.y_train, epochs=args.epochs, seed=args.seed)
        fg_float_pred = None
        with torch.no_grad():
            fg_float_pred = net(torch.tensor(data.x_test, dtype=torch.float32)).argmax(1).numpy()
            qnet = QAT[kind](net)
            qnet(torch.tensor(data.calibration, dtype=torch.float32))  # calibrate the activation steps (MSE)
        noise_gen = torch.Generator().manual_seed(args.seed + 2)
        for m in qnet.modules():
            if isinstance(m, ActQuant):
                m.noise, m.low, m.gen = args.inject_lsb, args.inject_low, noise_gen
        finetune(qnet, data.x_train, data.y_train, epochs=args.qat_epochs, seed=args.seed)
        seconds = time.perf_counter() - t0
        name = f"digits_{kind}_qat" + (("_low" if args.inject_low else "_lsb") if args.inject_lsb else "")
        path = args.out / f"{name}.onnx"
        onnx.save(qnet.export(), path)
        fg = load_onnx(path)
        sim_pred = run_float(fg, data.x_test).argmax(1)
        qg = quantize(fg, data.calibration, DIGITS_CONFIG)
        q_pred = predict(qg, data.x_test)
        ptq_card = args.out / f"digits_{kind}.json"
        ptq = json.loads(ptq_card.read_text())["quantized_accuracy"] if ptq_card.is_file() else None
        report = {
            "model": path.name,
            "dataset": "digits",
            "float_accuracy": float((fg_float_pred == data.y_test).mean()),
            "float_accuracy_note": "the float network before folding and fine-tuning (torch)",
            "fake_quant_accuracy": float((sim_pred == data.y_test).mean()),
            "quantized_accuracy": float((q_pred == data.y_test).mean()),
            "ptq_quantized_accuracy": ptq,
            "prediction_agreement_with_fake_quant": float((q_pred == sim_pred).mean()),
            **data_card(data, "QAT (LSQ activation steps initialised by MSE calibration)"),
            "training": {"script": "examples/qat_digits_torch.py", "seed": args.seed, "float_epochs": args.epochs,
                         "qat_epochs": args.qat_epochs, "injected_lsb_error_probability": args.inject_lsb,
                         "injected_error": "one LSB low" if args.inject_low else "one LSB either way",
                         "optimizer": "adam", "lr": 1e-3, "schedule": "cosine",
                         "batch": 64, "augmentation": "random shift <= 1 pixel", "torch": torch.__version__,
                         "threads": 1, "seconds": round(seconds, 2)},
            "layers": layer_card(qg),
        }
        (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"{name}: QAT integer accuracy {report['quantized_accuracy']:.4f} (fake-quant {report['fake_quant_accuracy']:.4f}, "
              f"PTQ {ptq}, float {report['float_accuracy']:.4f}); {seconds:.1f} s")


if __name__ == "__main__":
    main()
