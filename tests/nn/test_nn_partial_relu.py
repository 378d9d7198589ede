"""ReLU-reduced networks (SNL / SENet): the partial ReLU imported as PyTorch exports it (float and QDQ), and
secure inference equal to the plaintext integer program bit for bit in both modes, on both OT engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnxruntime.quantization import CalibrationDataReader, quantize_static

import aiompc
from aiompc.errors import UnsupportedModel
from aiompc.nn import load_onnx, quantize, run_int
from aiompc.nn.fixed_point import fixed_point
from aiompc.nn.interpret import run_float
from aiompc.nn.ir import PartialRelu, PartialReluRequantize, QGraph, ReluMasked
from aiompc.nn.modes import engine_config
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.rings import plan_rings
from aiompc.nn.secure import run_secure
from aiompc.nn.testing import random_network
from aiompc.party import Party
from aiompc.protocols.ot import engines

DATA = Path(__file__).parent / "data"
EXPORTS = ("snl_dynamo", "snl_script")


def _onnxruntime(path: Path | str, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1].astype(np.float32)})[0]
                           for i in range(len(x))])


async def _secure(graph: QGraph, xq: np.ndarray, mode: str) -> np.ndarray:
    cfg = engine_config(mode, exact=True)
    meta = graph.without_weights()
    _, client = await aiompc.run_local(lambda p: run_secure(p, graph, batch=len(xq), config=cfg),
                                       lambda p: run_secure(p, meta, xq, config=cfg))
    return client.output


@pytest.mark.parametrize("name", EXPORTS)
def test_torch_exports_import_as_partial_relus(name: str) -> None:
    """The three forms (x + m·(relu(x) − x) per pixel, m·relu(x) + (1 − m)·x per channel, where(mask, …) per
    pixel after a residual add) become partial ReLUs with the masks torch wrote; the float graph computes what
    onnxruntime computes from the original pattern."""
    path = DATA / f"{name}.onnx"
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Where", "Sub", "Mul"} <= ops  # the patterns really are in the file
    g = load_onnx(path)
    partial = [n for n in g.nodes if n.op == "partial_relu"]
    assert [n.params["mask"].shape for n in partial] == [(8, 8, 8), (8, 1, 1), (8, 8, 8)]
    assert not {"batchnorm"} & {n.op for n in g.nodes}  # the Sub/Mul of the patterns left no affine layer
    for n in partial:
        m = n.params["mask"]
        assert set(np.unique(m)) == {0.0, 1.0}
    x = np.load(DATA / "digits_sample.npy").astype(np.float64)
    np.testing.assert_allclose(run_float(g, x), _onnxruntime(path, x), atol=1e-4)


@pytest.mark.parametrize("mode", ["quantized", "cheetah"])
async def test_exported_model_runs_exactly(mode: str) -> None:
    g = load_onnx(DATA / "snl_script.onnx")
    q = quantize(g, np.load(DATA / "digits_calibration.npy")) if mode == "quantized" else fixed_point(g)
    assert any(isinstance(n, ReluMasked) for n in q.nodes)
    xq = q.quantize_input(np.load(DATA / "digits_sample.npy")[:2])
    np.testing.assert_array_equal(await _secure(q, xq, mode), run_int(q, xq))


@pytest.mark.parametrize("engine", ["silent", "iknp"])
@pytest.mark.parametrize("mode", ["quantized", "cheetah", "cheetah-int"])
async def test_random_partial_nets_are_bit_exact(mode: str, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-element and per-channel masks, one partial ReLU after another (a standalone PartialRelu in the
    quantized program) and after a residual add, odd shapes; cheetah-int: the quantized program on 37-bit rings."""
    monkeypatch.setattr(engines, "DEFAULT_ENGINE", engine)
    net = random_network(7, blocks=("partial", "stride2", "partial"), input_shape=(2, 7, 9), test_size=2)
    g = load_onnx(net.model)
    q = fixed_point(g) if mode == "cheetah" else quantize(g, net.calibration)
    kinds = {type(n) for n in q.nodes}
    assert PartialRelu in kinds and (mode == "cheetah" or PartialReluRequantize in kinds)
    xq = q.quantize_input(net.inputs)
    np.testing.assert_array_equal(await _secure(q, xq, mode), run_int(q, xq))


