"""The ``aiompc linearize`` command: keep a budget of a model's ReLUs (SNL), write the result as ONNX
(:func:`aiompc.nn.linearize.linearize`; needs ``pip install 'aiompc[train]'``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aiompc.nn.datasets import DATASETS, model_dataset
from aiompc.nn.linearize import TRAIN_EXTRA, SnlSettings, card, linearize

__all__ = ["add_linearize_command", "cmd_linearize"]


def cmd_linearize(args: argparse.Namespace) -> int:
    """Linearize, print progress and the accuracy before and after, write ``--output`` (and ``--json``)."""
    dataset = args.dataset or model_dataset(args.model)
    defaults = SnlSettings()
    settings = SnlSettings(lam=args.lam, max_epochs=args.epochs, finetune_epochs=args.finetune_epochs,
                           seed=args.seed, batch=args.batch, threshold=defaults.threshold)
    result = linearize(args.model, args.budget, dataset, settings, train_samples=args.train_samples,
                       test_samples=args.samples, log=lambda line: print(line, flush=True))
    result.save(args.output)
    print(f"\naccuracy over the {result.test_samples}-sample test split of {dataset}: "
          f"{result.accuracy_before:.2%} with all {result.total_relus} ReLUs, "
          f"{result.accuracy_after:.2%} with {result.kept} ({result.kept / result.total_relus:.1%})")
    print("ReLUs kept per layer: " + ", ".join(f"{name} {k}/{t}" for name, k, t in result.layers))
    print(f"wrote {args.output} ({result.seconds:.1f} s)")
    if args.json:
        Path(args.json).write_text(card(result, str(args.model), str(args.output), str(dataset)))
        print(f"wrote {args.json}")
    return 0


def add_linearize_command(sub: Any) -> None:
    """Register ``linearize`` on an argparse sub-parser collection."""
    d = SnlSettings()
    p = sub.add_parser("linearize", help="keep only N of a model's ReLUs (SNL's learned per-pixel mask); "
                       f"needs torch: {TRAIN_EXTRA}")
    p.add_argument("model", help="float ONNX model (a QDQ model: linearize its float version first)")
    p.add_argument("--budget", required=True, help="ReLUs to keep: a count (192) or a share of all (25%%)")
    p.add_argument("--dataset", help=f"{' | '.join(DATASETS)} (train on its training split, test on its test split) or "
                   "a .npz file with x_train, y_train, x, y; default: the model's own (as for aiompc eval)")
    p.add_argument("-o", "--output", required=True, help="the linearized ONNX model to write")
    p.add_argument("--seed", type=int, default=d.seed, help=f"batch order and initialisation (default {d.seed})")
    p.add_argument("--epochs", type=int, default=d.max_epochs,
                   help=f"mask-search epochs at most (default {d.max_epochs}; it stops when the budget is reached)")
    p.add_argument("--finetune-epochs", type=int, default=d.finetune_epochs,
                   help=f"epochs of fine-tuning with the binary mask (default {d.finetune_epochs})")
    p.add_argument("--lam", type=float, default=d.lam,
                   help=f"initial weight of the L1 penalty on the masks, annealed upwards (default {d.lam:g})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"training batch size (default {d.batch})")
    p.add_argument("--samples", type=int, help="test on the first N test samples (default: all)")
    p.add_argument("--train-samples", type=int, help="train on the first N training samples (default: all)")
    p.add_argument("--json", metavar="F", help="write a model card (budget, ReLUs per layer, accuracies, settings)")
    p.set_defaults(func=cmd_linearize)
