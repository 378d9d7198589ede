"""``aiompc run`` and ``aiompc demo`` in each mode (in process, both parties over loopback TCP): the
secure result against the plaintext integer program of the mode, computed here independently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aiompc.cli import main
from aiompc.nn.interpret import predict, run_int
from aiompc.nn.zoo import DIGITS_ONNX, digits_data, digits_fixed_point, digits_model


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    x = digits_data().x_test[:3]
    path = tmp_path_factory.mktemp("run") / "x.npy"
    np.save(path, x)
    return path, x


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["run", str(DIGITS_ONNX), *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_run_cheetah_is_the_fixed_point_program_with_approximate_truncation(samples, capsys) -> None:
    path, x = samples
    out = run_json(capsys, "--input", str(path), "--mode", "cheetah")
    graph = digits_fixed_point()
    assert (out["mode"], out["graph"], out["exact"]) == ("cheetah", "fixed-point", False)
    assert {row["ring"] for row in out["layers"]} == {37}
    reference = graph.dequantize_output(run_int(graph, graph.quantize_input(x)))
    assert np.array_equal(np.array(out["reference"]), reference)
    secure = np.array(out["secure"])
    assert np.argmax(secure, axis=1).tolist() == predict(graph, x).tolist()
    # Cheetah's truncation: each may be one LSB (2^-12) low; the logits move by far less than one unit
    assert np.max(np.abs(secure - reference)) < 0.05
    check = out["check"]
    assert check["argmax_agree"] == 1.0
    assert check["max_abs_diff_lsb"] == round(np.max(np.abs(secure - reference)) * 2 ** 24)


def test_run_cheetah_exact_equals_the_fixed_point_reference(samples, capsys) -> None:
    path, x = samples
    out = run_json(capsys, "--input", str(path), "--mode", "cheetah", "--exact")
    graph = digits_fixed_point()
    assert (out["graph"], out["exact"], out["check"]["max_abs_diff_lsb"]) == ("fixed-point", True, 0)
    want = graph.dequantize_output(run_int(graph, graph.quantize_input(x)))
    assert np.array_equal(np.array(out["secure"]), want)


def test_run_cheetah_int_is_the_quantized_graph_on_37_bit_rings(samples, capsys) -> None:
    path, x = samples
    out = run_json(capsys, "--input", str(path), "--mode", "cheetah-int")
    graph = digits_model()
    assert (out["mode"], out["graph"], out["exact"]) == ("cheetah-int", "quantized", True)
    assert {row["ring"] for row in out["layers"]} == {37}
    assert np.array_equal(np.array(out["secure"]), graph.dequantize_output(run_int(graph, graph.quantize_input(x))))


def test_run_prints_the_mode_and_the_deviation(samples, capsys) -> None:
    path, _ = samples
    assert main(["run", str(DIGITS_ONNX), "--input", str(path), "--mode", "cheetah"]) == 0
    text = capsys.readouterr().out
    assert "mode cheetah (fixed-point program, 12 fractional bits, approximate truncation)" in text
    assert "secure vs integer reference: up to" in text  # hundreds of truncations: some are one LSB low


def test_demo_cheetah_exact(capsys) -> None:
    assert main(["demo", "--samples", "2", "--mode", "cheetah", "--exact"]) == 0
    text = capsys.readouterr().out
    assert "plaintext fixed-point prediction" in text and "bit for bit: True" in text
    data = digits_data()
    accuracy = float(np.mean(predict(digits_fixed_point(), data.x_test) == data.y_test))
    assert "exact truncation" in text and f"fixed point {accuracy:.2%} (plaintext" in text


LENET = Path(__file__).parent / "data" / "lenet_script.onnx"


def test_run_widths_flags_and_named_calibration(samples, capsys) -> None:
    from aiompc.nn import QuantConfig, load_onnx, quantize
    from aiompc.nn.zoo import digits_data

    path, x = samples
    assert main(["run", str(LENET), "--input", str(path), "--calibration", "digits", "--weight-bits", "6",
                 "--act-bits", "5", "--first-last-bits", "none", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert "NOTE" not in captured.err
    graph = quantize(load_onnx(LENET), digits_data().calibration,
                     QuantConfig(weight_bits=6, act_bits=5, first_last_bits=None))
    assert np.array_equal(np.array(out["reference"]), graph.dequantize_output(run_int(graph, graph.quantize_input(x))))
    weights = [row["weight_bits"] for row in out["widths"] if row["op"] in ("conv", "linear")]
    acts = {row["output_bits"] for row in out["widths"] if row["op"] == "requantize"}
    assert weights == [6, 6, 6, 6] and acts == {"u5"}


def test_run_without_calibration_says_so_and_prints_the_widths(samples, capsys) -> None:
    path, _ = samples
    assert main(["run", str(LENET), "--input", str(path)]) == 0
    captured = capsys.readouterr()
    assert "NOTE: lenet_script.onnx: no calibration inputs were given" in captured.err
    assert "--calibration FILE.npy or --calibration digits" in captured.err
    table = captured.out.split("secure:")[0]
    assert "| layer | op | weight bits | input | output |" in table
    assert "| /conv1/Conv | conv | 8 |" in table and "| /conv2/Conv | conv | 4 |" in table  # w4, 8-bit first/last


def test_missing_calibration_file_is_one_line(samples, capsys) -> None:
    path, _ = samples
    assert main(["run", str(LENET), "--input", str(path), "--calibration", "nope.npy"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "calibration file 'nope.npy' not found" in err


def test_bad_input_files_are_one_line_errors(tmp_path, capsys) -> None:
    (tmp_path / "text.npy").write_text("pixels\n")
    np.save(tmp_path / "strings.npy", np.array(["a", "b"]))
    cases = {"missing.npy": "not found; expected a .npy file of float inputs",
             "text.npy": "is not a numpy .npy array; expected float inputs",
             "strings.npy": "holds <U1 of shape (2,); expected float inputs"}
    for name, message in cases.items():
        assert main(["run", str(LENET), "--input", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"--input file '{tmp_path / name}'" in err and message in err, err


def test_version(capsys) -> None:
    import aiompc

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"aiompc {aiompc.__version__}"


def test_inputs_outside_the_quantized_range_are_warned_about(tmp_path, capsys) -> None:
    x = digits_data().x_test[:1]
    np.save(tmp_path / "raw.npy", x * 16)  # pixels not divided by 16
    np.save(tmp_path / "ok.npy", x)
    assert main(["run", str(LENET), "--input", str(tmp_path / "raw.npy"), "--calibration", "digits"]) == 0
    err = capsys.readouterr().err
    assert "of 64 input values lie outside [0, " in err and "(seen 0..16); they are clipped" in err
    assert main(["run", str(LENET), "--input", str(tmp_path / "ok.npy"), "--calibration", "digits"]) == 0
    assert "WARNING" not in capsys.readouterr().err
