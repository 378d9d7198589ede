"""``aiompc linearize``: keep only a budget of a model's ReLUs (SNL's per-pixel mask), as an ONNX model.

:func:`linearize` imports the user's float ONNX model with aiompc's own importer, turns it into a PyTorch
module (:mod:`aiompc.nn.linearize_net`), learns which ReLU positions to keep with SNL's method
(:mod:`aiompc.nn.linearize_snl`: a trainable mask with an annealed L1 penalty, thresholding to exactly
``budget`` kept ReLUs, a short fine-tune of the weights), exports the result with ``torch.onnx.export``
(each ReLU as ``x + m * (relu(x) - x)`` with a constant per-element mask ``m``), and reads that file back
with aiompc's importer to measure the accuracy after on the model exactly as aiompc will run it.

Training uses the training split of the dataset and the accuracies are over its test split:
``digits`` (scikit-learn's digits split of :func:`aiompc.nn.zoo.digits_data`), or a ``.npz`` file with
training data ``x_train``/``y_train`` beside its test split ``x``/``y``.

torch is an optional extra (``pip install 'aiompc[train]'``), imported only when :func:`linearize` runs;
without it :func:`linearize` raises :class:`~aiompc.errors.InputError` saying what to install.  The result
is deterministic given ``seed`` on one machine (one thread, seeded batch order); another CPU or torch
build may round differently in float32 and so end with a slightly different mask.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from aiompc.errors import InputError
from aiompc.nn.datasets import Dataset, load_dataset

__all__ = ["SnlSettings", "LinearizeResult", "linearize", "training_split", "require_torch", "parse_budget",
           "TRAIN_EXTRA", "card"]

TRAIN_EXTRA = "pip install 'aiompc[train]'"
"""How to install what :func:`linearize` needs (torch and onnxscript, for ``torch.onnx.export``)."""


@dataclass(frozen=True)
class SnlSettings:
    """The knobs of SNL's procedure (:mod:`aiompc.nn.linearize_snl`); the defaults suit small networks
    such as the digits models."""

    lam: float = 1.0               # initial weight of the L1 penalty on the masks (sum |c| / ReLU count)
    anneal: float = 1.2            # lam *= anneal after an epoch that brings no new lowest ReLU count
    threshold: float = 1e-2        # a position counts as a ReLU while c > threshold (SNL's default)
    max_epochs: int = 300          # mask-search epochs at most
    lr: float = 1e-3               # Adam, weights (both phases)
    mask_lr: float = 1e-2          # Adam, the masks
    finetune_epochs: int = 30      # fine-tuning epochs with the binary mask
    batch: int = 64
    temperature: float = 4.0       # distillation from the dense network
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {"--epochs (max_epochs)": self.max_epochs >= 0, "--finetune-epochs": self.finetune_epochs >= 0,
                  "--batch": self.batch >= 1, "--lam": self.lam >= 0, "anneal (at least 1)": self.anneal >= 1,
                  "lr": self.lr > 0, "mask_lr": self.mask_lr > 0, "temperature": self.temperature > 0,
                  "threshold": 0 <= self.threshold < 1}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise InputError(f"linearize settings out of range: {', '.join(bad)}; epochs are counts (0 or more), the "
                             "batch at least 1, the penalty weight not negative")


@dataclass(frozen=True)
class LinearizeResult:
    """A linearized model and what it took: ``model`` (ONNX), the ReLUs kept per layer
    (``(node, kept, total)``), the test accuracy of the dense model, after thresholding, and of the written
    model as aiompc reads it, and the mask search's epochs, ReLU counts and final penalty weight."""

    model: onnx.ModelProto = field(repr=False)
    budget: int
    total_relus: int
    layers: tuple[tuple[str, int, int], ...]
    accuracy_before: float
    accuracy_thresholded: float
    accuracy_after: float
    test_samples: int
    train_samples: int
    mask_epochs: int
    mask_counts: tuple[int, ...]
    final_lam: float
    max_logit_diff: float
    seconds: float
    settings: SnlSettings

    @property
    def kept(self) -> int:
        return sum(k for _, k, _ in self.layers)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model, JSON-ready."""
        return {"budget": self.budget, "total_relus": self.total_relus, "kept_relus": self.kept,
                "layers": [{"node": n, "kept": k, "total": t} for n, k, t in self.layers],
                "accuracy_before": self.accuracy_before, "accuracy_thresholded": self.accuracy_thresholded,
                "accuracy_after": self.accuracy_after, "test_samples": self.test_samples,
                "train_samples": self.train_samples, "mask_search": {"epochs": self.mask_epochs,
                                                                     "relu_counts": list(self.mask_counts),
                                                                     "final_lam": self.final_lam},
                "onnx_vs_torch_max_logit_diff": self.max_logit_diff, "seconds": round(self.seconds, 2),
                "settings": asdict(self.settings)}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ONNX model to ``path``."""
        onnx.save(self.model, os.fspath(path))


