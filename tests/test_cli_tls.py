"""``aiompc serve --tls-cert/--tls-key --token`` and ``aiompc infer tls://… --ca --token`` as a user runs them
(subprocesses, loopback).  The certificates are made per test run by ``trustme``; none is checked in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trustme

from aiompc.nn.interpret import predict
from aiompc.nn.zoo import DIGITS_ONNX, digits_data, digits_model

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "correct horse battery staple"


def _aiompc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "AIOMPC_TOKEN"} | (env or {})
    return subprocess.run([sys.executable, "-m", "aiompc.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=environ)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(paths["cert"]), append=True)
    other = trustme.CA()  # a CA the server's certificate does not chain to
    paths["other_ca"] = d / "other.pem"
    other.cert_pem.write_to_path(str(paths["other_ca"]))
    return paths


@pytest.mark.parametrize("scheme", ["tls", "wss"])
def test_serve_with_tls_and_a_token_answers_only_clients_with_both(pki: dict[str, Path], tmp_path: Path,
                                                                     scheme: str) -> None:
    x = tmp_path / "x.npy"
    images = digits_data().x_test[:2]
    np.save(x, images)
    listen = f"{scheme}://127.0.0.1:0" + ("/aiompc" if scheme == "wss" else "")
    server = subprocess.Popen(
        [sys.executable, "-m", "aiompc.cli", "serve", str(DIGITS_ONNX), "--listen", listen,
         "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]), "--token", TOKEN, "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        banner = server.stdout.readline() if server.stdout else ""
        assert banner.startswith("serving"), server.stderr.read() if server.stderr else banner
        url = banner.split(" at ", 1)[1].split(" ", 1)[0]
        assert url.startswith(f"{scheme}://")
        ok = _aiompc("infer", str(x), "--connect", url, "--ca", str(pki["ca"]), "--token", TOKEN, "--json")
        assert ok.returncode == 0, ok.stderr
        logits = np.array(json.loads(ok.stdout)["output"])
        assert np.argmax(logits, axis=1).tolist() == predict(digits_model(), images).tolist()
        # the token from the environment works too
        env = _aiompc("infer", str(x), "--connect", url, "--ca", str(pki["ca"]), env={"AIOMPC_TOKEN": TOKEN})
        assert env.returncode == 0, env.stderr
        wrong = _aiompc("infer", str(x), "--connect", url, "--ca", str(pki["ca"]), "--token", "guess")
        assert wrong.returncode == 2 and "AccessDenied" in wrong.stderr and "wrong" in wrong.stderr
        missing = _aiompc("infer", str(x), "--connect", url, "--ca", str(pki["ca"]))
        assert missing.returncode == 2 and "AccessDenied" in missing.stderr
        untrusted = _aiompc("infer", str(x), "--connect", url, "--ca", str(pki["other_ca"]), "--token", TOKEN)
        assert untrusted.returncode == 2 and "TransportError" in untrusted.stderr
        assert server.poll() is None  # still serving
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert TOKEN not in (server.stderr.read() if server.stderr else "")  # never logged


def test_tls_flags_are_checked_before_serving(pki: dict[str, Path]) -> None:
    half = _aiompc("serve", str(DIGITS_ONNX), "--listen", "tls://127.0.0.1:0", "--tls-cert", str(pki["cert"]))
    assert half.returncode == 2 and "--tls-key" in half.stderr
    plain = _aiompc("serve", str(DIGITS_ONNX), "--listen", "tcp://127.0.0.1:0", "--tls-cert", str(pki["cert"]),
                    "--tls-key", str(pki["key"]))
    assert plain.returncode == 2 and "tls://" in plain.stderr
    bare = _aiompc("serve", str(DIGITS_ONNX), "--listen", "tls://127.0.0.1:0")
    assert bare.returncode == 2 and "--tls-cert" in bare.stderr
