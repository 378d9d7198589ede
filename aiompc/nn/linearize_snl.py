"""SNL (Cho et al., ICML 2022): learn which ReLUs of a trained network to keep under a budget.

On a :class:`~aiompc.nn.linearize_net.GraphNet` whose ReLUs are :class:`~aiompc.nn.linearize_net.MaskedRelu`
(``c * relu(x) + (1 - c) * x``, one trainable ``c`` per ReLU position, starting at 1):

1. **mask search** (:func:`learn_mask`): train the weights and the ``c``'s together (Adam) on the task loss
   plus ``lam * sum(|c|) / total`` (the L1 penalty, normalised by the ReLU count so ``lam`` does not
   depend on the network's size); after every epoch count the positions with ``c > threshold``; when an
   epoch brings no new lowest count, anneal ``lam *= anneal``; stop as soon as the count is at most the
   budget (or after ``max_epochs``);
2. **threshold** (:func:`keep_top`): keep exactly ``budget`` ReLUs, the positions with the largest ``c``
   (ties broken by position, so the result is deterministic); all others become the identity;
3. **fine-tune** (:func:`finetune`): train the weights with the binary mask fixed.

The task loss is SNL's: cross-entropy on the labels plus knowledge distillation from the dense network
(KL divergence of the softened outputs at temperature ``temperature``, scaled by its square).  Batch-norm
layers train (batch statistics, running averages updated) in both training phases.  All randomness (batch
order) comes from one ``torch.Generator`` seeded by ``seed``; training data are not secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from aiompc.nn.linearize import SnlSettings
from aiompc.nn.linearize_net import GraphNet

__all__ = ["MaskSearch", "learn_mask", "keep_top", "finetune", "accuracy", "relu_scores", "logits_of"]


@dataclass(frozen=True)
class MaskSearch:
    """What the mask search did: epochs run, the count of ``c > threshold`` before the first and after each
    epoch, the final ``lam``."""

    epochs: int
    counts: tuple[int, ...]
    lam: float


def _batches(n: int, batch: int, gen: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=gen).split(batch))


def _task_loss(logits: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    t = temperature
    kd = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher / t, dim=1), log_target=True,
                  reduction="batchmean")
    return F.cross_entropy(logits, y) + kd * t * t


def relu_scores(net: GraphNet) -> torch.Tensor:
    """All ``c``'s of ``net``, flattened in graph order."""
    return torch.cat([r.c.detach().reshape(-1) for r in net.relus])


def learn_mask(net: GraphNet, x: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor, budget: int,
               settings: SnlSettings, gen: torch.Generator,
               progress: Callable[[int, int, float], None] | None = None) -> MaskSearch:
    """Step 1: train weights and ``c``'s with the annealed L1 penalty until at most ``budget`` positions
    have ``c > threshold`` (no epoch at all if that holds from the start).  ``teacher``: the dense network's
    logits on ``x``."""
    masks = [r.c for r in net.relus]
    mask_ids = {id(c) for c in masks}
    weights = [p for p in net.parameters() if id(p) not in mask_ids and p.requires_grad]
    opt = torch.optim.Adam([{"params": weights, "lr": settings.lr}, {"params": masks, "lr": settings.mask_lr}])
    total = float(net.relu_count)
    lam = settings.lam
    lowest = int((relu_scores(net) > settings.threshold).sum())
    counts = [lowest]
    epoch = 0
    for epoch in range(1, settings.max_epochs + 1 if lowest > budget else 1):
        net.train()
        for idx in _batches(len(x), settings.batch, gen):
            opt.zero_grad()
            loss = _task_loss(net(x[idx]), y[idx], teacher[idx], settings.temperature)
            loss = loss + lam * sum(c.abs().sum() for c in masks) / total
            loss.backward()
            opt.step()
        count = int((relu_scores(net) > settings.threshold).sum())
        counts.append(count)
        if progress is not None:
            progress(epoch, count, lam)
        if count <= budget:
            break
        if count < lowest:
            lowest = count
        else:
            lam *= settings.anneal
    return MaskSearch(epoch, tuple(counts), lam)


def keep_top(net: GraphNet, budget: int) -> None:
    """Step 2: freeze every mask to binary, keeping exactly ``budget`` ReLUs: the largest ``c``'s (ties by
    position, earlier first)."""
    scores = relu_scores(net).numpy()
    order = np.argsort(-scores, kind="stable")
    keep = np.zeros(len(scores), dtype=bool)
    keep[order[:budget]] = True
    start = 0
    for r in net.relus:
        r.freeze(torch.from_numpy(keep[start:start + r.size]))
        start += r.size


def finetune(net: GraphNet, x: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor, settings: SnlSettings,
             gen: torch.Generator, progress: Callable[[int, float], None] | None = None) -> None:
    """Step 3: train the weights with the binary masks fixed (Adam, cosine-annealed learning rate)."""
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=settings.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(settings.finetune_epochs, 1))
    for epoch in range(1, settings.finetune_epochs + 1):
        net.train()
        total = 0.0
        for idx in _batches(len(x), settings.batch, gen):
            opt.zero_grad()
            loss = _task_loss(net(x[idx]), y[idx], teacher[idx], settings.temperature)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        if progress is not None:
            progress(epoch, total / len(x))


@torch.no_grad()
def logits_of(net: GraphNet, x: torch.Tensor) -> torch.Tensor:
    """``net``'s outputs on ``x`` in eval mode (the mode is restored)."""
    was = net.training
    net.eval()
    out = net(x)
    net.train(was)
    return out


def accuracy(net: GraphNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``net`` (eval mode) on ``x``."""
    return int((logits_of(net, x).argmax(dim=1) == y).sum()) / len(y)