@pytest.mark.parametrize("mask", ["ones", "zeros", "one"])
async def test_edge_masks_in_both_modes(mask: str) -> None:
    """All ones is a ReLU, all zeros the identity, a single kept element a partial ReLU: exact either way."""
    b = OnnxBuilder((2, 5, 3))
    rng = np.random.default_rng(3)
    m = {"ones": np.ones((1, 2, 5, 3)), "zeros": np.zeros((2, 1, 1)), "one": np.zeros((2, 5, 3))}[mask]
    if mask == "one":
        m[1, 4, 2] = 1
    y = b.conv(b.input, rng.normal(0, 0.5, (2, 2, 3, 3)), rng.normal(0, 0.1, 2), 1, 1)
    y = b.partial_relu(y, m, "sub")
    out = b.gemm(b.flatten(y), rng.normal(0, 0.3, (3, 30)), np.zeros(3))
    g = load_onnx(b.build(out))
    x = rng.normal(0, 1, (2, 2, 5, 3))
    for mode, q in (("quantized", quantize(g, rng.normal(0, 1, (16, 2, 5, 3)))), ("cheetah", fixed_point(g))):
        masked = [n for n in q.nodes if isinstance(n, ReluMasked)]
        assert len(masked) == (1 if mask == "one" else 0)
        xq = q.quantize_input(x)
        np.testing.assert_array_equal(await _secure(q, xq, mode), run_int(q, xq))


def test_other_patterns_are_refused() -> None:
    rng = np.random.default_rng(0)

    def model(form: str) -> onnx.ModelProto:
        b = OnnxBuilder((2, 4, 4))
        y = b.conv(b.input, rng.normal(0, 0.5, (2, 2, 3, 3)), None, 1, 1)
        if form == "soft":  # a mask that is not 0/1 (SNL before binarization)
            y = b.partial_relu(y, np.full((2, 1, 1), 0.3), "sub")
        elif form == "other":  # x + m * (relu(z) - x) with z != x
            z = b.conv(b.input, rng.normal(0, 0.5, (2, 2, 3, 3)), None, 1, 1)
            y = b.add(y, b.node("Mul", [b.const(np.ones((2, 1, 1)), "m"), b.node("Sub", [b.relu(z), y])]))
        else:  # Where with a computed condition
            y = b.node("Where", [b.node("Greater", [y, b.const(np.float32(0.1))]), b.relu(y), y])
        return b.build(b.flatten(y))

    with pytest.raises(UnsupportedModel, match="only 0 and 1"):
        load_onnx(model("soft"))
    with pytest.raises(UnsupportedModel, match="Sub"):
        load_onnx(model("other"))
    with pytest.raises(UnsupportedModel, match="Greater|Where"):
        load_onnx(model("where"))


