"""``aiompc linearize`` (SNL): the torch module made from aiompc's float graph computes what onnxruntime
computes on the original file, the exported masks keep exactly the budget, the written model's float
function equals the trained module's (onnxruntime and aiompc's own reading), and it runs in ``aiompc run``
in both modes equal to the plaintext reference.  Training here is a few epochs on a data subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from aiompc.cli import main  # noqa: E402
from aiompc.errors import InputError, UnsupportedModel  # noqa: E402
from aiompc.nn.interpret import run_float, run_int  # noqa: E402
from aiompc.nn.linearize import SnlSettings, linearize  # noqa: E402
from aiompc.nn.linearize_net import GraphNet, export_onnx  # noqa: E402
from aiompc.nn.linearize_snl import keep_top, learn_mask, logits_of, relu_scores  # noqa: E402
from aiompc.nn.onnx_import import load_onnx  # noqa: E402
from aiompc.nn.service import load_model  # noqa: E402
from aiompc.nn.zoo import DIGITS_ONNX, digits_data, shipped_model  # noqa: E402

DATA = Path(__file__).parent / "data"
QUICK = SnlSettings(max_epochs=3, finetune_epochs=2, lam=4.0)
FLOAT_MODELS = [DIGITS_ONNX, shipped_model("digits_resnet"), shipped_model("digits_maxpool"),
                *sorted(DATA.glob("*.onnx"))]


def _ort(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model))
    inp = s.get_inputs()[0]
    step = inp.shape[0] if isinstance(inp.shape[0], int) else len(x)  # a static batch axis: in pieces
    return np.concatenate([s.run(None, {inp.name: x[i:i + step].astype(np.float32)})[0]
                           for i in range(0, len(x), step)])


def _masks(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The mask initializers of the exported pattern: the constant operand of a Mul."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {i: inits[i] for n in model.graph.node if n.op_type == "Mul" for i in n.input if i in inits}


@pytest.mark.parametrize("path", FLOAT_MODELS, ids=lambda p: p.stem)
def test_the_torch_module_computes_what_onnxruntime_computes_on_the_original(path: Path) -> None:
    x = digits_data().x_test[:32]
    net = GraphNet(load_onnx(path)).eval()
    with torch.no_grad():
        ours = net(torch.tensor(x, dtype=torch.float32)).numpy()
    want = _ort(path, x)
    assert np.max(np.abs(ours - want.reshape(ours.shape))) < 1e-4 * max(1.0, np.max(np.abs(want)))


def test_a_qdq_model_is_refused_with_what_to_do_instead() -> None:
    with pytest.raises(UnsupportedModel, match="QDQ.*linearize the float model"):
        GraphNet(load_onnx(shipped_model("digits_resnet_qat")))


@pytest.fixture(scope="module")
def masked_resnet() -> tuple[GraphNet, onnx.ModelProto]:
    """The digits ResNet with a random per-element mask on every ReLU, one all-ones and one all-zeros."""
    net = GraphNet(load_onnx(shipped_model("digits_resnet")))
    gen = torch.Generator().manual_seed(1)
    for i, r in enumerate(net.relus):
        keep = torch.rand(r.c.shape, generator=gen) < 0.3
        r.freeze(torch.ones_like(keep) if i == 1 else torch.zeros_like(keep) if i == 2 else keep)
    return net, export_onnx(net)


def test_the_export_writes_each_partial_relu_as_x_plus_m_times_relu_minus_x(masked_resnet) -> None:
    net, model = masked_resnet
    masks = _masks(model)
    partial = [r for r in net.relus if 0 < r.kept < r.size]
    assert len(masks) == len(partial) == 3
    for r, m in zip(partial, masks.values()):
        assert m.shape == (1, *r.shape) and set(np.unique(m)) <= {0.0, 1.0}
        assert int(m.sum()) == r.kept
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Relu") == 4  # 3 partial + the all-ones layer; the all-zeros layer is the identity
    for n in model.graph.node:
        if n.op_type == "Mul" and n.input[0] in masks:
            sub = next(p for p in model.graph.node if p.output[0] == n.input[1])
            relu = next(p for p in model.graph.node if p.output[0] == sub.input[0])
            assert (sub.op_type, relu.op_type, sub.input[1]) == ("Sub", "Relu", relu.input[0])


def test_the_exported_model_computes_what_the_torch_module_computes(masked_resnet) -> None:
    net, model = masked_resnet
    x = digits_data().x_test[:40]  # another batch size than the export's example: the batch axis is free
    ours = logits_of(net, torch.tensor(x, dtype=torch.float32)).numpy()
    assert np.max(np.abs(_ort(model, x) - ours)) < 1e-4


def test_the_mask_search_is_deterministic_given_the_seed() -> None:
    d = digits_data()
    x, y = torch.tensor(d.x_train[:128], dtype=torch.float32), torch.tensor(d.y_train[:128])

    def scores() -> torch.Tensor:
        torch.manual_seed(0)
        net = GraphNet(load_onnx(DIGITS_ONNX))
        teacher = logits_of(net, x)
        learn_mask(net, x, y, teacher, 10, SnlSettings(max_epochs=2, lam=4.0), torch.Generator().manual_seed(5))
        return relu_scores(net)

    first, second = scores(), scores()
    assert torch.equal(first, second)
    assert float(first.min()) < 1.0  # the masks moved


def test_keep_top_keeps_exactly_the_budget_by_score_with_ties_by_position() -> None:
    net = GraphNet(load_onnx(DIGITS_ONNX))
    scores = torch.linspace(-0.5, 0.4, net.relu_count)
    scores[:100] = 0.5  # ties
    scores[-200:] += 1.0  # the 200 largest
    start = 0
    for r in net.relus:
        r.c.data = scores[start:start + r.size].reshape(r.c.shape).clone()
        start += r.size
    keep_top(net, 250)
    kept = torch.cat([r.m.reshape(-1) for r in net.relus]).bool()
    assert int(kept.sum()) == 250 == sum(r.kept for r in net.relus)
    assert kept[-200:].all() and kept[:50].all()  # then the first 50 of the ties
    assert not kept[50:-200].any()
    assert all(r.binary and not r.c.requires_grad for r in net.relus)


@pytest.fixture(scope="module")
def linearized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """digits_cnn at a quarter of its ReLUs, through the command, trained briefly on a subset."""
    out = tmp_path_factory.mktemp("lin") / "snl.onnx"
    card = out.with_suffix(".json")
    args = ["linearize", str(DIGITS_ONNX), "--budget", "25%", "--dataset", "digits", "-o", str(out), "--json",
            str(card), "--epochs", "3", "--finetune-epochs", "2", "--lam", "4", "--train-samples", "256",
            "--samples", "100"]
    assert main(args) == 0
    return out, json.loads(card.read_text())


def test_linearize_keeps_exactly_the_budget_and_reports_accuracy_before_and_after(linearized, capsys) -> None:
    out, card = linearized
    model = onnx.load(out)
    assert sum(int(m.sum()) for m in _masks(model).values()) == 192 == card["kept_relus"] == card["budget"]
    assert card["total_relus"] == 768 and sum(layer["kept"] for layer in card["layers"]) == 192
    assert 0.8 < card["accuracy_before"] <= 1.0 and 0.0 <= card["accuracy_after"] <= 1.0
    assert card["test_samples"] == 100 and card["train_samples"] == 256
    assert json.loads({p.key: p.value for p in model.metadata_props}["aiompc.linearize"])["budget"] == 192


def test_the_written_model_computes_what_aiompc_reads_and_the_trained_module_computed(linearized) -> None:
    out, card = linearized
    x = digits_data().x_test[:100]
    ours = run_float(load_onnx(out), x)
    assert np.max(np.abs(_ort(out, x) - ours)) < 1e-4
    assert card["onnx_vs_torch_max_logit_diff"] < 1e-4
    assert card["accuracy_after"] == np.mean(np.argmax(ours, axis=1) == digits_data().y_test[:100])


@pytest.mark.parametrize("mode, graph", [("cheetah", "fixed-point"), ("quantized", "quantized")])
def test_the_linearized_model_runs_in_aiompc_run_equal_to_the_plaintext_reference(linearized, mode, graph, capsys,
                                                                                   tmp_path) -> None:
    out, card = linearized
    x = digits_data().x_test[:2]
    path = tmp_path / "x.npy"
    np.save(path, x)
    assert main(["run", str(out), "--input", str(path), "--mode", mode, "--exact", "--calibration", "digits",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    program = load_model(out, graph=graph, calibration=digits_data().calibration if graph == "quantized" else None,
                         config=None)
    want = program.dequantize_output(run_int(program, program.quantize_input(x)))
    assert result["check"]["max_abs_diff_lsb"] == 0
    partial = [row for row in result["layers"] if "relus_kept" in row]
    assert [(row["relus_kept"], row["relus"]) for row in partial] == [(r["kept"], r["total"]) for r in card["layers"]]
    assert sum(row["relus_kept"] for row in partial) == 192
    assert np.array_equal(np.array(result["reference"]), want)
    assert np.array_equal(np.array(result["secure"]), want)


def test_a_budget_beyond_the_relu_count_is_an_input_error() -> None:
    with pytest.raises(InputError, match="768 ReLUs"):
        linearize(DIGITS_ONNX, 769, "digits", QUICK)


def test_the_command_refuses_a_qdq_model_with_exit_status_2(capsys, tmp_path) -> None:
    out = tmp_path / "out.onnx"
    assert main(["linearize", str(shipped_model("digits_resnet_qat")), "--budget", "10", "--dataset", "digits",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "UnsupportedModel" in err and "linearize the float model" in err and not out.exists()


def test_a_partial_relu_model_is_linearized_further_from_its_own_mask() -> None:
    """An SNL model exported by torch (tests/nn/data/snl_*.onnx): the search starts with c = its mask."""
    graph = load_onnx(DATA / "snl_dynamo.onnx")
    partial = [n for n in graph.nodes if n.op == "partial_relu"]
    assert partial
    net = GraphNet(graph)
    for node, relu in zip([n for n in graph.nodes if n.op in ("relu", "partial_relu")], net.relus):
        want = np.broadcast_to(node.params["mask"] != 0, relu.shape) if node.op == "partial_relu" else 1.0
        assert np.array_equal(relu.c.detach().numpy()[0], np.broadcast_to(want, relu.shape).astype(np.float32))
