"""Train the demo CNN on scikit-learn's 8x8 digits in pure numpy, export it to ONNX, record its accuracy.

Network (NCHW)::

    conv 1->8, 3x3, pad 1, bias  -> ReLU                              8x8x8
    conv 8->16, 3x3, stride 2, pad 1, no bias -> BatchNorm -> ReLU     16x4x4
    flatten -> fc 256->10                                              logits

Training: Adam (lr 3e-3, batch 64, 30 epochs, light weight decay), He initialisation, seeded (numpy's
generator is fine for *training*; nothing here is a protocol secret).  The batch-norm is trained with
batch statistics and exported with running statistics, so quantization exercises BN folding.

Writes (to the package data folder aiompc/models/, or to --out):
  digits_cnn.onnx  the float model (Conv/Relu/BatchNormalization/Flatten/Gemm, opset 17)
  digits_cnn.json  float and quantized (w4a4, first/last layer 8-bit) test accuracy, split, settings

    python examples/train_digits.py [--epochs 30] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view

from aiompc.nn import load_onnx, predict, run_float
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.zoo import CALIBRATION_SAMPLES, DIGITS_CONFIG, SPLIT_SEED, TEST_FRACTION, digits_data, digits_model

BN_EPS = 1e-5
BN_MOMENTUM = 0.9


# --------------------------------------------------------------------------- layers with gradients


def im2col(x: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N, Ho, Wo, C*k*k)`` patches."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]  # N C Ho Wo k k
    n, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho, wo, c * k * k)


def col2im(dcols: np.ndarray, shape: tuple[int, ...], k: int, stride: int, pad: int) -> np.ndarray:
    """Adjoint of :func:`im2col` (sums overlapping patches); a loop over the k*k kernel taps only."""
    n, c, h, w = shape
    ho, wo = dcols.shape[1:3]
    d = dcols.reshape(n, ho, wo, c, k, k)
    dx = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] += d[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dx[:, :, pad:pad + h, pad:pad + w]


class Net:
    """The digits CNN with explicit forward/backward passes."""

    def __init__(self, rng: np.random.Generator) -> None:
        he = lambda fan_in, *shape: rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)  # noqa: E731
        self.p = {
            "w1": he(9, 8, 1, 3, 3), "b1": np.zeros(8),
            "w2": he(72, 16, 8, 3, 3),
            "gamma": np.ones(16), "beta": np.zeros(16),
            "w3": he(256, 10, 256) * 0.5, "b3": np.zeros(10),
        }
        self.run_mean = np.zeros(16)
        self.run_var = np.ones(16)

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        p, c = self.p, {}
        c["x1"] = im2col(x, 3, 1, 1)                                   # N 8 8 9
        z1 = c["x1"] @ p["w1"].reshape(8, -1).T + p["b1"]              # N 8 8 8
        a1 = np.maximum(z1, 0).transpose(0, 3, 1, 2)                   # N 8 8 8
        c["z1"], c["a1_shape"] = z1, a1.shape
        c["x2"] = im2col(a1, 3, 2, 1)                                  # N 4 4 72
        z2 = c["x2"] @ p["w2"].reshape(16, -1).T                       # N 4 4 16
        if train:
            mean, var = z2.mean(axis=(0, 1, 2)), z2.var(axis=(0, 1, 2))
            self.run_mean = BN_MOMENTUM * self.run_mean + (1 - BN_MOMENTUM) * mean
            self.run_var = BN_MOMENTUM * self.run_var + (1 - BN_MOMENTUM) * var
        else:
            mean, var = self.run_mean, self.run_var
        inv = 1.0 / np.sqrt(var + BN_EPS)
        xhat = (z2 - mean) * inv
        y2 = p["gamma"] * xhat + p["beta"]
        a2 = np.maximum(y2, 0)
        c["xhat"], c["inv"], c["y2"] = xhat, inv, y2
        c["flat"] = a2.transpose(0, 3, 1, 2).reshape(len(x), -1)       # NCHW flatten order, as ONNX
        self.cache = c
        return c["flat"] @ p["w3"].T + p["b3"]

    def backward(self, dlogits: np.ndarray) -> dict[str, np.ndarray]:
        p, c, g = self.p, self.cache, {}
        n = len(dlogits)
        g["w3"], g["b3"] = dlogits.T @ c["flat"], dlogits.sum(0)
        da2 = (dlogits @ p["w3"]).reshape(n, 16, 4, 4).transpose(0, 2, 3, 1)
        dy2 = da2 * (c["y2"] > 0)
        g["gamma"], g["beta"] = (dy2 * c["xhat"]).sum((0, 1, 2)), dy2.sum((0, 1, 2))
        dxhat = dy2 * p["gamma"]
        m = n * 16
        dz2 = c["inv"] / m * (m * dxhat - dxhat.sum((0, 1, 2)) - c["xhat"] * (dxhat * c["xhat"]).sum((0, 1, 2)))
        g["w2"] = (dz2.reshape(-1, 16).T @ c["x2"].reshape(-1, 72)).reshape(16, 8, 3, 3)
        da1 = col2im(dz2 @ p["w2"].reshape(16, -1), c["a1_shape"], 3, 2, 1).transpose(0, 2, 3, 1)
        dz1 = da1 * (c["z1"] > 0)
        g["w1"] = (dz1.reshape(-1, 8).T @ c["x1"].reshape(-1, 9)).reshape(8, 1, 3, 3)
        g["b1"] = dz1.sum((0, 1, 2))
        return g


def softmax_xent(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    p[np.arange(len(y)), y] -= 1.0
    return loss, p / len(y)


def train(net: Net, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, epochs: int, lr: float = 3e-3,
          batch: int = 64, wd: float = 1e-4) -> None:
    m = {k: np.zeros_like(v) for k, v in net.p.items()}
    v = {k: np.zeros_like(v) for k, v in net.p.items()}
    b1, b2, t = 0.9, 0.999, 0
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        step_lr = lr * 0.5 * (1 + np.cos(np.pi * epoch / epochs))  # cosine schedule
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            _, dlogits = softmax_xent(net.forward(x[idx], train=True), y[idx])
            grads = net.backward(dlogits)
            t += 1
            for k, gk in grads.items():
                if k.startswith("w"):
                    gk = gk + wd * net.p[k]
                m[k] = b1 * m[k] + (1 - b1) * gk
                v[k] = b2 * v[k] + (1 - b2) * gk * gk
                net.p[k] -= step_lr * (m[k] / (1 - b1 ** t)) / (np.sqrt(v[k] / (1 - b2 ** t)) + 1e-8)


def export(net: Net) -> onnx.ModelProto:
    p = net.p
    b = OnnxBuilder((1, 8, 8), graph_name="digits_cnn")
    h = b.relu(b.conv(b.input, p["w1"], p["b1"], stride=1, pads=1))
    h = b.conv(h, p["w2"], None, stride=2, pads=1)
    h = b.relu(b.batchnorm(h, p["gamma"], p["beta"], net.run_mean, net.run_var, eps=BN_EPS))
    return b.build(b.gemm(b.flatten(h), p["w3"], p["b3"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0, help="training seed (initialisation and batch order)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "aiompc" / "models")
    args = ap.parse_args()

    t0 = time.perf_counter()
    data = digits_data()
    rng = np.random.default_rng(args.seed)
    net = Net(rng)
    train(net, data.x_train, data.y_train, rng, args.epochs)
    train_seconds = time.perf_counter() - t0

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "digits_cnn.onnx"
    onnx.save(export(net), onnx_path)

    fg = load_onnx(onnx_path)  # evaluate what was exported, float32 weights included
    float_pred = run_float(fg, data.x_test).argmax(1)
    qg = digits_model(onnx_path, DIGITS_CONFIG, data)
    q_pred = predict(qg, data.x_test)
    report = {
        "model": onnx_path.name,
        "float_accuracy": float((float_pred == data.y_test).mean()),
        "quantized_accuracy": float((q_pred == data.y_test).mean()),
        "prediction_agreement": float((q_pred == float_pred).mean()),
        "test_samples": int(len(data.y_test)),
        "split": {"dataset": "sklearn.datasets.load_digits", "seed": SPLIT_SEED, "test_fraction": TEST_FRACTION,
                  "stratified": True, "train_samples": int(len(data.y_train))},
        "calibration": {"samples": CALIBRATION_SAMPLES, "source": "first training samples"},
        "quantization": DIGITS_CONFIG.to_dict(),
        "training": {"seed": args.seed, "epochs": args.epochs, "optimizer": "adam", "lr": 3e-3, "batch": 64,
                     "weight_decay": 1e-4, "seconds": round(train_seconds, 2)},
        "layers": [{"node": n.name, "op": n.op, "bits": qg.tensors[n.output].bits,
                    "signed": qg.tensors[n.output].signed} for n in qg.nodes],
    }
    (args.out / "digits_cnn.json").write_text(json.dumps(report, indent=2) + "\n")
    print(qg.summary())
    print(f"float accuracy {report['float_accuracy']:.4f}, quantized (w4a4, first/last 8-bit) "
          f"{report['quantized_accuracy']:.4f} on {len(data.y_test)} test digits; trained in {train_seconds:.1f} s")


if __name__ == "__main__":
    main()
