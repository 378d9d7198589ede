"""Every example runs as a user would run it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("transport", ["memory", "tcp", "ws"])
def test_secure_sum_example(transport: str) -> None:
    proc = subprocess.run([sys.executable, "examples/secure_sum.py", "--transport", transport, "--size", "100"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "matches the plaintext sum" in proc.stdout and "**total**" in proc.stdout
