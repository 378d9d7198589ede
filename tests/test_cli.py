"""The ``aiompc`` command as a user runs it (a subprocess, real loopback sockets)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from aiompc.nn.zoo import DIGITS_ONNX, digits_data

ROOT = Path(__file__).resolve().parents[1]


def aiompc(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiompc.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_run_json_has_secure_reference_layers_and_total(tmp_path: Path) -> None:
    x = tmp_path / "x.npy"
    np.save(x, digits_data().x_test[:2])
    proc = aiompc("run", str(DIGITS_ONNX), "--input", str(x), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert np.array_equal(np.array(out["secure"]), np.array(out["reference"]))
    assert {"name", "op", "bytes_c2s", "bytes_s2c", "rounds", "seconds"} <= set(out["layers"][0])
    total = out["total"]
    assert {"bytes_c2s", "bytes_s2c", "linear_bytes", "nonlinear_bytes", "offline_bytes", "rounds", "seconds"} <= set(total)
    assert total["linear_bytes"] > 0 and total["nonlinear_bytes"] > 0
    assert total["bytes_c2s"] + total["bytes_s2c"] >= total["linear_bytes"] + total["nonlinear_bytes"]


def test_demo_prints_predictions_and_the_communication_table() -> None:
    proc = aiompc("demo", "--samples", "3")
    assert proc.returncode == 0, proc.stderr
    assert "bit for bit: True" in proc.stdout and "**total**" in proc.stdout


def test_errors_are_one_line_with_exit_status_2(tmp_path: Path) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 3)))
    proc = aiompc("run", str(DIGITS_ONNX), "--input", str(x))
    assert proc.returncode == 2 and "InputError" in proc.stderr and "expects" in proc.stderr
    proc = aiompc("run", str(tmp_path / "nope.onnx"), "--input", str(x))
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_serve_and_infer_in_cheetah_mode_over_tcp(tmp_path: Path) -> None:
    """``aiompc serve --mode cheetah`` runs the fixed-point program; ``aiompc infer`` needs nothing but the
    handshake (its ``--mode`` only insists: another mode is refused)."""
    from aiompc.nn.interpret import predict
    from aiompc.nn.zoo import digits_fixed_point

    x = tmp_path / "x.npy"
    images = digits_data().x_test[:2]
    np.save(x, images)
    server = subprocess.Popen([sys.executable, "-m", "aiompc.cli", "serve", str(DIGITS_ONNX), "--listen",
                               "tcp://127.0.0.1:0", "--mode", "cheetah"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        banner = server.stdout.readline() if server.stdout else ""
        assert "approximate truncation" in banner, server.stderr.read() if server.stderr else banner
        url = banner.split(" at ", 1)[1].split(" ", 1)[0]
        proc = aiompc("infer", str(x), "--connect", url, "--json")
        assert proc.returncode == 0, proc.stderr
        logits = np.array(json.loads(proc.stdout)["output"])
        assert np.argmax(logits, axis=1).tolist() == predict(digits_fixed_point(), images).tolist()
        assert aiompc("infer", str(x), "--connect", url, "--mode", "cheetah").returncode == 0
        proc = aiompc("infer", str(x), "--connect", url, "--mode", "cheetah-int")
        assert proc.returncode == 2 and "HandshakeError" in proc.stderr and "'mode' differs" in proc.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_python_dash_m_aiompc_is_the_command():
    """``python -m aiompc`` is the same entry point as the installed ``aiompc`` script."""
    out = subprocess.run([sys.executable, "-m", "aiompc", "--version"], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("aiompc ")
