"""The shipped tiny ViT (``aiompc/models/digits_vit.onnx``, ``examples/train_digits_vit.py``): the file is the
transformer its card describes, as ``torch.onnx.export`` wrote it, and the card's float accuracy is recomputed
from the file (onnxruntime, and aiompc's own float interpreter once the importer reads it)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from aiompc.nn.zoo import SHIPPED_MODELS, SPLIT_SEED, TEST_FRACTION, VIT_CONFIG, digits_data, model_file, shipped_model

PATH = shipped_model("digits_vit")


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(PATH.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return onnx.load(PATH)


def test_registered_and_named_by_eval() -> None:
    assert "digits_vit" in SHIPPED_MODELS
    assert model_file("digits_vit") == PATH and PATH.is_file()
    assert model_file("no_such_model") .name == "no_such_model"


def test_the_file_is_the_transformer_of_its_card(model: onnx.ModelProto, card: dict) -> None:
    onnx.checker.check_model(model, full_check=True)
    arch = card["architecture"]
    assert model.opset_import[0].version == arch["opset"] >= 17
    ops = Counter(n.op_type for n in model.graph.node)
    layers = arch["layers"]
    assert 1 <= layers <= 2 and ops["Softmax"] == layers and ops["Conv"] == 1
    assert ops["LayerNormalization"] == 2 * layers + 1  # pre-LN: two per layer, one before the head
    assert ops["Gelu"] + ops["Erf"] == layers and ops["ReduceMean"] == 1  # mean over the tokens
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
    patch, hidden = arch["patch"], arch["hidden"]
    assert weights[conv.input[1]].shape == (hidden, 1, patch, patch) and attrs["strides"] == [patch, patch]
    assert arch["tokens"] == (8 // patch) ** 2 and hidden % arch["heads"] == 0
    # two-activation products: Q K^T and P V per layer
    assert sum(1 for n in model.graph.node if n.op_type == "MatMul" and not set(n.input) & set(weights)) == 2 * layers
    # the card's parameter count: every trained tensor (the exporter may share identical initializers)
    assert sum(w.size for w in weights.values() if w.dtype == np.float32 and w.ndim >= 1) <= card["parameters"]
    assert card["parameters"] > 10_000
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 8, 8]  # a dynamic batch axis


def test_the_card_records_split_seed_and_settings(card: dict) -> None:
    assert card["split"]["seed"] == SPLIT_SEED and card["split"]["test_fraction"] == TEST_FRACTION
    assert card["training"]["script"] == "examples/train_digits_vit.py" and isinstance(card["training"]["seed"], int)
    assert card["quantization"] == VIT_CONFIG.to_dict()
    assert card["dataset"] == "digits" and card["test_samples"] == 450
    assert card["export_agreement_with_torch"] == 1.0


def test_the_float_accuracy_is_recomputed_from_the_file(card: dict) -> None:
    ort = pytest.importorskip("onnxruntime")
    data = digits_data()
    sess = ort.InferenceSession(str(PATH), providers=["CPUExecutionProvider"])
    pred = sess.run(None, {sess.get_inputs()[0].name: data.x_test.astype(np.float32)})[0].argmax(1)
    assert card["float_accuracy"] == pytest.approx(np.mean(pred == data.y_test))
    assert card["float_accuracy"] > 0.95


def test_aiompc_reads_it_as_onnxruntime_does(card: dict) -> None:
    """aiompc's importer and float interpreter give the card's accuracy (top-1 equal to onnxruntime's but
    for float32/float64 near ties)."""
    from aiompc.nn import load_onnx, run_float

    fg = load_onnx(PATH)
    data = digits_data()
    pred = run_float(fg, data.x_test).argmax(1)
    assert abs(np.mean(pred == data.y_test) - card["float_accuracy"]) <= 1 / 450
