"""The ``aiompc eval`` command: accuracy per mode of a model over a labelled test set
(:func:`aiompc.nn.evaluate.evaluate`), printed as a table, optionally written as JSON and a PNG plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from aiompc.errors import InputError
from aiompc.nn.datasets import DATASETS
from aiompc.nn.evaluate import DEFAULT_MODES, EVAL_MODES, evaluate
from aiompc.nn.zoo import SHIPPED_MODELS, model_file

__all__ = ["add_eval_command", "cmd_eval"]


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write ``--json``/``--plot``; an exact secure mode that differs from its
    plaintext program is an error (after the table is printed)."""
    calibration = None
    if args.calibration:
        if not Path(args.calibration).is_file():
            raise InputError(f"calibration file {args.calibration!r} not found")
        calibration = np.load(args.calibration)
    report = evaluate(model_file(args.model), args.dataset, samples=args.samples, modes=args.modes, exact=args.exact,
                      batch=args.batch, calibration=calibration, transport=args.transport, strict=False)
    print(report.markdown())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=1) + "\n")
        print(f"\nwrote {args.json}")
    if args.plot:
        from aiompc.nn.eval_report import eval_plot

        eval_plot(report, args.plot)
        print(f"wrote {args.plot}")
    report.check()
    return 0


def add_eval_command(sub: Any) -> None:
    """Register ``eval`` on an argparse sub-parser collection."""
    p = sub.add_parser("eval", help="accuracy, agreement, logit error, bytes and seconds per mode over a test set")
    p.add_argument("model", help="ONNX model file, or the name of a shipped model (" + ", ".join(SHIPPED_MODELS) + ")")
    p.add_argument("--dataset",
                   help=f"{' | '.join(DATASETS)} (test split) or a .npz file with inputs x and labels y "
                   "(optionally a calibration batch); default: the model's own test set (MODEL.npz beside it, "
                   "or the dataset its JSON card names)")
    p.add_argument("--samples", type=int, help="evaluate the first N test samples (default: all)")
    p.add_argument("--modes", default=",".join(DEFAULT_MODES),
                   help=f"comma-separated, from {', '.join(EVAL_MODES)}; a secure mode may end in :exact or :approx "
                   f"(default: {','.join(DEFAULT_MODES)})")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--exact", dest="exact", action="store_const", const=True, default=None,
                   help="exact rescaling in every secure mode without a suffix (default: each mode's own)")
    g.add_argument("--approx", dest="exact", action="store_const", const=False,
                   help="approximate (one-LSB) rescaling in every secure mode without a suffix")
    p.add_argument("--calibration", help=".npy calibration inputs for quantizing a float model "
                   "(default: the dataset's calibration batch)")
    p.add_argument("--batch", type=int, default=64, help="samples per secure session (default 64)")
    p.add_argument("--transport", choices=("tcp", "ws"), default="tcp")
    p.add_argument("--json", metavar="F", help="write the full report (per-sample predictions included) to F")
    p.add_argument("--plot", metavar="F", help="write a PNG of accuracy and bytes per mode to F")
    p.set_defaults(func=cmd_eval)
