"""The steps of :func:`aiompc.nn.linearize.linearize` (torch is imported here: reach this module only
through that function, which checks that torch is installed)."""

from __future__ import annotations

import json
import os
import time
from typing import Callable

import numpy as np
import onnx
import torch

from aiompc.errors import InputError, UnsupportedModel
from aiompc.nn.datasets import load_dataset
from aiompc.nn.interpret import run_float
from aiompc.nn.linearize import LinearizeResult, SnlSettings, parse_budget, training_split
from aiompc.nn.linearize_net import GraphNet, export_onnx
from aiompc.nn.linearize_snl import accuracy, finetune, keep_top, learn_mask, logits_of
from aiompc.nn.onnx_import import load_onnx

__all__ = ["run", "READBACK_TOLERANCE"]

READBACK_TOLERANCE = 1e-3
"""Largest allowed difference between the trained module's logits (float32) and those of the written
ONNX file as aiompc's importer reads it (float64), relative to the largest logit."""


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def _top1(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits.reshape(len(logits), -1), axis=1) == y))


def run(model: str | os.PathLike[str] | onnx.ModelProto, budget: int | str, dataset: str | os.PathLike[str],
        settings: SnlSettings, *, train_samples: int | None, test_samples: int | None, log: Callable[[str], None],
        started: float) -> LinearizeResult:
    """Import, train (mask search, threshold, fine-tune), export and read back; see
    :func:`aiompc.nn.linearize.linearize`."""
    graph = load_onnx(model)
    net = GraphNet(graph)
    total = net.relu_count
    if total == 0:
        raise InputError("the model has no ReLU to linearize")
    n = parse_budget(budget, total)
    train = training_split(dataset).head(train_samples or 1 << 62)
    test = load_dataset(dataset).head(test_samples or 1 << 62)
    train.check_shape(graph.input_shape)
    test.check_shape(graph.input_shape)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same float sums on any core count
    try:
        torch.manual_seed(settings.seed)
        gen = torch.Generator().manual_seed(settings.seed)
        x, y = _tensor(train.x), torch.tensor(train.y)
        xe = _tensor(test.x)
        before = _top1(run_float(graph, test.x), test.y)
        log(f"{total} ReLUs, budget {n}; dense model: test accuracy {before:.2%} over {len(test)} samples")
        teacher = logits_of(net, x)

        def mask_progress(epoch: int, count: int, lam: float) -> None:
            if epoch % 10 == 0 or count <= n:
                log(f"  mask search epoch {epoch}: {count} ReLUs with c > {settings.threshold:g} (penalty {lam:.3g})")

        search = learn_mask(net, x, y, teacher, n, settings, gen, mask_progress)
        if search.counts[-1] > n:
            log(f"  the mask search stopped after {search.epochs} epochs at {search.counts[-1]} ReLUs; keeping the "
                f"{n} largest masks anyway (more --epochs or a larger --lam gets closer before thresholding)")
        keep_top(net, n)
        thresholded = accuracy(net, xe, torch.tensor(test.y))
        log(f"kept exactly {n} ReLUs: test accuracy {thresholded:.2%} before fine-tuning")
        finetune(net, x, y, teacher, settings, gen, lambda e, loss: log(f"  fine-tune epoch {e}: loss {loss:.4f}")
                 if e % 10 == 0 else None)
        proto = export_onnx(net)
        ours = logits_of(net, xe).numpy()
    finally:
        torch.set_num_threads(threads)
    kept = tuple((name, r.kept, r.size) for name, r in zip(net.relu_names, net.relus))
    onnx.helper.set_model_props(proto, {"aiompc.linearize": json.dumps(
        {"method": "SNL", "budget": n, "total_relus": total, "seed": settings.seed})})

    # read the written model back as aiompc will run it
    try:
        back = run_float(load_onnx(proto), test.x)
    except UnsupportedModel as exc:
        raise UnsupportedModel(f"aiompc cannot import the linearized model it exported ({exc})") from exc
    diff = float(np.max(np.abs(back - ours)))
    if diff > READBACK_TOLERANCE * max(1.0, float(np.max(np.abs(ours)))):
        raise UnsupportedModel(f"the exported model computes other logits than the trained one (up to {diff:.3g} "
                               "apart): please report this")
    after = _top1(back, test.y)
    log(f"linearized model (as aiompc reads the exported file): test accuracy {after:.2%} with {n} of {total} ReLUs")
    return LinearizeResult(proto, n, total, kept, before, thresholded, after, len(test), len(train), search.epochs,
                           search.counts, search.lam, diff, time.perf_counter() - started, settings)
