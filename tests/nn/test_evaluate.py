"""``aiompc.nn.evaluate`` and ``aiompc eval`` on a handful of digits: every number is checked against an
independent computation (onnxruntime for the float model, the zoo's quantized and fixed-point programs
through :func:`run_int`, the labels), never against the evaluator's own output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aiompc.cli import main
from aiompc.errors import InputError
from aiompc.nn.datasets import load_dataset
from aiompc.nn.evaluate import evaluate, parse_modes
from aiompc.nn.interpret import run_int
from aiompc.nn.zoo import DIGITS_ONNX, digits_data, digits_fixed_point, digits_model

N = 6


def ort_logits(x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(DIGITS_ONNX), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0].astype(np.float64)


@pytest.fixture(scope="module")
def report():
    return evaluate(DIGITS_ONNX, "digits", samples=N, modes="plaintext-float,plaintext-int,quantized,cheetah",
                    batch=4, progress=False)


def test_evaluate_numbers_match_independent_references(report) -> None:
    data = digits_data()
    x, y = data.x_test[:N], data.y_test[:N]
    assert report.samples == N and report.dataset_size == len(data.x_test)
    assert report.labels.tolist() == y.tolist()

    float_logits = ort_logits(x)
    float_pred = float_logits.argmax(1)
    qg = digits_model()
    int_logits = qg.dequantize_output(run_int(qg, qg.quantize_input(x)))
    int_pred = int_logits.argmax(1)
    fg = digits_fixed_point()
    fixed_pred = fg.dequantize_output(run_int(fg, fg.quantize_input(x))).argmax(1)

    pf = report["plaintext-float"]
    assert pf.predictions.tolist() == float_pred.tolist()
    assert pf.accuracy == pytest.approx(np.mean(float_pred == y))
    assert pf.logit_err_max < 1e-4  # float64 against onnxruntime's float32

    for mode in ("plaintext-int", "quantized"):
        r = report[mode]
        assert r.predictions.tolist() == int_pred.tolist(), mode
        assert r.accuracy == pytest.approx(np.mean(int_pred == y))
        assert r.agree_float == pytest.approx(np.mean(int_pred == float_pred))
        assert r.agree_int == 1.0
        err = np.abs(int_logits - float_logits)
        assert r.logit_err_mean == pytest.approx(err.mean(), abs=1e-4)
        assert r.logit_err_max == pytest.approx(err.max(), abs=1e-4)

    q = report["quantized"]
    assert q.exact and q.program_check["max_abs_diff_lsb"] == 0 and q.program_check["argmax_agree"] == 1.0
    assert report.mismatches() == []

    c = report["cheetah"]
    assert (c.program, c.exact) == ("fixed-point", False)
    assert c.predictions.tolist() == fixed_pred.tolist()
    assert c.agree_int == pytest.approx(np.mean(fixed_pred == int_pred))
    # Cheetah's truncation: one LSB at 2^-12 per layer, far below a logit unit
    assert 0 <= c.program_check["max_abs_diff_lsb"] < 2 ** 24 * 0.05


def test_evaluate_costs_come_from_the_channel(report) -> None:
    for mode in ("quantized", "cheetah"):
        r = report[mode]
        t = r.totals
        assert r.bytes_per_sample * N == t["bytes_c2s"] + t["bytes_s2c"] > 0
        assert t["linear_bytes"] > 0 and t["nonlinear_bytes"] > 0
        assert t["bytes_c2s"] + t["bytes_s2c"] >= t["linear_bytes"] + t["nonlinear_bytes"]
        assert r.seconds_per_sample > 0 and r.cpu_seconds_per_sample > 0
    # the quantized protocol's reason to exist: fewer bytes than Cheetah's 37-bit fixed point
    assert report["quantized"].bytes_per_sample < report["cheetah"].bytes_per_sample
    for mode in ("plaintext-float", "plaintext-int"):
        assert report[mode].bytes_per_sample == 0 and report[mode].program_check is None
    table = report.markdown()
    assert all(f"| {m} |" in table for m in ("plaintext-float", "plaintext-int", "quantized", "cheetah"))


def test_parse_modes() -> None:
    specs = parse_modes("plaintext-int,quantized,quantized:approx,cheetah:exact,cheetah")
    assert [(s.label, s.exact) for s in specs] == [("plaintext-int", None), ("quantized", True),
                                                    ("quantized:approx", False), ("cheetah:exact", True),
                                                    ("cheetah", False)]
    assert [s.exact for s in parse_modes("quantized,cheetah", exact=False)] == [False, False]
    for bad in ("nope", "plaintext-int:exact", "quantized:fast", "quantized,quantized", ""):
        with pytest.raises(InputError):
            parse_modes(bad)


def test_npz_datasets(tmp_path: Path) -> None:
    x, y = np.zeros((3, 1, 8, 8)), np.array([1, 2, 3])
    np.savez(tmp_path / "a.npz", inputs=x, labels=y, calibration=x)
    d = load_dataset(tmp_path / "a.npz")
    assert d.x.shape == (3, 1, 8, 8) and d.y.tolist() == [1, 2, 3] and d.calibration is not None
    np.savez(tmp_path / "b.npz", x=x)
    with pytest.raises(InputError, match="no array named 'y'"):
        load_dataset(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", x=x, y=np.array([1.5, 2, 3]))
    with pytest.raises(InputError, match="integer class labels"):
        load_dataset(tmp_path / "c.npz")
    with pytest.raises(InputError, match="not found"):
        load_dataset(tmp_path / "missing.npz")
    with pytest.raises(InputError, match="unknown dataset"):
        load_dataset("imagenet")


def test_cli_eval_npz_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = digits_data()
    x, y = data.x_test[10:14], data.y_test[10:14]
    np.savez(tmp_path / "d.npz", x=x, y=y, calibration=data.calibration)
    out = tmp_path / "r.json"
    png = tmp_path / "r.png"
    assert main(["eval", str(DIGITS_ONNX), "--dataset", str(tmp_path / "d.npz"), "--modes",
                 "plaintext-int,quantized:approx", "--json", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "| quantized:approx |" in text and "approx requant" in text
    rep = json.loads(out.read_text())
    qg = digits_model()
    want = qg.dequantize_output(run_int(qg, qg.quantize_input(x))).argmax(1)
    assert rep["modes"][0]["predictions"] == want.tolist()
    assert rep["modes"][0]["accuracy"] == pytest.approx(np.mean(want == y))
    assert rep["modes"][1]["exact"] is False and rep["labels"] == y.tolist()
    assert png.stat().st_size > 0


@pytest.mark.parametrize("args, words", [
    (["--dataset", "imagenet"], "unknown dataset"),
    (["--dataset", "digits", "--modes", "quantized,fast"], "unknown mode"),
    (["--dataset", "digits", "--samples", "0"], "at least 1"),
])
def test_cli_eval_errors_are_one_line_exit_2(args: list[str], words: str, capsys) -> None:
    assert main(["eval", str(DIGITS_ONNX), *args]) == 2
    err = capsys.readouterr().err
    assert "InputError" in err and words in err and err.count("\n") == 1


def test_cli_eval_missing_model_and_default_dataset(tmp_path: Path, capsys) -> None:
    assert main(["eval", str(tmp_path / "nope.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["eval", str(DIGITS_ONNX), "--samples", "2", "--modes", "plaintext-float,plaintext-int"]) == 0
    assert "dataset digits: 2 of 450" in capsys.readouterr().out
    # a shipped model by its name (aiompc eval digits_vit)
    assert main(["eval", "digits_cnn", "--samples", "2", "--modes", "plaintext-float"]) == 0
    assert "dataset digits: 2 of 450" in capsys.readouterr().out


def test_cli_eval_wrong_shape(tmp_path: Path, capsys) -> None:
    np.savez(tmp_path / "w.npz", x=np.zeros((2, 1, 4, 4)), y=np.array([0, 1]))
    assert main(["eval", str(DIGITS_ONNX), "--dataset", str(tmp_path / "w.npz")]) == 2
    assert "the model expects (1, 8, 8)" in capsys.readouterr().err


def test_model_dataset(tmp_path: Path) -> None:
    from aiompc.nn.datasets import model_dataset
    from aiompc.nn.zoo import shipped_model

    assert model_dataset(DIGITS_ONNX) == "digits" and model_dataset(shipped_model("digits_resnet")) == "digits"
    model = tmp_path / "m.onnx"
    model.write_bytes(DIGITS_ONNX.read_bytes())
    with pytest.raises(InputError, match="brings no test set"):
        model_dataset(model)
    np.savez(tmp_path / "m.npz", x=np.zeros((1, 1, 8, 8)), y=np.array([0]))
    assert model_dataset(model) == str(tmp_path / "m.npz")
