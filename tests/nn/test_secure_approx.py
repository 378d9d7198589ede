"""Approximate mode with requantization folded into the HE layers (``aiompc.nn.secure.Fold``).

The error model under test: a folded HE layer returns ``y = floor(acc / 2^s') + e + 2`` with
``e ∈ {-1, 0, 1}``; the requantization that follows is within one LSB of the exact one either way; an
unfolded approximate requantization is ``{-1, 0, 1}`` off (unbiased: the server adds half an LSB); every
other node is exact on its inputs.  The
secure runs keep every edge's shares, so each node is checked against the plaintext reference applied
to the (approximate) values it actually received.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

import aiompc
from aiompc import ring
from aiompc.channel import Stats
from aiompc.nn.bounds import range_of_width, width_for_range
from aiompc.nn.interpret import eval_node, run_int
from aiompc.nn.ir import Conv, Linear, QGraph, Requantize, TensorSpec
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.quantize import quantize
from aiompc.nn.modes import MODES, EngineConfig, engine_config, mode_named
from aiompc.nn.node_protocols import protocol_of
from aiompc.nn.rings import FOLD_LIFT, fold_for, plan_rings, ring_widths
from aiompc.nn.secure import SecureResult, run_secure
from aiompc.nn.testing import random_qgraph
from aiompc.nn.zoo import digits_data, digits_model
from aiompc.party import Party
from aiompc.quant import requantize

APPROX = engine_config("quantized", exact=False)
QUANTIZED_APPROX = mode_named("quantized", exact=False)


# --------------------------------------------------------------------------- the bound, in plaintext


def _fold_path(acc: np.ndarray, m: int, node: Requantize, shift: int, e: np.ndarray, c: np.ndarray) -> np.ndarray:
    """What the approximate engine computes for a folded pair, for given HE errors ``e`` and dropped
    carries ``c``: ``clip(floor((y·M + r_rest) / 2^rest) - c)`` on ``y = floor(acc / 2^shift) + e + 2``."""
    rest = node.shift - shift
    y = (acc >> shift) + e + FOLD_LIFT
    r = (1 << (rest - 1)) if node.rounding == "nearest" else 0
    return np.clip(((y * m + r) >> rest) - c, node.lo, node.hi)


@pytest.mark.parametrize("seed", range(6))
def test_fold_bound_holds_for_every_error_and_carry(seed: int) -> None:
    rng = np.random.default_rng(seed)
    acc_bits = int(rng.integers(8, 24))
    spec = TensorSpec("acc", (1,), acc_bits, True, *range_of_width(acc_bits, True))
    ms = tuple(int(v) for v in rng.integers(1 << 13, 1 << 16, 3))
    node = Requantize(name="rq", inputs=("acc",), output="out", multiplier=ms, shift=acc_bits + 12,
                      lo=0, hi=int(rng.choice([15, 255])), rounding=str(rng.choice(["nearest", "floor"])))
    fold = fold_for(spec, node)
    assert fold is not None and 3 * max(ms) < 1 << fold.rest and fold.shift + fold.rest == node.shift
    lo, hi = range_of_width(acc_bits, True)
    acc = np.concatenate([np.arange(lo, lo + 300), np.arange(hi - 300, hi + 1), rng.integers(lo, hi + 1, 20000)])
    off: Counter[int] = Counter()
    for m in ms:
        exact = requantize(acc, m, node.shift, node.lo, node.hi, node.rounding)
        for e in (-1, 0, 1):
            y = (acc >> fold.shift) + e + FOLD_LIFT
            assert fold.y_lo <= y.min() and y.max() <= fold.y_hi  # the public range holds every y ...
            bits, signed = width_for_range(fold.y_lo, fold.y_hi)
            assert fold.out_ring >= (bits if signed else bits + 1)  # ... and the ring holds that range
            for c in (0, 1):
                diff = _fold_path(acc, m, node, fold.shift, np.full_like(acc, e), np.full_like(acc, c)) - exact
                off.update(diff.tolist())
    assert set(off) == {-1, 0, 1}  # the bound, and it is attained both ways


def test_without_the_lift_the_errors_could_add_up_to_two() -> None:
    # why Fold adds 2: with y = floor(acc / 2^s') + e the truncation's -1 and the dropped carry's -1 add up
    acc = np.arange(-(1 << 18), 1 << 18, 7)
    exact = requantize(acc, 20000, 30, -128, 127)
    y = (acc >> 13) - 1
    worst = np.clip(((y * 20000 + (1 << 16)) >> 17) - 1, -128, 127) - exact
    assert worst.min() == -2


def test_fold_for_edges() -> None:
    spec = TensorSpec("acc", (4,), 16, True, *range_of_width(16, True))
    base = dict(name="rq", inputs=("acc",), output="o", lo=0, hi=15)
    assert fold_for(spec, Requantize(multiplier=(0,), shift=30, **base)) is None  # constant output
    assert fold_for(spec, Requantize(multiplier=(1 << 14,), shift=17, **base)) is None  # nothing left to fold
    fold = fold_for(spec, Requantize(multiplier=(1 << 14,), shift=40, **base))
    assert fold is not None  # a huge shift: the fold stops where y would need a wider ring
    assert fold.he_ring <= 17 and fold.out_ring < 16
    unsigned = TensorSpec("acc", (4,), 12, False, *range_of_width(12, False))
    fold = fold_for(unsigned, Requantize(multiplier=(3,), shift=12, **base))
    assert fold is not None and fold.y_lo >= 0  # the requantization may then skip the wrap comparison


# --------------------------------------------------------------------------- rings


@pytest.mark.parametrize("seed", [0, 5])
def test_rings_and_folds_come_from_public_metadata_only(seed: int) -> None:
    graph, _ = random_qgraph(seed)
    full, meta = plan_rings(graph, QUANTIZED_APPROX), plan_rings(graph.without_weights(), QUANTIZED_APPROX)
    assert full == meta and full.folds
    for name, fold in full.folds.items():
        node = next(n for n in graph.nodes if n.name == name)
        assert isinstance(node, (Conv, Linear))
        (rq,) = graph.consumers(node.output)
        assert full.folded[rq.name] is fold
        assert full.edges[node.output] == fold.out_ring < ring_widths(graph, MODES["quantized"])[node.output]
        assert all(full.edges[e] >= fold.he_ring for e in node.inputs)
    for node in graph.nodes:  # every HE layer's inputs live in at least the ring it computes in
        if protocol_of(node).kind == "he":
            assert all(full.edges[e] >= full.compute_ring(node) for e in node.inputs)


def test_exact_and_cheetah_modes_fold_nothing() -> None:
    graph, _ = random_qgraph(5)
    exact = plan_rings(graph, MODES["quantized"])
    assert not exact.folds and exact.edges == ring_widths(graph, MODES["quantized"])
    assert all(exact.edges[n.output] >= graph.tensors[n.output].bits for n in graph.nodes if protocol_of(n).kind == "he")
    cheetah = plan_rings(graph, mode_named("cheetah-int", exact=False))
    assert not cheetah.folds and set(cheetah.edges.values()) == {37}


# --------------------------------------------------------------------------- secure runs, node by node


async def _run(graph: QGraph, xq: np.ndarray, config: EngineConfig) -> tuple[SecureResult, SecureResult, Stats]:
    meta = graph.without_weights()
    stats: dict[str, Stats] = {}

    async def client(p: Party) -> SecureResult:
        res = await run_secure(p, meta, xq, config=config, keep_shares=True)
        stats["client"] = p.channel.stats()
        return res

    server, cli = await aiompc.run_local(
        lambda p: run_secure(p, graph, batch=len(xq), config=config, keep_shares=True), client)
    return server, cli, stats["client"]


def check_nodes(graph: QGraph, server: SecureResult, client: SecureResult, config: EngineConfig) -> Counter:
    """Reconstruct every edge and check each node against the reference on the values it received.

    Returns the count of errors by kind: ``("he", e)`` for folded HE outputs, ``("folded", e)`` /
    ``("requantize", e)`` for folded / unfolded requantizations (``e`` the deviation from the exact
    requantization of the exact accumulator of the inputs received)."""
    rings = plan_rings(graph, config.mode)
    assert server.shares is not None and client.shares is not None
    value = {e: ring.to_signed(ring.reconstruct(server.shares[e], client.shares[e], l), l)
             for e, l in rings.edges.items()}
    counts: Counter = Counter()

    def tally(kind: str, diff: np.ndarray, allowed: set[int]) -> None:
        got = Counter(diff.ravel().tolist())
        assert set(got) <= allowed, f"{kind}: deviations {dict(got)} outside {allowed}"
        counts.update({(kind, k): v for k, v in got.items()})

    for node in graph.nodes:
        xs = [value[e] for e in node.inputs]
        got = value[node.output]
        fold = rings.folds.get(node.name)
        folded = rings.folded.get(node.name)
        if fold is not None:  # y = floor(acc / 2^s') + e + 2
            acc = eval_node(node, xs, graph)
            tally("he", got - ((acc >> fold.shift) + FOLD_LIFT), {-1, 0, 1})
        elif folded is not None:
            assert isinstance(node, Requantize)
            producer = graph.producer(node.inputs[0])
            acc = eval_node(producer, [value[e] for e in producer.inputs], graph)
            tally("folded", got - eval_node(node, [acc], graph), {-1, 0, 1})
            rest = dataclasses.replace(node, shift=folded.rest)  # its own part: the dropped carry only
            assert set(np.unique(got - eval_node(rest, xs, graph)).tolist()) <= {-1, 0}
        elif isinstance(node, Requantize):
            tally("requantize", got - eval_node(node, xs, graph), {0} if config.exact else {-1, 0, 1})
        else:
            assert np.array_equal(got, eval_node(node, xs, graph)), node.name
    assert np.array_equal(client.output, value[graph.output])
    return counts


@pytest.mark.parametrize("seed", [0, 5])
async def test_random_networks_every_node_within_its_bound(seed: int) -> None:
    graph, net = random_qgraph(seed)
    xq = graph.quantize_input(net.inputs[:2])
    server, client, _ = await _run(graph, xq, APPROX)
    counts = check_nodes(graph, server, client, APPROX)
    assert any(kind == "he" for kind, _ in counts)  # the folds ran (y came back truncated)


async def test_folded_fully_connected_layer() -> None:
    # flatten -> gemm -> relu -> gemm: the first Linear's requantization is folded (fc with out_shift)
    rng = np.random.default_rng(7)
    b = OnnxBuilder((1, 6, 6), graph_name="mlp")
    h = b.relu(b.gemm(b.flatten(b.input), rng.normal(0, 0.3, (20, 36)), rng.normal(0, 0.1, 20)))
    graph = quantize(load_onnx(b.build(b.gemm(h, rng.normal(0, 0.3, (5, 20)), rng.normal(0, 0.1, 5)))),
                     rng.normal(0, 1, (16, 1, 6, 6)))
    folds = plan_rings(graph, QUANTIZED_APPROX).folds
    assert [type(n) for n in graph.nodes if n.name in folds] == [Linear]
    xq = graph.quantize_input(rng.normal(0, 1, (3, 1, 6, 6)))
    server, client, _ = await _run(graph, xq, APPROX)
    assert any(kind == "he" for kind, _ in check_nodes(graph, server, client, APPROX))


async def test_conv_requantize_fc_logits_differ_by_w_times_e() -> None:
    # conv -> requantize (folded) -> flatten -> fc: a_j within one LSB either way, so logits = ref + W e
    graph, net = random_qgraph(0, blocks=(), head="flatten")
    assert [n.op for n in graph.nodes] == ["conv", "requantize", "flatten", "linear"]
    assert plan_rings(graph, QUANTIZED_APPROX).folds
    xq = graph.quantize_input(net.inputs[:4])
    server, client, _ = await _run(graph, xq, APPROX)
    check_nodes(graph, server, client, APPROX)
    ref = run_int(graph, xq, collect=True)
    act = graph.nodes[1].output
    rings = ring_widths(graph, QUANTIZED_APPROX)
    approx = ring.to_signed(ring.reconstruct(server.shares[act], client.shares[act], rings[act]), rings[act])
    e = approx - ref[act]
    assert set(np.unique(e).tolist()) <= {-1, 0, 1}
    w = graph.nodes[-1].weight
    assert np.array_equal(client.output - ref[graph.output], e.reshape(len(e), -1) @ w.T)
    assert np.all(np.abs(client.output - ref[graph.output]) <= np.abs(w).sum(axis=1))


async def test_exact_mode_is_still_bit_exact() -> None:
    graph, net = random_qgraph(5)
    xq = graph.quantize_input(net.inputs[:1])
    server, client, _ = await _run(graph, xq, EngineConfig())
    assert check_nodes(graph, server, client, EngineConfig()).keys() <= {("requantize", 0)}
    assert np.array_equal(client.output, run_int(graph, xq))


async def test_digits_model_accuracy_and_per_node_bound() -> None:
    graph = digits_model()
    data = digits_data()
    x, labels = data.x_test[:64], data.y_test[:64]
    xq = graph.quantize_input(x)
    assert plan_rings(graph, QUANTIZED_APPROX).folds
    server, client, stats = await _run(graph, xq, APPROX)
    counts = check_nodes(graph, server, client, APPROX)
    assert counts[("he", 0)] > 0 and counts[("folded", 0)] > 0
    exact_acc = float(np.mean(np.argmax(run_int(graph, xq), axis=1) == labels))
    approx_acc = float(np.mean(np.argmax(client.output, axis=1) == labels))
    # the per-node bounds above are the correctness check; accuracy moves only where a sample's top two logits
    # are within the propagated one-LSB errors, which the random shares decide (seen: 2 of 64 flipped, once in
    # many runs); this line only guards against a gross accuracy loss
    assert abs(approx_acc - exact_acc) <= 3 / 64 + 1e-9, (exact_acc, approx_acc)


async def test_folding_cuts_the_bytes_of_the_folded_layers() -> None:
    graph = digits_model()
    xq = graph.quantize_input(digits_data().x_test[:2])
    (name, fold), = plan_rings(graph, QUANTIZED_APPROX).folds.items()
    (rq,) = graph.consumers(next(n for n in graph.nodes if n.name == name).output)

    def layer_bytes(stats: Stats, node: str) -> int:
        s = stats.select(f"infer/{node}")
        return s.bytes_sent + s.bytes_recv

    *_, exact = await _run(graph, xq, EngineConfig())
    *_, approx = await _run(graph, xq, APPROX)
    assert layer_bytes(approx, name) < layer_bytes(exact, name)
    assert layer_bytes(approx, rq.name) < layer_bytes(exact, rq.name)
