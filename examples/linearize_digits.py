"""Make the shipped ReLU-reduced digits model: ``aiompc/models/digits_cnn_snl.onnx`` and its card.

The demo CNN (``aiompc/models/digits_cnn.onnx``, 768 ReLUs) linearized by :func:`aiompc.nn.linearize.linearize`
(SNL's learned per-pixel mask, the same code as ``aiompc linearize``) to a quarter of its ReLUs (192), trained
on the training split of :func:`aiompc.nn.zoo.digits_data` and measured on its 450-image test split.  The
card records, for the dense model and the linearized one, the float accuracy (aiompc's float interpreter on
the ONNX file), the accuracy of the w4a4 quantized program (``--mode quantized``, PTQ with
:data:`aiompc.nn.zoo.DIGITS_CONFIG` on the fixed calibration batch) and of Cheetah's fixed-point program
(``--mode cheetah``), all plaintext.  ``--sweep`` also linearizes to 1/2, 1/8 and 0 (no ReLU left: a network
that is linear up to the last layer) and records those accuracies, without writing those models.

Deterministic given ``--seed`` on one machine (one thread, seeded batch order); a different CPU or torch build
may round differently in float32 and end with a slightly different mask.  Needs ``pip install 'aiompc[train]'``::

    python examples/linearize_digits.py [--seed 0] [--sweep] [--out aiompc/models]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from aiompc.nn.fixed_point import fixed_point
from aiompc.nn.interpret import predict, run_float
from aiompc.nn.linearize import SnlSettings, linearize
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.quantize import quantize
from aiompc.nn.zoo import (CALIBRATION_SAMPLES, DIGITS_CONFIG, DIGITS_ONNX, SPLIT_SEED, TEST_FRACTION, MODELS,
                           digits_data)

NAME = "digits_cnn_snl"
FRACTIONS = {"1/2": 0.5, "1/4": 0.25, "1/8": 0.125, "0": 0.0}


def accuracies(model: Path | bytes) -> dict[str, float]:
    """Test accuracy of ``model`` in float, as the quantized program and as Cheetah's fixed-point program."""
    d = digits_data()
    graph = load_onnx(model)
    float_pred = run_float(graph, d.x_test).argmax(1)
    quantized = quantize(graph, d.calibration, DIGITS_CONFIG)
    fixed = fixed_point(graph)
    return {"float_accuracy": float(np.mean(float_pred == d.y_test)),
            "quantized_accuracy": float(np.mean(predict(quantized, d.x_test) == d.y_test)),
            "fixed_point_accuracy": float(np.mean(predict(fixed, d.x_test) == d.y_test))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sweep", action="store_true", help="also record budgets of 1/2, 1/8 and 0 of the ReLUs")
    ap.add_argument("--out", type=Path, default=MODELS)
    args = ap.parse_args(argv)
    settings = SnlSettings(seed=args.seed)
    dense = accuracies(DIGITS_ONNX)
    print(f"dense: {dense}", flush=True)

    sweep = []
    result = None
    for label, share in FRACTIONS.items():
        if label != "1/4" and not args.sweep:
            continue
        print(f"\n== budget {label} of the ReLUs ==", flush=True)
        r = linearize(DIGITS_ONNX, f"{100 * share:g}%", "digits", settings, log=print)
        acc = accuracies(r.model.SerializeToString())
        sweep.append({"share": label, "budget": r.budget, "accuracy_thresholded": r.accuracy_thresholded,
                      "mask_search_epochs": r.mask_epochs, **acc})
        if label == "1/4":
            result, ours = r, acc

    assert result is not None
    args.out.mkdir(parents=True, exist_ok=True)
    result.save(args.out / f"{NAME}.onnx")
    card = {
        "model": f"{NAME}.onnx",
        "dataset": "digits",
        "source_model": DIGITS_ONNX.name,
        "method": "SNL (learned per-pixel ReLU mask: annealed L1 penalty, top-N threshold, fine-tune)",
        "budget": result.budget,
        "total_relus": result.total_relus,
        "kept_relus": result.kept,
        "layers": [{"node": n, "kept": k, "total": t} for n, k, t in result.layers],
        **ours,
        "dense": dense,
        "accuracy_thresholded": result.accuracy_thresholded,
        "test_samples": result.test_samples,
        "split": {"dataset": "sklearn.datasets.load_digits", "seed": SPLIT_SEED, "test_fraction": TEST_FRACTION,
                  "stratified": True, "train_samples": result.train_samples},
        "calibration": {"samples": CALIBRATION_SAMPLES, "source": "first training samples", "method": "PTQ"},
        "quantization": DIGITS_CONFIG.to_dict(),
        "training": {"script": "examples/linearize_digits.py", "command_equivalent":
                     f"aiompc linearize aiompc/models/digits_cnn.onnx --budget {result.budget} --dataset digits "
                     f"-o {NAME}.onnx --seed {args.seed}",
                     "seed": args.seed, "mask_search_epochs": result.mask_epochs,
                     "mask_search_relu_counts": list(result.mask_counts), "final_lam": result.final_lam,
                     "settings": result.to_dict()["settings"], "seconds": round(result.seconds, 1),
                     "threads": 1},
        "sweep": sweep,
    }
    (args.out / f"{NAME}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"\nwrote {args.out / (NAME + '.onnx')} and its card: dense {dense}, {result.budget} ReLUs {ours}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
