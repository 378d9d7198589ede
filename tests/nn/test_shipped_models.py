"""The trained models the package ships: their cards tell the truth, and secure inference runs them exactly.

The accuracies in each JSON card are recomputed here from the committed ONNX file (float: onnxruntime
and aiompc's float interpreter must agree; quantized: aiompc's quantizer with the card's settings on the
fixed calibration batch), so a retrained model with a stale card fails."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiompc.errors import UnsupportedModel
from aiompc.nn import load_onnx, predict, quantize, run_float, run_int
from aiompc.nn.evaluate import evaluate
from aiompc.nn.ir import Add, MaxPool
from aiompc.nn.quantize import QuantConfig
from aiompc.nn.zoo import SHIPPED_MODELS, digits_data, shipped_model

TRAINED = ("digits_resnet", "digits_resnet_qat", "digits_maxpool")


@pytest.fixture(scope="module")
def data():
    return digits_data()


def _not_yet_quantizable(path) -> bool:
    """A card without a quantized accuracy (the ViT while the transformer pipeline is incomplete) is only honest
    while aiompc really cannot import or quantize the model: then the card must be refreshed
    (``examples/train_digits_vit.py --card-only``)."""
    card = json.loads(path.with_suffix(".json").read_text())
    if card["quantized_accuracy"] is not None:
        return False
    with pytest.raises(UnsupportedModel):
        quantize(load_onnx(path), digits_data().calibration, QuantConfig(**card["quantization"]))
    return True


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_card_accuracies_are_recomputed_from_the_onnx_file(name: str, data) -> None:
    path = shipped_model(name)
    card = json.loads(path.with_suffix(".json").read_text())
    if _not_yet_quantizable(path):
        pytest.skip(f"{name}: aiompc cannot quantize it yet (tests/nn/test_digits_vit.py checks its float card)")
    fg = load_onnx(path)
    float_pred = run_float(fg, data.x_test).argmax(1)
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ort_pred = sess.run(None, {sess.get_inputs()[0].name: data.x_test.astype(np.float32)})[0].argmax(1)
    assert np.mean(ort_pred == float_pred) >= 0.995  # float32 vs float64: near ties only
    # a QDQ model's float graph is its fake-quantized network
    key = "fake_quant_accuracy" if fg.is_qdq else "float_accuracy"
    assert card[key] == pytest.approx(np.mean(float_pred == data.y_test))
    qg = quantize(fg, data.calibration, QuantConfig(**card["quantization"]))
    assert card["quantized_accuracy"] == pytest.approx(np.mean(predict(qg, data.x_test) == data.y_test))
    assert card["quantized_accuracy"] > 0.95 and card["test_samples"] == len(data.y_test)


def test_trained_models_have_the_promised_layers(data) -> None:
    for name, op in (("digits_resnet", Add), ("digits_maxpool", MaxPool)):
        fg = load_onnx(shipped_model(name))
        assert any(n.op == "batchnorm" for n in fg.nodes)
        qg = quantize(fg, data.calibration, QuantConfig(weight_bits=4, act_bits=4, first_last_bits=8))
        assert any(isinstance(n, op) for n in qg.nodes), name
        assert sorted({qg.tensors[n.output].bits for n in qg.nodes if n.op == "requantize"}) == [4, 8], name


def test_the_qat_resnet_keeps_its_trained_integers(data) -> None:
    """The QDQ model's weights are its own 4-bit integers (8-bit first/last), not re-quantized ones, and it
    beats the PTQ model it was fine-tuned from, as its card says."""
    path = shipped_model("digits_resnet_qat")
    card = json.loads(path.with_suffix(".json").read_text())
    fg = load_onnx(path)
    assert fg.is_qdq and not any(n.op == "batchnorm" for n in fg.nodes)
    qg = quantize(fg, data.calibration, QuantConfig(**card["quantization"]))
    weights = [n.weight for n in qg.nodes if n.op in ("conv", "linear")]
    assert [int(np.abs(w).max()) for w in weights] == [127] + [7] * (len(weights) - 2) + [127]
    assert card["quantized_accuracy"] > card["ptq_quantized_accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINED)
def test_secure_exact_equals_the_integer_program(name: str, data) -> None:
    x = data.x_test[:2]
    report = evaluate(shipped_model(name), "digits", samples=2, modes="plaintext-int,quantized", progress=False,
                      warmup=False)
    card = json.loads(shipped_model(name).with_suffix(".json").read_text())
    qg = quantize(load_onnx(shipped_model(name)), data.calibration, QuantConfig(**card["quantization"]))
    want = qg.dequantize_output(run_int(qg, qg.quantize_input(x))).argmax(1)
    assert report["quantized"].predictions.tolist() == want.tolist()
    assert report["quantized"].program_check["max_abs_diff_lsb"] == 0