class _Reader(CalibrationDataReader):
    def __init__(self, x: np.ndarray) -> None:
        self.batches = iter([{"x": x[i:i + 1].astype(np.float32)} for i in range(len(x))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


async def test_qdq_model_of_quantize_static(tmp_path: Path) -> None:
    """onnxruntime's quantize_static puts QDQ pairs on every edge of the patterns; they are still partial
    ReLUs (the pairs inside a pattern dropped), and the QDQ program runs exactly."""
    out = tmp_path / "snl_qdq.onnx"
    quantize_static(str(DATA / "snl_script.onnx"), str(out), _Reader(np.load(DATA / "digits_calibration.npy")))
    g = load_onnx(out)
    assert [n.op for n in g.nodes].count("partial_relu") == 3 and g.is_qdq
    q = quantize(g)
    x = np.load(DATA / "digits_sample.npy").astype(np.float64)
    xq = q.quantize_input(x[:2])
    np.testing.assert_array_equal(await _secure(q, xq, "quantized"), run_int(q, xq))
    # the integer program follows onnxruntime's QDQ evaluation (top class on the samples)
    want = _onnxruntime(out, x)
    got = q.dequantize_output(run_int(q, q.quantize_input(x)))
    assert np.mean(np.argmax(got, 1) == np.argmax(want, 1)) >= 0.9


async def test_cheetah_approx_truncation_of_partial_relus() -> None:
    """Cheetah's approximate truncation of a partial ReLU's signed output (the MSB made known by the public
    offset 2^(b-1)): node by node every truncation is 0 or 1 LSB below the exact one on the value it
    received, every other node (the partial ReLUs included) exact."""
    from collections import Counter

    from aiompc import ring
    from aiompc.nn.interpret import eval_node
    from aiompc.nn.ir import Requantize

    g = fixed_point(load_onnx(DATA / "snl_script.onnx"))
    xq = g.quantize_input(np.load(DATA / "digits_sample.npy")[:2])
    cfg = engine_config("cheetah", exact=False)
    meta = g.without_weights()
    server, client = await aiompc.run_local(
        lambda p: run_secure(p, g, batch=len(xq), config=cfg, keep_shares=True),
        lambda p: run_secure(p, meta, xq, config=cfg, keep_shares=True))
    assert server.shares is not None and client.shares is not None
    value = {e: ring.to_signed(ring.reconstruct(server.shares[e], client.shares[e], 37), 37) for e in g.tensors}
    errors: Counter[int] = Counter()
    truncated_partial = 0
    for node in g.nodes:
        want = eval_node(node, [value[e] for e in node.inputs], g)
        if isinstance(node, Requantize):
            errors.update((value[node.output] - want).ravel().tolist())
            truncated_partial += isinstance(g.producer(node.inputs[0]), PartialRelu)
        else:
            assert np.array_equal(value[node.output], want), node.name
    assert set(errors) == {-1, 0} and truncated_partial == 3


async def test_cheetah_truncation_after_a_partial_relu_knows_its_msb() -> None:
    """The identity elements pay only the MSB-known truncation: bytes per truncated value (channel statistics)
    far below a 37-bit wrap comparison (≈ 300 bits), as after a dense ReLU."""
    g = fixed_point(load_onnx(DATA / "snl_script.onnx"))
    xq = g.quantize_input(np.load(DATA / "digits_sample.npy")[:1])
    cfg = engine_config("cheetah", exact=False)
    meta = g.without_weights()

    async def client(p: Party) -> tuple[Any, Any]:
        res = await run_secure(p, meta, xq, config=cfg)
        return res, p.channel.stats()

    _, (res, stats) = await aiompc.run_local(lambda p: run_secure(p, g, batch=1, config=cfg), client)
    truncs = [r for r in res.layers if r.op == "requantize" and isinstance(g.producer(
        next(n for n in g.nodes if n.name == r.name).inputs[0]), PartialRelu)]
    assert len(truncs) == 3
    for r in truncs:
        st = stats.select(r.label)
        size = g.tensors[next(n for n in g.nodes if n.name == r.name).output].size
        assert 8 * (st.bytes_sent + st.bytes_recv) / size < 64, r.name


async def test_quantized_approx_partial_relus_within_one_lsb() -> None:
    """Approximate quantized mode: a partial ReLU's requantization folded into its conv (or not) is within
    one LSB of the exact one on the values it received, node by node (the bound of test_secure_approx)."""
    from test_secure_approx import APPROX, _run, check_nodes

    net = random_network(7, blocks=("partial", "stride2", "partial"), input_shape=(2, 7, 9), test_size=2)
    graph = quantize(load_onnx(net.model), net.calibration)
    xq = graph.quantize_input(net.inputs)
    server, client, _ = await _run(graph, xq, APPROX)
    counts = check_nodes(graph, server, client, APPROX)
    assert any(kind == "folded" for kind, _ in counts)
    folded = plan_rings(graph, APPROX.mode).folded
    assert any(isinstance(n, PartialReluRequantize) and n.name in folded for n in graph.nodes)


@pytest.mark.parametrize("mode", ["quantized", "cheetah"])
async def test_partial_relu_before_maxpool_and_after_a_linear_layer(mode: str) -> None:
    """The shapes a linearized small CNN has: a per-pixel mask before a max-pool, a (1, F) mask after a Gemm."""
    rng = np.random.default_rng(11)
    b = OnnxBuilder((1, 6, 6))
    y = b.conv(b.input, rng.normal(0, 0.5, (3, 1, 3, 3)), rng.normal(0, 0.1, 3), 1, 1)
    y = b.maxpool(b.partial_relu(y, rng.random((1, 3, 6, 6)) < 0.4, "sub"), 2, 2)
    y = b.gemm(b.flatten(y), rng.normal(0, 0.3, (7, 27)), rng.normal(0, 0.1, 7))
    y = b.partial_relu(y, rng.random((1, 7)) < 0.5, "mul")
    g = load_onnx(b.build(b.gemm(y, rng.normal(0, 0.3, (4, 7)), np.zeros(4))))
    assert [n.params["mask"].shape for n in g.nodes if n.op == "partial_relu"] == [(3, 6, 6), (7,)]
    q = quantize(g, rng.normal(0, 1, (16, 1, 6, 6))) if mode == "quantized" else fixed_point(g)
    xq = q.quantize_input(rng.normal(0, 1, (2, 1, 6, 6)))
    np.testing.assert_array_equal(await _secure(q, xq, mode), run_int(q, xq))


def test_where_with_the_branches_swapped_is_the_negated_mask() -> None:
    rng = np.random.default_rng(5)
    b = OnnxBuilder((2, 3, 3))
    y = b.conv(b.input, rng.normal(0, 0.5, (2, 2, 3, 3)), None, 1, 1)
    m = rng.random((2, 3, 3)) < 0.5
    out = b.node("Where", [b.const(m, "mask", dtype=onnx.TensorProto.BOOL), y, b.relu(y)])
    g = load_onnx(b.build(b.flatten(out)))
    (node,) = [n for n in g.nodes if n.op == "partial_relu"]
    assert np.array_equal(node.params["mask"] != 0, ~m)
    x = rng.normal(0, 1, (3, 2, 3, 3))
    conv = run_float(g, x, collect=True)[g.nodes[0].output]
    np.testing.assert_allclose(run_float(g, x), np.where(m, conv, np.maximum(conv, 0)).reshape(3, -1))
