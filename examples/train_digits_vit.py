"""Train the shipped tiny vision transformer on the digits: ``aiompc/models/digits_vit.onnx`` and its JSON card.

The data is scikit-learn's bundled 8x8 digits with the split of :func:`aiompc.nn.zoo.digits_data`.  torch is
a *build-time* tool here (``pip install 'aiompc[train]'``: torch and onnxscript); the runtime never imports it.

Network (input 1x8x8; hidden D = 48, 2 heads of 24, MLP 96, GELU, 2 pre-LN encoder layers)::

    patch embedding  Conv 1->D, kernel 2, stride 2 (2x2 patches)             (D, 4, 4)
    tokens           flatten(2).transpose(1, 2) + a learned position table   (16, D)
    encoder layer    x = x + Wo · MHA(LN(x))   (separate Q/K/V projections, softmax(QK^T / sqrt 24) V)
      (twice)        x = x + W2 · GELU(W1 · LN(x) + b1) + b2
    head             LN, mean over the 16 tokens, Linear D -> 10            logits

Exported by ``torch.onnx.export`` (the dynamo exporter, its default opset 20: ``Conv``, ``Reshape``,
``Transpose``, ``MatMul`` with constant weights and between two activations, ``Add``, ``Div``, ``Softmax``,
``LayerNormalization``, ``Gelu``, ``ReduceMean``, ``Gemm``; a dynamic batch axis) — as a user would export
their own model: this file is also the importer's test of PyTorch's transformer export.

Training: AdamW (lr 2e-3, weight decay 0.05), batch 64, one-cycle schedule, random shifts of at most one pixel
(:func:`train_digits_torch.shift`), seeded (torch and numpy generators; nothing here is a protocol secret),
one thread so the result does not depend on the core count.

The card (``digits_vit.json``) records the seed, the split, the architecture, the parameter count and the
float test accuracy of the exported file (computed by onnxruntime when installed, else by aiompc's float
interpreter); the quantized accuracy (:data:`aiompc.nn.zoo.VIT_CONFIG`) is added when aiompc can quantize
the model.  ``--card-only`` recomputes the card from the existing ONNX file without training.

    python examples/train_digits_vit.py [--epochs 200] [--seed 0] [--out DIR] [--card-only]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from aiompc.errors import UnsupportedModel
from aiompc.nn.zoo import VIT_CONFIG, DigitsData, digits_data
from train_digits_torch import data_card, layer_card, train

VIT_NAME = "digits_vit"

HIDDEN, HEADS, MLP, LAYERS, PATCH = 48, 2, 96, 2, 2
LR, WEIGHT_DECAY, BATCH = 2e-3, 0.05, 64


class Attention(nn.Module):
    """Multi-head self-attention with separate Q, K, V projections (as BERT's; exports to plain MatMuls)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = (p(x).reshape(n, t, self.heads, self.head_dim).transpose(1, 2) for p in (self.q, self.k, self.v))
        probs = torch.softmax(q @ k.transpose(-2, -1) / self.head_dim ** 0.5, dim=-1)
        return self.o((probs @ v).transpose(1, 2).reshape(n, t, d))


class EncoderLayer(nn.Module):
    """A pre-LN transformer encoder layer (ViT): ``x + MHA(LN(x))``, then ``x + MLP(LN(x))`` with GELU."""

    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.ln2, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, mlp), nn.Linear(mlp, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class ViT(nn.Module):
    """The tiny ViT of the module docstring."""

    def __init__(self, dim: int = HIDDEN, heads: int = HEADS, mlp: int = MLP, layers: int = LAYERS,
                 patch: int = PATCH) -> None:
        super().__init__()
        tokens = (8 // patch) ** 2
        self.patch = nn.Conv2d(1, dim, patch, patch)
        self.pos = nn.Parameter(0.02 * torch.randn(1, tokens, dim))
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, mlp) for _ in range(layers))
        self.ln, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln(x).mean(dim=1))


def export(net: ViT) -> onnx.ModelProto:
    """``net`` as ``torch.onnx.export`` writes it (dynamo exporter, default opset, dynamic batch axis ``input``)."""
    net.eval()
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
    registry.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (torch.zeros(2, 1, 8, 8),), input_names=["input"], output_names=["logits"],
                                    dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
    assert program is not None
    buf = io.BytesIO()
    program.save(buf)
    model = onnx.load_model_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    return model


def float_predictions(onnx_path: Path, x: np.ndarray) -> tuple[np.ndarray, str]:
    """Top-1 predictions of the float ONNX model on ``x`` and what computed them (onnxruntime if installed,
    else aiompc's float interpreter)."""
    try:
        import onnxruntime as ort
    except ImportError:
        from aiompc.nn import load_onnx, run_float

        return run_float(load_onnx(onnx_path), x).argmax(1), "aiompc.nn.run_float"
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0].argmax(1), "onnxruntime"