def require_torch() -> None:
    """:class:`InputError` unless torch and onnxscript (the ONNX exporter's dependency) import."""
    for name in ("torch", "onnxscript"):
        try:
            importlib.import_module(name)
        except ImportError:
            raise InputError(f"aiompc linearize trains the model with PyTorch, and {name} is not installed: "
                             f"{TRAIN_EXTRA} (torch is never needed to run a model)") from None


def training_split(spec: str | os.PathLike[str]) -> Dataset:
    """The training data of dataset ``spec``: the digits training split, or ``x_train``/``y_train`` of a
    ``.npz`` file (:class:`InputError` if it has none)."""
    name = str(spec)
    if name == "digits":
        from aiompc.nn.zoo import digits_data

        d = digits_data()
        return Dataset("digits (training split)", d.x_train, d.y_train)
    path = Path(name)
    load_dataset(path)  # the usual checks and messages for the file itself
    with np.load(path, allow_pickle=False) as npz:
        if "x_train" not in npz.files or "y_train" not in npz.files:
            raise InputError(f"{path}: linearize trains on x_train and y_train and tests on x and y; add the "
                             "training data: numpy.savez(F, x=test_inputs, y=test_labels, x_train=..., y_train=...)")
        x, y = np.asarray(npz["x_train"]), np.asarray(npz["y_train"])
    if x.dtype.kind not in "fiu" or y.dtype.kind not in "iu" or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise InputError(f"{path}: x_train must be numeric inputs (N, *input_shape) and y_train N integer labels, "
                         f"got {x.dtype} {x.shape} and {y.dtype} {y.shape}")
    return Dataset(f"{path.name} (training split)", x.astype(np.float64), y.astype(np.int64))


def parse_budget(text: str | int, total: int) -> int:
    """A budget of ``N`` ReLUs or ``P%`` of ``total``; :class:`InputError` outside ``0..total``."""
    s = str(text).strip()
    try:
        n = round(total * float(s[:-1]) / 100) if s.endswith("%") else int(s)
    except ValueError:
        raise InputError(f"--budget {text!r}: give a number of ReLUs (e.g. 192) or a percentage (e.g. 25%)") from None
    if not 0 <= n <= total:
        raise InputError(f"--budget {text!r}: the model has {total} ReLUs; keep between 0 and {total}")
    return n


def linearize(model: str | os.PathLike[str] | onnx.ModelProto, budget: int | str, dataset: str | os.PathLike[str],
              settings: SnlSettings = SnlSettings(), *, train_samples: int | None = None,
              test_samples: int | None = None, log: Callable[[str], None] | None = None) -> LinearizeResult:
    """Keep exactly ``budget`` (a count or ``"P%"``) of ``model``'s ReLUs, learned on ``dataset``'s training
    split with SNL's method; accuracies over its test split (the first ``test_samples``; training on the
    first ``train_samples`` only, for quick checks).  ``log`` receives progress lines."""
    require_torch()
    for flag, value in (("--train-samples", train_samples), ("--samples", test_samples)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be at least 1, got {value}")
    from aiompc.nn import linearize_run  # torch from here on

    return linearize_run.run(model, budget, dataset, settings, train_samples=train_samples,
                             test_samples=test_samples, log=log or (lambda _: None), started=time.perf_counter())


def card(result: LinearizeResult, source: str, output: str, dataset: str) -> str:
    """A JSON model card for ``result``."""
    return json.dumps({"model": output, "source_model": source, "dataset": dataset, "method": "SNL",
                       **result.to_dict()}, indent=1) + "\n"

