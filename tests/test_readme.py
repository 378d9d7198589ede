"""The README's Python snippets run as written (the only change: a free port instead of 9000, which another
process on the machine may hold), on a float model as torch's exporter writes it."""

from __future__ import annotations

import re
import shutil
import socket
import textwrap
from pathlib import Path

import numpy as np
import pytest

import aiompc
from aiompc.nn.quant_choices import RandomCalibrationWarning

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "nn" / "data"
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_coroutine(block: str, result: str) -> str:
    """The snippet (top-level ``await``) as the body of ``async def snippet(x)`` returning ``result``."""
    return "async def snippet(x):\n" + textwrap.indent(block, "    ") + f"    return {result}\n"


async def test_serve_and_infer_snippet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block = BLOCKS[0]
    assert 'aiompc.serve("model.onnx"' in block and "aiompc.infer(x" in block
    shutil.copy(DATA / "lenet_script.onnx", tmp_path / "model.onnx")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(_as_coroutine(block.replace(":9000", f":{_free_port()}"), "logits"), namespace)
    x = np.load(DATA / "digits_sample.npy")[:2]
    with pytest.warns(RandomCalibrationWarning):
        logits = await namespace["snippet"](x)
    assert np.asarray(logits).shape == (2, 10)


async def test_run_local_snippet() -> None:
    block = BLOCKS[1]
    assert "run_local(server_fn, client_fn)" in block
    namespace: dict = {"aiompc": aiompc}
    exec(_as_coroutine(block, "server_result, client_result"), namespace)
    assert await namespace["snippet"](None) == (None, None)