def quantized_card(onnx_path: Path, data: DigitsData) -> dict[str, Any]:
    """The quantized model's test accuracy and layer widths (:data:`VIT_CONFIG`, PTQ on the calibration batch);
    ``None`` entries while aiompc cannot import or quantize the model yet."""
    from aiompc.nn import load_onnx, predict, quantize

    try:
        qg = quantize(load_onnx(onnx_path), data.calibration, VIT_CONFIG)
    except UnsupportedModel as exc:
        print(f"note: no quantized accuracy yet: {exc}")
        return {"quantized_accuracy": None, "layers": None}
    return {"quantized_accuracy": float((predict(qg, data.x_test) == data.y_test).mean()), "layers": layer_card(qg)}


def card(onnx_path: Path, architecture: dict[str, Any], training: dict[str, Any] | None, parameters: int,
         torch_pred: np.ndarray | None, old_agreement: float | None = None) -> dict[str, Any]:
    """The model card of the exported file (accuracies recomputed from it)."""
    data = digits_data()
    pred, engine = float_predictions(onnx_path, data.x_test)
    agreement = old_agreement if torch_pred is None else float((torch_pred == pred).mean())
    quantized = quantized_card(onnx_path, data)
    out: dict[str, Any] = {
        "model": onnx_path.name,
        "dataset": "digits",
        "float_accuracy": float((pred == data.y_test).mean()),
        "float_accuracy_by": engine,
        "quantized_accuracy": quantized["quantized_accuracy"],
        "export_agreement_with_torch": agreement,
        **data_card(data, "PTQ"),
        "quantization": VIT_CONFIG.to_dict(),
        "architecture": {**architecture, "opset": onnx.load(onnx_path).opset_import[0].version},
        "parameters": parameters,
    }
    if training is not None:
        out["training"] = training
    out["layers"] = quantized["layers"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0, help="training seed (initialisation, batch order, augmentation)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "aiompc" / "models")
    ap.add_argument("--card-only", action="store_true", help="recompute the card of the existing ONNX file")
    ap.add_argument("--hidden", type=int, default=HIDDEN)
    ap.add_argument("--heads", type=int, default=HEADS)
    ap.add_argument("--mlp", type=int, default=MLP)
    ap.add_argument("--layers", type=int, default=LAYERS)
    ap.add_argument("--patch", type=int, choices=(2, 4), default=PATCH)
    args = ap.parse_args()
    onnx_path, card_path = args.out / f"{VIT_NAME}.onnx", args.out / f"{VIT_NAME}.json"
    if args.card_only:
        old = json.loads(card_path.read_text())
        arch = {k: v for k, v in old["architecture"].items() if k != "opset"}
        new = card(onnx_path, arch, old.get("training"), old["parameters"], None, old.get("export_agreement_with_torch"))
        card_path.write_text(json.dumps(new, indent=2) + "\n")
        print(json.dumps({k: new[k] for k in ("float_accuracy", "quantized_accuracy")}))
        return
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    data = digits_data()
    t0 = time.perf_counter()
    net = ViT(args.hidden, args.heads, args.mlp, args.layers, args.patch)
    train(net, data.x_train, data.y_train, epochs=args.epochs, seed=args.seed, lr=LR, batch=BATCH, wd=WEIGHT_DECAY)
    seconds = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(export(net), onnx_path)
    with torch.no_grad():
        torch_pred = net(torch.tensor(data.x_test, dtype=torch.float32)).argmax(1).numpy()
    training = {"script": "examples/train_digits_vit.py", "seed": args.seed, "epochs": args.epochs, "optimizer": "adamw",
                "lr": LR, "schedule": "one-cycle", "batch": BATCH, "weight_decay": WEIGHT_DECAY,
                "augmentation": "random shift <= 1 pixel", "torch": torch.__version__, "threads": 1,
                "seconds": round(seconds, 2)}
    parameters = int(sum(p.numel() for p in net.parameters()))
    architecture = {"kind": "ViT (pre-LN)", "patch": args.patch, "tokens": (8 // args.patch) ** 2,
                    "hidden": args.hidden, "heads": args.heads, "mlp": args.mlp, "layers": args.layers,
                    "activation": "gelu (exact)", "pooling": "mean over tokens",
                    "exporter": "torch.onnx.export (dynamo)"}
    report = card(onnx_path, architecture, training, parameters, torch_pred)
    card_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{VIT_NAME}: float accuracy {report['float_accuracy']:.4f}, quantized {report['quantized_accuracy']} on "
          f"{report['test_samples']} test digits; {parameters} parameters; trained in {seconds:.1f} s")


if __name__ == "__main__":
    main()
