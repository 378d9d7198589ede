"""ReLU budgets (SNL / SENet): a network with exactly ``N`` of its ReLUs kept, the others the identity.

:func:`apply_relu_budget` turns every ``relu`` of a :class:`~aiompc.nn.graph.FloatGraph` into a
``partial_relu`` whose per-element mask keeps a share of that layer's ReLUs.  The shares follow the layers'
sizes (``N · size / total``, rounded by largest remainder so that they add up to ``N`` exactly): the rule of
a uniform random mask over the whole network, which is what a benchmark of bytes and time needs (costs
depend only on how many ReLUs each layer keeps; SNL's learned masks and SENet's sensitivity-driven budgets
move ReLUs between layers, which changes accuracy, not the protocols' bytes per kept ReLU).  Which
elements are kept is a fixed-seed random choice (``numpy.random.default_rng(seed)``: public architecture,
not a secret).  Learned masks come from a trained model instead (``aiompc linearize``, or an exported SNL
model, :mod:`aiompc.nn.onnx_partial_relu`).

:func:`relu_counts` counts, for an integer graph, the ReLUs each layer evaluates (kept / total per sample):
``Relu`` and a requantization with a fused ReLU (lower clip 0 on a signed input) keep all of theirs, a
partial ReLU its mask's ones.
"""

from __future__ import annotations

import numpy as np

from aiompc.errors import InputError
from aiompc.nn.graph import FloatGraph
from aiompc.nn.ir import QGraph, ReluMasked, Relu, Requantize

__all__ = ["count_relus", "allocate_budget", "apply_relu_budget", "relu_counts"]


def count_relus(graph: FloatGraph) -> int:
    """ReLUs per sample of a float graph: the elements of its ``relu`` outputs and the kept elements of its
    ``partial_relu`` masks."""
    total = 0
    for n in graph.nodes:
        if n.op == "relu":
            total += int(np.prod(graph.shapes[n.output], dtype=np.int64))
        elif n.op == "partial_relu":
            total += int(np.count_nonzero(np.broadcast_to(n.params["mask"], graph.shapes[n.output])))
    return total


def allocate_budget(sizes: list[int], budget: int) -> list[int]:
    """``budget`` split over layers of ``sizes`` in proportion to their sizes, by largest remainder: each share
    is ``floor`` or ``ceil`` of ``budget · size / sum(sizes)``, never above its size, and they sum to ``budget``
    (ties to the earlier layer)."""
    total = sum(sizes)
    if not 0 <= budget <= total:
        raise InputError(f"a ReLU budget of {budget} is outside 0..{total} (the network's ReLUs)")
    exact = [budget * s / total if total else 0.0 for s in sizes]
    shares = [min(int(np.floor(e)), s) for e, s in zip(exact, sizes)]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - shares[i]), i))
    missing = budget - sum(shares)
    for i in order:
        if missing <= 0:
            break
        if shares[i] < sizes[i]:
            shares[i] += 1
            missing -= 1
    return shares


def apply_relu_budget(graph: FloatGraph, budget: int, *, seed: int = 0) -> FloatGraph:
    """A copy of ``graph`` whose ``relu`` nodes become ``partial_relu`` nodes keeping exactly ``budget`` ReLUs
    per sample in all (module docstring: shares by layer size, a fixed-seed random choice of elements).
    ``partial_relu`` nodes already there are left as they are and not counted.  :class:`InputError` for a
    budget outside ``0..`` the number of ``relu`` elements, or a graph without ReLUs."""
    g = graph.copy()
    relus = [n for n in g.nodes if n.op == "relu"]
    if not relus:
        raise InputError("the network has no ReLU to keep or drop (--relu-budget needs ReLU layers)")
    sizes = [int(np.prod(g.shapes[n.output], dtype=np.int64)) for n in relus]
    shares = allocate_budget(sizes, budget)
    rng = np.random.default_rng(seed)
    for n, size, keep in zip(relus, sizes, shares, strict=True):
        mask = np.zeros(size, dtype=np.float64)
        mask[rng.choice(size, keep, replace=False)] = 1.0
        n.op = "partial_relu"
        n.params = {"mask": mask.reshape(g.shapes[n.output])}
    return g


def relu_counts(graph: QGraph) -> dict[str, tuple[int, int]]:
    """Node name → ``(ReLUs kept, ReLUs of the layer)`` per sample, for the nodes that evaluate ReLUs."""
    out: dict[str, tuple[int, int]] = {}
    for n in graph.nodes:
        shape = graph.tensors[n.output].shape
        size = int(np.prod(shape, dtype=np.int64))
        if isinstance(n, ReluMasked):
            out[n.name] = (n.kept(shape), size)
        elif isinstance(n, Relu) or (isinstance(n, Requantize) and n.lo == 0 and graph.tensors[n.inputs[0]].signed):
            out[n.name] = (size, size)
    return out
